//! hypershell 0.0.15's local port forwarding (`hypershell -L`, `lib/local-tunnel.js`): the
//! `hypershell-tunnel-local` channel's JSON handshake and message, the `-L` argument, and the
//! server's `--tunnel-host` / `--tunnel-port` restrictions.
//!
//! The wire:
//!
//! - The client opens `hypershell-tunnel-local` (no id) with the target as `c.json`
//!   ([`TunnelTarget`]: `{"host":"…","port":N}`, a compact-encoding string of the JSON); the
//!   server answers with `{}`. A server that restricts targets and does not allow this one
//!   closes the channel at once (it opened, then closed: the client's only sign of a refusal).
//! - For each TCP connection it accepts, the client makes a UDX stream with a fresh id (not
//!   connected yet) and sends message 0 ([`StreamIds`], `c.json`) `{"clientId":ID,"serverId":0}`.
//!   The server makes a UDX stream of its own, answers `{"clientId":ID,"serverId":SID}`,
//!   connects its stream to `ID` at the address and on the socket of the connection that
//!   carries the channel (hyperdht `connectRawStream`), connects TCP to the target, and runs a
//!   fresh secret-stream over the UDX stream as its *initiator* (Noise XX, a random key pair
//!   each: the stream is tied to the authenticated connection only by its path), keep-alive
//!   5 s. The client connects its stream to `SID` and runs the responder. Both then copy bytes
//!   between TCP and the secret-stream's messages.
//! - Closing the channel destroys its streams on both sides.

use serde_json::Value;
use thiserror::Error;

use crate::encoding::{uint_len, write_uint, Decoder};

use super::ShellError;

/// The tunnel channel's only message type: the stream ids ([`StreamIds`]).
pub const STREAM_IDS: u64 = 0;

/// Where the server connects a tunnel's TCP connections (the client's handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelTarget {
    /// A host name or address, as the client gave it (resolved by the server).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl std::fmt::Display for TunnelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `c.json` of `v`: a compact-encoding string holding `JSON.stringify(v)`.
fn json_bytes(json: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(uint_len(json.len() as u64) + json.len());
    write_uint(&mut v, json.len() as u64);
    v.extend_from_slice(json.as_bytes());
    v
}

/// `c.json` decode: a string, then `JSON.parse` (trailing bytes ignored, as JS).
fn json_value(bytes: &[u8]) -> Result<Value, ShellError> {
    let s = Decoder::new(bytes).string()?;
    serde_json::from_str(s).map_err(|_| ShellError::Json)
}

/// A JSON number that is an integer (JS compares with `===`, so `80` and `80.0` are equal).
fn json_integer(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

impl TunnelTarget {
    /// The handshake bytes (`c.json` of `{ host, port }`, in that order, as JS writes it).
    pub fn to_handshake(&self) -> Vec<u8> {
        json_bytes(&format!(
            "{{\"host\":{},\"port\":{}}}",
            json_string(&self.host),
            self.port
        ))
    }

    /// Reads a client's handshake. `Ok(None)`: valid JSON without a usable target (not an
    /// object, no string `host`, no integer `port` up to 65535); the server refuses it (JS
    /// would pass it on to `net.connect` and fail there). `Err`: not `c.json` at all.
    pub fn from_handshake(bytes: &[u8]) -> Result<Option<TunnelTarget>, ShellError> {
        let v = json_value(bytes)?;
        let host = v.get("host").and_then(Value::as_str);
        let port = v
            .get("port")
            .and_then(json_integer)
            .and_then(|p| u16::try_from(p).ok());
        Ok(match (host, port) {
            (Some(h), Some(p)) => Some(TunnelTarget {
                host: h.to_string(),
                port: p,
            }),
            _ => None,
        })
    }
}

/// The server's handshake (`channel.open({})`): `c.json` of `{}`.
pub fn empty_handshake() -> Vec<u8> {
    json_bytes("{}")
}

/// Message 0 of the tunnel channel: the two UDX stream ids of one forwarded TCP connection
/// (`serverId` is 0 in the client's request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamIds {
    /// The client's stream id.
    pub client_id: u32,
    /// The server's stream id (0 when the client asks).
    pub server_id: u32,
}

