//! Wire encodings of hypercore's data structures: tree nodes, proofs and the replication messages
//! (`lib/messages.js` in the JS reference).

use crate::encoding::{
    buffer_len, uint_len, write_buffer, write_string, write_uint, Decode, DecodeError, Decoder,
    Encode,
};

use super::manifest::Manifest;

/// A merkle tree node: `uint index ‖ uint size ‖ fixed32 hash` (messages.js:243-263).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeNode {
    /// Flat-tree index.
    pub index: u64,
    /// Bytes covered by the node.
    pub size: u64,
    /// BLAKE2b-256 hash.
    pub hash: [u8; 32],
}

impl Encode for TreeNode {
    fn encoded_len(&self) -> usize {
        uint_len(self.index) + uint_len(self.size) + 32
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.index);
        write_uint(out, self.size);
        out.extend_from_slice(&self.hash);
    }
}

impl Decode<'_> for TreeNode {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(TreeNode {
            index: d.uint()?,
            size: d.uint()?,
            hash: d.fixed()?,
        })
    }
}

/// Bytes `array(node)` takes.
fn nodes_len(nodes: &[TreeNode]) -> usize {
    nodes.encoded_len()
}

/// `wire.handshake`: `uint flags(bit0 seeks) ‖ fixed32 capability` (messages.js:267-283).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// The sender supports seek requests (JS always sends `true`).
    pub seeks: bool,
    /// Replication capability ([`crate::hypercore::verifier::capability`]).
    pub capability: [u8; 32],
}

impl Encode for Handshake {
    fn encoded_len(&self) -> usize {
        1 + 32
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, u64::from(self.seeks));
        out.extend_from_slice(&self.capability);
    }
}

impl Decode<'_> for Handshake {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let flags = d.uint()?;
        Ok(Handshake {
            seeks: flags & 1 != 0,
            capability: d.fixed()?,
        })
    }
}

/// `wire.sync` (type 0): `uint flags ‖ uint fork ‖ uint length ‖ uint remoteLength`
/// (messages.js:640-674).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sync {
    /// Sender's fork.
    pub fork: u64,
    /// Sender's length.
    pub length: u64,
    /// The receiver's length as the sender last saw it (same fork only).
    pub remote_length: u64,
    /// Flag 1: the sender can prove an upgrade from the receiver's length.
    pub can_upgrade: bool,
    /// Flag 2: the sender uploads.
    pub uploading: bool,
    /// Flag 4: the sender downloads.
    pub downloading: bool,
    /// Flag 8: the sender has the manifest.
    pub has_manifest: bool,
    /// Flag 16: the sender accepts pushed data.
    pub allow_push: bool,
}

impl Sync {
    fn flags(&self) -> u64 {
        u64::from(self.can_upgrade)
            | u64::from(self.uploading) << 1
            | u64::from(self.downloading) << 2
            | u64::from(self.has_manifest) << 3
            | u64::from(self.allow_push) << 4
    }
}

impl Encode for Sync {
    fn encoded_len(&self) -> usize {
        1 + uint_len(self.fork) + uint_len(self.length) + uint_len(self.remote_length)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.flags());
        write_uint(out, self.fork);
        write_uint(out, self.length);
        write_uint(out, self.remote_length);
    }
}

impl Decode<'_> for Sync {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let flags = d.uint()?;
        Ok(Sync {
            fork: d.uint()?,
            length: d.uint()?,
            remote_length: d.uint()?,
            can_upgrade: flags & 1 != 0,
            uploading: flags & 2 != 0,
            downloading: flags & 4 != 0,
            has_manifest: flags & 8 != 0,
            allow_push: flags & 16 != 0,
        })
    }
}

/// A block or hash request: `uint index ‖ uint nodes`. For a block request `index` is the block
/// index; for a hash request it is the flat-tree node index. `nodes` is how many tree levels the
/// requester is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestBlock {
    /// Block index (block request) or tree node index (hash request).
    pub index: u64,
    /// Levels of proof nodes wanted.
    pub nodes: u64,
}

