//! What the policy engine keeps of Pods, Namespaces and NetworkPolicies.
//!
//! The informers hand over whole objects; the engine keeps only the fields that decide
//! enforcement, so that a status update which changes none of them (a readiness flip, a
//! restart count) compares equal and costs no nftables transaction.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as LabelSelectorSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_api::selector::LabelSelector;

/// The label the API server puts on every namespace; selecting a namespace by name relies on it.
pub(crate) const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub(crate) type Labels = BTreeMap<String, String>;

/// A transport protocol a NetworkPolicy port can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Parses the API spelling; an absent protocol is TCP, as the API server defaults it.
    pub(crate) fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The nftables keyword (`tcp`, `udp`, `sctp`), both as an `inet_proto` value and as the
    /// header name in `tcp dport`.
    pub(crate) fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

// === impl PodInfo ===

/// A named container port, for resolving named ports in policies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// The enforcement-relevant part of a Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodInfo {
    pub namespace: String,
    pub labels: Labels,
    /// `spec.nodeName`; pods on this node are the ones the engine enforces for.
    pub node: Option<String>,
    /// IPv4 addresses from `status.podIPs` (or `status.podIP`).
    pub ips: Vec<Ipv4Addr>,
    pub host_network: bool,
    /// Succeeded or Failed: the pod has released its address, which may already belong to
    /// another pod.
    pub terminal: bool,
    pub ports: Vec<NamedPort>,
}

impl PodInfo {
    pub(crate) fn from_pod(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let mut ips: Vec<Ipv4Addr> = Vec::new();
        let listed = status.and_then(|s| s.pod_ips.as_ref()).into_iter().flatten().map(|ip| ip.ip.as_str());
        let single = status.and_then(|s| s.pod_ip.as_deref());
        for ip in listed.chain(single) {
            if let Ok(ip) = ip.parse::<Ipv4Addr>() {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        let mut ports = Vec::new();
        let containers = spec.map(|s| s.containers.iter()).into_iter().flatten();
        let init = spec.and_then(|s| s.init_containers.as_ref()).into_iter().flatten();
        for c in containers.chain(init) {
            for p in c.ports.iter().flatten() {
                let (Some(name), Some(protocol), Ok(port)) =
                    (p.name.as_ref(), Protocol::parse(p.protocol.as_deref()), u16::try_from(p.container_port))
                else {
                    continue;
                };
                ports.push(NamedPort { name: name.clone(), protocol, port });
            }
        }
        ports.sort();
        ports.dedup();
        let phase = status.and_then(|s| s.phase.as_deref());
        PodInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            node: spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
            ips,
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            terminal: matches!(phase, Some("Succeeded" | "Failed")),
            ports,
        }
    }

    /// Whether the pod's addresses stand for it: it has an IPv4 address of its own (not the
    /// node's) and has not finished. Only such pods are peers or enforced.
    pub(crate) fn has_own_address(&self) -> bool {
        !self.ips.is_empty() && !self.host_network && !self.terminal
    }

    /// The container port named `name` with `protocol`, if the pod has one.
    pub(crate) fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports.iter().find(|p| p.name == name && p.protocol == protocol).map(|p| p.port)
    }
}

/// The labels of a Namespace, with the name label the API server would have added.
pub(crate) fn namespace_labels(ns: &Namespace) -> Labels {
    let mut labels = ns.metadata.labels.clone().unwrap_or_default();
    if let Some(name) = &ns.metadata.name {
        labels.entry(NAMESPACE_NAME_LABEL.to_string()).or_insert_with(|| name.clone());
    }
    labels
}

// === impl PolicyInfo ===

/// Which pods a pod-based peer stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NamespaceMatch {
    /// The policy's own namespace (a peer with only a podSelector).
    Own(String),
    /// Every namespace whose labels match.
    Selector(LabelSelector),
}

/// One entry of a rule's `from`/`to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Pods matching `pods` in the namespaces matching `namespaces`.
    Pods { namespaces: NamespaceMatch, pods: LabelSelector },
    /// Addresses in `cidr` but in none of `except`, as inclusive ranges.
    Block(Vec<(u32, u32)>),
}

/// The port part of a NetworkPolicyPort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PortMatch {
    /// Every port of the protocol (no `port` given).
    Any(Protocol),
    /// `port` up to `endPort` (both inclusive).
    Range(Protocol, u16, u16),
    /// A container port name, resolved against the destination pod.
    Named(Protocol, String),
}