impl StreamIds {
    /// `c.json` of `{ clientId, serverId }`.
    pub fn to_bytes(&self) -> Vec<u8> {
        json_bytes(&format!(
            "{{\"clientId\":{},\"serverId\":{}}}",
            self.client_id, self.server_id
        ))
    }

    /// Reads the message. A missing `serverId` reads as 0; ids that are not integers up to
    /// 2^32 - 1 (what a UDX stream id is) are an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<StreamIds, ShellError> {
        let v = json_value(bytes)?;
        let id = |k: &str, required: bool| -> Result<u32, ShellError> {
            match v.get(k) {
                None if !required => Ok(0),
                Some(x) => json_integer(x)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or(ShellError::Json),
                None => Err(ShellError::Json),
            }
        };
        Ok(StreamIds {
            client_id: id("clientId", true)?,
            server_id: id("serverId", false)?,
        })
    }
}

/// One `-L [address:]port:host:hostport`: listen on `local_host:local_port`, forward to
/// `remote` through the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalForward {
    /// Where to listen (`0.0.0.0` when not given, as JS: every interface).
    pub local_host: String,
    /// The local port (0: any free port; the client prints the one it got).
    pub local_port: u16,
    /// Where the server connects.
    pub remote: TunnelTarget,
}

/// A `-L` argument that is not `[address:]port:host:hostport`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ForwardSpecError {
    /// No `port:host:hostport` in it.
    #[error("-L {0:?}: expected [address:]port:host:hostport (e.g. 8080:localhost:80)")]
    Malformed(String),
    /// The remote host is missing (`8080:80`).
    #[error("-L {0:?}: remote host is required ([address:]port:host:hostport)")]
    NoHost(String),
    /// A port above 65535.
    #[error("-L {0:?}: {1} is not a TCP port (0-65535)")]
    BadPort(String, String),
}

impl LocalForward {
    /// Parses `-L` as JS does: the first match of the unanchored, greedy
    /// `/(?:(.*):)?([\d]+):(?:(.*):)?([\d]+)/`, found here by trying its alternatives in the
    /// order the backtracking regex does. No address: `0.0.0.0` (every interface, as JS).
    pub fn parse(spec: &str) -> Result<LocalForward, ForwardSpecError> {
        let b = spec.as_bytes();
        if b.contains(&b'\n') {
            return Err(ForwardSpecError::Malformed(spec.to_string()));
        }
        let digits = |from: usize| {
            b[from.min(b.len())..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count()
        };
        // From `p_start`: group 2, `:`, then group 3 (greedy, optional) and group 4.
        // Returns where group 2 ends, group 3's span if present, and group 4's span.
        let tail = |p_start: usize| -> Option<Tail> {
            let n = digits(p_start);
            let p_end = p_start + n;
            if n == 0 || b.get(p_end) != Some(&b':') {
                return None;
            }
            let h_start = p_end + 1;
            for g3_end in (h_start..b.len()).rev() {
                if b[g3_end] == b':' && digits(g3_end + 1) > 0 {
                    let q = g3_end + 1;
                    return Some((p_end, Some((h_start, g3_end)), q, q + digits(q)));
                }
            }
            (digits(h_start) > 0).then(|| (p_end, None, h_start, h_start + digits(h_start)))
        };
        for s in 0..=b.len() {
            let with_g1 = (s..b.len())
                .rev()
                .filter(|&i| b[i] == b':')
                .find_map(|i| tail(i + 1).map(|t| (Some((s, i)), i + 1, t)));
            let found = with_g1.or_else(|| tail(s).map(|t| (None, s, t)));
            let Some((g1, p_start, (p_end, host, q_start, q_end))) = found else {
                continue;
            };
            let port = |a: usize, z: usize| -> Result<u16, ForwardSpecError> {
                spec[a..z].parse::<u16>().map_err(|_| {
                    ForwardSpecError::BadPort(spec.to_string(), spec[a..z].to_string())
                })
            };
            let local_host = match g1 {
                // JS `match[1] || '0.0.0.0'`.
                Some((a, z)) if z > a => spec[a..z].to_string(),
                _ => "0.0.0.0".to_string(),
            };
            let host = match host {
                Some((a, z)) if z > a => spec[a..z].to_string(),
                _ => return Err(ForwardSpecError::NoHost(spec.to_string())),
            };
            return Ok(LocalForward {
                local_host,
                local_port: port(p_start, p_end)?,
                remote: TunnelTarget {
                    host,
                    port: port(q_start, q_end)?,
                },
            });
        }
        Err(ForwardSpecError::Malformed(spec.to_string()))
    }
}

/// What follows group 1 in a `-L` match: group 2's end, group 3's span if present, group 4's
/// span.
type Tail = (usize, Option<(usize, usize)>, usize, usize);

/// A `--tunnel-port` entry: a port or an inclusive range `A-B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port (inclusive).
    pub end: u16,
}

