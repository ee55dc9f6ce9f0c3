//! Pod addresses from a node's pod CIDR, as the host-local IPAM plugin hands them
//! out: the network and gateway (.0, .1) and the broadcast address are never used,
//! and allocation goes round the range so a freed address is not reused at once.

use std::net::Ipv4Addr;

use super::node::Cidr;

/// The addresses of one node's pod CIDR.
#[derive(Debug, Clone)]
pub struct PodIps {
    cidr: Cidr,
    /// One bit per address of the block.
    used: Vec<u64>,
    /// Where the next search starts.
    next: u64,
    free: u64,
}

impl PodIps {
    pub fn new(cidr: Cidr) -> PodIps {
        let size = cidr.size();
        let usable = size.saturating_sub(3);
        PodIps { cidr, used: vec![0; size.div_ceil(64) as usize], next: 2, free: usable }
    }

    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// Free addresses left.
    pub fn free(&self) -> u64 {
        self.free
    }

    fn usable(&self, off: u64) -> bool {
        off >= 2 && off + 1 < self.cidr.size()
    }

    fn is_set(&self, off: u64) -> bool {
        self.used[(off / 64) as usize] & (1 << (off % 64)) != 0
    }

    fn set(&mut self, off: u64, on: bool) {
        let word = &mut self.used[(off / 64) as usize];
        if on {
            *word |= 1 << (off % 64);
        } else {
            *word &= !(1 << (off % 64));
        }
    }

    /// The next free address, or `None` when the range is exhausted.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        if self.free == 0 {
            return None;
        }
        let size = self.cidr.size();
        for i in 0..size {
            let off = (self.next + i) % size;
            if self.usable(off) && !self.is_set(off) {
                self.set(off, true);
                self.free -= 1;
                self.next = off + 1;
                return Some(self.cidr.nth(off));
            }
        }
        None
    }

    /// Marks an address as taken (a pod adopted after a restart); false when it is
    /// outside the range or already taken.
    pub fn reserve(&mut self, ip: Ipv4Addr) -> bool {
        match self.cidr.offset_of(ip) {
            Some(off) if self.usable(off) && !self.is_set(off) => {
                self.set(off, true);
                self.free -= 1;
                true
            }
            _ => false,
        }
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        if let Some(off) = self.cidr.offset_of(ip) {
            if self.usable(off) && self.is_set(off) {
                self.set(off, false);
                self.free += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(cidr: &str) -> PodIps {
        PodIps::new(cidr.parse().unwrap())
    }

    #[test]
    fn addresses_start_after_the_gateway_and_stop_before_broadcast() {
        let mut p = ips("10.244.7.0/24");
        assert_eq!(p.free(), 253);
        assert_eq!(p.allocate(), Some(Ipv4Addr::new(10, 244, 7, 2)));
        let mut last = None;
        while let Some(ip) = p.allocate() {
            last = Some(ip);
        }
        assert_eq!(last, Some(Ipv4Addr::new(10, 244, 7, 254)));
        assert_eq!(p.free(), 0);
    }

    #[test]
    fn every_address_is_handed_out_once_until_released() {
        let mut p = ips("10.244.0.0/28");
        let got: Vec<_> = std::iter::from_fn(|| p.allocate()).collect();
        assert_eq!(got.len(), 13);
        let unique: std::collections::HashSet<_> = got.iter().collect();
        assert_eq!(unique.len(), 13);
        p.release(got[4]);
        assert_eq!(p.allocate(), Some(got[4]));
        assert_eq!(p.allocate(), None);
    }

    #[test]
    fn a_freed_address_is_not_reused_while_others_are_free() {
        let mut p = ips("10.244.0.0/24");
        let a = p.allocate().unwrap();
        p.release(a);
        assert_ne!(p.allocate(), Some(a));
    }

    #[test]
    fn reserved_addresses_are_skipped() {
        let mut p = ips("10.244.0.0/24");
        assert!(p.reserve(Ipv4Addr::new(10, 244, 0, 2)));
        assert!(!p.reserve(Ipv4Addr::new(10, 244, 0, 2)), "already taken");
        assert!(!p.reserve(Ipv4Addr::new(10, 244, 1, 2)), "outside the range");
        assert!(!p.reserve(Ipv4Addr::new(10, 244, 0, 1)), "the gateway");
        assert_eq!(p.allocate(), Some(Ipv4Addr::new(10, 244, 0, 3)));
        assert_eq!(p.free(), 251);
    }
}
