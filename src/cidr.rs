//! IP address ranges written as CIDR (`10.0.0.0/8`, `::1/128`, or a bare address), for the
//! trusted-proxy list and, later, the outbound address policy and internal allow lists.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in this range. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`)
    /// counts as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u32::from(net) as u128,
                u32::from(ip) as u128,
                self.prefix,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (a >> shift) == (b >> shift)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}' has a prefix length outside 0..={max}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn matches_v4_v6_and_mapped() {
        let lan: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(lan.contains(ip("10.200.3.4")));
        assert!(!lan.contains(ip("11.0.0.1")));
        assert!(lan.contains(ip("::ffff:10.1.2.3")));
        let loopback6: Cidr = "::1".parse().unwrap();
        assert!(loopback6.contains(ip("::1")));
        assert!(!loopback6.contains(ip("::2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        assert!(!all.contains(ip("2001:db8::1")));
        let net6: Cidr = "fd00::/8".parse().unwrap();
        assert!(net6.contains(ip("fdab::1")) && !net6.contains(ip("fe80::1")));
    }

    #[test]
    fn rejects_nonsense() {
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.org/8".parse::<Cidr>().is_err());
        assert_eq!(
            "192.168.1.0/24".parse::<Cidr>().unwrap().to_string(),
            "192.168.1.0/24"
        );
    }

    #[test]
    fn prefixes_up_to_the_address_length() {
        let host: Cidr = "10.0.0.1/32".parse().unwrap();
        assert!(host.contains(ip("10.0.0.1")) && !host.contains(ip("10.0.0.0")));
        let one: Cidr = "128.0.0.0/1".parse().unwrap();
        assert!(one.contains(ip("200.1.1.1")) && !one.contains(ip("127.255.255.255")));
        assert_eq!("::/128".parse::<Cidr>().unwrap().to_string(), "::/128");
        assert!("::/129".parse::<Cidr>().is_err());
        assert!("10.0.0.0/-1".parse::<Cidr>().is_err());
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("2001:db8::1")) && !all6.contains(ip("10.0.0.1")));
        // A bare address is the host alone; brackets and spaces are allowed.
        assert_eq!(
            " [2001:db8::1] ".parse::<Cidr>().unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(
            "192.0.2.7".parse::<Cidr>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        // A v4 range never holds a v6 address that is not a mapped v4 one.
        let v4: Cidr = "0.0.0.0/8".parse().unwrap();
        assert!(!v4.contains(ip("::1")) && v4.contains(ip("::ffff:0.0.0.1")));
    }
}
