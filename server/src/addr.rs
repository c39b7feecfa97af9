//! Addresses as the server counts them.

use std::net::IpAddr;

/// An IPv4-mapped IPv6 address (`::ffff:24.1.2.3`, what a dual-stack
/// socket reports for an IPv4 peer) as the IPv4 address it is.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The source a connection or a failure is counted against: the IPv4 address, or the
/// /64 of an IPv6 address (IPv4-mapped addresses count as IPv4).
pub fn source_of(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_addresses_and_v6_slash_64s() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(source_of(ip("24.1.2.3")), ip("24.1.2.3"));
        assert_eq!(source_of(ip("::ffff:24.1.2.3")), ip("24.1.2.3"));
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            source_of(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:3::1")),
            source_of(ip("2001:db8:1:2::1"))
        );
    }
}
