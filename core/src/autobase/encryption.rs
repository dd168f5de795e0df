//! Encrypted bases (`NM/autobase/lib/encryption.js`, `lib/store.js`), the keys of a base whose
//! cores have manifest version 1 (what autobase 7.28.1 creates: `DEFAULT_MANIFEST_VERSION = 1`;
//! version 2 only comes with `forkIndexers`, not supported here).
//!
//! Given the base's encryption key (JS `encryptionKey`), every core is encrypted with hypercore's
//! default block encryption ([`crate::hypercore::encryption`]: 8 bytes of padding, the blinded
//! fork id; JS `ViewEncryption.isCompat` / `WriterEncryption.isCompat` for version ≤ 1):
//!
//! * a writer's oplog with the keys hypercore derives from the encryption key and the oplog's
//!   key ([`writer_encryption`]: JS `HypercoreEncryption.deriveKeys(encryptionKey, core.key)`);
//! * the system core and each view with the block key [`view_block_key`] of the view's name
//!   (JS `getCompatBlockKey(bootstrap, encryptionKey, name)`, used as is: `{ block: true }`).
//!
//! The encryption key also enters every view's signer namespace ([`encryption_id`], JS
//! `_deriveNamespace`), so the keys of an encrypted base's system core and views differ from an
//! unencrypted one's. That is what lets a reader tell a wrong key from a right one before it
//! decrypts anything of the system: the system key JS derives with a wrong key is not the one the
//! bootstrap's digest names. The stream cipher itself has no authentication: a wrong key decrypts
//! an oplog block to noise, which the oplog decoder refuses (typed error), almost always.

use crate::crypto::{hash, hash_batch, namespace};
use crate::hypercore::encryption::BlockEncryption;

/// JS `caps.js` `NS_VIEW_BLOCK_KEY` (`crypto.namespace('autobase', 4)[1]`).
pub fn ns_view_block_key() -> [u8; 32] {
    namespace(b"autobase", 4)[1]
}

/// The id of the encryption key in the views' signer namespaces (JS `_deriveNamespace`):
/// `H(encryption key)`, or `H(empty)` for an unencrypted base.
pub fn encryption_id(encryption_key: Option<&[u8; 32]>) -> [u8; 32] {
    hash(encryption_key.map_or(&[][..], |k| &k[..]))
}

/// The block key of view `name` (`_system` for the system core) of the base `bootstrap`, for
/// version-1 cores (JS `getCompatBlockKey`): `H(NS_VIEW_BLOCK_KEY ‖ bootstrap ‖ key ‖ name)`.
pub fn view_block_key(bootstrap: &[u8; 32], encryption_key: &[u8; 32], name: &str) -> [u8; 32] {
    hash_batch(&[
        &ns_view_block_key(),
        bootstrap,
        encryption_key,
        name.as_bytes(),
    ])
}

/// The block encryption of view `name` (JS `ViewEncryption` compat keys: the block key as is,
/// blinding key `H(block key)`).
pub fn view_encryption(
    bootstrap: &[u8; 32],
    encryption_key: &[u8; 32],
    name: &str,
) -> BlockEncryption {
    BlockEncryption::from_block_key(view_block_key(bootstrap, encryption_key, name))
}