/// A `--tunnel-port` value that is not `N` or `A-B`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("--tunnel-port {0:?}: expected a port (22) or a range (8000-8099)")]
pub struct BadPortRange(pub String);

impl PortRange {
    /// Parses `N` or `A-B` (JS `port.split('-', 2).map(Number)`; an empty range, `B < A`,
    /// allows nothing, as JS's list of `B - A + 1` ports would be empty).
    pub fn parse(s: &str) -> Result<PortRange, BadPortRange> {
        let bad = || BadPortRange(s.to_string());
        let num = |t: &str| t.trim().parse::<u16>().map_err(|_| bad());
        match s.split_once('-') {
            Some((a, b)) => Ok(PortRange {
                start: num(a)?,
                end: num(b)?,
            }),
            None => {
                let p = num(s)?;
                Ok(PortRange { start: p, end: p })
            }
        }
    }
}

/// Which targets a server lets clients tunnel to (JS `--tunnel-host` / `--tunnel-port`):
/// without a list, any; with one, only a host equal to an entry (the exact text the client
/// sent: `localhost` and `127.0.0.1` are different hosts) and a port in a range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelPolicy {
    /// Allowed hosts; `None`: any.
    pub hosts: Option<Vec<String>>,
    /// Allowed ports; `None`: any.
    pub ports: Option<Vec<PortRange>>,
}

