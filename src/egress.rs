//! Egress: which addresses outbound requests may reach.
//!
//! The delivery client applies this policy to every address it connects to,
//! and the registry uses it to refuse IP-literal hosts when a webhook is
//! read, so it sits above both.
//!
//! Only globally routable unicast addresses are allowed, unless an address
//! falls in a configured CIDR (`delivery.allowed_cidrs`) or the URL's host
//! is a configured host name (`delivery.allowed_hosts`). Embedded IPv4
//! addresses (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged as the
//! IPv4 address they carry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::{DeliveryConfig, parse_cidr};

/// The configured exceptions to "public addresses only".
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed_cidrs: Vec<(IpAddr, u8)>,
    allowed_hosts: Vec<String>,
}

/// Why an address or host was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address} is {kind}; webhooks may only target public addresses")]
pub struct Blocked {
    pub address: IpAddr,
    pub kind: &'static str,
}

impl Policy {
    pub fn from_config(config: &DeliveryConfig) -> Policy {
        Policy {
            // The config was validated at load; a bad entry cannot remain.
            allowed_cidrs: config
                .allowed_cidrs
                .iter()
                .filter_map(|c| parse_cidr(c).ok())
                .collect(),
            allowed_hosts: config
                .allowed_hosts
                .iter()
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    /// True when the host name is allowed whatever it resolves to.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts.contains(&host)
    }

    /// Checks one address a request would connect to.
    pub fn check(&self, address: IpAddr) -> Result<(), Blocked> {
        if self
            .allowed_cidrs
            .iter()
            .any(|(net, len)| in_cidr(address, *net, *len))
        {
            return Ok(());
        }
        match non_public_kind(address) {
            None => Ok(()),
            Some(kind) => Err(Blocked { address, kind }),
        }
    }

    /// Checks a URL host when it is an IP literal (`10.0.0.1`, `[::1]`);
    /// names are checked when they are resolved, at delivery.
    pub fn check_host_literal(&self, host: &str) -> Result<(), Blocked> {
        if self.host_allowed(host) {
            return Ok(());
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(address) => self.check(address),
            Err(_) => Ok(()),
        }
    }
}

fn in_cidr(address: IpAddr, net: IpAddr, len: u8) -> bool {
    match (canonical(address), canonical(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = len.min(32);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let len = len.min(128);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `None` for a globally routable unicast address; otherwise what it is.
pub fn non_public_kind(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    let kind = match o {
        [0, ..] => "a \"this network\" address",
        [10, ..] => "a private address",
        [100, b, ..] if (64..128).contains(&b) => "a carrier-grade NAT address",
        [127, ..] => "a loopback address",
        [169, 254, ..] => "a link-local address",
        [172, b, ..] if (16..32).contains(&b) => "a private address",
        [192, 0, 0, _] => "an IETF protocol address",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "a documentation address",
        [192, 88, 99, _] => "a 6to4 relay address",
        [192, 168, ..] => "a private address",
        [198, b, ..] if b == 18 || b == 19 => "a benchmarking address",
        [224..=239, ..] => "a multicast address",
        [240..=255, ..] => "a reserved address",
        _ => return None,
    };
    Some(kind)
}

fn v6_kind(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    if a.is_unspecified() {
        return Some("the unspecified address");
    }
    if a.is_loopback() {
        return Some("a loopback address");
    }
    // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d.
    if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) {
        return v4_kind(embedded_v4(s[6], s[7])).or(if s[5] == 0 {
            Some("a deprecated IPv4-compatible address")
        } else {
            None
        });
    }
    // NAT64 64:ff9b::/96 carries an IPv4 address; 64:ff9b:1::/48 is local.
    if s[0] == 0x64 && s[1] == 0xff9b {
        if s[2..6] == [0, 0, 0, 0] {
            return v4_kind(embedded_v4(s[6], s[7]));
        }
        if s[2] == 1 {
            return Some("a local-use NAT64 address");
        }
    }
    // 6to4 2002::/16 carries an IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return v4_kind(embedded_v4(s[1], s[2]));
    }
    let kind = match s[0] {
        0x0100 if s[1..4] == [0, 0, 0] => "a discard-only address",
        0x2001 if s[1] < 0x0200 => "an IETF protocol address (Teredo, ORCHID, benchmarking)",
        0x2001 if s[1] == 0x0db8 => "a documentation address",
        0x3fff if s[1] < 0x1000 => "a documentation address",
        0x5f00 => "a segment-routing address",
        x if x & 0xfe00 == 0xfc00 => "a unique local (private) address",
        x if x & 0xffc0 == 0xfe80 => "a link-local address",
        x if x & 0xffc0 == 0xfec0 => "a site-local address",
        x if x & 0xff00 == 0xff00 => "a multicast address",
        x if x & 0xe000 != 0x2000 => "an address outside global unicast space",
        _ => return None,
    };
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(s: &str) -> bool {
        non_public_kind(s.parse().unwrap()).is_some()
    }

    #[test]
    fn public_addresses_pass() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(!blocked(a), "{a} is public");
        }
    }

    #[test]
    fn non_public_addresses_are_blocked() {
        for a in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:0001::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(blocked(a), "{a} is not public");
        }
    }

    #[test]
    fn exceptions() {
        let policy = Policy {
            allowed_cidrs: vec![
                parse_cidr("127.0.0.0/8").unwrap(),
                parse_cidr("fd00::/8").unwrap(),
            ],
            allowed_hosts: vec!["hooks.internal".into()],
        };
        assert!(policy.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(policy.check("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(policy.check("fd00::5".parse().unwrap()).is_ok());
        assert!(policy.check("10.0.0.1".parse().unwrap()).is_err());
        assert!(policy.check_host_literal("[::1]").is_err());
        assert!(policy.check_host_literal("HOOKS.internal.").is_ok());
        assert!(policy.check_host_literal("example.com").is_ok());
        let err = policy.check_host_literal("10.0.0.1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "10.0.0.1 is a private address; webhooks may only target public addresses"
        );
    }
}
