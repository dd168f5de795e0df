//! Manifests (versions 0 to 3) and the core key derived from them, plus hypercore's namespace
//! constants (`lib/caps.js`).
//!
//! A manifest describes who may sign a core: the signers, the quorum, an optional prologue (a tree
//! hash and length the core starts from) and, from version 2, linked cores and user data. The core
//! key of a non-compat core is the manifest hash `BLAKE2b-256(MANIFEST ‖ encode(manifest))`
//! (`lib/verifier.js` `manifestHash`). The encoding is `manifest` in `lib/messages.js:177-241`.

use crate::crypto::{hash_batch, Hash};
use crate::encoding::{
    buffer_len, uint_len, write_buffer, write_uint, Decode, DecodeError, Decoder, Encode,
};

const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 64, "need 64 hex digits");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(b[2 * i]) << 4 | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// `crypto.namespace('hypercore', 6)[0]`: the first 32 bytes of every tree signable.
pub const TREE: Hash = hex32("9fac70b50ca14efc4e91c833b204e75b8b5aad8b5881bfc0adb5ef38a3275b9c");
/// `namespace('hypercore', 6)[1]`: capability prefix of the replication initiator.
pub const REPLICATE_INITIATOR: Hash =
    hex32("51812a2a359b50369536775df89e18e47740f3db72ac0ae70b29594c194dc316");
/// `namespace('hypercore', 6)[2]`: capability prefix of the replication responder.
pub const REPLICATE_RESPONDER: Hash =
    hex32("0438492d02970cc13528ac0262bca0074e0926260256865accc0bf15bd79127d");
/// `namespace('hypercore', 6)[3]`: prefix of the manifest hash.
pub const MANIFEST: Hash =
    hex32("e64b7108eacce47cfc61ac850568f55f8b15b82ec5ed78c4ec597b036e2a1498");
/// `namespace('hypercore', 6)[4]`: the namespace a signer gets when none is given.
pub const DEFAULT_NAMESPACE: Hash =
    hex32("4144eea531e483d54e0c14f4ca68e0644f355343ff6fcb0f005200e12cd747cb");
/// `namespace('hypercore', 6)[5]`: prefix of the default block-encryption key derivation.
pub const DEFAULT_ENCRYPTION: Hash =
    hex32("9aedb6f1dea8487cc1e1698f97eb2f063f6db4c649695622e7b675e2ceafa6e9");

/// Manifest `hash` id of BLAKE2b (the only one JS knows).
pub const HASH_BLAKE2B: u64 = 0;
/// Signer `signature` id of Ed25519 (the only one JS knows).
pub const SIGNATURE_ED25519: u64 = 0;
/// Highest manifest version the decoder accepts (hypercore 11.37.1).
pub const MAX_VERSION: u64 = 3;

const FLAG_PATCH: u64 = 0b0001;
const FLAG_PROLOGUE: u64 = 0b0010;
const FLAG_LINKED: u64 = 0b0100;
const FLAG_USER_DATA: u64 = 0b1000;

/// One declared signer: `uint signature ‖ fixed32 namespace ‖ fixed32 publicKey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signer {
    /// Signature scheme id; 0 = Ed25519 (the only one accepted).
    pub signature: u64,
    /// Namespace: the signing context of version-0 manifests.
    pub namespace: [u8; 32],
    /// Ed25519 public key.
    pub public_key: [u8; 32],
}

impl Signer {
    /// An Ed25519 signer in [`DEFAULT_NAMESPACE`].
    pub fn ed25519(public_key: [u8; 32]) -> Self {
        Signer {
            signature: SIGNATURE_ED25519,
            namespace: DEFAULT_NAMESPACE,
            public_key,
        }
    }
}

impl Encode for Signer {
    fn encoded_len(&self) -> usize {
        uint_len(self.signature) + 64
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.signature);
        out.extend_from_slice(&self.namespace);
        out.extend_from_slice(&self.public_key);
    }
}

impl Decode<'_> for Signer {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let signature = d.uint()?;
        if signature != SIGNATURE_ED25519 {
            return Err(DecodeError::Invalid("manifest signer signature id"));
        }
        Ok(Signer {
            signature,
            namespace: d.fixed()?,
            public_key: d.fixed()?,
        })
    }
}

/// A prologue: the core starts from a tree of `length` blocks whose tree hash is `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prologue {
    /// Tree hash at `length`.
    pub hash: [u8; 32],
    /// Length the prologue covers.
    pub length: u64,
}

