//! From pods, namespaces and policies to the [`Ruleset`] that enforces them on one node.
//!
//! The layout, for a policy selecting at least one local pod:
//!
//! - chain `policy-np-<id>-in` (and `-out`): one `accept` rule per combination of a rule's
//!   peer match and port match. A rule's pod peers are the named set
//!   `policy-np-<id>-in<N>-peers`, its ipBlocks an anonymous interval set in the rule, its
//!   named ports the set `policy-np-<id>-in<N>-ports` of `address . protocol . port` of the
//!   destination pods that have the name.
//! - chain `policy-in-<pod address>` (and `policy-out-…`) per isolated local pod: accept
//!   traffic to itself, jump to the chain of every policy that selects the pod, then drop.
//! - map elements `<pod address> : jump policy-in-<pod address>`.
//!
//! A peer pod coming, going or changing labels moves elements of peer sets; a local pod
//! changing which policies select it rewrites its own small chain; only a change of a
//! policy rewrites that policy's chain.
//!
//! `<id>` is a hash of `namespace/name`, because the names can be longer than the kernel
//! takes and could otherwise collide once joined; the chain's comment has the real name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use skiff_api::selector::LabelSelector;

use super::model::{merge_ranges, Labels, NamespaceMatch, Peer, PodInfo, PolicyInfo, PortMatch, Rule, NAMESPACE_NAME_LABEL};
use super::ruleset::{Chain, Ruleset, Set};

/// The engine's inputs, keyed by `(namespace, name)`.
pub(crate) struct Inputs<'a> {
    pub node: &'a str,
    pub pods: &'a BTreeMap<(String, String), PodInfo>,
    pub policies: &'a BTreeMap<(String, String), PolicyInfo>,
    pub namespaces: &'a BTreeMap<String, Labels>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// Infix of object names.
    fn short(self) -> &'static str {
        match self {
            Direction::Ingress => "in",
            Direction::Egress => "out",
        }
    }

    /// The address of the other end of a connection: where ingress comes from, where
    /// egress goes to.
    fn peer_field(self) -> &'static str {
        match self {
            Direction::Ingress => "ip saddr",
            Direction::Egress => "ip daddr",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    fn rules(self, p: &PolicyInfo) -> Option<&[Rule]> {
        match self {
            Direction::Ingress => p.ingress.as_deref(),
            Direction::Egress => p.egress.as_deref(),
        }
    }
}

