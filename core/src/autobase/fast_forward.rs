//! Fast-forward (`NM/autobase/lib/fast-forward.js`, `lib/store.js`, `lib/system.js`), the
//! sans-IO parts: what a new reader reads and checks before it continues from the indexed state a
//! system core holds instead of linearizing every oplog from the start.
//!
//! The steps, as JS does them (the transport fetches the blocks):
//! 1. The system core's key: the `digest` of an indexer's latest oplog entry
//!    ([`digest_source`]: the key, or the earlier entry that carries it).
//! 2. The system core (a hyperbee on a hypercore whose manifest names the indexers as signers)
//!    at its signed length `L`; [`check_view_key`] checks that its key is the one of the
//!    manifest JS derives for that view and those indexers, so the signature the hypercore layer
//!    verified is a quorum of theirs.
//! 3. Block `L - 1` is the `info` record of the last flush ([`info_from_block`]): heads,
//!    indexers, view keys and lengths. The member records come from the bee at `L`
//!    ([`member_from_entry`], prefix [`MEMBERS_PREFIX`]).
//! 4. Each view core is matched to its name by its signers' namespace ([`view_namespace`]).
//! 5. [`super::Autobase::fast_forward`] takes the state; the oplogs are wanted only from the
//!    lengths the system applied.
//!
//! When: the engine decides ([`super::Autobase::fast_forward_minimum`],
//! [`super::Autobase::fast_forward_worth`]): a member fast-forwards whenever the signed system
//! is at least [`MINIMUM`] blocks past what it indexed, when it joins, when it restarts and while
//! it runs (JS `_queueFastForward`, `_applyFastForward`), and never to a point behind what it has.

use super::messages::{Info, Member, OplogMessage};
use crate::crypto::{hash_batch, namespace};
use crate::encoding::{
    buffer_len, uint_len, write_buffer, write_string, write_uint, Decode, DecodeError, Decoder,
    Encode,
};
use crate::hyperbee::messages::Node;
use crate::hypercore::manifest::{Manifest, Prologue};

/// How far ahead of what a member has indexed a signed system core must be for the member to
/// fast-forward to it (JS `FastForward.MINIMUM`, `DEFAULT_MIN_FF`): below it, linearizing the few
/// nodes in between is as cheap. [`super::Autobase::fast_forward_minimum`] applies it.
pub const MINIMUM: u64 = 16;

/// The system bee's `info` key (sub-encoder `[0]`, then `info`).
pub const INFO_KEY: &[u8] = b"\x00\x00info";
/// The prefix of the system bee's member records (sub-encoder `[1]`), each keyed by a writer key.
pub const MEMBERS_PREFIX: &[u8] = &[1, 0];

/// Why a fast-forward source was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FastForwardError {
    /// A block or record did not decode.
    #[error("{what}: {reason}")]
    Malformed {
        /// What was decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The block at the signed length is not the `info` record.
    #[error("block {0} of the system core is not its info record")]
    NotInfo(u64),
    /// The entry carries no digest.
    #[error("no digest in the indexer's oplog entry")]
    NoDigest,
    /// A view the reader's apply opens is not among the system's views (JS would open it empty
    /// while the system has indexed it, or the reader runs another apply).
    #[error("view {0:?} is not among the system's views")]
    UnknownView(String),
    /// The encryption key given is not the base's (or the base is not encrypted, or is and no
    /// key was given): what it decrypts is not an oplog entry, or the system key derived with it
    /// is not the one the bootstrap names.
    #[error("the encryption key does not open this base: {0}")]
    WrongEncryptionKey(&'static str),
    /// The manifest is not the one the indexers would sign the view with.
    #[error("the manifest of view {name:?} is not signed by the indexers: {reason}")]
    Manifest {
        /// The view.
        name: String,
        /// What differs.
        reason: &'static str,
    },
}

fn malformed(what: &'static str, e: impl ToString) -> FastForwardError {
    FastForwardError::Malformed {
        what,
        reason: e.to_string(),
    }
}

/// Where the system key is, from an indexer's oplog entry at `length` (1-based) (JS
/// `CheckpointCore._inflateDigest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestSource {
    /// The key is in this entry.
    Key([u8; 32]),
    /// The key is in the entry at this 0-based block index of the same oplog.
    At(u64),
}

/// Where the system key of the oplog entry `msg` (block `length - 1`) is.
pub fn digest_source(msg: &OplogMessage, length: u64) -> Result<DigestSource, FastForwardError> {
    let d = msg.digest.as_ref().ok_or(FastForwardError::NoDigest)?;
    if d.pointer == 0 {
        return d
            .key
            .map(DigestSource::Key)
            .ok_or(FastForwardError::NoDigest);
    }
    let at = length
        .checked_sub(d.pointer)
        .filter(|&l| l > 0)
        .ok_or(FastForwardError::NoDigest)?;
    Ok(DigestSource::At(at - 1))
}

