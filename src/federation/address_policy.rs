//! The outbound address policy (SSRF guard): names that users hand us (homeservers, other
//! identity servers) must not make mxisd call into the local network. Every address we are
//! about to connect to — after DNS, and again after each redirect — is checked here.
//! `federation.ipRangeWhitelist` exempts ranges (air-gapped sites put their LAN there).

use crate::cidr::Cidr;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// Ranges refused by default, with the name the log and the client are given.
const DENIED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "this-network"),
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("169.254.0.0/16", "link-local"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("198.18.0.0/15", "benchmarking"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub ip: IpAddr,
    pub rule: &'static str,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is a {} address, refused by the outbound address policy (allow it in federation.ipRangeWhitelist)",
            self.ip, self.rule
        )
    }
}

#[derive(Debug, Clone)]
pub struct AddressPolicy {
    denied: Vec<(Cidr, &'static str)>,
    allowed: Vec<Cidr>,
}

impl AddressPolicy {
    pub fn new(allowed: Vec<Cidr>) -> AddressPolicy {
        let denied = DENIED
            .iter()
            .filter_map(|(cidr, rule)| Some((cidr.parse().ok()?, *rule)))
            .collect();
        AddressPolicy { denied, allowed }
    }

    /// Whether mxisd may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.allowed.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        if let Some((_, rule)) = self.denied.iter().find(|(c, _)| c.contains(ip)) {
            return Err(Refused { ip, rule });
        }
        // IPv6 forms that carry an IPv4 address (NAT64, 6to4) are judged by that address.
        match embedded_v4(ip) {
            Some(v4) => self
                .check(IpAddr::V4(v4))
                .map_err(|r| Refused { ip, rule: r.rule }),
            None => Ok(()),
        }
    }
}

fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    match s {
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)), // NAT64 64:ff9b::/96
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),               // 6to4 2002::/16
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn local_ranges_are_refused_public_ones_allowed() {
        let policy = AddressPolicy::new(vec![]);
        for (addr, rule) in [
            ("127.0.0.1", "loopback"),
            ("10.0.0.1", "private"),
            ("172.31.255.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("169.254.169.254", "link-local"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("0.0.0.0", "this-network"),
            ("::1", "loopback"),
            ("fd00::1", "unique local (private)"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("64:ff9b::a00:1", "private"),
            ("2002:c0a8:101::1", "private"),
        ] {
            assert_eq!(
                policy.check(ip(addr)).map_err(|r| r.rule),
                Err(rule),
                "{addr}"
            );
        }
        for addr in [
            "93.184.216.34",
            "172.32.0.1",
            "2001:4860::8888",
            "64:ff9b::5db8:d822",
        ] {
            assert_eq!(policy.check(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn the_allow_list_exempts_ranges() {
        let policy = AddressPolicy::new(vec![
            "10.1.0.0/16".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ]);
        assert_eq!(policy.check(ip("10.1.2.3")), Ok(()));
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert!(policy.check(ip("10.2.0.1")).is_err());
        assert!(policy.check(ip("127.0.0.2")).is_err());
    }

    #[test]
    fn refusals_name_the_address_and_the_rule() {
        let refused = AddressPolicy::new(vec![])
            .check(ip("10.0.0.1"))
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "10.0.0.1 is a private address, refused by the outbound address policy (allow it in federation.ipRangeWhitelist)"
        );
        // Every default range parses.
        assert_eq!(AddressPolicy::new(vec![]).denied.len(), DENIED.len());
    }

    #[test]
    fn embedded_v4_addresses_are_judged_by_that_address() {
        let policy = AddressPolicy::new(vec![]);
        // The refusal names the address asked about, with the v4 address's rule.
        assert_eq!(
            policy.check(ip("64:ff9b::7f00:1")),
            Err(Refused {
                ip: ip("64:ff9b::7f00:1"),
                rule: "loopback"
            })
        );
        assert_eq!(
            embedded_v4(ip("64:ff9b::c0a8:102")),
            Some(Ipv4Addr::new(192, 168, 1, 2))
        );
        assert_eq!(
            embedded_v4(ip("2002:0a01:0203::")),
            Some(Ipv4Addr::new(10, 1, 2, 3))
        );
        assert_eq!(embedded_v4(ip("64:ff9b:1::c0a8:102")), None);
        assert_eq!(embedded_v4(ip("10.0.0.1")), None);
        assert_eq!(embedded_v4(ip("2001:db8::1")), None);
        // An allowed v4 range covers its NAT64 form too.
        let lan = AddressPolicy::new(vec!["10.1.0.0/16".parse().unwrap()]);
        assert_eq!(lan.check(ip("64:ff9b::a01:203")), Ok(()));
        assert_eq!(lan.check(ip("2002:a01:203::1")), Ok(()));
    }
}
