//! The protobuf messages of hyperbee 2.27.3 (`lib/messages.js`), byte-identical to the JS encoder.
//!
//! - Block 0 of a bee is a [`Header`]: `{ 1: string protocol = "hyperbee"; 2: Metadata }` with
//!   `Metadata { 1: bytes contentFeed; 2: bytes userData }`.
//! - Every other block is a [`Node`]: `{ 1: bytes index (required); 2: bytes key (required);
//!   3: bytes value (optional) }`, whose `index` is a [`YoloIndex`]: `{ repeated Level levels = 1 }`
//!   with `Level { packed uint64 keys = 1; packed uint64 children = 2 }` (children flattened
//!   `(seq, offset)` pairs).
//!
//! Decoding follows the JS decoder where it is lenient in harmless ways (unknown fields are
//! skipped by wire type, a known field is read by its number whatever its wire type, repeated
//! packed fields accumulate) and is strict where JS would read past the end or silently
//! truncate: every malformed input is a [`MessageError`], never a panic.

/// Why a hyperbee message did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The input ended inside a field.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A varint longer than 10 bytes or above 2^64.
    #[error("varint overflow")]
    VarintOverflow,
    /// A wire type protobuf does not have (3, 4: groups; 6, 7).
    #[error("unsupported wire type {0}")]
    WireType(u8),
    /// A required field is absent.
    #[error("missing required field {0}")]
    Missing(&'static str),
    /// A length does not fit in memory.
    #[error("length out of range")]
    Length,
}

// ------------------------------------------------------------------ protobuf primitives

/// Append `v` as a protobuf varint.
pub(crate) fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes `v` takes as a varint.
pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn write_bytes_field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A cursor over one message (or one embedded message).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, MessageError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(MessageError::Truncated(what))?;
            self.pos += 1;
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return Err(MessageError::VarintOverflow);
            }
            v |= part << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(MessageError::VarintOverflow)
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], MessageError> {
        let len = usize::try_from(self.varint(what)?).map_err(|_| MessageError::Length)?;
        let end = self.pos.checked_add(len).ok_or(MessageError::Length)?;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or(MessageError::Truncated(what))?;
        self.pos = end;
        Ok(b)
    }

    fn skip(&mut self, wire: u8) -> Result<(), MessageError> {
        let n = match wire {
            0 => {
                self.varint("skipped varint")?;
                return Ok(());
            }
            1 => 8,
            2 => {
                self.bytes("skipped field")?;
                return Ok(());
            }
            5 => 4,
            w => return Err(MessageError::WireType(w)),
        };
        if self.buf.len() - self.pos < n {
            return Err(MessageError::Truncated("skipped field"));
        }
        self.pos += n;
        Ok(())
    }

    /// The next field's number and wire type.
    fn tag(&mut self) -> Result<(u64, u8), MessageError> {
        let prefix = self.varint("field tag")?;
        Ok((prefix >> 3, (prefix & 7) as u8))
    }

    /// A packed run of varints (JS reads any occurrence of the field this way).
    fn packed(&mut self, out: &mut Vec<u64>, what: &'static str) -> Result<(), MessageError> {
        let body = self.bytes(what)?;
        let mut r = Reader::new(body);
        while !r.done() {
            out.push(r.varint(what)?);
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ YoloIndex

/// One tree node as stored in a block's index: the seqs of its key blocks and its children as
/// flattened `(seq, offset)` pairs ("level `offset` of the index in block `seq`").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Level {
    /// Seqs of the blocks whose keys this node holds, in key order.
    pub keys: Vec<u64>,
    /// `[seq0, offset0, seq1, offset1, ...]`: one pair per child, empty for a leaf.
    pub children: Vec<u64>,
}

impl Level {
    fn encoded_len(&self) -> usize {
        let mut n = 0;
        for list in [&self.keys, &self.children] {
            let packed: usize = list.iter().map(|&v| varint_len(v)).sum();
            if packed > 0 {
                n += 1 + varint_len(packed as u64) + packed;
            }
        }
        n
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        for (tag, list) in [(0x0a, &self.keys), (0x12, &self.children)] {
            let packed: usize = list.iter().map(|&v| varint_len(v)).sum();
            if packed > 0 {
                out.push(tag);
                write_varint(out, packed as u64);
                for &v in list {
                    write_varint(out, v);
                }
            }
        }
    }

    fn decode(buf: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(buf);
        let mut level = Level::default();
        while !r.done() {
            match r.tag()? {
                (1, _) => r.packed(&mut level.keys, "level keys")?,
                (2, _) => r.packed(&mut level.children, "level children")?,
                (_, wire) => r.skip(wire)?,
            }
        }
        Ok(level)
    }
}

/// The index of a node block: the tree nodes this block wrote; `levels[0]` is the root as of
/// this block (for the last block of a batch; earlier blocks of a batch keep only the nodes they
/// still own, see [`super::Batch`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YoloIndex {
    /// The tree nodes.
    pub levels: Vec<Level>,
}

