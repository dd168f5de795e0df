//! Key derivation of corestore 7 (`index.js:13-14, 741-764`): namespaces, the seed and key pair
//! of a named core, and the manifest (hence the core key) a key pair gets.
//!
//! * `NS = namespace("corestore", 1)[0]`; the root namespace is 32 zero bytes.
//! * `namespace(parent, name) = BLAKE2b-256(parent ‖ name)`.
//! * `seed(primaryKey, ns, name) = BLAKE2b-256_primaryKey(NS ‖ ns ‖ name)` (keyed BLAKE2b), the
//!   key pair is Ed25519 from that seed.
//! * The core of a key pair has the manifest `{version: manifestVersion (1), signers:
//!   [{publicKey}]}` and its key is the manifest hash (corestore never makes compat cores).

use crate::crypto::{discovery_key, hash_batch, keyed_hash_batch, Hash, KeyPair};
use crate::hypercore::manifest::{Manifest, ManifestError, ManifestOptions, SignerOptions};

/// `namespace("corestore", 1)[0]` (vectors/data/07).
pub const NS: Hash = [
    0xac, 0x5c, 0x4c, 0xbf, 0xb1, 0x06, 0x47, 0x76, 0x40, 0x46, 0x37, 0xa2, 0x80, 0xc7, 0x1f, 0xac,
    0x82, 0x32, 0x81, 0xd3, 0x51, 0xeb, 0xec, 0xed, 0x03, 0x15, 0x17, 0x43, 0x27, 0x0d, 0xef, 0x29,
];

/// The manifest version corestore gives the cores of its key pairs by default.
pub const DEFAULT_MANIFEST_VERSION: u64 = 1;

/// A corestore namespace: 32 bytes naming a family of named cores (JS `store.ns`).
///
/// ```
/// use hyperpunch_core::corestore::Namespace;
/// let app = Namespace::ROOT.child("app");
/// let nested = app.child("users").child("alice");
/// assert_ne!(app, nested);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace(pub [u8; 32]);

impl Namespace {
    /// The root namespace (32 zero bytes), the one a store starts in.
    pub const ROOT: Namespace = Namespace([0; 32]);

    /// The child namespace `name` (JS `store.namespace(name)`): `BLAKE2b-256(self ‖ name)`.
    pub fn child(&self, name: impl AsRef<[u8]>) -> Namespace {
        Namespace(hash_batch(&[&self.0, name.as_ref()]))
    }

    /// The namespace's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace::ROOT
    }
}

