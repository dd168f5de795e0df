//! Fast-forward (`NM/autobase/lib/fast-forward.js`, `lib/store.js`, `lib/system.js`), the
//! sans-IO parts: what a new reader reads and checks before it continues from the indexed state a
//! system core holds instead of linearizing every oplog from the start.
//!
//! The steps, as JS does them (the transport fetches the blocks):
//! 1. The system core's key: the `digest` of an indexer's latest oplog entry
//!    ([`digest_source`]: the key, or the earlier entry that carries it).
//! 2. The system core (a hyperbee on a hypercore whose manifest names the indexers as signers)
//!    at its signed length `L`; [`check_view_manifest`] checks that the manifest is the one JS
//!    derives for that view and those indexers, so the signature the hypercore layer verified
//!    is the indexers'.
//! 3. Block `L - 1` is the `info` record of the last flush ([`info_from_block`]): heads,
//!    indexers, view keys and lengths. The member records come from the bee at `L`
//!    ([`member_from_entry`], prefix [`MEMBERS_PREFIX`]).
//! 4. Each view core is matched to its name by its signers' namespace ([`view_namespace`]).
//! 5. [`super::Autobase::fast_forward`] takes the state; the oplogs are wanted only from the
//!    lengths the system applied.

use super::messages::{Info, Member, OplogMessage};
use crate::crypto::{hash, hash_batch, namespace};
use crate::encoding::Decode;
use crate::hyperbee::messages::Node;
use crate::hypercore::manifest::Manifest;

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

/// The signers' namespace of view `name` (JS `AutoStore._deriveNamespace`, unencrypted base):
/// `H(NS_SIGNER_NAMESPACE ‖ uint(1) ‖ bootstrap ‖ H(encryption key or empty) ‖ entropy ‖ name)`.
/// `entropy` is the info's (version 2), else the first indexer's manifest's signer namespace.
pub fn view_namespace(bootstrap: &[u8; 32], entropy: &[u8; 32], name: &str) -> [u8; 32] {
    let ns = namespace(b"autobase", 1)[0];
    let encryption_id = hash(&[]);
    hash_batch(&[
        &ns,
        &[1],
        bootstrap,
        &encryption_id,
        entropy,
        name.as_bytes(),
    ])
}

/// Check that `manifest` is the one the indexers sign view `name` with (JS
/// `AutoStore._createManifest`): one ed25519 signer per indexer, in order, with the indexer's
/// public key (`indexer_public_keys`, from the indexers' own manifests) and the view's
/// namespace, a majority quorum, blake2b.
pub fn check_view_manifest(
    manifest: &Manifest,
    name: &str,
    namespace: &[u8; 32],
    indexer_public_keys: &[[u8; 32]],
) -> Result<(), FastForwardError> {
    let fail = |reason| {
        Err(FastForwardError::Manifest {
            name: name.to_string(),
            reason,
        })
    };
    if manifest.hash != 0 {
        return fail("not blake2b");
    }
    if manifest.signers.len() != indexer_public_keys.len() || indexer_public_keys.is_empty() {
        return fail("not one signer per indexer");
    }
    for (s, pk) in manifest.signers.iter().zip(indexer_public_keys) {
        if s.signature != 0 {
            return fail("a signer is not ed25519");
        }
        if &s.public_key != pk {
            return fail("a signer is not the indexer");
        }
        if &s.namespace != namespace {
            return fail("a signer's namespace is not the view's");
        }
    }
    let n = indexer_public_keys.len() as u64;
    if manifest.quorum != n.min(n / 2 + 1) {
        return fail("the quorum is not a majority");
    }
    Ok(())
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
        use crate::autobase::{ApplyNode, Autobase, Host, Views};
        fn apply(nodes: &[ApplyNode<'_>], views: &mut Views, host: &mut Host<'_>) {
            let v = views.open("view");
            for n in nodes {
                if let Some(k) = n.value.strip_prefix(b"add:") {
                    host.add_writer(&k.try_into().unwrap(), false);
                    continue;
                }
                views.append(v, n.value.to_vec());
            }
        }
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
}