/// A seek request: `uint bytes ‖ uint padding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestSeek {
    /// Byte offset to find.
    pub bytes: u64,
    /// Per-block padding of the requester (encryption).
    pub padding: u64,
}

/// An upgrade request: `uint start ‖ uint length` (prove the tree from `start` to `start + length`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestUpgrade {
    /// Requester's current length.
    pub start: u64,
    /// Blocks to upgrade by.
    pub length: u64,
}

macro_rules! pair_codec {
    ($t:ty, $a:ident, $b:ident) => {
        impl Encode for $t {
            fn encoded_len(&self) -> usize {
                uint_len(self.$a) + uint_len(self.$b)
            }
            fn encode(&self, out: &mut Vec<u8>) {
                write_uint(out, self.$a);
                write_uint(out, self.$b);
            }
        }
        impl Decode<'_> for $t {
            fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                Ok(Self {
                    $a: d.uint()?,
                    $b: d.uint()?,
                })
            }
        }
    };
}

pair_codec!(RequestBlock, index, nodes);
pair_codec!(RequestSeek, bytes, padding);
pair_codec!(RequestUpgrade, start, length);

fn opt_len<T: Encode>(v: &Option<T>) -> usize {
    v.as_ref().map_or(0, Encode::encoded_len)
}

fn opt_encode<T: Encode>(v: &Option<T>, out: &mut Vec<u8>) {
    if let Some(v) = v {
        v.encode(out);
    }
}

fn opt_decode<'a, T: Decode<'a>>(
    present: bool,
    d: &mut Decoder<'a>,
) -> Result<Option<T>, DecodeError> {
    if present {
        T::decode(d).map(Some)
    } else {
        Ok(None)
    }
}

/// `wire.request` (type 1): `uint flags(1 block, 2 hash, 4 seek, 8 upgrade, 16 manifest,
/// 32 priority) ‖ uint id ‖ uint fork ‖ [block] ‖ [hash] ‖ [seek] ‖ [upgrade] ‖ [uint priority]`
/// (messages.js:285-381).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    /// Request id (1-based; 0 is reserved for unsolicited data).
    pub id: u64,
    /// Requester's fork.
    pub fork: u64,
    /// Block request.
    pub block: Option<RequestBlock>,
    /// Hash request (index is a tree node index).
    pub hash: Option<RequestBlock>,
    /// Seek request.
    pub seek: Option<RequestSeek>,
    /// Upgrade request.
    pub upgrade: Option<RequestUpgrade>,
    /// Also send the manifest.
    pub manifest: bool,
    /// Priority; 0 = none (not encoded).
    pub priority: u64,
}

impl Request {
    fn flags(&self) -> u64 {
        u64::from(self.block.is_some())
            | u64::from(self.hash.is_some()) << 1
            | u64::from(self.seek.is_some()) << 2
            | u64::from(self.upgrade.is_some()) << 3
            | u64::from(self.manifest) << 4
            | u64::from(self.priority != 0) << 5
    }
}

impl Encode for Request {
    fn encoded_len(&self) -> usize {
        1 + uint_len(self.id)
            + uint_len(self.fork)
            + opt_len(&self.block)
            + opt_len(&self.hash)
            + opt_len(&self.seek)
            + opt_len(&self.upgrade)
            + if self.priority != 0 {
                uint_len(self.priority)
            } else {
                0
            }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.flags());
        write_uint(out, self.id);
        write_uint(out, self.fork);
        opt_encode(&self.block, out);
        opt_encode(&self.hash, out);
        opt_encode(&self.seek, out);
        opt_encode(&self.upgrade, out);
        if self.priority != 0 {
            write_uint(out, self.priority);
        }
    }
}

