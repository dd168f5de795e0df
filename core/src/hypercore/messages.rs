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
mod tests {
    use super::*;
    use crate::hypercore::manifest::{Signer, DEFAULT_NAMESPACE};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/data/");

    fn read_vector(name: &str) -> String {
        std::fs::read_to_string(format!("{VECTORS}{name}"))
            .unwrap_or_else(|e| panic!("cannot read vector {name}: {e}"))
    }

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn nodes_json(nodes: &[TreeNode]) -> Value {
        Value::Array(
            nodes
                .iter()
                .map(|n| json!({"index": n.index, "size": n.size, "hash": hex::encode(n.hash)}))
                .collect(),
        )
    }

    fn manifest_json(m: &Manifest) -> Value {
        json!({
            "version": m.version,
            "hash": if m.hash == 0 { "blake2b" } else { "?" },
            "allowPatch": m.allow_patch,
            "quorum": m.quorum,
            "signers": m.signers.iter().map(|s: &Signer| json!({
                "signature": if s.signature == 0 { "ed25519" } else { "?" },
                "namespace": hex::encode(s.namespace),
                "publicKey": hex::encode(s.public_key),
            })).collect::<Vec<_>>(),
            "prologue": m.prologue.map(|p| json!({"hash": hex::encode(p.hash), "length": p.length})),
            "linked": m.linked.as_ref().map(|l| l.iter().map(hex::encode).collect::<Vec<_>>()),
            "userData": m.user_data.as_ref().map(hex::encode),
        })
    }

    fn rb(b: &Option<RequestBlock>) -> Value {
        b.map_or(Value::Null, |b| json!({"index": b.index, "nodes": b.nodes}))
    }

    /// The JSON the vector scripts print for a message (buffers as hex, absent parts as null).
    fn js_json(m: &Message) -> Value {
        match m {
            Message::Sync(s) => json!({
                "fork": s.fork, "length": s.length, "remoteLength": s.remote_length,
                "canUpgrade": s.can_upgrade, "uploading": s.uploading,
                "downloading": s.downloading, "hasManifest": s.has_manifest,
                "allowPush": s.allow_push,
            }),
            Message::Request(r) => json!({
                "id": r.id, "fork": r.fork, "block": rb(&r.block), "hash": rb(&r.hash),
                "seek": r.seek.map_or(Value::Null, |s| json!({"bytes": s.bytes, "padding": s.padding})),
                "upgrade": r.upgrade.map_or(Value::Null, |u| json!({"start": u.start, "length": u.length})),
                "manifest": r.manifest, "priority": r.priority,
            }),
            Message::Data(d) => json!({
                "request": d.request, "fork": d.fork,
                "block": d.block.as_ref().map(|b| json!({"index": b.index, "value": hex::encode(&b.value), "nodes": nodes_json(&b.nodes)})),
                "hash": d.hash.as_ref().map(|b| json!({"index": b.index, "nodes": nodes_json(&b.nodes)})),
                "seek": d.seek.as_ref().map(|b| json!({"bytes": b.bytes, "nodes": nodes_json(&b.nodes)})),
                "upgrade": d.upgrade.as_ref().map(|u| json!({
                    "start": u.start, "length": u.length, "nodes": nodes_json(&u.nodes),
                    "additionalNodes": nodes_json(&u.additional_nodes),
                    "signature": if u.signature.is_empty() { Value::Null } else { hex::encode(&u.signature).into() },
                })),
                "manifest": d.manifest.as_ref().map(manifest_json),
            }),
            Message::Range(r) => json!({"drop": r.drop, "start": r.start, "length": r.length}),
            other => panic!("no JSON form for {other:?}"),
        }
    }

    /// Decode, check that re-encoding gives the same bytes and return the message.
    fn round_trip(type_id: u64, bytes: &[u8]) -> Message {
        let m = Message::decode(type_id, bytes).unwrap();
        assert_eq!(m.type_id(), type_id);
        assert_eq!(
            hex::encode(m.to_bytes()),
            hex::encode(bytes),
            "re-encode of {m:?}"
        );
        assert_eq!(m.encoded_len(), bytes.len());
        m
    }