impl TunnelPolicy {
    /// Whether `target` may be tunnelled to (`firewallHosts && firewallPorts`).
    pub fn allows(&self, target: &TunnelTarget) -> bool {
        let host_ok = self.hosts.as_ref().is_none_or(|h| h.contains(&target.host));
        let port_ok = self.ports.as_ref().is_none_or(|p| {
            p.iter()
                .any(|r| r.start <= target.port && target.port <= r.end)
        });
        host_ok && port_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(lh: &str, lp: u16, h: &str, p: u16) -> LocalForward {
        LocalForward {
            local_host: lh.into(),
            local_port: lp,
            remote: TunnelTarget {
                host: h.into(),
                port: p,
            },
        }
    }

    #[test]
    fn js_bytes() {
        let t = TunnelTarget {
            host: "127.0.0.1".into(),
            port: 8080,
        };
        let b = t.to_handshake();
        // What `c.json.encode({ host: '127.0.0.1', port: 8080 })` writes.
        let json = br#"{"host":"127.0.0.1","port":8080}"#;
        assert_eq!(b[0] as usize, json.len());
        assert_eq!(&b[1..], json);
        assert_eq!(TunnelTarget::from_handshake(&b).unwrap(), Some(t));
        assert_eq!(empty_handshake(), b"\x02{}");
        assert_eq!(
            TunnelTarget::from_handshake(&empty_handshake()).unwrap(),
            None
        );
        let ids = StreamIds {
            client_id: 4_000_000_000,
            server_id: 0,
        };
        let b = ids.to_bytes();
        assert_eq!(&b[1..], br#"{"clientId":4000000000,"serverId":0}"#);
        assert_eq!(StreamIds::from_bytes(&b).unwrap(), ids);
    }

    #[test]
    fn bad_json_is_an_error() {
        assert!(TunnelTarget::from_handshake(b"\x03{x}").is_err());
        assert!(TunnelTarget::from_handshake(b"").is_err());
        assert!(TunnelTarget::from_handshake(b"\x05{}").is_err());
        let m = |s: &str| json_bytes(s);
        assert!(StreamIds::from_bytes(&m(r#"{"clientId":-1}"#)).is_err());
        assert!(StreamIds::from_bytes(&m(r#"{"clientId":4294967296}"#)).is_err());
        assert!(StreamIds::from_bytes(&m(r#"{"clientId":"1"}"#)).is_err());
        assert!(StreamIds::from_bytes(&m(r#"{"serverId":1}"#)).is_err());
        assert_eq!(
            StreamIds::from_bytes(&m(r#"{"clientId":7.0}"#)).unwrap(),
            StreamIds {
                client_id: 7,
                server_id: 0
            }
        );
        assert_eq!(
            TunnelTarget::from_handshake(&m(r#"{"host":"a","port":70000}"#)).unwrap(),
            None
        );
        assert_eq!(TunnelTarget::from_handshake(&m(r#"[1,2]"#)).unwrap(), None);
    }

    #[test]
    fn parses_dash_l_as_js() {
        let p = LocalForward::parse;
        assert_eq!(
            p("8080:localhost:80").unwrap(),
            fwd("0.0.0.0", 8080, "localhost", 80)
        );
        assert_eq!(
            p("127.0.0.1:0:127.0.0.1:7000").unwrap(),
            fwd("127.0.0.1", 0, "127.0.0.1", 7000)
        );
        assert_eq!(
            p("localhost:2222:10.0.0.5:22").unwrap(),
            fwd("localhost", 2222, "10.0.0.5", 22)
        );
        assert!(matches!(p("8080:80"), Err(ForwardSpecError::NoHost(_))));
        assert!(matches!(p("nothing"), Err(ForwardSpecError::Malformed(_))));
        assert!(matches!(p(""), Err(ForwardSpecError::Malformed(_))));
        assert!(matches!(p("1:h:70000"), Err(ForwardSpecError::BadPort(..))));
        assert!(p(":::::").is_err());
        // What node's `spec.match(/(?:(.*):)?([\d]+):(?:(.*):)?([\d]+)/i)` gives.
        assert_eq!(p(":8080:h:80").unwrap(), fwd("0.0.0.0", 8080, "h", 80));
        assert_eq!(p("a:b:1:c:2").unwrap(), fwd("a:b", 1, "c", 2));
        assert_eq!(p("h:8080:h2:80:extra").unwrap(), fwd("h", 8080, "h2", 80));
        assert_eq!(p("abc9:x:7").unwrap(), fwd("0.0.0.0", 9, "x", 7));
        assert_eq!(p("1:a:2b").unwrap(), fwd("0.0.0.0", 1, "a", 2));
        for no_host in ["x1:2:3", "1:2:3:4:5", "::1:8080:::1:80", "8080::80"] {
            assert!(
                matches!(p(no_host), Err(ForwardSpecError::NoHost(_))),
                "{no_host}"
            );
        }
    }

    #[test]
    fn policy() {
        let t = |h: &str, p: u16| TunnelTarget {
            host: h.into(),
            port: p,
        };
        assert!(TunnelPolicy::default().allows(&t("anything", 1)));
        let pol = TunnelPolicy {
            hosts: Some(vec!["127.0.0.1".into()]),
            ports: Some(vec![
                PortRange::parse("22").unwrap(),
                PortRange::parse("8000-8010").unwrap(),
            ]),
        };
        assert!(pol.allows(&t("127.0.0.1", 22)));
        assert!(pol.allows(&t("127.0.0.1", 8000)));
        assert!(pol.allows(&t("127.0.0.1", 8010)));
        assert!(!pol.allows(&t("127.0.0.1", 8011)));
        assert!(!pol.allows(&t("localhost", 22)));
        assert!(PortRange::parse("x").is_err());
        assert!(PortRange::parse("1-x").is_err());
        assert_eq!(
            PortRange::parse("9-3").unwrap(),
            PortRange { start: 9, end: 3 }
        );
        let empty = TunnelPolicy {
            hosts: None,
            ports: Some(vec![PortRange::parse("9-3").unwrap()]),
        };
        assert!(!empty.allows(&t("h", 5)));
    }
}