impl Decode<'_> for Request {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let flags = d.uint()?;
        Ok(Request {
            id: d.uint()?,
            fork: d.uint()?,
            block: opt_decode(flags & 1 != 0, d)?,
            hash: opt_decode(flags & 2 != 0, d)?,
            seek: opt_decode(flags & 4 != 0, d)?,
            upgrade: opt_decode(flags & 8 != 0, d)?,
            manifest: flags & 16 != 0,
            priority: if flags & 32 != 0 { d.uint()? } else { 0 },
        })
    }
}

/// `wire.cancel` (type 2): `uint request` (messages.js:383-395).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cancel {
    /// Id of the request to cancel.
    pub request: u64,
}

impl Encode for Cancel {
    fn encoded_len(&self) -> usize {
        uint_len(self.request)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.request);
    }
}

impl Decode<'_> for Cancel {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Cancel { request: d.uint()? })
    }
}

/// A block with its proof: `uint index ‖ buffer value ‖ array(node)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataBlock {
    /// Block index.
    pub index: u64,
    /// Block bytes (as stored: encrypted and padded for encrypted cores).
    pub value: Vec<u8>,
    /// Sibling nodes, bottom-up.
    pub nodes: Vec<TreeNode>,
}

impl Encode for DataBlock {
    fn encoded_len(&self) -> usize {
        uint_len(self.index) + buffer_len(self.value.len()) + nodes_len(&self.nodes)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.index);
        write_buffer(out, &self.value);
        self.nodes.encode(out);
    }
}

impl Decode<'_> for DataBlock {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(DataBlock {
            index: d.uint()?,
            value: d.buffer()?.to_vec(),
            nodes: d.array()?,
        })
    }
}

/// A tree-node proof: `uint index ‖ array(node)` (the node itself first, then siblings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataHash {
    /// Tree node index.
    pub index: u64,
    /// Proof nodes.
    pub nodes: Vec<TreeNode>,
}

impl Encode for DataHash {
    fn encoded_len(&self) -> usize {
        uint_len(self.index) + nodes_len(&self.nodes)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.index);
        self.nodes.encode(out);
    }
}

impl Decode<'_> for DataHash {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(DataHash {
            index: d.uint()?,
            nodes: d.array()?,
        })
    }
}

/// A seek proof: `uint bytes ‖ array(node)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataSeek {
    /// The byte offset sought.
    pub bytes: u64,
    /// Proof nodes (seek root first, then siblings up).
    pub nodes: Vec<TreeNode>,
}

impl Encode for DataSeek {
    fn encoded_len(&self) -> usize {
        uint_len(self.bytes) + nodes_len(&self.nodes)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.bytes);
        self.nodes.encode(out);
    }
}

impl Decode<'_> for DataSeek {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(DataSeek {
            bytes: d.uint()?,
            nodes: d.array()?,
        })
    }
}

/// An upgrade proof: `uint start ‖ uint length ‖ array(node) nodes ‖ array(node) additionalNodes ‖
/// optionalBuffer signature`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataUpgrade {
    /// Start of the proven range.
    pub start: u64,
    /// Length of the proven range.
    pub length: u64,
    /// Nodes from the requester's roots to the roots at `start + length`.
    pub nodes: Vec<TreeNode>,
    /// Roots from `start + length` up to the sender's length.
    pub additional_nodes: Vec<TreeNode>,
    /// The sender's signature for its length and fork (empty = none, JS `null`).
    pub signature: Vec<u8>,
}

impl Encode for DataUpgrade {
    fn encoded_len(&self) -> usize {
        uint_len(self.start)
            + uint_len(self.length)
            + nodes_len(&self.nodes)
            + nodes_len(&self.additional_nodes)
            + buffer_len(self.signature.len())
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.start);
        write_uint(out, self.length);
        self.nodes.encode(out);
        self.additional_nodes.encode(out);
        write_buffer(out, &self.signature);
    }
}

impl Decode<'_> for DataUpgrade {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(DataUpgrade {
            start: d.uint()?,
            length: d.uint()?,
            nodes: d.array()?,
            additional_nodes: d.array()?,
            signature: d.buffer()?.to_vec(),
        })
    }
}