    /// Every `key` of `expected` (an object) equals the same key of `actual`.
    fn assert_subset(actual: &Value, expected: &Value) {
        for (k, v) in expected.as_object().unwrap() {
            assert_eq!(&actual[k], v, "field {k}");
        }
    }

    fn json_after(line: &str, prefix: &str) -> Value {
        serde_json::from_str(line.strip_prefix(prefix).unwrap().trim()).unwrap()
    }

    #[test]
    fn proofs_vectors_03() {
        let text = read_vector("03-proofs.out");
        let lines: Vec<&str> = text.lines().collect();
        let (mut requests, mut datas) = (0, 0);
        for (i, line) in lines.iter().enumerate() {
            if let Some(enc) = line.strip_prefix("wire.request enc ") {
                let m = round_trip(1, &h(enc));
                let want = json_after(lines[i - 1], "request ");
                let got = js_json(&m);
                assert_subset(&got, &want);
                assert_eq!(got["id"], 1);
                assert_eq!(got["fork"], 0);
                requests += 1;
            } else if let Some(enc) = line
                .strip_prefix("wire.data enc ")
                .or_else(|| line.strip_prefix("P3 wire.data enc "))
            {
                let m = round_trip(3, &h(enc));
                let prev = lines[i - 1];
                let want = if let Some(p) = prev.strip_prefix("P3 (length-3 bootstrap proof) ") {
                    serde_json::from_str(p).unwrap()
                } else {
                    json_after(prev, "proof ")
                };
                let got = js_json(&m);
                assert_eq!(got["request"], 1);
                assert_subset(&got, &want);
                datas += 1;
            }
        }
        assert_eq!((requests, datas), (10, 11));
    }