/// One ingress or egress rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    /// `None`: the rule names no peers and so matches every address. An empty list (every
    /// peer was unusable, such as an IPv6 block) matches none.
    pub peers: Option<Vec<Peer>>,
    /// `None`: every port and protocol. An empty list matches nothing.
    pub ports: Option<Vec<PortMatch>>,
}

/// The enforcement-relevant part of a NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyInfo {
    pub namespace: String,
    pub name: String,
    pub pod_selector: LabelSelector,
    /// The ingress rules when the policy isolates for ingress, else `None`.
    pub ingress: Option<Vec<Rule>>,
    /// The egress rules when the policy isolates for egress, else `None`.
    pub egress: Option<Vec<Rule>>,
}

impl PolicyInfo {
    pub(crate) fn from_policy(p: &NetworkPolicy) -> PolicyInfo {
        let namespace = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let spec = p.spec.clone().unwrap_or_default();
        let ingress_rules = spec.ingress.unwrap_or_default();
        let egress_rules = spec.egress.unwrap_or_default();
        // The API server defaults policyTypes; a missing list means what it would have made
        // of it: Ingress always, Egress when there are egress rules.
        let types = match spec.policy_types {
            Some(types) if !types.is_empty() => types,
            _ => {
                let mut types = vec!["Ingress".to_string()];
                if !egress_rules.is_empty() {
                    types.push("Egress".to_string());
                }
                types
            }
        };
        let has = |t: &str| types.iter().any(|x| x == t);
        // A policy's podSelector is a plain struct upstream: absent is `{}`, every pod.
        let pod_selector = match &spec.pod_selector {
            Some(sel) => selector(sel, &namespace, &name),
            None => LabelSelector::default(),
        };
        let ingress = has("Ingress")
            .then(|| ingress_rules.into_iter().map(|r| rule(r.from, r.ports, &namespace, &name)).collect());
        let egress =
            has("Egress").then(|| egress_rules.into_iter().map(|r| rule(r.to, r.ports, &namespace, &name)).collect());
        PolicyInfo { pod_selector, ingress, egress, namespace, name }
    }
}

/// Parses a label selector of a policy. A selector the API server should have refused
/// selects nothing, so that a broken policy never widens what is allowed.
fn selector(sel: &LabelSelectorSpec, namespace: &str, name: &str) -> LabelSelector {
    let parsed = serde_json::to_value(sel)
        .map_err(|e| e.to_string())
        .and_then(|v| LabelSelector::from_json(&v).map_err(|e| e.to_string()));
    parsed.unwrap_or_else(|err| {
        tracing::warn!(policy = %format!("{namespace}/{name}"), %err, "unusable label selector; it selects nothing");
        LabelSelector::nothing()
    })
}

fn rule(peers: Option<Vec<NetworkPolicyPeer>>, ports: Option<Vec<NetworkPolicyPort>>, namespace: &str, name: &str) -> Rule {
    let peers = peers.filter(|p| !p.is_empty()).map(|peers| {
        peers
            .iter()
            .filter_map(|peer| {
                if let Some(block) = &peer.ip_block {
                    return ip_block(&block.cidr, block.except.as_deref().unwrap_or_default());
                }
                let namespaces = match &peer.namespace_selector {
                    Some(sel) => NamespaceMatch::Selector(selector(sel, namespace, name)),
                    None => NamespaceMatch::Own(namespace.to_string()),
                };
                let pods = match &peer.pod_selector {
                    Some(sel) => selector(sel, namespace, name),
                    // A peer with only a namespaceSelector stands for every pod there.
                    None if peer.namespace_selector.is_some() => LabelSelector::default(),
                    // A peer naming nothing fails validation; it matches nothing here.
                    None => return None,
                };
                Some(Peer::Pods { namespaces, pods })
            })
            .collect()
    });
    let ports = ports.filter(|p| !p.is_empty()).map(|ports| ports.iter().filter_map(port).collect());
    Rule { peers, ports }
}

fn port(p: &NetworkPolicyPort) -> Option<PortMatch> {
    let protocol = Protocol::parse(p.protocol.as_deref())?;
    Some(match &p.port {
        None => PortMatch::Any(protocol),
        Some(IntOrString::Int(n)) => {
            let first = u16::try_from(*n).ok()?;
            let last = match p.end_port {
                Some(end) => u16::try_from(end).ok()?.max(first),
                None => first,
            };
            PortMatch::Range(protocol, first, last)
        }
        Some(IntOrString::String(s)) => match s.parse::<u16>() {
            // The API accepts a number in string form; it means the number.
            Ok(n) => PortMatch::Range(protocol, n, n),
            Err(_) => PortMatch::Named(protocol, s.clone()),
        },
    })
}

