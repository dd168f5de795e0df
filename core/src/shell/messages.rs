//! hypershell 0.0.15's messages (`messages.js`), byte for byte.

use crate::encoding::{uint_len, write_string, write_uint, Decode, DecodeError, Decoder, Encode};

/// The handshake of a `hypershell` channel (`handshakeSpawn`): what to run and the terminal
/// size. An empty command is the server's login shell (`$SHELL`, else `bash`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spawn {
    /// The program (empty: the server's shell).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Terminal columns.
    pub width: u64,
    /// Terminal rows.
    pub height: u64,
}

/// The handshake of a `hypershell-upload` channel (`handshakeUpload`): where the tar stream
/// that follows goes on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upload {
    /// The target path on the server (a file's new name, or a folder to extract into).
    pub target: String,
    /// Whether the source is a folder.
    pub is_directory: bool,
}

/// The handshake of a `hypershell-download` channel (`handshakeDownload`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Download {
    /// The path on the server to send.
    pub source: String,
}

/// The first message of a download (`downloadHeader`): whether the source is a folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DownloadHeader {
    /// Whether the source is a folder.
    pub is_directory: bool,
}

/// An error the other side reports on a transfer channel (`error`: a node `Error`'s `code`,
/// `path` and `message`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteError {
    /// e.g. `ENOENT`.
    pub code: String,
    /// The path concerned, if any.
    pub path: String,
    /// A human message.
    pub message: String,
}

/// A terminal size change (`resize`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resize {
    /// Columns.
    pub width: u64,
    /// Rows.
    pub height: u64,
}

fn string_len(s: &str) -> usize {
    uint_len(s.len() as u64) + s.len()
}

impl Encode for Spawn {
    fn encoded_len(&self) -> usize {
        string_len(&self.command)
            + uint_len(self.args.len() as u64)
            + self.args.iter().map(|a| string_len(a)).sum::<usize>()
            + uint_len(self.width)
            + uint_len(self.height)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_string(out, &self.command);
        write_uint(out, self.args.len() as u64);
        for a in &self.args {
            write_string(out, a);
        }
        write_uint(out, self.width);
        write_uint(out, self.height);
    }
}

impl<'a> Decode<'a> for Spawn {
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        let command = d.string()?.to_string();
        let n = d.array_len()?;
        let mut args = Vec::with_capacity(n.min(d.remaining()));
        for _ in 0..n {
            args.push(d.string()?.to_string());
        }
        Ok(Spawn {
            command,
            args,
            width: d.uint()?,
            height: d.uint()?,
        })
    }
}

impl Encode for Upload {
    fn encoded_len(&self) -> usize {
        string_len(&self.target) + 1
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_string(out, &self.target);
        out.push(u8::from(self.is_directory));
    }
}

impl<'a> Decode<'a> for Upload {
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        Ok(Upload {
            target: d.string()?.to_string(),
            is_directory: d.bool()?,
        })
    }
}

impl Encode for Download {
    fn encoded_len(&self) -> usize {
        string_len(&self.source)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_string(out, &self.source);
    }
}

impl<'a> Decode<'a> for Download {
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        Ok(Download {
            source: d.string()?.to_string(),
        })
    }
}

impl Encode for DownloadHeader {
    fn encoded_len(&self) -> usize {
        1
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.is_directory));
    }
}

impl<'a> Decode<'a> for DownloadHeader {
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        Ok(DownloadHeader {
            is_directory: d.bool()?,
        })
    }
}

impl Encode for RemoteError {
    fn encoded_len(&self) -> usize {
        string_len(&self.code) + string_len(&self.path) + string_len(&self.message)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_string(out, &self.code);
        write_string(out, &self.path);
        write_string(out, &self.message);
    }
}

impl<'a> Decode<'a> for RemoteError {
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        Ok(RemoteError {
            code: d.string()?.to_string(),
            path: d.string()?.to_string(),
            message: d.string()?.to_string(),
        })
    }
}

impl Encode for Resize {
    fn encoded_len(&self) -> usize {
        uint_len(self.width) + uint_len(self.height)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        write_uint(out, self.width);
        write_uint(out, self.height);
    }
}

impl<'a> Decode<'a> for Resize {
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        Ok(Resize {
            width: d.uint()?,
            height: d.uint()?,
        })
    }
}

/// What JS writes as the handshake of the side that answers an open (`channel.open({})`):
/// every field of the codec from `undefined`. Strings and arrays are empty; compact-encoding
/// 2.x writes an `undefined` uint as `0xff` and eight zero bytes (the 64-bit form of `NaN`
/// truncated to zero). The client ignores it; sent as JS sends it anyway.
pub fn js_empty_spawn() -> Vec<u8> {
    let mut v = vec![0, 0];
    for _ in 0..2 {
        v.push(0xff);
        v.extend_from_slice(&[0; 8]);
    }
    v
}

/// `handshakeUpload` of `{}`: an empty target, `false`.
pub fn js_empty_upload() -> Vec<u8> {
    vec![0, 0]
}

/// `handshakeDownload` of `{}`: an empty source.
pub fn js_empty_download() -> Vec<u8> {
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_js_bytes() {
        let s = Spawn {
            command: "ls".into(),
            args: vec!["-la".into(), "/".into()],
            width: 300,
            height: 24,
        };
        let b = s.to_bytes();
        assert_eq!(b.len(), s.encoded_len());
        assert_eq!(
            b,
            [2, b'l', b's', 2, 3, b'-', b'l', b'a', 1, b'/', 0xfd, 44, 1, 24]
        );
        assert_eq!(Spawn::from_bytes(&b).unwrap(), s);
        let e = Spawn::from_bytes(&js_empty_spawn()).unwrap();
        assert_eq!(e, Spawn::default());
        let u = Upload {
            target: "/tmp/x".into(),
            is_directory: true,
        };
        assert_eq!(Upload::from_bytes(&u.to_bytes()).unwrap(), u);
        assert_eq!(
            Upload::from_bytes(&js_empty_upload()).unwrap(),
            Upload::default()
        );
        let d = Download { source: "a".into() };
        assert_eq!(Download::from_bytes(&d.to_bytes()).unwrap(), d);
        let r = RemoteError {
            code: "ENOENT".into(),
            path: "/nope".into(),
            message: "no such file".into(),
        };
        assert_eq!(RemoteError::from_bytes(&r.to_bytes()).unwrap(), r);
        let z = Resize {
            width: 100,
            height: 40,
        };
        assert_eq!(Resize::from_bytes(&z.to_bytes()).unwrap(), z);
    }

    #[test]
    fn truncated_is_an_error() {
        let b = Spawn {
            command: "x".into(),
            args: vec!["y".into()],
            width: 1,
            height: 2,
        }
        .to_bytes();
        for i in 0..b.len() {
            assert!(Spawn::from_bytes(&b[..i]).is_err());
        }
    }
}