    fn tail<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no line {key}"));
        line[key.len()..].split_whitespace().collect()
    }

    #[test]
    fn every_wire_message_03() {
        let text = read_vector("03-proofs.out");

        let t = tail(&text, "wire.data manifest-only");
        let Message::Data(d) = round_trip(3, &h(t[0])) else {
            unreachable!()
        };
        assert_eq!((d.request, d.fork), (7, 0));
        assert!(d.block.is_none() && d.upgrade.is_none());
        let pk: [u8; 32] = h("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c")
            .try_into()
            .unwrap();
        assert_eq!(d.manifest, Some(Manifest::default_signer(pk)));
        assert_eq!(d.manifest.unwrap().signers[0].namespace, DEFAULT_NAMESPACE);

        let t = tail(&text, "wire.handshake");
        let hs = Handshake::from_bytes(&h(t[0])).unwrap();
        assert_eq!(
            hs,
            Handshake {
                seeks: true,
                capability: [0xcc; 32]
            }
        );
        assert_eq!(hs.to_bytes(), h(t[0]));

        let t = tail(&text, "wire.sync");
        let Message::Sync(s) = round_trip(0, &h(t[0])) else {
            unreachable!()
        };
        assert_eq!(
            s,
            Sync {
                fork: 0,
                length: 5,
                remote_length: 3,
                can_upgrade: true,
                uploading: true,
                downloading: true,
                has_manifest: true,
                allow_push: false
            }
        );

        let t = tail(&text, "wire.cancel");
        assert_eq!(
            round_trip(2, &h(t[0])),
            Message::Cancel(Cancel { request: 3 })
        );

        let t = tail(&text, "wire.noData");
        assert_eq!(t[0], "reason0");
        assert_eq!(
            round_trip(4, &h(t[1])),
            Message::NoData(NoData {
                request: 3,
                reason: 0
            })
        );
        assert_eq!(t[2], "reason1");
        assert_eq!(
            round_trip(4, &h(t[3])),
            Message::NoData(NoData {
                request: 3,
                reason: 1
            })
        );

        let t = tail(&text, "wire.want");
        let w = Want {
            start: 0,
            length: 2_097_152,
            any: false,
        };
        assert_eq!(round_trip(5, &h(t[0])), Message::Want(w));
        assert_eq!(t[1], "any");
        assert_eq!(
            round_trip(5, &h(t[2])),
            Message::Want(Want {
                start: 4096,
                length: 4096,
                any: true
            })
        );
        let t = tail(&text, "wire.unwant");
        assert_eq!(round_trip(6, &h(t[0])), Message::Unwant(w));

        let t = tail(&text, "wire.bitfield");
        assert_eq!(
            round_trip(7, &h(t[0])),
            Message::Bitfield(Bitfield {
                start: 0,
                bitfield: vec![0x1f]
            })
        );

        let t = tail(&text, "wire.range");
        let expect = [
            ("len1", false, 4, 1),
            ("len5", false, 0, 5),
            ("drop", true, 2, 3),
        ];
        for (k, (label, drop, start, length)) in expect.into_iter().enumerate() {
            assert_eq!(t[2 * k], label);
            assert_eq!(
                round_trip(8, &h(t[2 * k + 1])),
                Message::Range(Range {
                    drop,
                    start,
                    length
                })
            );
        }

        let t = tail(&text, "wire.extension");
        assert_eq!(
            round_trip(9, &h(t[0])),
            Message::Extension(Extension {
                name: "hyperbee".into(),
                message: vec![1, 2]
            })
        );

        let t = tail(&text, "wire.request block+upgrade+manifest+priority");
        assert_eq!(
            round_trip(1, &h(t[0])),
            Message::Request(Request {
                id: 2,
                fork: 1,
                block: Some(RequestBlock { index: 9, nodes: 3 }),
                hash: None,
                seek: None,
                upgrade: Some(RequestUpgrade {
                    start: 5,
                    length: 5
                }),
                manifest: true,
                priority: 2
            })
        );
    }

    /// The capture abbreviates long buffers as `"<first 8 bytes hex>..(<n>B)"`: check such a value
    /// against the full one, then put the full one in its place.
    fn expand_abbreviations(expected: &mut Value, actual: &Value) {
        match (expected, actual) {
            (Value::Object(e), Value::Object(a)) => {
                for (k, v) in e.iter_mut() {
                    if let Some(av) = a.get(k) {
                        expand_abbreviations(v, av);
                    }
                }
            }
            (Value::Array(e), Value::Array(a)) => {
                for (v, av) in e.iter_mut().zip(a) {
                    expand_abbreviations(v, av);
                }
            }
            (e @ Value::String(_), Value::String(a)) => {
                let es = e.as_str().unwrap_or_default().to_owned();
                if let Some((prefix, n)) = es.split_once("..(") {
                    let n: usize = n.trim_end_matches("B)").parse().unwrap();
                    assert!(a.starts_with(prefix), "{a} does not start with {prefix}");
                    assert_eq!(a.len(), 2 * n, "abbreviated length");
                    *e = Value::String(a.clone());
                }
            }
            _ => {}
        }
    }

    fn check_capture(m: &Message, js: &str) {
        let got = js_json(m);
        let mut want: Value = serde_json::from_str(js).unwrap();
        expand_abbreviations(&mut want, &got);
        assert_eq!(got, want);
    }

    fn type_of(name: &str) -> u64 {
        match name {
            "sync" => 0,
            "request" => 1,
            "data" => 3,
            "range" => 8,
            other => panic!("unexpected message {other}"),
        }
    }

    /// Every channel message of a real JS replication session (plain protomux frames).
    #[test]
    fn replication_capture_04() {
        let text = read_vector("04-replication-capture.out");
        let lines: Vec<&str> = text.lines().collect();
        let mut seen = 0;
        for (i, line) in lines.iter().enumerate() {
            let Some(frame) = line
                .strip_prefix("I-> ")
                .or_else(|| line.strip_prefix("R-> "))
            else {
                continue;
            };
            let frame = h(frame);
            let desc = lines[i + 1].trim();
            let mut d = Decoder::new(&frame);
            let channel = d.uint().unwrap();
            if let Some(rest) = desc.strip_prefix("ch1 ") {
                assert_eq!(channel, 1);
                let t = d.uint().unwrap();
                let (name, js) = rest.split_once(' ').unwrap();
                assert_eq!(t, type_of(name));
                check_capture(&round_trip(t, d.rest()), js);
                seen += 1;
            } else if let Some(batch) = desc.strip_prefix("CTRL batch ") {
                // protomux batch: 00 00 ‖ uint channel ‖ (uint len ‖ uint type ‖ payload)*
                assert_eq!((channel, d.uint().unwrap(), d.uint().unwrap()), (0, 0, 1));
                let items: Vec<&str> = batch
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .split("] [")
                    .collect();
                for item in items {
                    let len = d.uint_usize().unwrap();
                    let mut md = Decoder::new(d.take(len).unwrap());
                    let t = md.uint().unwrap();
                    let rest = item.strip_prefix("ch1 ").unwrap();
                    let (name, js) = rest.split_once(' ').unwrap();
                    assert_eq!(t, type_of(name));
                    check_capture(&round_trip(t, md.rest()), js);
                    seen += 1;
                }
                assert!(d.is_empty());
            }
        }
        assert_eq!(seen, 16);
    }

    #[test]
    fn trailing_optional_fields() {
        // noData / want without their trailing flags decode with flags 0
        assert_eq!(
            NoData::from_bytes(&[5]).unwrap(),
            NoData {
                request: 5,
                reason: 0
            }
        );
        assert_eq!(
            Want::from_bytes(&[1, 2]).unwrap(),
            Want {
                start: 1,
                length: 2,
                any: false
            }
        );
        // flags present but bit 0 clear: no reason follows
        assert_eq!(NoData::from_bytes(&[5, 0]).unwrap().reason, 0);
        // flags say a reason follows but it is missing
        assert!(NoData::from_bytes(&[5, 1]).is_err());
        assert!(Want::from_bytes(&[1]).is_err());
        // handshake flags 0
        assert!(!Handshake::from_bytes(&[0; 33]).unwrap().seeks);
        assert!(Handshake::from_bytes(&[1; 32]).is_err());
    }

    #[test]
    fn hostile_lengths_are_errors() {
        // bitfield claiming 2^32 words with 4 bytes present
        let mut b = vec![0u8];
        write_uint(&mut b, 1 << 32);
        b.extend_from_slice(&[0; 4]);
        assert!(Bitfield::from_bytes(&b).is_err());
        // max safe count * 4 must not overflow
        let mut b = vec![0u8];
        write_uint(&mut b, crate::encoding::MAX_SAFE_INTEGER);
        assert!(Bitfield::from_bytes(&b).is_err());
        // data block with a huge value length
        let mut b = vec![1u8, 1, 0, 0];
        write_uint(&mut b, 1 << 40);
        assert!(Data::from_bytes(&b).is_err());
        // array of nodes with a huge count
        let mut b = vec![2u8, 1, 0, 0];
        write_uint(&mut b, 1 << 30);
        assert!(Data::from_bytes(&b).is_err());
        assert!(Message::decode(10, &[]).is_err());
        // an invalid UTF-8 extension name decodes lossily, as in JS
        assert_eq!(
            Extension::from_bytes(&[1, 0xff, 7]).unwrap().name,
            "\u{fffd}"
        );
        assert!(Extension::from_bytes(&[2, 0x61]).is_err());
    }

    fn arb_node() -> impl Strategy<Value = TreeNode> {
        (any::<u64>(), any::<u64>(), any::<[u8; 32]>()).prop_map(|(i, s, hash)| TreeNode {
            index: i >> 11,
            size: s >> 11,
            hash,
        })
    }

    fn safe() -> impl Strategy<Value = u64> + Clone {
        prop_oneof![0u64..300, 0u64..=crate::encoding::MAX_SAFE_INTEGER]
    }

    fn pair() -> impl Strategy<Value = (u64, u64)> {
        (safe(), safe())
    }

    fn arb_nodes() -> impl Strategy<Value = Vec<TreeNode>> {
        proptest::collection::vec(arb_node(), 0..4)
    }

    fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..80)
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (safe(), safe(), safe(), any::<[bool; 5]>()).prop_map(|(f, l, r, b)| Message::Sync(
                Sync {
                    fork: f,
                    length: l,
                    remote_length: r,
                    can_upgrade: b[0],
                    uploading: b[1],
                    downloading: b[2],
                    has_manifest: b[3],
                    allow_push: b[4]
                }
            )),
            (
                (safe(), safe(), safe()),
                proptest::option::of(pair()),
                proptest::option::of(pair()),
                proptest::option::of(pair()),
                proptest::option::of(pair()),
                any::<bool>()
            )
                .prop_map(|((id, fork, priority), b, hs, s, u, manifest)| {
                    Message::Request(Request {
                        id,
                        fork,
                        block: b.map(|(index, nodes)| RequestBlock { index, nodes }),
                        hash: hs.map(|(index, nodes)| RequestBlock { index, nodes }),
                        seek: s.map(|(bytes, padding)| RequestSeek { bytes, padding }),
                        upgrade: u.map(|(start, length)| RequestUpgrade { start, length }),
                        manifest,
                        priority,
                    })
                }),
            safe().prop_map(|request| Message::Cancel(Cancel { request })),
            (
                (safe(), safe()),
                proptest::option::of((safe(), arb_bytes(), arb_nodes())),
                proptest::option::of((safe(), arb_nodes())),
                proptest::option::of((safe(), arb_nodes())),
                proptest::option::of((safe(), safe(), arb_nodes(), arb_nodes(), arb_bytes())),
                proptest::option::of(any::<[u8; 32]>()),
            )
                .prop_map(|((request, fork), b, hs, s, u, m)| {
                    Message::Data(Box::new(Data {
                        request,
                        fork,
                        block: b.map(|(index, value, nodes)| DataBlock {
                            index,
                            value,
                            nodes,
                        }),
                        hash: hs.map(|(index, nodes)| DataHash { index, nodes }),
                        seek: s.map(|(bytes, nodes)| DataSeek { bytes, nodes }),
                        upgrade: u.map(|(start, length, nodes, additional_nodes, signature)| {
                            DataUpgrade {
                                start,
                                length,
                                nodes,
                                additional_nodes,
                                signature,
                            }
                        }),
                        manifest: m.map(Manifest::default_signer),
                    }))
                }),
            pair().prop_map(|(request, reason)| Message::NoData(NoData { request, reason })),
            (safe(), safe(), any::<bool>()).prop_map(|(start, length, any)| Message::Want(Want {
                start,
                length,
                any
            })),
            (safe(), safe(), any::<bool>())
                .prop_map(|(start, length, any)| Message::Unwant(Want { start, length, any })),
            (safe(), proptest::collection::vec(any::<u32>(), 0..20))
                .prop_map(|(start, bitfield)| Message::Bitfield(Bitfield { start, bitfield })),
            (any::<bool>(), safe(), safe()).prop_map(|(drop, start, length)| Message::Range(
                Range {
                    drop,
                    start,
                    length
                }
            )),
            (".{0,12}", arb_bytes())
                .prop_map(|(name, message)| Message::Extension(Extension { name, message })),
        ]
    }

    proptest! {
        #[test]
        fn decoders_never_panic(t in 0u64..12, bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode(t, &bytes);
            let _ = Handshake::from_bytes(&bytes);
            let _ = ReorgHint::from_bytes(&bytes);
            let _ = TreeNode::from_bytes(&bytes);
        }

        #[test]
        fn messages_round_trip(m in arb_message()) {
            let bytes = m.to_bytes();
            prop_assert_eq!(bytes.len(), m.encoded_len());
            let back = Message::decode(m.type_id(), &bytes).unwrap();
            prop_assert_eq!(back, m);
        }

        #[test]
        fn handshake_round_trip(seeks in any::<bool>(), capability in any::<[u8; 32]>(), from in safe(), to in safe(), ancestors in safe()) {
            let hs = Handshake { seeks, capability };
            prop_assert_eq!(Handshake::from_bytes(&hs.to_bytes()).unwrap(), hs);
            let r = ReorgHint { from, to, ancestors };
            prop_assert_eq!(r.to_bytes().len(), r.encoded_len());
            prop_assert_eq!(ReorgHint::from_bytes(&r.to_bytes()).unwrap(), r);
        }
    }
}