/// The block encryption of the oplog `core_key` (a version-1 writer core; JS `WriterEncryption`
/// compat keys: hypercore's default derivation from the encryption key and the core key).
pub fn writer_encryption(encryption_key: &[u8; 32], core_key: &[u8; 32]) -> BlockEncryption {
    BlockEncryption::new(encryption_key, core_key, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    // From the pinned JS (`hypercore-crypto`, `autobase/lib/caps.js`,
    // `hypercore/lib/default-encryption.js`) with bootstrap [1; 32], key [2; 32].
    #[test]
    fn keys_match_js() {
        let (bs, ek) = ([1u8; 32], [2u8; 32]);
        assert_eq!(
            hex::encode(view_block_key(&bs, &ek, "_system")),
            "7be720d868e1a9a9288b3b2757b5c9b1a834a2550197ccc33e60c2d793b43710"
        );
        assert_eq!(
            hex::encode(view_block_key(&bs, &ek, "view")),
            "181bae971bd68b58a753eade8b8c6705ace58a96212d7591d3fdde1318bec3f2"
        );
        let w = writer_encryption(&ek, &[3; 32]);
        assert_eq!(
            hex::encode(w.block_key()),
            "f25e79ef8ecc0f6f9f774d12e984a9cae5a2e9b483cde1ac4f2e48ac15e38626"
        );
        assert_eq!(
            hex::encode(w.blinding_key()),
            "1b1f6571de606a762df7f7355672ef72f88003a3e0be6b4035a07b5ae2924f93"
        );
        // JS HypercoreEncryption.encrypt(5, pad ‖ 'hello autobase', fork 2, view keys)
        let v = view_encryption(&bs, &ek, "view");
        let stored = v.encrypt(5, 2, b"hello autobase");
        assert_eq!(
            hex::encode(&stored),
            "15ac41d9e0c6b227bc6c8c81ba48a634cf3b43eaf367"
        );
        assert_eq!(v.decrypt(5, &stored).unwrap(), b"hello autobase");
        assert_eq!(
            hex::encode(crate::autobase::fast_forward::view_namespace_encrypted(
                &bs,
                Some(&ek),
                &[4; 32],
                "view"
            )),
            "feb046777f7724362146bb7ef15e4fe8c661c09129566c469b91a19aa82e891f"
        );
        assert_eq!(encryption_id(None), hash(&[]));
        assert_eq!(encryption_id(Some(&ek)), hash(&ek));
    }

    /// The keys of an encrypted base's cores moved to two indexers (JS `_migrateView`): the
    /// prologue is the tree hash of the blocks as stored (encrypted with the name's view block
    /// key), the namespace holds the encryption key. Vectors from the pinned JS (autobase
    /// 7.28.1 `AutoStore.prototype._createManifest` called on `{ base: { key: bootstrap,
    /// encryptionKey } }`, a hypercore 11.37.1 core given the view block key with
    /// `setEncryptionKey(key, { block: true })`, blocks `b0 b1 b2`, `treeHash(2)`,
    /// `Hypercore.key(manifest)`), bootstrap [1; 32], key [2; 32], entropy [4; 32], indexers'
    /// public keys [5; 32] and [6; 32].
    #[test]
    fn moved_keys_match_js() {
        use crate::autobase::cores::{core_manifest_encrypted, prologue_encrypted};
        let (bs, ek, entropy) = ([1u8; 32], [2u8; 32], [4u8; 32]);
        let pks = [[5u8; 32], [6u8; 32]];
        let blocks: [&[u8]; 3] = [b"b0", b"b1", b"b2"];
        for (name, prologue, key) in [
            (
                "view",
                "9dbe7c2bda4a42428cda85c4730edf64514ba896bf8c605191266049ad7232c5",
                "c68915d771e3b5541c8d76bef3c47fe8f23c164ad96581ccd9908d7b9fb12fdb",
            ),
            (
                "_system",
                "1cebc173ebe0e8fcef8fa9bfe217a215be8845f9d001e90e472292b110d9520e",
                "42d10def3d6558f7ba34bdb909ca4d32125eb6f92fd8ecf0e9283edb9b29e121",
            ),
        ] {
            let e = view_encryption(&bs, &ek, name);
            let p = prologue_encrypted(&blocks, 2, Some(&e)).unwrap();
            assert_eq!(p.length, 2);
            assert_eq!(hex::encode(p.hash), prologue, "{name}");
            let m = core_manifest_encrypted(&bs, Some(&ek), &entropy, &pks, name, Some(p));
            assert_eq!(hex::encode(m.key()), key, "{name}");
        }
        let m = core_manifest_encrypted(&bs, Some(&ek), &entropy, &pks, "_encryption", None);
        assert_eq!(
            hex::encode(m.key()),
            "e01dc83c6316f4625e3a907fe2d55e4ef8cef027b4a386854b47c207bd9bea0a"
        );
    }
}
