//! IPv4 networks in CIDR notation: pod CIDRs, the cluster CIDR, ipBlocks and source
//! ranges all go through [`Cidr`].

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 network in CIDR notation, kept as its network address (host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`; `None` for IPv6, a missing or too long prefix, or garbage.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = s.trim().split_once('/')?;
        Cidr::from_parts(addr, prefix.parse::<u8>().ok()?)
    }

    /// Like [`Cidr::parse`], but a bare address is a /32 (as in `loadBalancerSourceRanges`).
    pub fn parse_or_address(s: &str) -> Option<Cidr> {
        let s = s.trim();
        match s.split_once('/') {
            Some(_) => Cidr::parse(s),
            None => Cidr::from_parts(s, 32),
        }
    }

    fn from_parts(addr: &str, prefix: u8) -> Option<Cidr> {
        let addr: Ipv4Addr = addr.parse().ok()?;
        (prefix <= 32).then(|| Cidr { addr, prefix }.network())
    }

    /// The network address (host bits cleared), so `10.0.0.1/8` prints as `10.0.0.0/8`.
    pub fn network(self) -> Cidr {
        Cidr { addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()), prefix: self.prefix }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// The first and last address it covers, as numbers.
    pub fn range(&self) -> (u32, u32) {
        let base = u32::from(self.addr) & self.mask();
        (base, base | !self.mask())
    }

    /// The first address after the network address: the pods' gateway on a node's
    /// pod CIDR (the CNI bridge plugin's default too).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.range().0 + 1)
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_the_first_address_of_the_pod_cidr() {
        assert_eq!(Cidr::parse("10.244.3.0/24").unwrap().first_host(), Ipv4Addr::new(10, 244, 3, 1));
        assert_eq!(Cidr::parse("10.244.3.77/24").unwrap().first_host(), Ipv4Addr::new(10, 244, 3, 1));
        assert_eq!(Cidr::parse("10.244.3.0/33"), None);
        assert_eq!(Cidr::parse("fd00::/64"), None);
    }

    #[test]
    fn a_bare_address_is_a_network_only_where_asked_for() {
        assert_eq!(Cidr::parse("10.0.0.1"), None);
        assert_eq!(Cidr::parse_or_address("10.0.0.1"), Some(Cidr { addr: Ipv4Addr::new(10, 0, 0, 1), prefix: 32 }));
        assert_eq!(Cidr::parse(" 10.1.2.3/16 ").unwrap().to_string(), "10.1.0.0/16");
    }
}