impl YoloIndex {
    /// Bytes [`YoloIndex::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        self.levels
            .iter()
            .map(|l| {
                let n = l.encoded_len();
                1 + varint_len(n as u64) + n
            })
            .sum()
    }

    /// Append the protobuf encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        for l in &self.levels {
            out.push(0x0a);
            write_varint(out, l.encoded_len() as u64);
            l.encode_into(out);
        }
    }

    /// The protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Decode; see the module docs for what is accepted.
    pub fn decode(buf: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(buf);
        let mut index = YoloIndex::default();
        while !r.done() {
            match r.tag()? {
                (1, _) => index.levels.push(Level::decode(r.bytes("level")?)?),
                (_, wire) => r.skip(wire)?,
            }
        }
        Ok(index)
    }
}

// ------------------------------------------------------------------ Node

/// A node block: one put (with `value`, possibly empty) or deletion (no `value`) of `key`,
/// plus the tree nodes it rewrote (`index`, an encoded [`YoloIndex`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Encoded [`YoloIndex`].
    pub index: Vec<u8>,
    /// The key (as encoded by the bee's key encoding, sub prefix included).
    pub key: Vec<u8>,
    /// The value; `None` for a deletion (or a put of `null` in JS).
    pub value: Option<Vec<u8>>,
}

/// A borrowed view of a decoded [`Node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRef<'a> {
    /// Encoded [`YoloIndex`].
    pub index: &'a [u8],
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: Option<&'a [u8]>,
}

/// Encode a node block from its parts without building a [`Node`].
pub fn encode_node(index: &[u8], key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let len = 2
        + varint_len(index.len() as u64)
        + index.len()
        + varint_len(key.len() as u64)
        + key.len()
        + value.map_or(0, |v| 1 + varint_len(v.len() as u64) + v.len());
    let mut out = Vec::with_capacity(len);
    encode_node_into(&mut out, index, key, value);
    out
}

/// [`encode_node`] appended to `out`.
pub(crate) fn encode_node_into(out: &mut Vec<u8>, index: &[u8], key: &[u8], value: Option<&[u8]>) {
    write_bytes_field(out, 0x0a, index);
    write_bytes_field(out, 0x12, key);
    if let Some(v) = value {
        write_bytes_field(out, 0x1a, v);
    }
}

impl Node {
    /// The protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode_node(&self.index, &self.key, self.value.as_deref())
    }

    /// Decode, copying the fields.
    pub fn decode(buf: &[u8]) -> Result<Self, MessageError> {
        let r = Node::decode_ref(buf)?;
        Ok(Node {
            index: r.index.to_vec(),
            key: r.key.to_vec(),
            value: r.value.map(<[u8]>::to_vec),
        })
    }

    /// Decode without copying.
    pub fn decode_ref(buf: &[u8]) -> Result<NodeRef<'_>, MessageError> {
        let mut r = Reader::new(buf);
        let (mut index, mut key, mut value) = (None, None, None);
        while !r.done() {
            match r.tag()? {
                (1, _) => index = Some(r.bytes("node index")?),
                (2, _) => key = Some(r.bytes("node key")?),
                (3, _) => value = Some(r.bytes("node value")?),
                (_, wire) => r.skip(wire)?,
            }
        }
        Ok(NodeRef {
            index: index.ok_or(MessageError::Missing("index"))?,
            key: key.ok_or(MessageError::Missing("key"))?,
            value,
        })
    }
}

// ------------------------------------------------------------------ Header

/// What hyperdrive (and others) keep in a bee's header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The key of a second core holding the content (hyperdrive's blobs core).
    pub content_feed: Option<Vec<u8>>,
    /// Free-form application data.
    pub user_data: Option<Vec<u8>>,
}

/// Block 0 of every bee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `"hyperbee"` for a bee (decoded lossily from UTF-8, as JS does).
    pub protocol: String,
    /// Optional metadata (present but empty encodes as `12 00`).
    pub metadata: Option<Metadata>,
}

/// The `protocol` of a hyperbee header.
pub const PROTOCOL: &str = "hyperbee";

impl Header {
    /// A hyperbee header with `metadata`.
    pub fn new(metadata: Option<Metadata>) -> Self {
        Header {
            protocol: PROTOCOL.to_string(),
            metadata,
        }
    }