impl Encode for Prologue {
    fn encoded_len(&self) -> usize {
        32 + uint_len(self.length)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash);
        write_uint(out, self.length);
    }
}

impl Decode<'_> for Prologue {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Prologue {
            hash: d.fixed()?,
            length: d.uint()?,
        })
    }
}

/// A hypercore manifest (`lib/messages.js` `manifest`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Manifest {
    /// Encoding version, 0 to [`MAX_VERSION`].
    pub version: u64,
    /// Hash id; 0 = BLAKE2b (the only one accepted).
    pub hash: u64,
    /// Whether multisig proofs may carry patches (signatures over a longer tree).
    pub allow_patch: bool,
    /// Number of distinct signers a signature needs.
    pub quorum: u64,
    /// Declared signers; multisig proofs refer to them by position.
    pub signers: Vec<Signer>,
    /// Optional prologue.
    pub prologue: Option<Prologue>,
    /// Linked core keys (version ≥ 2). `Some(empty)` is encoded (flag set, empty array), as in JS.
    pub linked: Option<Vec<[u8; 32]>>,
    /// Opaque user data (version ≥ 2). `Some(empty)` is encoded (flag set, empty buffer), as in JS.
    pub user_data: Option<Vec<u8>>,
}

/// Why [`Manifest::create`] rejected its input (JS `BAD_ARGUMENT` in `createManifest`).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// The quorum is higher than the number of signers.
    #[error("quorum {quorum} is higher than the number of signers ({signers})")]
    QuorumTooHigh {
        /// Requested quorum.
        quorum: u64,
        /// Number of signers.
        signers: usize,
    },
    /// `user_data` needs a version-2 (or later) manifest.
    #[error("invalid field: userData (needs manifest version >= 2)")]
    UserDataNeedsV2,
    /// `linked` needs a version-2 (or later) manifest.
    #[error("invalid field: linked (needs manifest version >= 2)")]
    LinkedNeedsV2,
    /// A version above [`MAX_VERSION`] (JS would encode it but no JS decoder accepts it).
    #[error("unsupported manifest version {0}")]
    UnsupportedVersion(u64),
}

/// A signer as given to [`Manifest::create`] (JS `parseSigner` input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignerOptions {
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// Namespace; `None` = [`DEFAULT_NAMESPACE`].
    pub namespace: Option<[u8; 32]>,
}

impl From<[u8; 32]> for SignerOptions {
    fn from(public_key: [u8; 32]) -> Self {
        SignerOptions {
            public_key,
            namespace: None,
        }
    }
}

/// Input of [`Manifest::create`], with the defaults of JS `Verifier.createManifest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestOptions {
    /// Version; `None` = 2 when non-empty `linked` or any `user_data` is given, else 1.
    pub version: Option<u64>,
    /// Allow patched multisig proofs.
    pub allow_patch: bool,
    /// Quorum; `None` = `floor(signers / 2) + 1`, or 0 without signers.
    pub quorum: Option<u64>,
    /// Signers.
    pub signers: Vec<SignerOptions>,
    /// Prologue.
    pub prologue: Option<Prologue>,
    /// Linked cores (an empty list is dropped, as in JS).
    pub linked: Option<Vec<[u8; 32]>>,
    /// User data (kept even when empty, as a JS buffer is truthy).
    pub user_data: Option<Vec<u8>>,
}

impl Manifest {
    /// The manifest a writer with `public_key` gets by default (JS `defaultSignerManifest`):
    /// version 1, BLAKE2b, quorum 1, one Ed25519 signer in [`DEFAULT_NAMESPACE`].
    pub fn default_signer(public_key: [u8; 32]) -> Manifest {
        Manifest {
            version: 1,
            hash: HASH_BLAKE2B,
            allow_patch: false,
            quorum: 1,
            signers: vec![Signer::ed25519(public_key)],
            prologue: None,
            linked: None,
            user_data: None,
        }
    }