// === ipBlock arithmetic ===

/// Parses `a.b.c.d/len` into the inclusive range of addresses it covers.
pub(crate) fn parse_cidr(s: &str) -> Option<(u32, u32)> {
    crate::Cidr::parse(s).map(|c| c.range())
}

/// An ipBlock as the ranges it allows: `cidr` minus every `except`. IPv6 blocks (and blocks
/// that do not parse) allow nothing: the datapath is IPv4 only.
fn ip_block(cidr: &str, except: &[String]) -> Option<Peer> {
    let Some(range) = parse_cidr(cidr) else {
        if !cidr.contains(':') {
            tracing::warn!(%cidr, "ipBlock cidr does not parse; it matches nothing");
        }
        return None;
    };
    let mut ranges = vec![range];
    for ex in except {
        let Some((lo, hi)) = parse_cidr(ex) else { continue };
        ranges = ranges
            .into_iter()
            .flat_map(|(a, b)| {
                let mut out = Vec::with_capacity(2);
                if hi < a || lo > b {
                    out.push((a, b));
                } else {
                    if lo > a {
                        out.push((a, lo - 1));
                    }
                    if hi < b {
                        out.push((hi + 1, b));
                    }
                }
                out
            })
            .collect();
    }
    Some(Peer::Block(ranges))
}

/// Sorts ranges and merges the ones that overlap or touch, as an nftables interval set
/// wants them.
pub(crate) fn merge_ranges(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(cidr: &str, except: &[&str]) -> Vec<(u32, u32)> {
        let except: Vec<String> = except.iter().map(|s| s.to_string()).collect();
        match ip_block(cidr, &except) {
            Some(Peer::Block(r)) => r,
            other => panic!("not a block: {other:?}"),
        }
    }

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn a_cidr_covers_its_network_whatever_host_bits_it_carries() {
        assert_eq!(parse_cidr("10.1.2.3/16"), Some((ip("10.1.0.0"), ip("10.1.255.255"))));
        assert_eq!(parse_cidr("0.0.0.0/0"), Some((0, u32::MAX)));
        assert_eq!(parse_cidr("10.0.0.1/32"), Some((ip("10.0.0.1"), ip("10.0.0.1"))));
        assert_eq!(parse_cidr("10.0.0.1/33"), None);
        assert_eq!(parse_cidr("fd00::/8"), None);
    }

    #[test]
    fn excepts_cut_holes_into_an_ip_block() {
        assert_eq!(
            block("10.0.0.0/8", &["10.1.0.0/16", "10.3.0.0/16"]),
            vec![
                (ip("10.0.0.0"), ip("10.0.255.255")),
                (ip("10.2.0.0"), ip("10.2.255.255")),
                (ip("10.4.0.0"), ip("10.255.255.255"))
            ]
        );
        assert_eq!(block("10.0.0.0/24", &["10.0.0.0/24"]), vec![]);
        assert_eq!(block("0.0.0.0/0", &["0.0.0.0/1"]), vec![(ip("128.0.0.0"), u32::MAX)]);
        assert_eq!(block("0.0.0.0/0", &["128.0.0.0/1"]), vec![(0, ip("127.255.255.255"))]);
    }

    #[test]
    fn ipv6_blocks_match_nothing() {
        assert_eq!(ip_block("fd00::/8", &[]), None);
    }

    #[test]
    fn touching_ranges_merge() {
        assert_eq!(merge_ranges(vec![(5, 9), (0, 4), (20, 30), (25, 26)]), vec![(0, 9), (20, 30)]);
        assert_eq!(merge_ranges(vec![(0, u32::MAX), (3, 4)]), vec![(0, u32::MAX)]);
    }

    #[test]
    fn a_missing_protocol_is_tcp_and_unknown_ones_are_dropped() {
        assert_eq!(Protocol::parse(None), Some(Protocol::Tcp));
        assert_eq!(Protocol::parse(Some("SCTP")), Some(Protocol::Sctp));
        assert_eq!(Protocol::parse(Some("ICMP")), None);
    }
}
