//! How a drive finds its blobs core (hyperdrive `generateContentManifest`, `getContentKey`).
//!
//! A drive made by corestore 7 (every drive JS makes today) does not store the blobs core's key:
//! the blobs core's manifest is the db core's manifest with each signer's namespace replaced by
//! `BLAKE2b-256(BLOBS ‖ drive key ‖ signer namespace)` (`BLOBS = namespace('hyperdrive', 1)[0]`)
//! and no prologue, so the same key pair signs both cores and anyone holding the db manifest
//! derives the blobs key. Older "compat" drives (key = public key) keep the blobs key in the db
//! header's `contentFeed` instead ([`content_key_from_header`]). Vectors:
//! `07-corestore-hyperdrive.out`.

use crate::crypto::{hash_batch, namespace};
use crate::hyperbee::Header;
use crate::hypercore::manifest::{Manifest, Signer, HASH_BLAKE2B};

/// `namespace('hyperdrive', 1)[0]`.
pub fn blobs_namespace() -> [u8; 32] {
    namespace(b"hyperdrive", 1)[0]
}

/// The blobs core's manifest for the drive with key `drive_key` and db manifest `db` (JS
/// `Hyperdrive.getContentManifest`); `None` for a version-0 manifest (compat drives).
pub fn content_manifest(db: &Manifest, drive_key: &[u8; 32]) -> Option<Manifest> {
    if db.version < 1 {
        return None;
    }
    let blobs = blobs_namespace();
    Some(Manifest {
        version: db.version,
        hash: HASH_BLAKE2B,
        allow_patch: db.allow_patch,
        quorum: db.quorum,
        signers: db
            .signers
            .iter()
            .map(|s| Signer {
                namespace: hash_batch(&[&blobs, drive_key, &s.namespace]),
                ..*s
            })
            .collect(),
        prologue: None,
        linked: None,
        user_data: None,
    })
}

/// The blobs core's key from the db manifest (JS `Hyperdrive.getContentKey`).
pub fn content_key(db: &Manifest, drive_key: &[u8; 32]) -> Option<[u8; 32]> {
    content_manifest(db, drive_key).map(|m| m.key())
}

/// The blobs key a compat drive keeps in its db header (`metadata.contentFeed`, first 32
/// bytes), if any.
pub fn content_key_from_header(header: &Header) -> Option<[u8; 32]> {
    let feed = header.metadata.as_ref()?.content_feed.as_ref()?;
    feed.get(..32)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_key_like_js() {
        // 07-corestore-hyperdrive.out: the drive of primary key 07..07.
        let pk: [u8; 32] =
            hex_array("275200b4a49e03c73debcb13866dc150d86461ee1289d9381ed60b454bda8313");
        let db = Manifest::default_signer(pk);
        let key = db.key();
        assert_eq!(
            hex_of(&key),
            "9d56810a89a0211db2a242b81ce8eac5265ac648769910177524c82908ab866d"
        );
        assert_eq!(
            hex_of(&blobs_namespace()),
            "f217b747161784b495ceee3c42163b07dd62cb06df26e20e95ba4d438123aeeb"
        );
        let m = content_manifest(&db, &key).unwrap();
        assert_eq!(
            hex_of(&m.signers[0].namespace),
            "bdc0b80f586fda0e8265be1a70bd112237991186b4abd1148c25daf708143671"
        );
        assert_eq!(
            hex_of(&content_key(&db, &key).unwrap()),
            "afa4ae98a0b1ef96fcf567c133623fc1c938c811b696daa75b749e48968e1178"
        );
        let mut v0 = db.clone();
        v0.version = 0;
        assert!(content_manifest(&v0, &key).is_none());
    }

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn hex_array(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