/// The `info` record in block `seq` of the system core: the last block of a flush (JS
/// `SystemView.getIndexedInfo` reads block `length - 1`).
pub fn info_from_block(seq: u64, block: &[u8]) -> Result<Info, FastForwardError> {
    let node = Node::decode(block).map_err(|e| malformed("system bee node", e))?;
    if node.key != INFO_KEY {
        return Err(FastForwardError::NotInfo(seq));
    }
    let value = node.value.ok_or(FastForwardError::NotInfo(seq))?;
    Info::from_bytes(&value).map_err(|e| malformed("system info", e))
}

/// A member record of the system bee (key [`MEMBERS_PREFIX`] ‖ writer key).
pub fn member_from_entry(key: &[u8], value: &[u8]) -> Result<([u8; 32], Member), FastForwardError> {
    let writer: [u8; 32] = key
        .strip_prefix(MEMBERS_PREFIX)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| malformed("member key", "not a writer key"))?;
    let m = Member::from_bytes(value).map_err(|e| malformed("member record", e))?;
    Ok((writer, m))
}

/// The signers' namespace of view `name` of an unencrypted base (JS
/// `AutoStore._deriveNamespace`): [`view_namespace_encrypted`] with no key.
pub fn view_namespace(bootstrap: &[u8; 32], entropy: &[u8; 32], name: &str) -> [u8; 32] {
    view_namespace_encrypted(bootstrap, None, entropy, name)
}

/// The signers' namespace of view `name` (JS `AutoStore._deriveNamespace`):
/// `H(NS_SIGNER_NAMESPACE ‖ uint(1) ‖ bootstrap ‖ H(encryption key or empty) ‖ entropy ‖ name)`.
/// `entropy` is the info's (version 2), else the first indexer's manifest's signer namespace.
pub fn view_namespace_encrypted(
    bootstrap: &[u8; 32],
    encryption_key: Option<&[u8; 32]>,
    entropy: &[u8; 32],
    name: &str,
) -> [u8; 32] {
    let ns = namespace(b"autobase", 1)[0];
    let encryption_id = super::encryption::encryption_id(encryption_key);
    hash_batch(&[
        &ns,
        &[1],
        bootstrap,
        &encryption_id,
        entropy,
        name.as_bytes(),
    ])
}

/// The manifest the indexers sign view `name` with, exactly as JS `AutoStore._createManifest`
/// builds it for a base with indexers: `version` (the system core's manifest version, as JS
/// fast-forward passes it), blake2b, `prologue`, `allowPatch: true`, a majority quorum, one
/// ed25519 signer per indexer in order, with the indexer's public key (`indexer_public_keys`,
/// from the indexers' own oplog manifests) and the view's `namespace` ([`view_namespace`]).
/// `prologue`: none for a core created fresh; a view (or the system core) recreated when the
/// indexers changed carries its predecessor's tree hash at a length (JS `getPrologue`), which
/// only the core's own manifest tells.
/// Versions 2 and up (encrypted bases: `linked` and `userData`) are not supported here.
pub fn view_manifest(
    version: u64,
    prologue: Option<Prologue>,
    indexer_public_keys: &[[u8; 32]],
    namespace: &[u8; 32],
) -> Manifest {
    let n = indexer_public_keys.len() as u64;
    Manifest {
        version,
        hash: crate::hypercore::manifest::HASH_BLAKE2B,
        allow_patch: true,
        quorum: n.min(n / 2 + 1),
        signers: indexer_public_keys
            .iter()
            .map(|pk| crate::hypercore::manifest::Signer {
                signature: crate::hypercore::manifest::SIGNATURE_ED25519,
                namespace: *namespace,
                public_key: *pk,
            })
            .collect(),
        prologue,
        linked: None,
        user_data: None,
    }
}

/// Check that `key` is the core key of [`view_manifest`] for those indexers and view `name`'s
/// `namespace`: then the hypercore layer, which verifies signatures against the manifest the key
/// commits to, accepts only a quorum of exactly those indexers. Returns that manifest.
pub fn check_view_key(
    key: &[u8; 32],
    name: &str,
    version: u64,
    prologue: Option<Prologue>,
    namespace: &[u8; 32],
    indexer_public_keys: &[[u8; 32]],
) -> Result<Manifest, FastForwardError> {
    let fail = |reason| {
        Err(FastForwardError::Manifest {
            name: name.to_string(),
            reason,
        })
    };
    if indexer_public_keys.is_empty() {
        return fail("no indexers");
    }
    if version > 1 {
        return fail("manifest version 2 or later (encrypted or linked) is not supported");
    }
    if prologue.is_some_and(|p| p.length == 0) {
        return fail("an empty prologue (JS makes none)");
    }
    let m = view_manifest(version, prologue, indexer_public_keys, namespace);
    if &m.key() != key {
        return fail("the core key is not the one of the indexers' manifest for it");
    }
    Ok(m)
}