/// `wire.data` (type 3): `uint flags(1 block, 2 hash, 4 seek, 8 upgrade, 16 manifest) ‖
/// uint request ‖ uint fork ‖ [block] ‖ [hash] ‖ [seek] ‖ [upgrade] ‖ [manifest]`
/// (messages.js:397-520). Also the shape of a proof.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Data {
    /// Id of the request answered (0 = unsolicited).
    pub request: u64,
    /// Fork the proof is for (echoes the request's fork).
    pub fork: u64,
    /// Block proof.
    pub block: Option<DataBlock>,
    /// Hash proof.
    pub hash: Option<DataHash>,
    /// Seek proof.
    pub seek: Option<DataSeek>,
    /// Upgrade proof.
    pub upgrade: Option<DataUpgrade>,
    /// The manifest, when asked for.
    pub manifest: Option<Manifest>,
}

impl Data {
    fn flags(&self) -> u64 {
        u64::from(self.block.is_some())
            | u64::from(self.hash.is_some()) << 1
            | u64::from(self.seek.is_some()) << 2
            | u64::from(self.upgrade.is_some()) << 3
            | u64::from(self.manifest.is_some()) << 4
    }
}

impl Encode for Data {
    fn encoded_len(&self) -> usize {
        1 + uint_len(self.request)
            + uint_len(self.fork)
            + opt_len(&self.block)
            + opt_len(&self.hash)
            + opt_len(&self.seek)
            + opt_len(&self.upgrade)
            + opt_len(&self.manifest)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.flags());
        write_uint(out, self.request);
        write_uint(out, self.fork);
        opt_encode(&self.block, out);
        opt_encode(&self.hash, out);
        opt_encode(&self.seek, out);
        opt_encode(&self.upgrade, out);
        opt_encode(&self.manifest, out);
    }
}

impl Data {
    /// The encoding of this message but for its block's bytes, and the offset in it where they
    /// belong (`None` without a block): what goes around a block sent as it is, not copied
    /// (`Protomux::send_with_piece`).
    pub fn encode_around_block(&self) -> Option<(Vec<u8>, usize)> {
        let block = self.block.as_ref()?;
        let mut out = Vec::with_capacity(self.encoded_len() - block.value.len());
        write_uint(&mut out, self.flags());
        write_uint(&mut out, self.request);
        write_uint(&mut out, self.fork);
        write_uint(&mut out, block.index);
        write_uint(&mut out, block.value.len() as u64);
        let at = out.len();
        block.nodes.encode(&mut out);
        opt_encode(&self.hash, &mut out);
        opt_encode(&self.seek, &mut out);
        opt_encode(&self.upgrade, &mut out);
        opt_encode(&self.manifest, &mut out);
        Some((out, at))
    }
}

impl Decode<'_> for Data {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let flags = d.uint()?;
        Ok(Data {
            request: d.uint()?,
            fork: d.uint()?,
            block: opt_decode(flags & 1 != 0, d)?,
            hash: opt_decode(flags & 2 != 0, d)?,
            seek: opt_decode(flags & 4 != 0, d)?,
            upgrade: opt_decode(flags & 8 != 0, d)?,
            manifest: opt_decode(flags & 16 != 0, d)?,
        })
    }
}

/// `noData` reason: the block is not available.
pub const NO_DATA_NOT_AVAILABLE: u64 = 1;
/// `noData` reason: the request was invalid.
pub const NO_DATA_INVALID_REQUEST: u64 = 2;

/// `wire.noData` (type 4): `uint request ‖ uint flags ‖ [flags & 1: uint reason]`; a missing
/// trailing `flags` decodes as 0 (messages.js:522-541).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoData {
    /// Id of the request refused.
    pub request: u64,
    /// Reason ([`NO_DATA_NOT_AVAILABLE`], [`NO_DATA_INVALID_REQUEST`]), 0 = none given.
    pub reason: u64,
}