    /// Build a manifest the way JS `Verifier.createManifest` does, with its defaults and checks.
    pub fn create(opts: ManifestOptions) -> Result<Manifest, ManifestError> {
        let linked = opts.linked.filter(|l| !l.is_empty());
        let version = opts.version.unwrap_or_else(|| {
            if linked.is_some() || opts.user_data.is_some() {
                2
            } else {
                1
            }
        });
        if version > MAX_VERSION {
            return Err(ManifestError::UnsupportedVersion(version));
        }
        if let Some(q) = opts.quorum {
            if q > 0 && q > opts.signers.len() as u64 {
                return Err(ManifestError::QuorumTooHigh {
                    quorum: q,
                    signers: opts.signers.len(),
                });
            }
        }
        let quorum = opts
            .quorum
            .unwrap_or_else(|| Self::default_quorum(opts.signers.len()));
        if opts.user_data.is_some() && version < 2 {
            return Err(ManifestError::UserDataNeedsV2);
        }
        if linked.is_some() && version < 2 {
            return Err(ManifestError::LinkedNeedsV2);
        }
        Ok(Manifest {
            version,
            hash: HASH_BLAKE2B,
            allow_patch: opts.allow_patch,
            quorum,
            signers: opts
                .signers
                .iter()
                .map(|s| Signer {
                    signature: SIGNATURE_ED25519,
                    namespace: s.namespace.unwrap_or(DEFAULT_NAMESPACE),
                    public_key: s.public_key,
                })
                .collect(),
            prologue: opts.prologue,
            linked,
            user_data: opts.user_data,
        })
    }

    /// Default quorum for `signers` signers: `floor(n / 2) + 1`, or 0 without signers.
    pub fn default_quorum(signers: usize) -> u64 {
        if signers == 0 {
            0
        } else {
            (signers as u64 >> 1) + 1
        }
    }

    /// The manifest hash `BLAKE2b-256(MANIFEST ‖ encode(self))`: the key of a non-compat core.
    pub fn key(&self) -> Hash {
        hash_batch(&[&MANIFEST, &self.to_bytes()])
    }

    /// Whether a core with `key` and this manifest is a compat core: exactly one signer whose public
    /// key is the core key (JS `isCompat`). Compat cores sign the 80-byte signable with raw
    /// signatures.
    pub fn is_compat(&self, key: &[u8; 32]) -> bool {
        self.signers.len() == 1 && &self.signers[0].public_key == key
    }

    /// JS `Hypercore.key(publicKey, { compat, version, namespace })`: the core key of a single
    /// signer core. `compat` returns the public key itself.
    pub fn core_key(
        public_key: [u8; 32],
        compat: bool,
        version: Option<u64>,
        namespace: Option<[u8; 32]>,
    ) -> Result<Hash, ManifestError> {
        if compat {
            return Ok(public_key);
        }
        let m = Manifest::create(ManifestOptions {
            version,
            signers: vec![SignerOptions {
                public_key,
                namespace,
            }],
            ..Default::default()
        })?;
        Ok(m.key())
    }

    /// True when the v0 encoding of this manifest is the short "single signer" form.
    fn v0_single(&self) -> bool {
        self.quorum == 1 && self.signers.len() == 1 && !self.allow_patch
    }

    fn v0_prologue_only(&self) -> bool {
        self.prologue.is_some() && self.signers.is_empty()
    }
}

impl Encode for Manifest {
    fn encoded_len(&self) -> usize {
        let mut n = uint_len(self.version) + uint_len(self.hash);
        if self.version == 0 {
            n += 1; // type
            if self.v0_prologue_only() {
                return n + 32;
            }
            if self.v0_single() {
                return n + self.signers[0].encoded_len();
            }
            return n + 1 + uint_len(self.quorum) + self.signers.encoded_len();
        }
        n += uint_len(self.flags()) + uint_len(self.quorum) + self.signers.encoded_len();
        if let Some(p) = &self.prologue {
            n += p.encoded_len();
        }
        if let Some(l) = &self.linked {
            n += uint_len(l.len() as u64) + 32 * l.len();
        }
        if let Some(u) = &self.user_data {
            n += buffer_len(u.len());
        }
        n
    }

    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.version);
        if self.version == 0 {
            write_uint(out, self.hash);
            if let (true, Some(p)) = (self.signers.is_empty(), &self.prologue) {
                write_uint(out, 0);
                out.extend_from_slice(&p.hash);
            } else if self.v0_single() {
                write_uint(out, 1);
                self.signers[0].encode(out);
            } else {
                write_uint(out, 2);
                write_uint(out, u64::from(self.allow_patch));
                write_uint(out, self.quorum);
                self.signers.encode(out);
            }
            return;
        }
        write_uint(out, self.flags());
        write_uint(out, self.hash);
        write_uint(out, self.quorum);
        self.signers.encode(out);
        if let Some(p) = &self.prologue {
            p.encode(out);
        }
        if let Some(l) = &self.linked {
            l.encode(out);
        }
        if let Some(u) = &self.user_data {
            write_buffer(out, u);
        }
    }
}