impl core::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Namespace(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// The seed of the key pair of core `name` in `namespace` (JS `deriveSeed`).
pub fn derive_seed(primary_key: &[u8; 32], namespace: &Namespace, name: &[u8]) -> Hash {
    keyed_hash_batch(primary_key, &[&NS, &namespace.0, name])
}

/// The key pair of core `name` in `namespace` (JS `createKeyPair(primaryKey, ns, name)`).
pub fn create_key_pair(primary_key: &[u8; 32], namespace: &Namespace, name: &[u8]) -> KeyPair {
    KeyPair::from_seed(&derive_seed(primary_key, namespace, name))
}

/// The manifest corestore gives a core whose writer is `public_key`: `{version, signers:
/// [{publicKey}]}` with hypercore's defaults (quorum 1, default signer namespace).
pub fn key_pair_manifest(public_key: [u8; 32], version: u64) -> Result<Manifest, ManifestError> {
    if version == DEFAULT_MANIFEST_VERSION {
        return Ok(Manifest::default_signer(public_key));
    }
    Manifest::create(ManifestOptions {
        version: Some(version),
        signers: vec![SignerOptions::from(public_key)],
        ..ManifestOptions::default()
    })
}

/// Key pair, manifest, key and discovery key of a named core, as JS corestore derives them.
#[derive(Debug, Clone)]
pub struct NamedCore {
    /// The writer's key pair.
    pub key_pair: KeyPair,
    /// The core's manifest.
    pub manifest: Manifest,
    /// The core key (the manifest hash).
    pub key: [u8; 32],
    /// The discovery key.
    pub discovery_key: [u8; 32],
}

/// Everything JS `store.namespace(..).get({ name })` derives for a new named core, with
/// `manifest_version` (JS `manifestVersion`, default [`DEFAULT_MANIFEST_VERSION`]).
pub fn named_core(
    primary_key: &[u8; 32],
    namespace: &Namespace,
    name: &[u8],
    manifest_version: u64,
) -> Result<NamedCore, ManifestError> {
    let key_pair = create_key_pair(primary_key, namespace, name);
    let manifest = key_pair_manifest(key_pair.public_key, manifest_version)?;
    let key = manifest.key();
    Ok(NamedCore {
        discovery_key: discovery_key(&key),
        key_pair,
        manifest,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::namespace;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/data/07-corestore-hyperdrive.out"
    ));

    fn h32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The hex value after `label` on the first line holding `marker`.
    fn field(marker: &str, label: &str) -> [u8; 32] {
        let pos = VECTORS.find(marker).unwrap_or_else(|| panic!("{marker}"));
        let rest = &VECTORS[pos..];
        let at = rest.find(label).unwrap_or_else(|| panic!("{label}")) + label.len();
        h32(&rest[at..at + 64])
    }

    #[test]
    fn ns_is_the_corestore_namespace() {
        assert_eq!(namespace(b"corestore", 1)[0], NS);
        assert_eq!(
            field("NS = namespace(\"corestore\",1)[0] ", "[0] "),
            NS,
            "vector NS"
        );
    }

    /// Seeds, public keys, core keys and discovery keys of the names db/local/foo in the root
    /// namespace of primary key 07…07 (vectors/data/07).
    #[test]
    fn named_cores_match_the_js_vectors() {
        let primary = [7u8; 32];
        assert_eq!(field("primaryKey ", "primaryKey "), primary);
        for name in ["db", "local", "foo"] {
            let marker = format!("name={name}:");
            let c = named_core(&primary, &Namespace::ROOT, name.as_bytes(), 1).unwrap();
            assert_eq!(
                derive_seed(&primary, &Namespace::ROOT, name.as_bytes()),
                field(
                    &marker,
                    "seed=blake2b256(key=primaryKey, NS||ns(0*32)||name)="
                ),
                "{name} seed"
            );
            assert_eq!(
                c.key_pair.public_key,
                field(&marker, "publicKey="),
                "{name}"
            );
            assert_eq!(c.key, field(&marker, "core.key="), "{name} key");
            assert_eq!(
                c.discovery_key,
                field(&marker, "discoveryKey="),
                "{name} discovery key"
            );
        }
        // The hyperdrive's db core is the named core "db".
        assert_eq!(
            named_core(&primary, &Namespace::ROOT, b"db", 1)
                .unwrap()
                .key,
            field("hyperdrive key (db core, name \"db\") ", "\"db\") ")
        );
    }

    #[test]
    fn namespaces_match_the_js_vectors() {
        let primary = [7u8; 32];
        let app = Namespace::ROOT.child("app");
        assert_eq!(app.0, field("(parentNs || \"app\") = ", ") = "));
        assert_eq!(
            create_key_pair(&primary, &app, b"db").public_key,
            field(
                "namespace(\"app\").createKeyPair(\"db\").publicKey = ",
                "publicKey = "
            )
        );
        assert_eq!(
            derive_seed(&primary, &app, b"db"),
            field("manual seed = ", "manual seed = ")
        );
        // Chained namespaces are hashes of hashes; a name in a namespace differs from the root.
        assert_eq!(app.child("x").0, hash_batch(&[&app.0, b"x"]));
        assert_ne!(
            create_key_pair(&primary, &app, b"db").public_key,
            create_key_pair(&primary, &Namespace::ROOT, b"db").public_key
        );
    }

    #[test]
    fn other_manifest_versions_change_the_key_not_the_key_pair() {
        let primary = [9u8; 32];
        let v1 = named_core(&primary, &Namespace::ROOT, b"a", 1).unwrap();
        let v0 = named_core(&primary, &Namespace::ROOT, b"a", 0).unwrap();
        assert_eq!(v0.key_pair.secret_key, v1.key_pair.secret_key);
        assert_eq!(v0.manifest.version, 0);
        assert_ne!(v0.key, v1.key);
        assert!(named_core(&primary, &Namespace::ROOT, b"a", 9).is_err());
    }
}