impl Encode for NoData {
    fn encoded_len(&self) -> usize {
        uint_len(self.request)
            + 1
            + if self.reason != 0 {
                uint_len(self.reason)
            } else {
                0
            }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.request);
        write_uint(out, u64::from(self.reason != 0));
        if self.reason != 0 {
            write_uint(out, self.reason);
        }
    }
}

impl Decode<'_> for NoData {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let request = d.uint()?;
        let flags = if d.is_empty() { 0 } else { d.uint()? };
        Ok(NoData {
            request,
            reason: if flags & 1 != 0 { d.uint()? } else { 0 },
        })
    }
}

/// `wire.want` (type 5) and `wire.unwant` (type 6): `uint start ‖ uint length ‖ [uint flags(bit0
/// any)]`; the flags are written only when non-zero and a missing trailing flags decodes as 0
/// (messages.js:545-599).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    /// First block.
    pub start: u64,
    /// Number of blocks.
    pub length: u64,
    /// Any block of the range will do (answered with one `range`).
    pub any: bool,
}

/// `wire.unwant`: same encoding as [`Want`].
pub type Unwant = Want;

impl Encode for Want {
    fn encoded_len(&self) -> usize {
        uint_len(self.start) + uint_len(self.length) + usize::from(self.any)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.start);
        write_uint(out, self.length);
        if self.any {
            write_uint(out, 1);
        }
    }
}

impl Decode<'_> for Want {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let start = d.uint()?;
        let length = d.uint()?;
        let flags = if d.is_empty() { 0 } else { d.uint()? };
        Ok(Want {
            start,
            length,
            any: flags & 1 != 0,
        })
    }
}

/// `wire.bitfield` (type 7): `uint start ‖ uint32array bitfield` (`uint count ‖ count × u32le`)
/// (messages.js:623-638). Bit `i` of the range is bit `i & 31` of word `i >> 5`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bitfield {
    /// First block covered (receivers ignore a start that is not a multiple of 32).
    pub start: u64,
    /// The bits, 32 blocks per word.
    pub bitfield: Vec<u32>,
}

impl Encode for Bitfield {
    fn encoded_len(&self) -> usize {
        uint_len(self.start) + uint_len(self.bitfield.len() as u64) + 4 * self.bitfield.len()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.start);
        write_uint(out, self.bitfield.len() as u64);
        for w in &self.bitfield {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
}

impl Decode<'_> for Bitfield {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let start = d.uint()?;
        let n = d.uint_usize()?;
        let bytes = n.checked_mul(4).ok_or(DecodeError::IntegerOutOfRange)?;
        let raw = d.take(bytes)?;
        Ok(Bitfield {
            start,
            bitfield: raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
    }
}

/// `wire.range` (type 8): `uint flags(1 drop, 2 length == 1) ‖ uint start ‖ [uint length if ≠ 1]`
/// (messages.js:601-621).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Range {
    /// The blocks were dropped (cleared/truncated) rather than gained.
    pub drop: bool,
    /// First block.
    pub start: u64,
    /// Number of blocks.
    pub length: u64,
}

impl Encode for Range {
    fn encoded_len(&self) -> usize {
        1 + uint_len(self.start)
            + if self.length != 1 {
                uint_len(self.length)
            } else {
                0
            }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, u64::from(self.drop) | u64::from(self.length == 1) << 1);
        write_uint(out, self.start);
        if self.length != 1 {
            write_uint(out, self.length);
        }
    }
}

impl Decode<'_> for Range {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let flags = d.uint()?;
        Ok(Range {
            drop: flags & 1 != 0,
            start: d.uint()?,
            length: if flags & 2 != 0 { 1 } else { d.uint()? },
        })
    }
}

/// `wire.extension` (type 9): `string name ‖ raw message` (the message is the rest of the frame)
/// (messages.js:696-711).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extension {
    /// Extension name; `""` means "same as the previous extension message".
    pub name: String,
    /// Payload.
    pub message: Vec<u8>,
}

