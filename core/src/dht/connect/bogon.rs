//! The `bogon` package's IPv4 tests (bogon/index.js), as hyperdht uses them to pick addresses.

use core::net::Ipv4Addr;

/// `isPrivate`: 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.168/16.
pub fn is_private(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 10
        || (o[0] == 100 && (64..=127).contains(&o[1]))
        || o[0] == 127
        || (o[0] == 169 && o[1] == 254)
        || (o[0] == 172 && (16..=31).contains(&o[1]))
        || (o[0] == 192 && o[1] == 168)
}

/// `isReserved`: 0/8, 192.0.0/24, the TEST-NETs, 198.18/15, multicast, 240/4, broadcast.
pub fn is_reserved(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 0
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 192 && o[1] == 0 && o[2] == 2)
        || (o[0] == 198 && (18..=19).contains(&o[1]))
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
        || (224..=239).contains(&o[0])
        || o[0] >= 240
}

/// `isBogon`: private or reserved.
pub fn is_bogon(ip: &Ipv4Addr) -> bool {
    is_private(ip) || is_reserved(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_private_not_reserved() {
        let lo = Ipv4Addr::LOCALHOST;
        assert!(is_private(&lo) && !is_reserved(&lo) && is_bogon(&lo));
        assert!(is_reserved(&Ipv4Addr::new(203, 0, 113, 5)));
        assert!(!is_bogon(&Ipv4Addr::new(8, 8, 8, 8)));
        assert!(
            is_private(&Ipv4Addr::new(100, 64, 0, 1))
                && !is_private(&Ipv4Addr::new(100, 128, 0, 1))
        );
    }
}