/// A stable short id for a policy: FNV-1a (64 bit) of `namespace/name`.
pub(crate) fn policy_id(namespace: &str, name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in namespace.bytes().chain([b'/']).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Name of the chain of a local pod address for a direction.
pub(crate) fn pod_chain(ingress: bool, ip: Ipv4Addr) -> String {
    format!("policy-{}-{ip}", if ingress { "in" } else { "out" })
}

/// Computes the whole desired ruleset.
pub(crate) fn compile(inp: &Inputs<'_>) -> Ruleset {
    let mut out = Ruleset::default();
    let local: Vec<&PodInfo> =
        inp.pods.values().filter(|p| p.has_own_address() && p.node.as_deref() == Some(inp.node)).collect();
    // Local pod address → the policy chains it jumps to, per direction.
    let mut isolated: [BTreeMap<Ipv4Addr, Vec<String>>; 2] = Default::default();

    for policy in inp.policies.values() {
        let id = policy_id(&policy.namespace, &policy.name);
        for (slot, dir) in [Direction::Ingress, Direction::Egress].into_iter().enumerate() {
            let Some(rules) = dir.rules(policy) else { continue };
            let selected: Vec<&PodInfo> = local
                .iter()
                .copied()
                .filter(|p| p.namespace == policy.namespace && matches(&policy.pod_selector, &p.labels))
                .collect();
            if selected.is_empty() {
                continue;
            }
            let chain_name = format!("policy-np-{id}-{}", dir.short());
            let mut chain = Chain {
                comment: Some(format!("{}/{} {}", policy.namespace, policy.name, dir.word())),
                rules: Vec::new(),
            };
            for (i, rule) in rules.iter().enumerate() {
                let prefix = format!("policy-np-{id}-{}{i}", dir.short());
                let what = format!("{}/{} {} rule {i}", policy.namespace, policy.name, dir.word());
                compile_rule(inp, dir, rule, &selected, &prefix, &what, &mut chain, &mut out);
            }
            out.chains.insert(chain_name.clone(), chain);
            for pod in &selected {
                for ip in &pod.ips {
                    isolated[slot].entry(*ip).or_default().push(chain_name.clone());
                }
            }
        }
    }

    for (slot, dir) in [Direction::Ingress, Direction::Egress].into_iter().enumerate() {
        let own_field = match dir {
            Direction::Ingress => "ip saddr",
            Direction::Egress => "ip daddr",
        };
        for (ip, policies) in std::mem::take(&mut isolated[slot]) {
            let name = pod_chain(dir == Direction::Ingress, ip);
            // A pod is never cut off from itself (upstream's rule); it reaches itself
            // through a Service it backs, which hairpins through the bridge.
            let mut rules = vec![format!("{own_field} {ip} accept")];
            rules.extend(policies.iter().map(|c| format!("jump {c}")));
            rules.push("drop".to_string());
            out.chains.insert(name.clone(), Chain { comment: None, rules });
            match dir {
                Direction::Ingress => out.ingress_pods.insert(ip, name),
                Direction::Egress => out.egress_pods.insert(ip, name),
            };
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn compile_rule(
    inp: &Inputs<'_>,
    dir: Direction,
    rule: &Rule,
    selected: &[&PodInfo],
    prefix: &str,
    what: &str,
    chain: &mut Chain,
    out: &mut Ruleset,
) {
    let field = dir.peer_field();

    // What the other end may be, as alternatives.
    let peer_matches: Vec<String> = match &rule.peers {
        None => vec![String::new()],
        Some(peers) => {
            let mut alternatives = Vec::new();
            let pod_peers: Vec<(&NamespaceMatch, &LabelSelector)> = peers
                .iter()
                .filter_map(|p| match p {
                    Peer::Pods { namespaces, pods } => Some((namespaces, pods)),
                    Peer::Block(_) => None,
                })
                .collect();
            if !pod_peers.is_empty() {
                let set_name = format!("{prefix}-peers");
                let elements = peer_pods(inp, &pod_peers).flat_map(|p| p.ips.iter()).map(|ip| ip.to_string()).collect();
                out.sets.insert(
                    set_name.clone(),
                    Set { kind: "ipv4_addr", comment: Some(format!("{what} peers")), elements },
                );
                alternatives.push(format!("{field} @{set_name}"));
            }
            let ranges = merge_ranges(
                peers
                    .iter()
                    .flat_map(|p| match p {
                        Peer::Block(ranges) => ranges.clone(),
                        Peer::Pods { .. } => Vec::new(),
                    })
                    .collect(),
            );
            if !ranges.is_empty() {
                let items: Vec<String> = ranges.iter().map(|&(lo, hi)| range(lo, hi)).collect();
                alternatives.push(format!("{field} {{ {} }}", items.join(", ")));
            }
            alternatives
        }
    };

    // Which ports, as alternatives.
    let port_matches: Vec<String> = match &rule.ports {
        None => vec![String::new()],
        Some(ports) => {
            let mut alternatives: Vec<String> = Vec::new();
            let mut named = Vec::new();
            for p in ports {
                let m = match p {
                    PortMatch::Any(proto) => format!("meta l4proto {}", proto.nft()),
                    PortMatch::Range(proto, lo, hi) if lo == hi => format!("{} dport {lo}", proto.nft()),
                    PortMatch::Range(proto, lo, hi) => format!("{} dport {lo}-{hi}", proto.nft()),
                    PortMatch::Named(proto, name) => {
                        named.push((*proto, name.as_str()));
                        continue;
                    }
                };
                if !alternatives.contains(&m) {
                    alternatives.push(m);
                }
            }
            if !named.is_empty() {
                // A port name means the port of the destination: the selected local pod for
                // ingress, the peer for egress (any pod; the peer match narrows it).
                let destinations: Vec<&PodInfo> = match dir {
                    Direction::Ingress => selected.to_vec(),
                    Direction::Egress => inp.pods.values().filter(|p| p.has_own_address()).collect(),
                };
                let mut elements = BTreeSet::new();
                for pod in destinations {
                    for &(proto, name) in &named {
                        if let Some(port) = pod.named_port(name, proto) {
                            elements.extend(pod.ips.iter().map(|ip| format!("{ip} . {} . {port}", proto.nft())));
                        }
                    }
                }
                let set_name = format!("{prefix}-ports");
                out.sets.insert(
                    set_name.clone(),
                    Set {
                        kind: "ipv4_addr . inet_proto . inet_service",
                        comment: Some(format!("{what} named ports")),
                        elements,
                    },
                );
                alternatives.push(format!("ip daddr . meta l4proto . th dport @{set_name}"));
            }
            alternatives
        }
    };

    for peer in &peer_matches {
        for port in &port_matches {
            let rule: Vec<&str> = [peer.as_str(), port.as_str(), "accept"].into_iter().filter(|s| !s.is_empty()).collect();
            chain.rules.push(rule.join(" "));
        }
    }
}

/// Pods that stand for any of a rule's pod peers.
fn peer_pods<'a>(
    inp: &'a Inputs<'_>,
    peers: &'a [(&'a NamespaceMatch, &'a LabelSelector)],
) -> impl Iterator<Item = &'a PodInfo> + 'a {
    inp.pods.values().filter(move |pod| {
        pod.has_own_address()
            && peers.iter().any(|(namespaces, pods)| {
                let ns_ok = match namespaces {
                    NamespaceMatch::Own(ns) => &pod.namespace == ns,
                    NamespaceMatch::Selector(sel) => {
                        let labels = inp.namespaces.get(&pod.namespace);
                        sel.matches(&|k| match labels.and_then(|l| l.get(k)) {
                            Some(v) => Some(v.clone()),
                            // A namespace the engine has not heard of yet still has its name label.
                            None if k == NAMESPACE_NAME_LABEL && labels.is_none() => Some(pod.namespace.clone()),
                            None => None,
                        })
                    }
                };
                ns_ok && matches(pods, &pod.labels)
            })
    })
}

fn matches(sel: &LabelSelector, labels: &Labels) -> bool {
    sel.matches(&|k| labels.get(k).cloned())
}

/// An nftables interval element: `a.b.c.d/len` when the range is a CIDR, `a-b` otherwise.
fn range(lo: u32, hi: u32) -> String {
    let size = u64::from(hi - lo) + 1;
    if size.is_power_of_two() && u64::from(lo) % size == 0 {
        let len = 32 - size.trailing_zeros();
        if len == 32 {
            return Ipv4Addr::from(lo).to_string();
        }
        return format!("{}/{len}", Ipv4Addr::from(lo));
    }
    format!("{}-{}", Ipv4Addr::from(lo), Ipv4Addr::from(hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_ids_are_stable_and_tell_names_apart() {
        assert_eq!(policy_id("default", "web"), policy_id("default", "web"));
        assert_ne!(policy_id("a-b", "c"), policy_id("a", "b-c"));
        assert_eq!(policy_id("default", "web").len(), 16);
    }

    #[test]
    fn ranges_print_as_cidrs_when_they_are_one() {
        let ip = |s: &str| u32::from(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(range(ip("10.0.0.0"), ip("10.0.255.255")), "10.0.0.0/16");
        assert_eq!(range(ip("10.0.0.7"), ip("10.0.0.7")), "10.0.0.7");
        assert_eq!(range(0, u32::MAX), "0.0.0.0/0");
        assert_eq!(range(ip("10.0.0.1"), ip("10.0.0.2")), "10.0.0.1-10.0.0.2");
    }
}
