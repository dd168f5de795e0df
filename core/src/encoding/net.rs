//! IP address codecs (`index.js:845-1004`): `ipv4`, `ipv6`, `ip`, `ipv4Address`, `ipv6Address`,
//! `ipAddress` and `port` (= `uint16`), on the `core::net` types.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::{Decode, DecodeError, Decoder, Encode};

impl Decoder<'_> {
    /// `ipv4`: 4 bytes.
    pub fn ipv4(&mut self) -> Result<Ipv4Addr, DecodeError> {
        Ok(Ipv4Addr::from(self.fixed::<4>()?))
    }
    /// `ipv6`: 16 bytes.
    pub fn ipv6(&mut self) -> Result<Ipv6Addr, DecodeError> {
        Ok(Ipv6Addr::from(self.fixed::<16>()?))
    }
    /// `ip`: family byte then the address. Like JS, any family byte other than 4 means IPv6.
    pub fn ip(&mut self) -> Result<IpAddr, DecodeError> {
        Ok(match self.u8()? {
            4 => IpAddr::V4(self.ipv4()?),
            _ => IpAddr::V6(self.ipv6()?),
        })
    }
    /// `port`: `uint16`.
    pub fn port(&mut self) -> Result<u16, DecodeError> {
        self.u16()
    }
    /// `ipv4Address`: `ipv4` then `port`.
    pub fn ipv4_address(&mut self) -> Result<SocketAddrV4, DecodeError> {
        Ok(SocketAddrV4::new(self.ipv4()?, self.port()?))
    }
    /// `ipv6Address`: `ipv6` then `port` (flow info and scope id are not on the wire).
    pub fn ipv6_address(&mut self) -> Result<SocketAddrV6, DecodeError> {
        Ok(SocketAddrV6::new(self.ipv6()?, self.port()?, 0, 0))
    }
    /// `ipAddress`: `ip` then `port`.
    pub fn ip_address(&mut self) -> Result<SocketAddr, DecodeError> {
        Ok(SocketAddr::new(self.ip()?, self.port()?))
    }
}

/// Format an IPv6 address the way JS `ipv6` decodes it: eight lowercase hex groups without
/// leading zeros and without `::` compression (`0:0:0:0:0:0:0:1`).
pub fn ipv6_js_string(ip: &Ipv6Addr) -> String {
    let groups: Vec<String> = ip.segments().iter().map(|g| format!("{g:x}")).collect();
    groups.join(":")
}

/// `ipv4`.
impl Encode for Ipv4Addr {
    fn encoded_len(&self) -> usize {
        4
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.octets())
    }
}
impl Decode<'_> for Ipv4Addr {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.ipv4()
    }
}
/// `ipv6`.
impl Encode for Ipv6Addr {
    fn encoded_len(&self) -> usize {
        16
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.octets())
    }
}
impl Decode<'_> for Ipv6Addr {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.ipv6()
    }
}
/// `ip`: family byte 4 or 6, then the address.
impl Encode for IpAddr {
    fn encoded_len(&self) -> usize {
        match self {
            IpAddr::V4(_) => 5,
            IpAddr::V6(_) => 17,
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            IpAddr::V4(a) => {
                out.push(4);
                a.encode(out)
            }
            IpAddr::V6(a) => {
                out.push(6);
                a.encode(out)
            }
        }
    }
}
impl Decode<'_> for IpAddr {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.ip()
    }
}
/// `ipv4Address`.
impl Encode for SocketAddrV4 {
    fn encoded_len(&self) -> usize {
        6
    }
    fn encode(&self, out: &mut Vec<u8>) {
        self.ip().encode(out);
        out.extend_from_slice(&self.port().to_le_bytes())
    }
}
impl Decode<'_> for SocketAddrV4 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.ipv4_address()
    }
}
/// `ipv6Address` (flow info and scope id are dropped).
impl Encode for SocketAddrV6 {
    fn encoded_len(&self) -> usize {
        18
    }
    fn encode(&self, out: &mut Vec<u8>) {
        self.ip().encode(out);
        out.extend_from_slice(&self.port().to_le_bytes())
    }
}
impl Decode<'_> for SocketAddrV6 {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.ipv6_address()
    }
}
/// `ipAddress`.
impl Encode for SocketAddr {
    fn encoded_len(&self) -> usize {
        self.ip().encoded_len() + 2
    }
    fn encode(&self, out: &mut Vec<u8>) {
        self.ip().encode(out);
        out.extend_from_slice(&self.port().to_le_bytes())
    }
}
impl Decode<'_> for SocketAddr {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.ip_address()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_family_and_js_format() {
        // JS decodes any family byte other than 4 as IPv6
        let mut v = vec![5];
        v.extend_from_slice(&[
            1, 2, 3, 4, 5, 6, 7, 8, 9, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
        ]);
        let ip = Decoder::new(&v).ip().unwrap();
        let IpAddr::V6(v6) = ip else {
            panic!("expected v6, got {ip}")
        };
        assert_eq!(ipv6_js_string(&v6), "102:304:506:708:910:1112:1314:1516");
        assert_eq!(ipv6_js_string(&Ipv6Addr::LOCALHOST), "0:0:0:0:0:0:0:1");
        let a = SocketAddr::from(([10, 0, 0, 1], 65535));
        assert_eq!(SocketAddr::from_bytes(&a.to_bytes()).unwrap(), a);
        assert_eq!(a.to_bytes().len(), a.encoded_len());
    }
}