/// Match each view `names` (the ones the reader's apply opens) to its entry in `info.views`:
/// the entry whose core key is the one of [`view_manifest`] for that name (`version`: the system
/// core's manifest version; `entropy`: [`namespace_entropy`]), with no prologue or with the
/// prologue of the entry's own manifest (`manifests[i]` for `info.views[i]`, `None` when not
/// fetched, e.g. an empty view), as JS `findViewByKey` (by namespace, else by derived key).
/// Returns (name, key, length) per name, in order. A name with no entry is
/// [`FastForwardError::UnknownView`]; an entry with no name is ignored, as JS
/// `_applyFastForward` does ("unknown, view ignored"). Unencrypted base: see
/// [`match_views_encrypted`].
pub fn match_views(
    info: &Info,
    manifests: &[Option<Manifest>],
    names: &[&str],
    version: u64,
    bootstrap: &[u8; 32],
    entropy: &[u8; 32],
    indexer_public_keys: &[[u8; 32]],
) -> Result<Vec<(String, [u8; 32], u64)>, FastForwardError> {
    match_views_encrypted(
        info,
        manifests,
        names,
        version,
        bootstrap,
        None,
        entropy,
        indexer_public_keys,
    )
}

/// [`match_views`] for a base encrypted with `encryption_key` (it enters the views' namespaces).
#[allow(clippy::too_many_arguments)]
pub fn match_views_encrypted(
    info: &Info,
    manifests: &[Option<Manifest>],
    names: &[&str],
    version: u64,
    bootstrap: &[u8; 32],
    encryption_key: Option<&[u8; 32]>,
    entropy: &[u8; 32],
    indexer_public_keys: &[[u8; 32]],
) -> Result<Vec<(String, [u8; 32], u64)>, FastForwardError> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let ns = view_namespace_encrypted(bootstrap, encryption_key, entropy, name);
        let found = info.views.iter().enumerate().find(|(i, v)| {
            let prologue = manifests
                .get(*i)
                .and_then(|m| m.as_ref())
                .and_then(|m| m.prologue);
            check_view_key(&v.key, name, version, None, &ns, indexer_public_keys).is_ok()
                || (prologue.is_some()
                    && check_view_key(&v.key, name, version, prologue, &ns, indexer_public_keys)
                        .is_ok())
        });
        let (_, v) = found.ok_or_else(|| FastForwardError::UnknownView(name.to_string()))?;
        out.push((name.to_string(), v.key, v.length));
    }
    Ok(out)
}

/// The entropy of the views' namespaces (JS `findViewByKey`): the info's (version 2 records),
/// else the first indexer's oplog manifest's signer namespace.
pub fn namespace_entropy(
    info: &Info,
    first_indexer_namespace: Option<[u8; 32]>,
) -> Option<[u8; 32]> {
    info.entropy.or(first_indexer_namespace)
}

/// The indexed state a reader fast-forwards to (what [`super::Autobase::fast_forward`] takes),
/// as read from a signed system core. It is also what a member stores so that a restart resumes
/// from it without reading the system core again: [`Encode`]/[`Decode`] give its stored form
/// (hyperpunch's own, versioned: `uint version(1) ‖ fixed32 systemKey ‖ uint systemLength ‖
/// buffer info ‖ uint n ‖ n × (fixed32 key ‖ buffer member) ‖ uint m ‖ m × (string name ‖
/// fixed32 key ‖ uint length)`, `info` and `member` in JS's layouts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastForwardPoint {
    /// The system core's key.
    pub system_key: [u8; 32],
    /// Its signed length (the blocks its indexers' signature covers).
    pub system_length: u64,
    /// Its `info` record there (heads, indexers, views).
    pub info: Info,
    /// Its member records there.
    pub members: Vec<([u8; 32], Member)>,
    /// The views found among `info.views`: (name, key, length).
    pub views: Vec<(String, [u8; 32], u64)>,
}

/// The version of [`FastForwardPoint`]'s stored form.
const POINT_VERSION: u64 = 1;

impl FastForwardPoint {
    /// The views as [`super::Autobase::fast_forward`] takes them.
    pub fn view_lengths(&self) -> Vec<(&str, u64)> {
        self.views
            .iter()
            .map(|(n, _, l)| (n.as_str(), *l))
            .collect()
    }

    /// The length view `name` starts at (0 when the point has no such view).
    pub fn view_length(&self, name: &str) -> u64 {
        self.views
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or(0, |v| v.2)
    }
}

/// What a member that fast-forwarded to a point must hold before it writes and signs the
/// system and view cores as an indexer (JS holds them as hypercores and downloads the blocks it
/// lacks): every block below the point of the system core and of each view, read from the cores
/// the point names (after a move, the moved cores: a moved core holds its blocks from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexerPrefix {
    /// The system core's key and the blocks to hold (`0..length`).
    pub system: ([u8; 32], u64),
    /// By view id (the order of the names given): the view core's key and length at the point,
    /// `None` for a view the point does not name (it starts empty there).
    pub views: Vec<Option<([u8; 32], u64)>>,
    /// The indexers at the point (writer keys, in the system's order: the signers' order of
    /// the cores' manifests) and the quorum of them that signs (JS: a majority).
    pub indexers: Vec<[u8; 32]>,
    /// How many of `indexers` sign a core's length.
    pub quorum: usize,
}

