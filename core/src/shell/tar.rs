//! The tar stream hypershell's copy sends (tar-fs 2.1 `pack` / `extract` over tar-stream 2.2),
//! sans-IO: [`TarReader`] takes bytes as they arrive and gives entries and their data;
//! [`header`] writes an entry's header as tar-stream does (ustar, a pax header in front when a
//! name does not fit). Bytes from the network never panic the reader: they become a
//! [`TarError`].
//!
//! What the reader understands: regular files (`0`, NUL, `7`), folders (`5`), symbolic links
//! (`2`), pax headers (`x`: `path`, `linkpath`, `size`; `g` is skipped), GNU long names (`L`,
//! `K`), the ustar `prefix`, octal and base-256 numbers, and the end (a zero block; tar-stream
//! writes two). Hard links, devices and FIFOs are reported as [`EntryKind::Other`] (tar-fs
//! packs none of them).

use thiserror::Error;

/// A tar block.
pub const BLOCK: usize = 512;
/// Longest pax or GNU long-name record the reader keeps.
pub const MAX_META: u64 = 1 << 20;

/// Why a tar stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TarError {
    /// A header's checksum does not match (tar-stream: `Invalid tar header`).
    #[error("invalid tar header (checksum)")]
    Checksum,
    /// A numeric field is not a number.
    #[error("invalid number in the tar header field {0}")]
    Number(&'static str),
    /// A name is not UTF-8, or empty.
    #[error("invalid entry name")]
    Name,
    /// A pax or long-name record is malformed or larger than [`MAX_META`].
    #[error("invalid pax or long-name record")]
    Meta,
    /// Bytes came after the end of the archive, or the archive ended inside an entry.
    #[error("tar stream {0}")]
    Framing(&'static str),
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file; its data follows.
    File,
    /// A folder.
    Directory,
    /// A symbolic link to the target.
    Symlink(String),
    /// Anything else (hard link, device, FIFO): its type flag. Its data, if any, is skipped.
    Other(u8),
}

/// One entry's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its path in the archive (as written: `.`, `a/b`, ...).
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Data size in bytes (0 but for files).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
}

/// What the reader found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TarEvent {
    /// An entry starts; for a file, [`TarEvent::Data`] follows, then [`TarEvent::EntryEnd`].
    Entry(Entry),
    /// Data of the current file.
    Data(Vec<u8>),
    /// The current entry is complete.
    EntryEnd,
    /// The archive's end marker.
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Header,
    /// Data of an entry: bytes left, padding after, whether to hand the data out.
    Body {
        left: u64,
        pad: usize,
        emit: bool,
    },
    /// A pax or long-name record being collected.
    Meta {
        flag: u8,
        left: u64,
        pad: usize,
    },
    Padding(usize),
    End,
}

/// A streaming tar reader. Feed bytes with [`TarReader::push`], take events with
/// [`TarReader::next_event`] until it returns `Ok(None)` (it needs more bytes).
#[derive(Debug)]
pub struct TarReader {
    buf: Vec<u8>,
    pos: usize,
    state: State,
    meta: Vec<u8>,
    pax_path: Option<String>,
    pax_link: Option<String>,
    pax_size: Option<u64>,
    failed: bool,
}

impl Default for TarReader {
    fn default() -> Self {
        Self::new()
    }
}

fn parse_number(field: &[u8], name: &'static str) -> Result<u64, TarError> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            // base-256: the rest of the bytes, big-endian (positive only).
            if first != 0x80 {
                return Err(TarError::Number(name));
            }
            let mut n: u64 = 0;
            for &b in &field[1..] {
                if n >> 56 != 0 {
                    return Err(TarError::Number(name));
                }
                n = (n << 8) | u64::from(b);
            }
            return Ok(n);
        }
    }
    let mut n: u64 = 0;
    let mut i = 0;
    while i < field.len() && (field[i] == b' ' || field[i] == 0) {
        i += 1;
    }
    while i < field.len() && (b'0'..=b'7').contains(&field[i]) {
        n = n
            .checked_mul(8)
            .and_then(|n| n.checked_add(u64::from(field[i] - b'0')))
            .ok_or(TarError::Number(name))?;
        i += 1;
    }
    if i < field.len() && field[i] != b' ' && field[i] != 0 {
        return Err(TarError::Number(name));
    }
    Ok(n)
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn checksum(h: &[u8]) -> u64 {
    h.iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum()
}

fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

impl TarReader {
    /// A reader at the start of an archive.
    pub fn new() -> Self {
        TarReader {
            buf: Vec::new(),
            pos: 0,
            state: State::Header,
            meta: Vec::new(),
            pax_path: None,
            pax_link: None,
            pax_size: None,
            failed: false,
        }
    }