    /// The protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_bytes_field(&mut out, 0x0a, self.protocol.as_bytes());
        if let Some(m) = &self.metadata {
            let mut inner = Vec::new();
            if let Some(c) = &m.content_feed {
                write_bytes_field(&mut inner, 0x0a, c);
            }
            if let Some(u) = &m.user_data {
                write_bytes_field(&mut inner, 0x12, u);
            }
            write_bytes_field(&mut out, 0x12, &inner);
        }
        out
    }

    /// Decode.
    pub fn decode(buf: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(buf);
        let (mut protocol, mut metadata) = (None, None);
        while !r.done() {
            match r.tag()? {
                (1, _) => {
                    protocol = Some(String::from_utf8_lossy(r.bytes("protocol")?).into_owned())
                }
                (2, _) => {
                    let mut m = Metadata::default();
                    let mut mr = Reader::new(r.bytes("metadata")?);
                    while !mr.done() {
                        match mr.tag()? {
                            (1, _) => m.content_feed = Some(mr.bytes("contentFeed")?.to_vec()),
                            (2, _) => m.user_data = Some(mr.bytes("userData")?.to_vec()),
                            (_, wire) => mr.skip(wire)?,
                        }
                    }
                    metadata = Some(m);
                }
                (_, wire) => r.skip(wire)?,
            }
        }
        Ok(Header {
            protocol: protocol.ok_or(MessageError::Missing("protocol"))?,
            metadata,
        })
    }

    /// True when this is a hyperbee header (JS `Hyperbee.isHyperbee`).
    pub fn is_hyperbee(&self) -> bool {
        self.protocol == PROTOCOL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn header_vectors() {
        assert_eq!(
            hex::encode(Header::new(None).encode()),
            "0a086879706572626565"
        );
        let h = Header::new(Some(Metadata {
            content_feed: Some(vec![0xaa; 32]),
            user_data: None,
        }));
        assert_eq!(
            hex::encode(h.encode()),
            format!("0a08687970657262656512220a20{}", "aa".repeat(32))
        );
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        let empty = Header::new(Some(Metadata::default()));
        assert_eq!(hex::encode(empty.encode()), "0a0868797065726265651200");
        assert_eq!(Header::decode(&empty.encode()).unwrap(), empty);
        assert!(Header::decode(&unhex("0a086879706572626565"))
            .unwrap()
            .is_hyperbee());
        assert_eq!(
            Header::decode(&unhex("1200")),
            Err(MessageError::Missing("protocol"))
        );
    }

    #[test]
    fn node_and_index_vectors() {
        // Block 9 of vectors/data/06-hyperbee.out: the first split.
        let raw =
            unhex("0a1b0a090a01051204090109020a060a04010203040a060a040607080912036b30391a027639");
        let n = Node::decode(&raw).unwrap();
        assert_eq!(n.key, b"k09");
        assert_eq!(n.value.as_deref(), Some(&b"v9"[..]));
        let idx = YoloIndex::decode(&n.index).unwrap();
        assert_eq!(
            idx.levels,
            vec![
                Level {
                    keys: vec![5],
                    children: vec![9, 1, 9, 2]
                },
                Level {
                    keys: vec![1, 2, 3, 4],
                    children: vec![]
                },
                Level {
                    keys: vec![6, 7, 8, 9],
                    children: vec![]
                },
            ]
        );
        assert_eq!(idx.encode(), n.index);
        assert_eq!(idx.encoded_len(), n.index.len());
        assert_eq!(n.encode(), raw);
        // A deletion (block 11): no value field.
        let del = unhex("0a130a090a0106120409010b010a060a040708090a12036b3035");
        let d = Node::decode(&del).unwrap();
        assert_eq!(d.value, None);
        assert_eq!(d.encode(), del);
        // Batch blocks keep empty indexes (06b): `0a00`.
        let b = unhex("0a001201621a0142");
        let n = Node::decode(&b).unwrap();
        assert!(n.index.is_empty());
        assert_eq!(YoloIndex::decode(&n.index).unwrap().levels, vec![]);
        assert_eq!(n.encode(), b);
        // An empty level encodes as `0a00`.
        let empty = YoloIndex {
            levels: vec![Level::default()],
        };
        assert_eq!(hex::encode(empty.encode()), "0a00");
    }

    #[test]
    fn lenient_like_js_strict_on_truncation() {
        // Unknown fields of every wire type are skipped.
        let mut raw = vec![0x20, 0x05, 0x29, 1, 2, 3, 4, 5, 6, 7, 8, 0x35, 1, 2, 3, 4];
        raw.extend(encode_node(b"", b"k", Some(b"v")));
        raw.extend([0x42, 0x01, 0xff]);
        let n = Node::decode(&raw).unwrap();
        assert_eq!(
            (n.key.as_slice(), n.value.as_deref()),
            (&b"k"[..], Some(&b"v"[..]))
        );
        // Truncations, bad wire types and missing fields are errors.
        for bad in [
            &[0x0a][..],
            &[0x0a, 0x05, 1][..],
            &[0x0b][..],
            &[0x12, 0x00][..],
            &[0x0a, 0x00][..],
            &[0xff; 11][..],
            &[0x29, 1, 2][..],
        ] {
            assert!(Node::decode(bad).is_err(), "{bad:02x?}");
        }
        assert!(YoloIndex::decode(&[0x0a, 0x02, 0x0a, 0x05]).is_err());
        assert!(YoloIndex::decode(&[0x0a, 0x03, 0x0a, 0x01, 0x80]).is_err());
        // Packed fields accumulate over repeated occurrences.
        let l = YoloIndex::decode(&[0x0a, 0x06, 0x0a, 0x01, 0x01, 0x0a, 0x01, 0x02]).unwrap();
        assert_eq!(l.levels[0].keys, vec![1, 2]);
    }

    #[test]
    fn varints() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            let mut r = Reader::new(&out);
            assert_eq!(r.varint("v").unwrap(), v);
        }
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]);
        assert_eq!(r.varint("v"), Err(MessageError::VarintOverflow));
    }
}
