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
#[path = "fast_forward_tests.rs"]
mod tests;