impl Manifest {
    fn flags(&self) -> u64 {
        let mut f = 0;
        if self.allow_patch {
            f |= FLAG_PATCH;
        }
        if self.prologue.is_some() {
            f |= FLAG_PROLOGUE;
        }
        if self.linked.is_some() {
            f |= FLAG_LINKED;
        }
        if self.user_data.is_some() {
            f |= FLAG_USER_DATA;
        }
        f
    }
}

fn decode_hash(d: &mut Decoder<'_>) -> Result<u64, DecodeError> {
    let h = d.uint()?;
    if h != HASH_BLAKE2B {
        return Err(DecodeError::Invalid("manifest hash id"));
    }
    Ok(h)
}

impl Decode<'_> for Manifest {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let version = d.uint()?;
        if version == 0 {
            let hash = decode_hash(d)?;
            let ty = d.uint()?;
            let base = Manifest {
                version: 0,
                hash,
                allow_patch: false,
                quorum: 0,
                signers: Vec::new(),
                prologue: None,
                linked: None,
                user_data: None,
            };
            return match ty {
                0 => Ok(Manifest {
                    prologue: Some(Prologue {
                        hash: d.fixed()?,
                        length: 0,
                    }),
                    ..base
                }),
                1 => Ok(Manifest {
                    quorum: 1,
                    signers: vec![Signer::decode(d)?],
                    ..base
                }),
                2 => {
                    let flags = d.uint()?;
                    Ok(Manifest {
                        allow_patch: flags & 1 != 0,
                        quorum: d.uint()?,
                        signers: d.array()?,
                        ..base
                    })
                }
                _ => Err(DecodeError::Invalid("manifest v0 type")),
            };
        }
        if version > MAX_VERSION {
            return Err(DecodeError::Invalid("manifest version"));
        }
        let flags = d.uint()?;
        let hash = decode_hash(d)?;
        let quorum = d.uint()?;
        let signers = d.array()?;
        let prologue = if flags & FLAG_PROLOGUE != 0 {
            Some(Prologue::decode(d)?)
        } else {
            None
        };
        let linked = if flags & FLAG_LINKED != 0 {
            Some(d.array::<[u8; 32]>()?)
        } else {
            None
        };
        let user_data = if flags & FLAG_USER_DATA != 0 {
            Some(d.buffer()?.to_vec())
        } else {
            None
        };
        Ok(Manifest {
            version,
            hash,
            allow_patch: flags & FLAG_PATCH != 0,
            quorum,
            signers,
            prologue,
            linked,
            user_data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{namespace, KeyPair};
    use proptest::prelude::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn pk1() -> [u8; 32] {
        KeyPair::from_seed(&[1u8; 32]).public_key
    }

    /// Encode, compare with the JS bytes, decode back to the same manifest.
    fn check(m: &Manifest, enc: &str, key: &str) {
        let bytes = m.to_bytes();
        assert_eq!(hex::encode(&bytes), enc);
        assert_eq!(m.encoded_len(), bytes.len());
        assert_eq!(&Manifest::from_bytes(&bytes).unwrap(), m);
        assert_eq!(hex::encode(m.key()), key);
    }

    #[test]
    fn namespaces_are_crypto_namespace() {
        let ns = namespace(b"hypercore", 6);
        assert_eq!(
            ns,
            vec![
                TREE,
                REPLICATE_INITIATOR,
                REPLICATE_RESPONDER,
                MANIFEST,
                DEFAULT_NAMESPACE,
                DEFAULT_ENCRYPTION
            ]
        );
    }

    #[test]
    fn default_signer_v1_matches_js() {
        let m = Manifest::default_signer(pk1());
        check(
            &m,
            "0100000101004144eea531e483d54e0c14f4ca68e0644f355343ff6fcb0f005200e12cd747cb8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
            "d8c3a0597903b28d751c6e0b7107775e388ec5a3cf669bdd1e7ec41b8b8f6e72",
        );
        assert_eq!(
            Manifest::create(ManifestOptions {
                signers: vec![pk1().into()],
                ..Default::default()
            })
            .unwrap(),
            m
        );
        assert!(m.is_compat(&pk1()));
        assert!(!m.is_compat(&m.key()));
        assert_eq!(
            Manifest::core_key(pk1(), false, None, None).unwrap(),
            m.key()
        );
        assert_eq!(Manifest::core_key(pk1(), true, None, None).unwrap(), pk1());
    }

    #[test]
    fn v0_single_signer_matches_js() {
        let m = Manifest::create(ManifestOptions {
            version: Some(0),
            signers: vec![pk1().into()],
            ..Default::default()
        })
        .unwrap();
        check(
            &m,
            "000001004144eea531e483d54e0c14f4ca68e0644f355343ff6fcb0f005200e12cd747cb8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
            "a945135b724f9205a06c58bee34f342ac3c77ff0c09fa54ad6220c0eb3168fa8",
        );
        assert_eq!(
            hex::encode(Manifest::core_key(pk1(), false, Some(0), None).unwrap()),
            "a945135b724f9205a06c58bee34f342ac3c77ff0c09fa54ad6220c0eb3168fa8"
        );
    }

    #[test]
    fn v1_prologue_only_matches_js() {
        let m = Manifest::create(ManifestOptions {
            version: Some(1),
            quorum: Some(0),
            prologue: Some(Prologue {
                hash: [0xee; 32],
                length: 7,
            }),
            ..Default::default()
        })
        .unwrap();
        check(
            &m,
            "0102000000eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee07",
            "594be22ab096688211fc3e3f325f6aabefe334df61d9d49514aa6c550955b361",
        );
    }

    #[test]
    fn v2_multi_signer_matches_js() {
        let pk2 = KeyPair::from_seed(&[2u8; 32]).public_key;
        let m = Manifest::create(ManifestOptions {
            version: Some(2),
            allow_patch: true,
            signers: vec![
                pk1().into(),
                SignerOptions {
                    public_key: pk2,
                    namespace: Some([3u8; 32]),
                },
            ],
            user_data: Some(b"ud".to_vec()),
            linked: Some(vec![[4u8; 32]]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.quorum, 2);
        check(
            &m,
            "020d000202004144eea531e483d54e0c14f4ca68e0644f355343ff6fcb0f005200e12cd747cb8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c0003030303030303030303030303030303030303030303030303030303030303038139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394010404040404040404040404040404040404040404040404040404040404040404027564",
            "86f69bd7fe384d9ae5c7be10a6a6a02bc4d8d43f29ea0a3b066891637636725e",
        );
        // the version defaults to 2 when linked/userData are given
        let auto = Manifest::create(ManifestOptions {
            allow_patch: true,
            signers: m
                .signers
                .iter()
                .map(|s| SignerOptions {
                    public_key: s.public_key,
                    namespace: Some(s.namespace),
                })
                .collect(),
            user_data: Some(b"ud".to_vec()),
            linked: Some(vec![[4u8; 32]]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(auto, m);
    }

    #[test]
    fn v0_other_forms() {
        // type 0: prologue only (length is not encoded and decodes as 0)
        let m = Manifest {
            version: 0,
            hash: 0,
            allow_patch: false,
            quorum: 0,
            signers: vec![],
            prologue: Some(Prologue {
                hash: [5; 32],
                length: 0,
            }),
            linked: None,
            user_data: None,
        };
        let b = m.to_bytes();
        assert_eq!(&b[..3], &[0, 0, 0]);
        assert_eq!(b.len(), 3 + 32);
        assert_eq!(Manifest::from_bytes(&b).unwrap(), m);
        // type 2: several signers / patches
        let m = Manifest {
            version: 0,
            hash: 0,
            allow_patch: true,
            quorum: 1,
            signers: vec![Signer::ed25519([1; 32]), Signer::ed25519([2; 32])],
            prologue: None,
            linked: None,
            user_data: None,
        };
        let b = m.to_bytes();
        assert_eq!(&b[..6], &[0, 0, 2, 1, 1, 2]);
        assert_eq!(b.len(), m.encoded_len());
        assert_eq!(Manifest::from_bytes(&b).unwrap(), m);
    }

    #[test]
    fn empty_optionals_follow_js_truthiness() {
        // an empty userData buffer is truthy in JS: version 2, flag set
        let m = Manifest::create(ManifestOptions {
            signers: vec![pk1().into()],
            user_data: Some(vec![]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.version, 2);
        let b = m.to_bytes();
        assert_eq!(b[1], 0b1000);
        assert_eq!(Manifest::from_bytes(&b).unwrap(), m);
        // an empty linked list is dropped
        let m = Manifest::create(ManifestOptions {
            signers: vec![pk1().into()],
            linked: Some(vec![]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((m.version, m.linked), (1, None));
    }

    #[test]
    fn create_errors() {
        let two = vec![pk1().into(), [9u8; 32].into()];
        assert_eq!(
            Manifest::create(ManifestOptions {
                quorum: Some(3),
                signers: two.clone(),
                ..Default::default()
            }),
            Err(ManifestError::QuorumTooHigh {
                quorum: 3,
                signers: 2
            })
        );
        assert_eq!(
            Manifest::create(ManifestOptions {
                version: Some(1),
                signers: two.clone(),
                user_data: Some(vec![1]),
                ..Default::default()
            }),
            Err(ManifestError::UserDataNeedsV2)
        );
        assert_eq!(
            Manifest::create(ManifestOptions {
                version: Some(1),
                signers: two.clone(),
                linked: Some(vec![[0; 32]]),
                ..Default::default()
            }),
            Err(ManifestError::LinkedNeedsV2)
        );
        assert_eq!(
            Manifest::create(ManifestOptions {
                version: Some(4),
                ..Default::default()
            }),
            Err(ManifestError::UnsupportedVersion(4))
        );
        let m = Manifest::create(ManifestOptions {
            signers: two,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.quorum, 2);
        assert_eq!(Manifest::default_quorum(0), 0);
        assert_eq!(Manifest::default_quorum(3), 2);
        assert_eq!(Manifest::default_quorum(4), 3);
    }

    #[test]
    fn decode_errors() {
        let good = h("0100000101004144eea531e483d54e0c14f4ca68e0644f355343ff6fcb0f005200e12cd747cb8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c");
        for n in 0..good.len() {
            assert!(Manifest::from_bytes(&good[..n]).is_err(), "prefix {n}");
        }
        let mut v4 = good.clone();
        v4[0] = 4;
        assert_eq!(
            Manifest::from_bytes(&v4),
            Err(DecodeError::Invalid("manifest version"))
        );
        let mut bad_hash = good.clone();
        bad_hash[2] = 1;
        assert!(Manifest::from_bytes(&bad_hash).is_err());
        let mut bad_sig = good.clone();
        bad_sig[5] = 1;
        assert!(Manifest::from_bytes(&bad_sig).is_err());
        assert!(Manifest::from_bytes(&[0, 0, 3]).is_err());
        assert!(Manifest::from_bytes(&[0, 1, 1]).is_err());
        // versions 2 and 3 decode
        let mut v3 = good;
        v3[0] = 3;
        assert_eq!(Manifest::from_bytes(&v3).unwrap().version, 3);
    }

    fn arb_manifest() -> impl Strategy<Value = Manifest> {
        let signer =
            (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(namespace, public_key)| Signer {
                signature: 0,
                namespace,
                public_key,
            });
        (
            1u64..=3,
            any::<bool>(),
            0u64..1000,
            proptest::collection::vec(signer, 0..4),
            proptest::option::of((any::<[u8; 32]>(), 0u64..1 << 40)),
            proptest::option::of(proptest::collection::vec(any::<[u8; 32]>(), 0..3)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        )
            .prop_map(
                |(version, allow_patch, quorum, signers, p, linked, user_data)| Manifest {
                    version,
                    hash: 0,
                    allow_patch,
                    quorum,
                    signers,
                    prologue: p.map(|(hash, length)| Prologue { hash, length }),
                    linked,
                    user_data,
                },
            )
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(m) = Manifest::from_bytes(&bytes) {
                // whatever decodes re-encodes to a prefix-compatible, decodable manifest
                let again = Manifest::from_bytes(&m.to_bytes()).unwrap();
                prop_assert_eq!(again.to_bytes(), m.to_bytes());
            }
        }

        #[test]
        fn round_trip(m in arb_manifest()) {
            let b = m.to_bytes();
            prop_assert_eq!(b.len(), m.encoded_len());
            prop_assert_eq!(Manifest::from_bytes(&b).unwrap(), m);
        }
    }
}