impl FastForwardPoint {
    /// The cores, lengths and signers an indexer that continues from this point takes over
    /// ([`IndexerPrefix`]); `view_names` in the order apply opens the views (their ids).
    pub fn indexer_prefix(&self, view_names: &[&str]) -> IndexerPrefix {
        let indexers: Vec<[u8; 32]> = self.info.indexers.iter().map(|c| c.key).collect();
        let n = indexers.len();
        IndexerPrefix {
            system: (self.system_key, self.system_length),
            views: view_names
                .iter()
                .map(|name| self.views.iter().find(|v| v.0 == *name).map(|v| (v.1, v.2)))
                .collect(),
            indexers,
            quorum: n.min(n / 2 + 1),
        }
    }
}

impl Encode for FastForwardPoint {
    fn encoded_len(&self) -> usize {
        let info = self.info.encoded_len();
        uint_len(POINT_VERSION)
            + 32
            + uint_len(self.system_length)
            + uint_len(info as u64)
            + info
            + uint_len(self.members.len() as u64)
            + self
                .members
                .iter()
                .map(|(_, m)| 32 + buffer_len(m.encoded_len()))
                .sum::<usize>()
            + uint_len(self.views.len() as u64)
            + self
                .views
                .iter()
                .map(|(n, _, l)| buffer_len(n.len()) + 32 + uint_len(*l))
                .sum::<usize>()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, POINT_VERSION);
        out.extend_from_slice(&self.system_key);
        write_uint(out, self.system_length);
        write_buffer(out, &self.info.to_bytes());
        write_uint(out, self.members.len() as u64);
        for (k, m) in &self.members {
            out.extend_from_slice(k);
            write_buffer(out, &m.to_bytes());
        }
        write_uint(out, self.views.len() as u64);
        for (n, k, l) in &self.views {
            write_string(out, n);
            out.extend_from_slice(k);
            write_uint(out, *l);
        }
    }
}

impl<'a> Decode<'a> for FastForwardPoint {
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        if d.uint()? != POINT_VERSION {
            return Err(DecodeError::Invalid("fast-forward point version"));
        }
        let system_key = d.fixed()?;
        let system_length = d.uint()?;
        let info = whole::<Info>(d.buffer()?)?;
        let members = d.array_with(|d| Ok((d.fixed()?, whole::<Member>(d.buffer()?)?)))?;
        let views = d.array_with(|d| Ok((d.string()?.to_string(), d.fixed()?, d.uint()?)))?;
        Ok(FastForwardPoint {
            system_key,
            system_length,
            info,
            members,
            views,
        })
    }
}

