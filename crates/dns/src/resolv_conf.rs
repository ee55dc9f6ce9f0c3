//! The host's nameservers, read from `resolv.conf` text.
//!
//! Only `nameserver` lines matter for forwarding; search domains and options belong to the
//! clients, which get their own resolv.conf from the kubelet side.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

/// The port every `nameserver` line implies: resolv.conf has no way to name another.
const DNS_PORT: u16 = 53;

/// The nameservers listed in a resolv.conf text, in file order, each on port 53.
///
/// Everything listed is returned, loopback stubs such as systemd-resolved's 127.0.0.53
/// included: whether a stub is reachable from where the DNS server runs is the caller's call.
/// Malformed addresses are skipped, as the C library does. An IPv6 address may carry a numeric
/// zone (`fe80::1%2`); one naming an interface (`%eth0`) is skipped, since resolving the name
/// would need the kernel.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            // Comments start with '#' or ';', at the start of a line or after the value.
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            nameserver_addr(words.next()?)
        })
        .collect()
}

fn nameserver_addr(word: &str) -> Option<SocketAddr> {
    match word.split_once('%') {
        None => word.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, DNS_PORT)),
        Some((ip, zone)) => {
            let ip = ip.parse().ok()?;
            let scope = zone.parse().ok()?;
            Some(SocketAddr::V6(SocketAddrV6::new(ip, DNS_PORT, 0, scope)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_come_back_in_file_order_on_port_53() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver 10.0.0.3\noptions ndots:2\n";
        let got = parse_resolv_conf(text);
        assert_eq!(got, vec!["10.0.0.2:53".parse().unwrap(), "10.0.0.3:53".parse().unwrap()]);
    }

    #[test]
    fn loopback_stubs_are_returned_for_the_caller_to_judge() {
        assert_eq!(
            parse_resolv_conf("nameserver 127.0.0.53\noptions edns0 trust-ad\n"),
            vec!["127.0.0.53:53".parse().unwrap()]
        );
    }

    #[test]
    fn comments_blank_lines_and_garbage_are_skipped() {
        let text = "\n; old\n#nameserver 1.1.1.1\nnameserver not-an-ip\nnameserver\n  nameserver   192.0.2.1  # trailing\nnameservers 192.0.2.9\n";
        assert_eq!(parse_resolv_conf(text), vec!["192.0.2.1:53".parse().unwrap()]);
    }

    #[test]
    fn ipv6_nameservers_keep_a_numeric_zone_and_drop_a_named_one() {
        let text = "nameserver 2001:db8::1\nnameserver fe80::1%3\nnameserver fe80::2%eth0\n";
        let got = parse_resolv_conf(text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], "[2001:db8::1]:53".parse().unwrap());
        match got[1] {
            SocketAddr::V6(v6) => {
                assert_eq!(v6.scope_id(), 3);
                assert_eq!(v6.port(), 53);
            }
            SocketAddr::V4(_) => panic!("expected an IPv6 nameserver"),
        }
    }
}