impl Encode for Extension {
    fn encoded_len(&self) -> usize {
        buffer_len(self.name.len()) + self.message.len()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_string(out, &self.name);
        out.extend_from_slice(&self.message);
    }
}

impl Decode<'_> for Extension {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        // JS decodes the name with a lossy UTF-8 decoder (invalid sequences become U+FFFD).
        let name = String::from_utf8_lossy(d.buffer()?).into_owned();
        Ok(Extension {
            name,
            message: d.rest().to_vec(),
        })
    }
}

/// `wire.reorgHint`: `uint from ‖ uint to ‖ uint ancestors` (messages.js:676-694). Defined by JS
/// but not registered on the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReorgHint {
    /// Old length.
    pub from: u64,
    /// New length.
    pub to: u64,
    /// Common ancestors.
    pub ancestors: u64,
}

impl Encode for ReorgHint {
    fn encoded_len(&self) -> usize {
        uint_len(self.from) + uint_len(self.to) + uint_len(self.ancestors)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.from);
        write_uint(out, self.to);
        write_uint(out, self.ancestors);
    }
}

impl Decode<'_> for ReorgHint {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(ReorgHint {
            from: d.uint()?,
            to: d.uint()?,
            ancestors: d.uint()?,
        })
    }
}

/// A message of the `hypercore/alpha` protomux channel, by its type index (replicator.js:3241-3252).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Type 0.
    Sync(Sync),
    /// Type 1.
    Request(Request),
    /// Type 2.
    Cancel(Cancel),
    /// Type 3 (boxed: it is much larger than the others).
    Data(Box<Data>),
    /// Type 4.
    NoData(NoData),
    /// Type 5.
    Want(Want),
    /// Type 6.
    Unwant(Unwant),
    /// Type 7.
    Bitfield(Bitfield),
    /// Type 8.
    Range(Range),
    /// Type 9.
    Extension(Extension),
}

impl Message {
    /// The protomux message type index.
    pub fn type_id(&self) -> u64 {
        match self {
            Message::Sync(_) => 0,
            Message::Request(_) => 1,
            Message::Cancel(_) => 2,
            Message::Data(_) => 3,
            Message::NoData(_) => 4,
            Message::Want(_) => 5,
            Message::Unwant(_) => 6,
            Message::Bitfield(_) => 7,
            Message::Range(_) => 8,
            Message::Extension(_) => 9,
        }
    }

    /// Decode the payload of a message of type `type_id`. Trailing bytes are ignored, as in JS.
    pub fn decode(type_id: u64, payload: &[u8]) -> Result<Message, DecodeError> {
        Ok(match type_id {
            0 => Message::Sync(Sync::from_bytes(payload)?),
            1 => Message::Request(Request::from_bytes(payload)?),
            2 => Message::Cancel(Cancel::from_bytes(payload)?),
            3 => Message::Data(Box::new(Data::from_bytes(payload)?)),
            4 => Message::NoData(NoData::from_bytes(payload)?),
            5 => Message::Want(Want::from_bytes(payload)?),
            6 => Message::Unwant(Unwant::from_bytes(payload)?),
            7 => Message::Bitfield(Bitfield::from_bytes(payload)?),
            8 => Message::Range(Range::from_bytes(payload)?),
            9 => Message::Extension(Extension::from_bytes(payload)?),
            _ => return Err(DecodeError::Invalid("hypercore message type")),
        })
    }

    fn inner(&self) -> &dyn Encode {
        match self {
            Message::Sync(m) => m,
            Message::Request(m) => m,
            Message::Cancel(m) => m,
            Message::Data(m) => &**m,
            Message::NoData(m) => m,
            Message::Want(m) | Message::Unwant(m) => m,
            Message::Bitfield(m) => m,
            Message::Range(m) => m,
            Message::Extension(m) => m,
        }
    }
}

/// The payload only (the type index is [`Message::type_id`]).
impl Encode for Message {
    fn encoded_len(&self) -> usize {
        self.inner().encoded_len()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        self.inner().encode(out)
    }
}

#[cfg(test)]
mod tests;