    /// More bytes of the archive.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Whether the end marker was read.
    pub fn is_done(&self) -> bool {
        self.state == State::End
    }

    /// Whether the bytes so far stop between entries (the sender may end here without an end
    /// marker, as a tar-fs pack that was destroyed cannot; callers decide).
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header | State::End) && self.pos == self.buf.len()
    }

    fn avail(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next event, `Ok(None)` when more bytes are needed. After an error the reader stays
    /// failed.
    pub fn next_event(&mut self) -> Result<Option<TarEvent>, TarError> {
        if self.failed {
            return Err(TarError::Framing("failed earlier"));
        }
        let r = self.step();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn step(&mut self) -> Result<Option<TarEvent>, TarError> {
        loop {
            match self.state.clone() {
                State::End => {
                    // tar-stream ignores what follows the end marker (the second zero block).
                    self.pos = self.buf.len();
                    return Ok(None);
                }
                State::Padding(n) => {
                    let k = n.min(self.avail());
                    self.pos += k;
                    if k < n {
                        self.state = State::Padding(n - k);
                        return Ok(None);
                    }
                    self.state = State::Header;
                }
                State::Body { left, pad, emit } => {
                    if left == 0 {
                        self.state = State::Padding(pad);
                        if emit {
                            return Ok(Some(TarEvent::EntryEnd));
                        }
                        continue;
                    }
                    let k = (left.min(self.avail() as u64)) as usize;
                    if k == 0 {
                        return Ok(None);
                    }
                    let chunk = self.buf[self.pos..self.pos + k].to_vec();
                    self.pos += k;
                    self.state = State::Body {
                        left: left - k as u64,
                        pad,
                        emit,
                    };
                    if emit {
                        return Ok(Some(TarEvent::Data(chunk)));
                    }
                }
                State::Meta { flag, left, pad } => {
                    let k = (left.min(self.avail() as u64)) as usize;
                    self.meta
                        .extend_from_slice(&self.buf[self.pos..self.pos + k]);
                    self.pos += k;
                    if (k as u64) < left {
                        self.state = State::Meta {
                            flag,
                            left: left - k as u64,
                            pad,
                        };
                        return Ok(None);
                    }
                    let meta = std::mem::take(&mut self.meta);
                    match flag {
                        b'x' => self.parse_pax(&meta)?,
                        b'L' => self.pax_path = Some(Self::long_name(&meta)?),
                        b'K' => self.pax_link = Some(Self::long_name(&meta)?),
                        _ => {}
                    }
                    self.state = State::Padding(pad);
                }
                State::Header => {
                    if self.avail() < BLOCK {
                        return Ok(None);
                    }
                    let h: [u8; BLOCK] = self.buf[self.pos..self.pos + BLOCK]
                        .try_into()
                        .map_err(|_| TarError::Framing("short header"))?;
                    self.pos += BLOCK;
                    if h.iter().all(|&b| b == 0) {
                        self.state = State::End;
                        return Ok(Some(TarEvent::End));
                    }
                    if parse_number(&h[148..156], "chksum")? != checksum(&h) {
                        return Err(TarError::Checksum);
                    }
                    let flag = h[156];
                    let mut size = parse_number(&h[124..136], "size")?;
                    if matches!(flag, b'x' | b'g' | b'L' | b'K') {
                        if size > MAX_META {
                            return Err(TarError::Meta);
                        }
                        self.state = State::Meta {
                            flag,
                            left: size,
                            pad: padding(size),
                        };
                        continue;
                    }
                    if let Some(s) = self.pax_size.take() {
                        size = s;
                    }
                    let name = match self.pax_path.take() {
                        Some(p) => p,
                        None => {
                            let name = cstr(&h[0..100]);
                            let prefix = if &h[257..262] == b"ustar" {
                                cstr(&h[345..500])
                            } else {
                                &[]
                            };
                            let mut full = Vec::with_capacity(prefix.len() + 1 + name.len());
                            if !prefix.is_empty() {
                                full.extend_from_slice(prefix);
                                full.push(b'/');
                            }
                            full.extend_from_slice(name);
                            String::from_utf8(full).map_err(|_| TarError::Name)?
                        }
                    };
                    if name.is_empty() {
                        return Err(TarError::Name);
                    }
                    let link = match self.pax_link.take() {
                        Some(l) => l,
                        None => String::from_utf8(cstr(&h[157..257]).to_vec())
                            .map_err(|_| TarError::Name)?,
                    };
                    let kind = match flag {
                        // Old tars mark folders by a trailing slash.
                        b'0' | 0 if name.ends_with('/') => EntryKind::Directory,
                        b'0' | 0 | b'7' => EntryKind::File,
                        b'5' => EntryKind::Directory,
                        b'2' => EntryKind::Symlink(link),
                        f => EntryKind::Other(f),
                    };
                    // A folder or link has no data whatever its size field says (tar-stream
                    // skips `size` bytes regardless; so do we).
                    // tar-stream writes folders as `name/`.
                    let name = match kind {
                        EntryKind::Directory if name.len() > 1 => {
                            name.trim_end_matches('/').to_string()
                        }
                        _ => name,
                    };
                    let name = if name.is_empty() {
                        "/".to_string()
                    } else {
                        name
                    };
                    let entry = Entry {
                        path: name,
                        kind: kind.clone(),
                        mode: (parse_number(&h[100..108], "mode")? & 0o7777) as u32,
                        size: if kind == EntryKind::File { size } else { 0 },
                        mtime: parse_number(&h[136..148], "mtime")?,
                    };
                    self.state = State::Body {
                        left: size,
                        pad: padding(size),
                        emit: kind == EntryKind::File,
                    };
                    if kind != EntryKind::File {
                        // Its data (if any) is skipped; its end is reported now.
                        self.state = State::Body {
                            left: size,
                            pad: padding(size),
                            emit: false,
                        };
                    }
                    return Ok(Some(TarEvent::Entry(entry)));
                }
            }
        }
    }

    fn long_name(meta: &[u8]) -> Result<String, TarError> {
        String::from_utf8(cstr(meta).to_vec()).map_err(|_| TarError::Meta)
    }

    /// pax records: `LEN KEY=VALUE\n`, LEN counting the whole record.
    fn parse_pax(&mut self, mut meta: &[u8]) -> Result<(), TarError> {
        while !meta.is_empty() {
            let sp = meta.iter().position(|&b| b == b' ').ok_or(TarError::Meta)?;
            let len: usize = std::str::from_utf8(&meta[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(TarError::Meta)?;
            if len <= sp + 1 || len > meta.len() || meta[len - 1] != b'\n' {
                return Err(TarError::Meta);
            }
            let record = &meta[sp + 1..len - 1];
            let eq = record
                .iter()
                .position(|&b| b == b'=')
                .ok_or(TarError::Meta)?;
            let value = std::str::from_utf8(&record[eq + 1..]).map_err(|_| TarError::Meta)?;
            match &record[..eq] {
                b"path" => self.pax_path = Some(value.to_string()),
                b"linkpath" => self.pax_link = Some(value.to_string()),
                b"size" => self.pax_size = Some(value.parse().map_err(|_| TarError::Meta)?),
                _ => {}
            }
            meta = &meta[len..];
        }
        Ok(())
    }
}

/// tar-stream's `encodeOct(n, digits)`: zero-padded octal then a space (sevens when it does
/// not fit, as tar-stream; only sizes of 8 GiB and more get there, written base-256 instead).
fn write_octal(field: &mut [u8], n: u64, digits: usize) {
    let s = format!("{n:0digits$o}");
    if s.len() > digits {
        // base-256 over the whole field (GNU; tar-stream reads it).
        let len = field.len();
        field.fill(0);
        field[0] = 0x80;
        for (i, b) in n.to_be_bytes().iter().enumerate() {
            field[len - 8 + i] = *b;
        }
        return;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = b' ';
}

fn ustar(name: &[u8], flag: u8, mode: u32, size: u64, mtime: u64, link: &[u8]) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    write_octal(&mut h[100..108], u64::from(mode & 0o7777), 6);
    write_octal(&mut h[108..116], 0, 6);
    write_octal(&mut h[116..124], 0, 6);
    write_octal(&mut h[124..136], size, 11);
    write_octal(&mut h[136..148], mtime.min(0o77777777777), 11);
    h[156] = flag;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..265].copy_from_slice(b"ustar\x0000");
    write_octal(&mut h[329..337], 0, 6);
    write_octal(&mut h[337..345], 0, 6);
    let sum = checksum(&h);
    write_octal(&mut h[148..156], sum, 6);
    h
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    // The length counts itself: grow until stable.
    let base = key.len() + value.len() + 3;
    let mut len = base + base.to_string().len();
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// The header block(s) of an entry as tar-stream writes them: one ustar block, preceded by a
/// pax header (and its data) when the path or link target is longer than 100 bytes.
pub fn header(entry: &Entry) -> Vec<u8> {
    let (flag, size, link) = match &entry.kind {
        EntryKind::File => (b'0', entry.size, ""),
        EntryKind::Directory => (b'5', 0, ""),
        EntryKind::Symlink(t) => (b'2', 0, t.as_str()),
        EntryKind::Other(f) => (*f, 0, ""),
    };
    let mut out = Vec::with_capacity(BLOCK);
    let long = |s: &str| s.len() > 100 || !s.is_ascii();
    // tar-stream writes folders as `name/`.
    let mut name = entry.path.clone();
    if flag == b'5' && !name.ends_with('/') {
        name.push('/');
    }
    if long(&name) || long(link) {
        let mut pax = Vec::new();
        if long(&name) {
            pax.extend_from_slice(&pax_record("path", &name));
        }
        if long(link) {
            pax.extend_from_slice(&pax_record("linkpath", link));
        }
        out.extend_from_slice(&ustar(
            b"PaxHeader",
            b'x',
            0o644,
            pax.len() as u64,
            entry.mtime,
            b"",
        ));
        let n = pax.len() as u64;
        out.extend_from_slice(&pax);
        out.resize(out.len() + padding(n), 0);
    }
    out.extend_from_slice(&ustar(
        name.as_bytes(),
        flag,
        entry.mode,
        size,
        entry.mtime,
        link.as_bytes(),
    ));
    out
}

/// The zero bytes that pad a file of `size` bytes to a whole block.
pub fn data_padding(size: u64) -> Vec<u8> {
    vec![0; padding(size)]
}

/// The end of an archive (two zero blocks, as tar-stream's `finalize`).
pub fn end() -> Vec<u8> {
    vec![0; 2 * BLOCK]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(Entry, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (e, data) in entries {
            out.extend_from_slice(&header(e));
            out.extend_from_slice(data);
            out.extend_from_slice(&data_padding(data.len() as u64));
        }
        out.extend_from_slice(&end());
        out
    }

    fn read_all(bytes: &[u8], step: usize) -> Result<Vec<(Entry, Vec<u8>)>, TarError> {
        let mut r = TarReader::new();
        let mut out: Vec<(Entry, Vec<u8>)> = Vec::new();
        for chunk in bytes.chunks(step.max(1)) {
            r.push(chunk);
            while let Some(e) = r.next_event()? {
                match e {
                    TarEvent::Entry(e) => out.push((e, Vec::new())),
                    TarEvent::Data(d) => out.last_mut().unwrap().1.extend_from_slice(&d),
                    TarEvent::EntryEnd | TarEvent::End => {}
                }
            }
        }
        assert!(r.is_done());
        Ok(out)
    }

    #[test]
    fn round_trips_in_any_chunking() {
        let long = "d/".repeat(80) + "file";
        let entries = vec![
            (
                Entry {
                    path: ".".into(),
                    kind: EntryKind::Directory,
                    mode: 0o755,
                    size: 0,
                    mtime: 1_700_000_000,
                },
                vec![],
            ),
            (
                Entry {
                    path: "a.txt".into(),
                    kind: EntryKind::File,
                    mode: 0o644,
                    size: 1000,
                    mtime: 5,
                },
                (0..1000u32).map(|i| i as u8).collect(),
            ),
            (
                Entry {
                    path: long.clone(),
                    kind: EntryKind::File,
                    mode: 0o755,
                    size: 512,
                    mtime: 5,
                },
                vec![7; 512],
            ),
            (
                Entry {
                    path: "link".into(),
                    kind: EntryKind::Symlink("a.txt".into()),
                    mode: 0o777,
                    size: 0,
                    mtime: 5,
                },
                vec![],
            ),
        ];
        let bytes = archive(&entries);
        for step in [1, 7, 512, 100_000] {
            assert_eq!(read_all(&bytes, step).unwrap(), entries);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let e = Entry {
            path: "x".into(),
            kind: EntryKind::File,
            mode: 0o644,
            size: 3,
            mtime: 0,
        };
        let mut bytes = archive(&[(e, b"abc".to_vec())]);
        bytes[0] = b'y';
        assert_eq!(read_all(&bytes, 512), Err(TarError::Checksum));
        assert!(matches!(pax_parse_err(b"5 x\n"), Err(TarError::Meta)));
    }

    fn pax_parse_err(meta: &[u8]) -> Result<(), TarError> {
        TarReader::new().parse_pax(meta)
    }

    #[test]
    fn pax_lengths_count_themselves() {
        for n in [1usize, 5, 90, 95, 96, 97, 990, 995] {
            let v = "v".repeat(n);
            let r = pax_record("path", &v);
            let len: usize = std::str::from_utf8(&r[..r.iter().position(|&b| b == b' ').unwrap()])
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, r.len(), "{n}");
        }
    }
}