/// A value that fills its buffer.
fn whole<'a, T: Decode<'a>>(b: &'a [u8]) -> Result<T, DecodeError> {
    let mut d = Decoder::new(b);
    let v = T::decode(&mut d)?;
    d.finish()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autobase::messages::{Checkout, Digest, Node as OplogNode};
    use crate::encoding::Encode;
    use crate::hyperbee::messages::encode_node;

    #[test]
    fn info_block_round_trip_and_refusals() {
        let info = Info {
            version: 1,
            members: 2,
            pending_indexers: vec![],
            indexers: vec![Checkout {
                key: [1; 32],
                length: 7,
            }],
            heads: vec![Checkout {
                key: [2; 32],
                length: 3,
            }],
            views: vec![Checkout {
                key: [3; 32],
                length: 5,
            }],
            encryption_length: 0,
            entropy: None,
        };
        let block = encode_node(&[], INFO_KEY, Some(&info.to_bytes()));
        assert_eq!(info_from_block(9, &block).unwrap(), info);
        let other = encode_node(&[], b"\x01\x00member", Some(&info.to_bytes()));
        assert_eq!(
            info_from_block(9, &other),
            Err(FastForwardError::NotInfo(9))
        );
        assert!(info_from_block(9, &[0xff; 3]).is_err());
        let bad = encode_node(&[], INFO_KEY, Some(&[0xff]));
        assert!(info_from_block(9, &bad).is_err());
    }

    /// The key of the manifest JS builds is accepted; a core whose manifest differs in any way
    /// (another signer, namespace, quorum, a prologue, not patchable, another version) has another
    /// key and is refused, and so is a wrong key.
    #[test]
    fn view_keys_and_refusals() {
        let pks = [[1u8; 32], [2; 32], [3; 32]];
        let ns = view_namespace(&[7; 32], &[8; 32], "_system");
        let good = view_manifest(1, None, &pks, &ns);
        assert_eq!(good.quorum, 2);
        let key = good.key();
        assert_eq!(
            check_view_key(&key, "_system", 1, None, &ns, &pks),
            Ok(good.clone())
        );
        let refused = |m: &Manifest| {
            matches!(
                check_view_key(&m.key(), "_system", 1, None, &ns, &pks),
                Err(FastForwardError::Manifest { .. })
            )
        };
        let mut m = good.clone();
        m.signers[1].public_key = [9; 32];
        assert!(refused(&m), "wrong signer");
        let mut m = good.clone();
        m.signers.swap(0, 1);
        assert!(refused(&m), "signers out of order");
        let mut m = good.clone();
        m.signers.pop();
        m.quorum = 2;
        assert!(refused(&m), "a signer missing");
        let mut m = good.clone();
        m.signers[2].namespace = view_namespace(&[7; 32], &[8; 32], "view");
        assert!(refused(&m), "wrong namespace");
        let mut m = good.clone();
        m.quorum = 1;
        assert!(refused(&m), "wrong quorum");
        let mut m = good.clone();
        m.prologue = Some(Prologue {
            hash: [5; 32],
            length: 1,
        });
        assert!(refused(&m), "a prologue");
        let mut m = good.clone();
        m.allow_patch = false;
        assert!(refused(&m), "no patches");
        assert!(
            refused(&view_manifest(0, None, &pks, &ns)),
            "another version"
        );
        // a recreated core's prologue, taken from its manifest: accepted with it, and only so
        let p = Prologue {
            hash: [5; 32],
            length: 4,
        };
        let with = view_manifest(1, Some(p), &pks, &ns);
        assert!(check_view_key(&with.key(), "_system", 1, Some(p), &ns, &pks).is_ok());
        let p0 = Prologue {
            hash: [5; 32],
            length: 0,
        };
        let with0 = view_manifest(1, Some(p0), &pks, &ns);
        assert!(check_view_key(&with0.key(), "_system", 1, Some(p0), &ns, &pks).is_err());
        // the right manifest, checked against another namespace, indexer set or key
        let other_ns = view_namespace(&[7; 32], &[9; 32], "_system");
        assert!(check_view_key(&key, "_system", 1, None, &other_ns, &pks).is_err());
        assert!(check_view_key(&key, "_system", 1, None, &ns, &pks[..2]).is_err());
        assert!(check_view_key(&[0; 32], "_system", 1, None, &ns, &pks).is_err());
        assert!(check_view_key(&key, "_system", 1, None, &ns, &[]).is_err());
        assert!(check_view_key(
            &view_manifest(2, None, &pks, &ns).key(),
            "_system",
            2,
            None,
            &ns,
            &pks
        )
        .is_err());
    }

    #[test]
    fn views_matched_by_key() {
        let pks = [[1u8; 32]];
        let (boot, entropy) = ([7u8; 32], [8u8; 32]);
        let key = |n: &str| view_manifest(1, None, &pks, &view_namespace(&boot, &entropy, n)).key();
        let info = Info {
            version: 1,
            members: 1,
            pending_indexers: vec![],
            indexers: vec![],
            heads: vec![],
            views: vec![
                Checkout {
                    key: key("other"),
                    length: 3,
                },
                Checkout {
                    key: key("view"),
                    length: 9,
                },
            ],
            encryption_length: 0,
            entropy: None,
        };
        assert_eq!(
            match_views(&info, &[], &["view"], 1, &boot, &entropy, &pks),
            Ok(vec![("view".to_string(), key("view"), 9)])
        );
        assert_eq!(
            match_views(&info, &[], &["view", "missing"], 1, &boot, &entropy, &pks),
            Err(FastForwardError::UnknownView("missing".into()))
        );
        // another entropy or indexer set: no view matches
        assert!(match_views(&info, &[], &["view"], 1, &boot, &[9; 32], &pks).is_err());
        assert!(match_views(&info, &[], &["view"], 1, &boot, &entropy, &[[2; 32]]).is_err());
        // a recreated view: found with the prologue of its own manifest
        let p = Prologue {
            hash: [6; 32],
            length: 2,
        };
        let m = view_manifest(1, Some(p), &pks, &view_namespace(&boot, &entropy, "late"));
        let mut info2 = info.clone();
        info2.views.push(Checkout {
            key: m.key(),
            length: 4,
        });
        assert!(match_views(&info2, &[], &["late"], 1, &boot, &entropy, &pks).is_err());
        let ms = [None, None, Some(m.clone())];
        assert_eq!(
            match_views(&info2, &ms, &["late"], 1, &boot, &entropy, &pks),
            Ok(vec![("late".to_string(), m.key(), 4)])
        );
        assert_eq!(namespace_entropy(&info, Some([4; 32])), Some([4; 32]));
        assert_eq!(namespace_entropy(&info, None), None);
    }

    #[test]
    fn member_keys() {
        let m = Member {
            is_indexer: true,
            is_removed: false,
            length: 4,
        };
        let mut k = MEMBERS_PREFIX.to_vec();
        k.extend_from_slice(&[9; 32]);
        assert_eq!(member_from_entry(&k, &m.to_bytes()).unwrap(), ([9; 32], m));
        assert!(member_from_entry(&k[..20], &m.to_bytes()).is_err());
        assert!(member_from_entry(INFO_KEY, &m.to_bytes()).is_err());
    }

    /// The apply of the fast-forward tests: `add:<key>` adds a writer, anything else goes to the
    /// view `view`.
    fn apply(
        nodes: &[crate::autobase::ApplyNode<'_>],
        views: &mut crate::autobase::Views,
        host: &mut crate::autobase::Host<'_>,
    ) {
        let v = views.open("view");
        for n in nodes {
            if let Some(k) = n.value.strip_prefix(b"add:") {
                host.add_writer(&k.try_into().unwrap(), false);
                continue;
            }
            views.append(v, n.value.to_vec());
        }
    }

    #[test]
    fn digests() {
        let mut msg = OplogMessage {
            version: 2,
            max_supported_version: 0,
            checkpoint: None,
            digest: None,
            optimistic: false,
            trace: None,
            node: OplogNode {
                heads: vec![],
                batch: 1,
                value: None,
            },
        };
        assert_eq!(digest_source(&msg, 5), Err(FastForwardError::NoDigest));
        msg.digest = Some(Digest {
            pointer: 0,
            key: Some([4; 32]),
        });
        assert_eq!(digest_source(&msg, 5), Ok(DigestSource::Key([4; 32])));
        msg.digest = Some(Digest {
            pointer: 3,
            key: None,
        });
        assert_eq!(digest_source(&msg, 5), Ok(DigestSource::At(1)));
        msg.digest = Some(Digest {
            pointer: 5,
            key: None,
        });
        assert_eq!(digest_source(&msg, 5), Err(FastForwardError::NoDigest));
    }

    /// A base that fast-forwards to another's indexed state, fed only the oplog blocks past it,
    /// ends with the same view (the part below the fast-forward point not in memory).
    #[test]
    fn engine_continues_from_the_indexed_state() {
        use crate::autobase::Autobase;
        let boot = [7u8; 32];
        let other = [8u8; 32];
        let mut a = Autobase::new(boot, apply);
        let view = a.open_view("view");
        let mut logs: Vec<([u8; 32], Vec<u8>)> = Vec::new();
        let mut write = |a: &mut Autobase<_>, key: &[u8; 32], vals: Vec<Vec<u8>>| {
            for m in a.append(key, vals).unwrap() {
                logs.push((*key, m.to_bytes()));
            }
            a.update();
        };
        let mut add = b"add:".to_vec();
        add.extend_from_slice(&other);
        write(&mut a, &boot, vec![add]);
        for i in 0..40u32 {
            write(&mut a, &boot, vec![format!("e {i}").into_bytes()]);
        }
        write(&mut a, &other, vec![b"o 0".to_vec(), b"o 1".to_vec()]);
        let indexed = a.indexed_view_lengths()[view];
        assert!(indexed >= 40, "{indexed}");
        let info = a.indexed_system().info();
        let members: Vec<_> = a
            .indexed_system()
            .member_records()
            .map(|(k, m)| (*k, *m))
            .collect();
        let sys_len = a.indexed_system().length;
        // more after the fast-forward point, from both writers
        write(&mut a, &boot, vec![b"e 40".to_vec()]);
        write(&mut a, &other, vec![b"o 2".to_vec()]);
        let want = a.views().blocks(view).to_vec();

        let mut b = Autobase::new(boot, apply);
        b.fast_forward(sys_len, &info, &members, &[("view", indexed as u64)]);
        let bv = b.open_view("view");
        assert_eq!(b.views().start(bv), indexed);
        let mut fed = 0;
        for (k, _) in b.wanted() {
            assert_eq!(
                b.oplog_start(&k),
                members.iter().find(|m| m.0 == k).unwrap().1.length
            );
        }
        let mut next: std::collections::HashMap<[u8; 32], u64> = Default::default();
        for (k, block) in &logs {
            let seq = next.entry(*k).or_default();
            if *seq >= b.oplog_start(k) {
                b.handle_block(k, *seq, block).unwrap();
                fed += 1;
            }
            *seq += 1;
        }
        b.update();
        assert!(fed < logs.len() / 4, "fed {fed} of {}", logs.len());
        assert_eq!(b.views().len(bv), want.len());
        assert_eq!(b.views().blocks(bv), &want[indexed..]);
        assert_eq!(b.system().length, a.system().length);
    }

    /// A member that indexed up to some point while the system was signed further (a running or
    /// restarted member that fell behind, JS `_queueFastForward`): a point fewer than
    /// [`MINIMUM`] system blocks past what it indexed is not worth it and changes nothing; one at
    /// least [`MINIMUM`] past is adopted, and what it indexed never goes back (system length,
    /// view, each writer's oplog start); a point behind it in a writer or a view is refused
    /// however long its system; fed the blocks past the point, it ends with the writer's view.
    #[test]
    fn a_member_that_fell_behind_fast_forwards_only_ahead() {
        use crate::autobase::Autobase;
        type Snap = (u64, Info, Vec<([u8; 32], Member)>, u64, usize);
        let boot = [7u8; 32];
        let other = [8u8; 32];
        let mut a = Autobase::new(boot, apply);
        let view = a.open_view("view");
        let mut logs: Vec<([u8; 32], Vec<u8>)> = Vec::new();
        // after each write: (system length, info, members, view length, blocks written so far)
        let mut snaps: Vec<Snap> = Vec::new();
        let mut write = |a: &mut Autobase<_>, key: &[u8; 32], vals: Vec<Vec<u8>>| {
            for m in a.append(key, vals).unwrap() {
                logs.push((*key, m.to_bytes()));
            }
            a.update();
            let members = a
                .indexed_system()
                .member_records()
                .map(|(k, m)| (*k, *m))
                .collect();
            snaps.push((
                a.indexed_system().length,
                a.indexed_system().info(),
                members,
                a.indexed_view_lengths()[view] as u64,
                logs.len(),
            ));
        };
        let mut add = b"add:".to_vec();
        add.extend_from_slice(&other);
        write(&mut a, &boot, vec![add]);
        for i in 0..80u32 {
            write(&mut a, &boot, vec![format!("e {i}").into_bytes()]);
            if i % 10 == 0 {
                write(&mut a, &other, vec![format!("o {i}").into_bytes()]);
            }
        }
        let want = a.views().blocks(view).to_vec();

        // the member fed the blocks up to the 20th write, then stopped
        let mut b = Autobase::new(boot, apply);
        let bv = b.open_view("view");
        let fed_to = snaps[20].4;
        let mut next: std::collections::HashMap<[u8; 32], u64> = Default::default();
        for (k, block) in &logs[..fed_to] {
            let seq = next.entry(*k).or_default();
            b.handle_block(k, *seq, block).unwrap();
            *seq += 1;
        }
        b.update();
        let had_system = b.indexed_system().length;
        let had_view = b.indexed_view_lengths()[bv];
        let had: Vec<([u8; 32], u64)> = b
            .indexed_system()
            .member_records()
            .map(|(k, m)| (*k, m.length))
            .collect();
        assert_eq!(had.len(), 2, "both writers indexed");
        assert_eq!(had_system, snaps[20].0);
        assert!(had_view > 10, "{had_view}");
        assert_eq!(b.fast_forward_minimum(), had_system + MINIMUM);
        // what the writers' oplogs are known to hold: a hint to look only when MINIMUM ahead
        let count = |n: usize, k: [u8; 32]| logs[..n].iter().filter(|l| l.0 == k).count() as u64;
        let known = |n: usize| [(boot, count(n, boot)), (other, count(n, other))];
        assert!(!b.fast_forward_may_be_due(&known(fed_to)));
        assert!(!b.fast_forward_may_be_due(&known(fed_to + MINIMUM as usize - 1)));
        assert!(b.fast_forward_may_be_due(&known(fed_to + MINIMUM as usize)));
        assert!(b.fast_forward_may_be_due(&known(logs.len())));

        // signed 15 blocks further: not worth it, nothing changes
        let short = snaps.iter().rfind(|s| s.0 < had_system + MINIMUM).unwrap();
        assert!(short.0 > had_system, "a point ahead, just not far enough");
        let views = [("view", short.3)];
        assert!(!b.fast_forward_if_worth(short.0, &short.1, &short.2, &views));
        assert_eq!(b.indexed_system().length, had_system);
        assert_eq!(b.views().start(bv), 0);
        assert_eq!(b.oplog_start(&boot), 0);

        // a long system that is behind in a writer or in the view: refused
        let far = snaps.last().unwrap().clone();
        let mut behind = far.2.clone();
        let boot_had = had.iter().find(|h| h.0 == boot).unwrap().1;
        for (k, m) in &mut behind {
            if *k == boot {
                m.length = boot_had - 1;
            }
        }
        assert!(!b.fast_forward_worth(far.0, &behind, &[("view", far.3)]));
        assert!(!b.fast_forward_worth(far.0, &far.2, &[("view", had_view as u64 - 1)]));
        assert!(!b.fast_forward_worth(far.0, &far.2[..1], &[("view", far.3)]));
        // a point that does not name a view holding indexed blocks here would reset it: refused
        assert!(!b.fast_forward_worth(far.0, &far.2, &[]));
        assert!(!b.fast_forward_worth(far.0, &far.2, &[("other view", far.3)]));

        // signed at least MINIMUM further: adopted, nothing it had goes back
        let ahead = snaps
            .iter()
            .find(|s| s.0 >= had_system + MINIMUM)
            .unwrap()
            .clone();
        let views = [("view", ahead.3)];
        assert!(b.fast_forward_if_worth(ahead.0, &ahead.1, &ahead.2, &views));
        assert_eq!(b.indexed_system().length, ahead.0);
        assert!(b.indexed_view_lengths()[bv] >= had_view);
        assert_eq!(b.views().start(bv), ahead.3 as usize);
        for (k, m) in &ahead.2 {
            assert_eq!(b.oplog_start(k), m.length);
        }
        for (k, length) in &had {
            assert!(b.indexed_system().get(k).unwrap().length >= *length);
            assert!(b.oplog_start(k) >= *length);
        }
        // the same point again is not worth it any more
        assert!(!b.fast_forward_if_worth(ahead.0, &ahead.1, &ahead.2, &views));

        // fed what it lacks past the point: the writer's view
        let mut next: std::collections::HashMap<[u8; 32], u64> = Default::default();
        let mut fed = 0;
        for (k, block) in &logs {
            let seq = next.entry(*k).or_default();
            if *seq >= b.oplog_len(k) {
                b.handle_block(k, *seq, block).unwrap();
                fed += 1;
            }
            *seq += 1;
        }
        b.update();
        assert!(fed < logs.len() - fed_to, "{fed}");
        assert_eq!(b.views().len(bv), want.len());
        assert_eq!(b.views().blocks(bv), &want[ahead.3 as usize..]);
        assert_eq!(b.indexed_system().length, a.indexed_system().length);
    }

    /// A signed state with absurd lengths (the indexers are trusted with the order, not with
    /// memory safety) fast-forwards without panicking and the engine still runs.
    #[test]
    fn absurd_lengths_do_not_panic() {
        use crate::autobase::{ApplyNode, Autobase, Host, Views};
        let apply = |nodes: &[ApplyNode<'_>], views: &mut Views, _: &mut Host<'_>| {
            let v = views.open("view");
            for n in nodes {
                views.append(v, n.value.to_vec());
            }
        };
        let boot = [7u8; 32];
        let info = Info {
            version: 1,
            members: 1,
            pending_indexers: vec![],
            indexers: vec![Checkout {
                key: boot,
                length: u64::MAX,
            }],
            heads: vec![Checkout {
                key: boot,
                length: u64::MAX,
            }],
            views: vec![],
            encryption_length: 0,
            entropy: None,
        };
        let members = [(
            boot,
            Member {
                is_indexer: true,
                is_removed: false,
                length: u64::MAX,
            },
        )];
        let mut b = Autobase::new(boot, apply);
        b.fast_forward(u64::MAX, &info, &members, &[("view", u64::MAX)]);
        let v = b.open_view("view");
        assert_eq!(b.views().len(v), usize::MAX);
        assert_eq!(b.oplog_len(&boot), u64::MAX);
        let _ = b.handle_block(&boot, u64::MAX - 1, &[1, 2, 3]);
        b.update();
        assert_eq!(b.views().len(v), usize::MAX);
    }

    /// What an indexer that fast-forwarded takes over: the system core and each named view at
    /// the point's lengths (a view the point lacks: `None`), the indexers in the system's order
    /// and a majority quorum of them.
    #[test]
    fn an_indexer_prefix_names_the_points_cores() {
        let c = |k: u8, length| Checkout {
            key: [k; 32],
            length,
        };
        let mut p = FastForwardPoint {
            system_key: [3; 32],
            system_length: 64,
            info: Info {
                version: 2,
                members: 3,
                pending_indexers: vec![],
                indexers: vec![c(2, 30), c(1, 31)],
                heads: vec![c(1, 31)],
                views: vec![c(9, 30)],
                encryption_length: 0,
                entropy: None,
            },
            members: vec![],
            views: vec![("messages".into(), [9; 32], 30)],
        };
        let x = p.indexer_prefix(&["messages", "other"]);
        assert_eq!(x.system, ([3; 32], 64));
        assert_eq!(x.views, vec![Some(([9; 32], 30)), None]);
        assert_eq!(x.indexers, vec![[2; 32], [1; 32]], "the system's order");
        assert_eq!(x.quorum, 2);
        for (n, q) in [(1, 1), (3, 2), (4, 3), (5, 3)] {
            p.info.indexers = (0..n).map(|i| c(i as u8, 1)).collect();
            assert_eq!(p.indexer_prefix(&[]).quorum, q, "{n} indexers");
        }
        p.info.indexers.clear();
        assert_eq!(p.indexer_prefix(&[]).quorum, 0);
    }

    /// The stored form of a fast-forward point round-trips; every truncation and a wrong version
    /// are typed errors.
    #[test]
    fn stored_point_round_trip_and_refusals() {
        let p = FastForwardPoint {
            system_key: [3; 32],
            system_length: 4021,
            info: Info {
                version: 2,
                members: 2,
                pending_indexers: vec![],
                indexers: vec![Checkout {
                    key: [1; 32],
                    length: 2000,
                }],
                heads: vec![Checkout {
                    key: [1; 32],
                    length: 2000,
                }],
                views: vec![Checkout {
                    key: [9; 32],
                    length: 2000,
                }],
                encryption_length: 0,
                entropy: Some([7; 32]),
            },
            members: vec![(
                [1; 32],
                Member {
                    is_indexer: true,
                    is_removed: false,
                    length: 2000,
                },
            )],
            views: vec![("messages".into(), [9; 32], 2000)],
        };
        let b = p.to_bytes();
        assert_eq!(b.len(), p.encoded_len());
        assert_eq!(FastForwardPoint::from_bytes(&b), Ok(p.clone()));
        assert_eq!(p.view_length("messages"), 2000);
        assert_eq!(p.view_length("other"), 0);
        for n in 0..b.len() {
            assert!(FastForwardPoint::from_bytes(&b[..n]).is_err(), "{n}");
        }
        let mut v = b.clone();
        v[0] = 2;
        assert_eq!(
            FastForwardPoint::from_bytes(&v),
            Err(DecodeError::Invalid("fast-forward point version"))
        );
    }
}
