//! The nftables objects of the service proxy, as data.
//!
//! [`base_script`] creates the fixed skeleton (hooks, dispatch maps, masquerading);
//! [`render_port`] turns one service port and its endpoints into [`Rendered`]: map elements,
//! chains with their rules, affinity sets. The proxier diffs two `Rendered` values to write
//! only what changed. The layout is kube-proxy's nftables mode (pkg/proxy/nftables):
//!
//! ```text
//! nat-prerouting / nat-output ─ jump services
//!   services: ip daddr . proto . port vmap @service-ips        (cluster, external, LB IPs)
//!             ip daddr @nodeport-ips proto . port vmap @service-nodeports
//!   service-…  (policy Cluster) ─┐   numgen random mod N vmap { 0 : goto endpoint-…, … }
//!   local-…    (policy Local)   ─┤   (ClientIP affinity first: ip saddr @affinity-… goto endpoint-…)
//!   external-… (NodePort/LB/external IPs: masquerade marks and short-circuits, then a policy chain)
//!   endpoint-… : hairpin masquerade mark, affinity update, dnat to ip:port
//! filter-input / -forward / -output ─ endpoints-check: no-endpoint maps (reject or drop)
//! filter-prerouting / -output ─ firewall-check: loadBalancerSourceRanges
//! nat-postrouting ─ masquerading (marked packets), cluster-egress (pods leaving the cluster CIDR)
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::model::{categorize_endpoints, Cidr, Endpoint, ServicePortInfo, ServicePortName};
use crate::nft::{FAMILY, TABLE};

/// The packet mark bit asking the postrouting hook to masquerade (upstream's 0x4000).
pub const MASQUERADE_MARK: u32 = 0x4000;

// Fixed object names (kube-proxy's, so its documentation applies).
pub const SERVICES_CHAIN: &str = "services";
pub const SERVICE_IPS_MAP: &str = "service-ips";
pub const SERVICE_NODEPORTS_MAP: &str = "service-nodeports";
pub const NODEPORT_IPS_SET: &str = "nodeport-ips";
pub const ENDPOINTS_CHECK_CHAIN: &str = "endpoints-check";
pub const NO_ENDPOINT_SERVICES_MAP: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS_MAP: &str = "no-endpoint-nodeports";
pub const REJECT_CHAIN: &str = "reject-chain";
pub const FIREWALL_IPS_MAP: &str = "firewall-ips";
pub const FIREWALL_CHECK_CHAIN: &str = "firewall-check";
pub const MARK_MASQ_CHAIN: &str = "mark-for-masquerade";
pub const MASQUERADING_CHAIN: &str = "masquerading";
/// Masquerades pod traffic leaving the cluster CIDR (`ProxyConfig::masquerade_outside`).
pub const CLUSTER_EGRESS_CHAIN: &str = "cluster-egress";

/// The maps whose elements belong to service ports.
pub const PORT_MAPS: [&str; 5] = [
    SERVICE_IPS_MAP,
    SERVICE_NODEPORTS_MAP,
    NO_ENDPOINT_SERVICES_MAP,
    NO_ENDPOINT_NODEPORTS_MAP,
    FIREWALL_IPS_MAP,
];

/// Node facts the rules depend on.
#[derive(Debug, Clone, Default)]
pub struct RenderContext {
    pub node_ips: Vec<Ipv4Addr>,
    /// Pod traffic is `ip saddr <cluster_cidr>` (upstream's cluster-CIDR local detector).
    pub cluster_cidr: Option<Cidr>,
    pub masquerade_outside: bool,
}

// === names ===

/// Longest nftables object name (NFT_NAME_MAXLEN is 256 with the terminating NUL).
pub const NAME_MAX: usize = 255;
const PREFIX_MAX: usize = 16;
const BASE_MAX: usize = NAME_MAX - PREFIX_MAX;

/// A stable 8-character tag of `s`: FNV-1a (64 bit) in RFC 4648 base32. It keeps names unique
/// when truncated and tells apart names that differ in one digit at a glance.
fn hash_tag(s: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..8).map(|i| ALPHABET[((h >> (59 - 5 * i)) & 31) as usize] as char).collect()
}

/// `TAG-name`, cut to fit after a prefix of up to 16 characters.
fn hash_and_truncate(name: &str) -> String {
    let mut out = format!("{}-{}", hash_tag(name), name);
    if out.len() > BASE_MAX {
        out.truncate(BASE_MAX - 3);
        out.push_str("...");
    }
    out
}

/// `TAG-namespace/name/protocol/port`. Namespace, service and port names are DNS labels, so
/// every character is valid in an nftables name; `/` separates them and cannot occur inside.
pub fn port_name_base(sp: &ServicePortName) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}",
        sp.service.namespace,
        sp.service.name,
        sp.protocol.nft(),
        sp.port
    ))
}

/// `TAG-namespace/name/protocol/port__ip/port`.
pub fn endpoint_name_base(sp: &ServicePortName, ep: &Endpoint) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}__{}/{}",
        sp.service.namespace,
        sp.service.name,
        sp.protocol.nft(),
        sp.port,
        ep.ip,
        ep.port
    ))
}

/// The chain of policy Cluster (`service-…`).
pub fn cluster_chain(sp: &ServicePortName) -> String {
    format!("service-{}", port_name_base(sp))
}
/// The chain of policy Local (`local-…`).
pub fn local_chain(sp: &ServicePortName) -> String {
    format!("local-{}", port_name_base(sp))
}
/// The chain external traffic enters (`external-…`).
pub fn external_chain(sp: &ServicePortName) -> String {
    format!("external-{}", port_name_base(sp))
}
/// The loadBalancerSourceRanges chain (`firewall-…`).
pub fn firewall_chain(sp: &ServicePortName) -> String {
    format!("firewall-{}", port_name_base(sp))
}
/// The chain that DNATs to one endpoint (`endpoint-…`).
pub fn endpoint_chain(sp: &ServicePortName, ep: &Endpoint) -> String {
    format!("endpoint-{}", endpoint_name_base(sp, ep))
}
/// The set of client IPs stuck to one endpoint (`affinity-…`).
pub fn affinity_set(sp: &ServicePortName, ep: &Endpoint) -> String {
    format!("affinity-{}", endpoint_name_base(sp, ep))
}

/// Whether `name` is a valid nftables object name: a letter, `_` or `.` first, then letters,
/// digits and `_./-`, at most [`NAME_MAX`] characters.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '.');
    first_ok
        && name.len() <= NAME_MAX
        && chars.all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
}

// === rendered objects ===

/// A map element owned by a service port: `key : value` in `map`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Element {
    pub map: &'static str,
    pub key: String,
    pub value: String,
}

/// Everything one service port puts in the table besides the skeleton.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub elements: Vec<Element>,
    /// Chain name → rules, in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Affinity set name → timeout in seconds.
    pub sets: BTreeMap<String, u32>,
    /// What stale UDP conntrack entries would point at; `None` for other protocols.
    pub udp: Option<UdpTargets>,
}

/// The addresses of a UDP service port, so that conntrack entries of removed endpoints (or of
/// packets that found no endpoint) can be deleted after a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdpTargets {
    /// Cluster, external and load-balancer IPs, each with `port`.
    pub service_ips: Vec<Ipv4Addr>,
    pub port: u16,
    pub node_port: u16,
    /// Every endpoint this node may DNAT to.
    pub endpoints: Vec<Ipv4Addr>,
}

fn goto(chain: &str) -> String {
    format!("goto {chain}")
}

/// Renders one service port with its endpoints (sorted, as `endpoints_for` returns them).
pub fn render_port(ctx: &RenderContext, sp: &ServicePortInfo, endpoints: &[Endpoint]) -> Rendered {
    let name = &sp.name;
    let proto = name.protocol.nft();
    let cat = categorize_endpoints(endpoints, sp);
    let mut r = Rendered::default();

    let cluster_chain = cluster_chain(name);
    let local_chain = local_chain(name);
    let external_chain = external_chain(name);
    let firewall_chain = firewall_chain(name);

    let uses_cluster_chain = !cat.cluster.is_empty() && sp.uses_cluster_endpoints();
    let uses_local_chain = !cat.local.is_empty() && sp.uses_local_endpoints();
    let (internal_chain, has_internal) = if sp.internal_policy_local {
        (&local_chain, cat.has_any && !cat.local.is_empty())
    } else {
        (&cluster_chain, cat.has_any)
    };
    let (external_policy_chain, has_external) = if sp.external_policy_local {
        (&local_chain, cat.has_any && !cat.local.is_empty())
    } else {
        (&cluster_chain, cat.has_any)
    };
    // The external chain exists whenever there are endpoints anywhere: even with no local
    // endpoint under policy Local, pods and the node short-circuit to the cluster endpoints.
    let uses_external_chain = cat.has_any && sp.externally_accessible();

    // No endpoints anywhere: reject. Endpoints elsewhere but policy Local: drop.
    let no_endpoint_verdict = |has: bool| -> Option<String> {
        if !cat.has_any {
            Some(goto(REJECT_CHAIN))
        } else if !has {
            Some("drop".to_string())
        } else {
            None
        }
    };
    let internal_verdict = no_endpoint_verdict(has_internal);
    let external_verdict = no_endpoint_verdict(has_external);
    let ip_key = |ip: Ipv4Addr| format!("{ip} . {proto} . {}", sp.port);
    let mut elem = |map: &'static str, key: String, value: String| {
        r.elements.push(Element { map, key, value });
    };

    // Cluster IP.
    match &internal_verdict {
        None => elem(SERVICE_IPS_MAP, ip_key(sp.cluster_ip), goto(internal_chain)),
        Some(v) => elem(NO_ENDPOINT_SERVICES_MAP, ip_key(sp.cluster_ip), v.clone()),
    }
    // External IPs.
    for ip in &sp.external_ips {
        if cat.has_any {
            elem(SERVICE_IPS_MAP, ip_key(*ip), goto(&external_chain));
        }
        if let Some(v) = &external_verdict {
            elem(NO_ENDPOINT_SERVICES_MAP, ip_key(*ip), v.clone());
        }
    }
    // Load-balancer IPs, with their source-range firewall.
    let uses_firewall = !sp.load_balancer_ips.is_empty() && !sp.load_balancer_source_ranges.is_empty();
    for ip in &sp.load_balancer_ips {
        if cat.has_any {
            elem(SERVICE_IPS_MAP, ip_key(*ip), goto(&external_chain));
        }
        if uses_firewall {
            elem(FIREWALL_IPS_MAP, ip_key(*ip), goto(&firewall_chain));
        }
        if let Some(v) = &external_verdict {
            elem(NO_ENDPOINT_SERVICES_MAP, ip_key(*ip), v.clone());
        }
    }
    // NodePort (not subject to loadBalancerSourceRanges, as upstream).
    if sp.node_port != 0 {
        let key = format!("{proto} . {}", sp.node_port);
        if cat.has_any {
            elem(SERVICE_NODEPORTS_MAP, key.clone(), goto(&external_chain));
        }
        if let Some(v) = &external_verdict {
            elem(NO_ENDPOINT_NODEPORTS_MAP, key, v.clone());
        }
    }

    if uses_firewall {
        let mut sources: Vec<String> =
            sp.load_balancer_source_ranges.iter().map(|c| c.to_string()).collect();
        // A VIP load balancer may put the VIP on the node itself; then the node's own requests
        // arrive from the VIP and must pass when the node is allowed.
        let node_allowed = sp
            .load_balancer_source_ranges
            .iter()
            .any(|c| ctx.node_ips.iter().any(|ip| c.contains(*ip)));
        if node_allowed {
            sources.extend(sp.load_balancer_ips.iter().map(|ip| ip.to_string()));
        }
        r.chains.insert(
            firewall_chain.clone(),
            vec![format!("ip saddr != {{ {} }} drop", sources.join(", "))],
        );
    }

    // Policy chains. Internal traffic from outside the cluster CIDR (the node itself, or a
    // host routing the service range to this node) is masqueraded so replies come back here.
    let mut cluster_rules = Vec::new();
    let mut local_rules = Vec::new();
    if has_internal {
        if let Some(cidr) = ctx.cluster_cidr {
            let rule = format!(
                "ip daddr {} {proto} dport {} ip saddr != {cidr} jump {MARK_MASQ_CHAIN}",
                sp.cluster_ip, sp.port
            );
            if sp.internal_policy_local {
                local_rules.push(rule);
            } else {
                cluster_rules.push(rule);
            }
        }
    }
    if uses_cluster_chain {
        cluster_rules.extend(dispatch_rules(sp, &cat.cluster));
        r.chains.insert(cluster_chain.clone(), cluster_rules);
    }
    if uses_local_chain {
        local_rules.extend(dispatch_rules(sp, &cat.local));
        r.chains.insert(local_chain.clone(), local_rules);
    }

    if uses_external_chain {
        let mut rules = Vec::new();
        if !sp.external_policy_local {
            // Endpoints may be on other nodes: masquerade so replies return through here.
            rules.push(format!("jump {MARK_MASQ_CHAIN}"));
        } else {
            if let Some(cidr) = ctx.cluster_cidr {
                // Pods reaching an external IP behave as if they went out to the load
                // balancer and came back: no traffic policy applies to them.
                rules.push(format!("ip saddr {cidr} goto {cluster_chain}"));
            }
            // The node's own traffic has a local source address: masquerade it and let it use
            // any endpoint.
            rules.push(format!("fib saddr type local jump {MARK_MASQ_CHAIN}"));
            rules.push(format!("fib saddr type local goto {cluster_chain}"));
        }
        if has_external {
            rules.push(goto(external_policy_chain));
        }
        r.chains.insert(external_chain.clone(), rules);
    }

    for ep in &cat.all_reachable {
        let chain = endpoint_chain(name, ep);
        let mut rules = vec![format!("ip saddr {} jump {MARK_MASQ_CHAIN}", ep.ip)];
        if let Some(timeout) = sp.affinity_timeout {
            let set = affinity_set(name, ep);
            rules.push(format!("update @{set} {{ ip saddr }}"));
            r.sets.insert(set, timeout);
        }
        rules.push(format!("meta l4proto {proto} dnat to {}:{}", ep.ip, ep.port));
        r.chains.insert(chain, rules);
    }

    if name.protocol == super::model::Protocol::Udp {
        let mut service_ips = vec![sp.cluster_ip];
        service_ips.extend(&sp.external_ips);
        service_ips.extend(&sp.load_balancer_ips);
        r.udp = Some(UdpTargets {
            service_ips,
            port: sp.port,
            node_port: sp.node_port,
            endpoints: cat.all_reachable.iter().map(|e| e.ip).collect(),
        });
    }
    r
}

/// Affinity matches (one per endpoint), then random load balancing over `endpoints`.
fn dispatch_rules(sp: &ServicePortInfo, endpoints: &[Endpoint]) -> Vec<String> {
    let mut rules = Vec::with_capacity(endpoints.len() + 1);
    if sp.affinity_timeout.is_some() {
        for ep in endpoints {
            rules.push(format!(
                "ip saddr @{} goto {}",
                affinity_set(&sp.name, ep),
                endpoint_chain(&sp.name, ep)
            ));
        }
    }
    let mut vmap = String::new();
    for (i, ep) in endpoints.iter().enumerate() {
        if i > 0 {
            vmap.push_str(", ");
        }
        let _ = write!(vmap, "{i} : goto {}", endpoint_chain(&sp.name, ep));
    }
    rules.push(format!("numgen random mod {} vmap {{ {vmap} }}", endpoints.len()));
    rules
}

// === the skeleton ===

/// Base chains: name, type, hook, priority. The priorities are the numbers behind `dstnat`
/// (-100) and `srcnat` (100): nft before 1.0.7 accepts those names only in their standard
/// hooks. Filtering runs before DNAT (`dstnat - 10`) so the source-range firewall sees
/// service addresses, as upstream.
const BASE_CHAINS: [(&str, &str, &str, &str); 7] = [
    ("filter-prerouting", "filter", "prerouting", "-110"),
    ("filter-input", "filter", "input", "-110"),
    ("filter-forward", "filter", "forward", "-110"),
    ("filter-output", "filter", "output", "-110"),
    ("nat-prerouting", "nat", "prerouting", "-100"),
    ("nat-output", "nat", "output", "-100"),
    ("nat-postrouting", "nat", "postrouting", "100"),
];

/// Creates (or resets) the proxy's fixed objects and empties its dispatch maps, in one
/// transaction. Per-service chains and sets are not touched.
pub fn base_script(ctx: &RenderContext) -> String {
    let t = format!("{FAMILY} {TABLE}");
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line(format!("add table {t}"));
    for (name, type_, hook, prio) in BASE_CHAINS {
        line(format!("add chain {t} {name} {{ type {type_} hook {hook} priority {prio}; policy accept; }}"));
        line(format!("flush chain {t} {name}"));
    }
    for chain in [
        SERVICES_CHAIN,
        ENDPOINTS_CHECK_CHAIN,
        FIREWALL_CHECK_CHAIN,
        REJECT_CHAIN,
        MARK_MASQ_CHAIN,
        MASQUERADING_CHAIN,
        CLUSTER_EGRESS_CHAIN,
    ] {
        line(format!("add chain {t} {chain}"));
        line(format!("flush chain {t} {chain}"));
    }
    // Sets and maps.
    line(format!("add set {t} {NODEPORT_IPS_SET} {{ type ipv4_addr; comment \"IPs that accept NodePort traffic\"; }}"));
    line(format!("flush set {t} {NODEPORT_IPS_SET}"));
    let mut node_ips: Vec<Ipv4Addr> =
        ctx.node_ips.iter().copied().filter(|ip| !ip.is_loopback() && !ip.is_unspecified()).collect();
    node_ips.sort();
    node_ips.dedup();
    if !node_ips.is_empty() {
        let ips: Vec<String> = node_ips.iter().map(|ip| ip.to_string()).collect();
        line(format!("add element {t} {NODEPORT_IPS_SET} {{ {} }}", ips.join(", ")));
    }
    for (map, key, comment) in [
        (SERVICE_IPS_MAP, "ipv4_addr . inet_proto . inet_service", "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
        (SERVICE_NODEPORTS_MAP, "inet_proto . inet_service", "NodePort traffic"),
        (NO_ENDPOINT_SERVICES_MAP, "ipv4_addr . inet_proto . inet_service", "services with no endpoints"),
        (NO_ENDPOINT_NODEPORTS_MAP, "inet_proto . inet_service", "service nodeports with no endpoints"),
        (FIREWALL_IPS_MAP, "ipv4_addr . inet_proto . inet_service", "destinations subject to loadBalancerSourceRanges"),
    ] {
        line(format!("add map {t} {map} {{ type {key} : verdict; comment \"{comment}\"; }}"));
        line(format!("flush map {t} {map}"));
    }

    // Hooks into the regular chains.
    for base in ["filter-input", "filter-forward", "filter-output"] {
        line(format!("add rule {t} {base} ct state new jump {ENDPOINTS_CHECK_CHAIN}"));
    }
    for base in ["filter-prerouting", "filter-output"] {
        line(format!("add rule {t} {base} ct state new jump {FIREWALL_CHECK_CHAIN}"));
    }
    line(format!("add rule {t} nat-prerouting jump {SERVICES_CHAIN}"));
    line(format!("add rule {t} nat-output jump {SERVICES_CHAIN}"));
    line(format!("add rule {t} nat-postrouting jump {MASQUERADING_CHAIN}"));
    line(format!("add rule {t} nat-postrouting jump {CLUSTER_EGRESS_CHAIN}"));

    // NodePorts answer on the node IPs, or on every local address but loopback when the
    // node IPs are not known.
    let nodeport_match = if node_ips.is_empty() {
        "fib daddr type local ip daddr != 127.0.0.0/8".to_string()
    } else {
        format!("ip daddr @{NODEPORT_IPS_SET}")
    };
    line(format!("add rule {t} {SERVICES_CHAIN} ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS_MAP}"));
    line(format!("add rule {t} {SERVICES_CHAIN} {nodeport_match} meta l4proto . th dport vmap @{SERVICE_NODEPORTS_MAP}"));
    line(format!("add rule {t} {ENDPOINTS_CHECK_CHAIN} ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES_MAP}"));
    line(format!("add rule {t} {ENDPOINTS_CHECK_CHAIN} {nodeport_match} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS_MAP}"));
    line(format!("add rule {t} {FIREWALL_CHECK_CHAIN} ip daddr . meta l4proto . th dport vmap @{FIREWALL_IPS_MAP}"));
    line(format!("add rule {t} {REJECT_CHAIN} reject"));

    // Masquerading: a mark set on the way in, acted on (and cleared) on the way out.
    line(format!("add rule {t} {MARK_MASQ_CHAIN} mark set mark or {MASQUERADE_MARK:#x}"));
    line(format!("add rule {t} {MASQUERADING_CHAIN} mark and {MASQUERADE_MARK:#x} == 0 return"));
    line(format!("add rule {t} {MASQUERADING_CHAIN} mark set mark xor {MASQUERADE_MARK:#x}"));
    line(format!("add rule {t} {MASQUERADING_CHAIN} masquerade fully-random"));
    if ctx.masquerade_outside {
        match ctx.cluster_cidr {
            Some(cidr) => line(format!(
                "add rule {t} {CLUSTER_EGRESS_CHAIN} ip saddr {cidr} ip daddr != {cidr} masquerade"
            )),
            None => tracing::warn!(
                "masquerading pod traffic leaving the cluster needs the cluster CIDR; not masquerading"
            ),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::model::{parse_service, Protocol, ServiceKey};
    use crate::proxy::testing::ServiceBuilder;

    fn ctx() -> RenderContext {
        RenderContext {
            node_ips: vec![Ipv4Addr::new(192, 168, 1, 10)],
            cluster_cidr: Cidr::parse("10.244.0.0/16"),
            masquerade_outside: true,
        }
    }

    fn ep(ip: &str, local: bool) -> Endpoint {
        Endpoint { ip: ip.parse().unwrap(), port: 8080, local, ready: true, serving: true, terminating: false }
    }

    fn first_port(b: ServiceBuilder) -> ServicePortInfo {
        parse_service(&b.build()).remove(0)
    }

    fn spn(ns: &str, name: &str, port: &str) -> ServicePortName {
        ServicePortName { service: ServiceKey::new(ns, name), port: port.into(), protocol: Protocol::Tcp }
    }

    #[test]
    fn names_are_stable_valid_and_distinct() {
        let a = spn("default", "web", "http");
        assert_eq!(cluster_chain(&a), cluster_chain(&a.clone()));
        assert!(cluster_chain(&a).ends_with("-default/web/tcp/http"));
        assert_ne!(port_name_base(&a), port_name_base(&spn("default", "web", "https")));
        let e1 = endpoint_chain(&a, &ep("10.244.0.1", false));
        let e2 = endpoint_chain(&a, &ep("10.244.0.11", false));
        assert_ne!(e1[..17], e2[..17], "the hash tells them apart up front");
        assert!(e1.ends_with("__10.244.0.1/8080"));
        for n in [cluster_chain(&a), local_chain(&a), external_chain(&a), firewall_chain(&a), e1] {
            assert!(valid_name(&n), "{n}");
        }
        // Pinned: names stay the same across releases, so that rulesets
        // of two versions compare and operators can look chains up.
        assert_eq!(hash_tag(""), "ZPZJZZEE");
        assert!(cluster_chain(&a).starts_with("service-7UCITOBJ-default/web/tcp/http"));
    }

    #[test]
    fn longest_names_are_truncated_within_the_kernel_limit() {
        let long = "a".repeat(63);
        let sp = spn(&long, &long, &long);
        let e = ep("255.255.255.255", false);
        for n in [cluster_chain(&sp), endpoint_chain(&sp, &e), affinity_set(&sp, &e)] {
            assert!(valid_name(&n) && n.len() <= NAME_MAX, "{n}");
        }
        // Force truncation through the base directly.
        let base = hash_and_truncate(&"x".repeat(400));
        assert_eq!(base.len(), BASE_MAX);
        assert!(base.ends_with("..."));
    }

    #[test]
    fn cluster_ip_with_endpoints_dispatches_randomly_to_endpoint_chains() {
        let sp = first_port(ServiceBuilder::new("ns", "web").cluster_ip("10.96.0.20"));
        let r = render_port(&ctx(), &sp, &[ep("10.244.0.5", false), ep("10.244.1.5", false)]);
        let chain = cluster_chain(&sp.name);
        assert_eq!(
            r.elements,
            vec![Element {
                map: SERVICE_IPS_MAP,
                key: "10.96.0.20 . tcp . 80".into(),
                value: format!("goto {chain}"),
            }]
        );
        let rules = &r.chains[&chain];
        assert_eq!(rules[0], format!("ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump {MARK_MASQ_CHAIN}"));
        let e0 = endpoint_chain(&sp.name, &ep("10.244.0.5", false));
        let e1 = endpoint_chain(&sp.name, &ep("10.244.1.5", false));
        assert_eq!(rules[1], format!("numgen random mod 2 vmap {{ 0 : goto {e0}, 1 : goto {e1} }}"));
        assert_eq!(
            r.chains[&e0],
            vec![
                format!("ip saddr 10.244.0.5 jump {MARK_MASQ_CHAIN}"),
                "meta l4proto tcp dnat to 10.244.0.5:8080".to_string()
            ]
        );
        assert_eq!(r.chains.len(), 3);
        assert!(r.sets.is_empty() && r.udp.is_none());
    }

    #[test]
    fn no_endpoints_rejects_and_creates_no_chains() {
        let sp = first_port(ServiceBuilder::new("ns", "web").type_("NodePort").node_port(30080).external_ip("198.51.100.1"));
        let r = render_port(&ctx(), &sp, &[]);
        assert!(r.chains.is_empty());
        let reject = format!("goto {REJECT_CHAIN}");
        assert_eq!(
            r.elements,
            vec![
                Element { map: NO_ENDPOINT_SERVICES_MAP, key: "10.96.0.100 . tcp . 80".into(), value: reject.clone() },
                Element { map: NO_ENDPOINT_SERVICES_MAP, key: "198.51.100.1 . tcp . 80".into(), value: reject.clone() },
                Element { map: NO_ENDPOINT_NODEPORTS_MAP, key: "tcp . 30080".into(), value: reject },
            ]
        );
    }

    #[test]
    fn internal_policy_local_without_local_endpoints_drops_cluster_ip_traffic() {
        let sp = first_port(ServiceBuilder::new("ns", "web").internal_traffic_policy("Local"));
        let r = render_port(&ctx(), &sp, &[ep("10.244.1.5", false)]);
        assert_eq!(
            r.elements,
            vec![Element { map: NO_ENDPOINT_SERVICES_MAP, key: "10.96.0.100 . tcp . 80".into(), value: "drop".into() }]
        );
        assert!(r.chains.is_empty());
        // With a local endpoint, cluster IP traffic goes to the local chain only.
        let r = render_port(&ctx(), &sp, &[ep("10.244.0.5", true), ep("10.244.1.5", false)]);
        assert_eq!(r.elements[0].value, format!("goto {}", local_chain(&sp.name)));
        assert_eq!(r.chains.len(), 2, "local chain and one endpoint chain: {:?}", r.chains.keys());
    }

    #[test]
    fn external_policy_local_short_circuits_pods_and_the_node() {
        let sp = first_port(
            ServiceBuilder::new("ns", "web")
                .type_("LoadBalancer")
                .node_port(30080)
                .lb_ingress("203.0.113.7", None)
                .external_traffic_policy("Local"),
        );
        let cluster = cluster_chain(&sp.name);
        let external = external_chain(&sp.name);
        // No local endpoint: external traffic from outside is dropped, but pods and the node
        // still reach the remote endpoint through the short-circuits.
        let r = render_port(&ctx(), &sp, &[ep("10.244.1.5", false)]);
        assert_eq!(
            r.chains[&external],
            vec![
                format!("ip saddr 10.244.0.0/16 goto {cluster}"),
                format!("fib saddr type local jump {MARK_MASQ_CHAIN}"),
                format!("fib saddr type local goto {cluster}"),
            ]
        );
        assert!(r.elements.contains(&Element { map: NO_ENDPOINT_NODEPORTS_MAP, key: "tcp . 30080".into(), value: "drop".into() }));
        assert!(r.elements.contains(&Element { map: NO_ENDPOINT_SERVICES_MAP, key: "203.0.113.7 . tcp . 80".into(), value: "drop".into() }));
        assert!(r.elements.contains(&Element { map: SERVICE_NODEPORTS_MAP, key: "tcp . 30080".into(), value: format!("goto {external}") }));
        // A local endpoint: outside traffic keeps its source and goes to the local chain.
        let r = render_port(&ctx(), &sp, &[ep("10.244.0.5", true), ep("10.244.1.5", false)]);
        assert_eq!(r.chains[&external].last().unwrap(), &format!("goto {}", local_chain(&sp.name)));
        assert!(!r.chains[&external].contains(&format!("jump {MARK_MASQ_CHAIN}")));
        assert!(r.elements.iter().all(|e| e.value != "drop"));
    }

    #[test]
    fn external_policy_cluster_masquerades_external_traffic() {
        let sp = first_port(ServiceBuilder::new("ns", "web").type_("NodePort").node_port(30080));
        let r = render_port(&ctx(), &sp, &[ep("10.244.1.5", false)]);
        assert_eq!(
            r.chains[&external_chain(&sp.name)],
            vec![format!("jump {MARK_MASQ_CHAIN}"), format!("goto {}", cluster_chain(&sp.name))]
        );
    }

    #[test]
    fn client_ip_affinity_uses_a_timed_set_per_endpoint() {
        let sp = first_port(ServiceBuilder::new("ns", "web").session_affinity(Some(300)));
        let e = ep("10.244.0.5", false);
        let r = render_port(&ctx(), &sp, std::slice::from_ref(&e));
        let set = affinity_set(&sp.name, &e);
        let epc = endpoint_chain(&sp.name, &e);
        assert_eq!(r.sets, BTreeMap::from([(set.clone(), 300)]));
        assert_eq!(r.chains[&cluster_chain(&sp.name)][1], format!("ip saddr @{set} goto {epc}"));
        assert_eq!(r.chains[&epc][1], format!("update @{set} {{ ip saddr }}"));
    }

    #[test]
    fn source_ranges_firewall_load_balancer_ips_and_admit_the_node() {
        let sp = first_port(
            ServiceBuilder::new("ns", "web")
                .type_("LoadBalancer")
                .lb_ingress("203.0.113.7", None)
                .lb_source_range("192.168.1.0/24"),
        );
        let r = render_port(&ctx(), &sp, &[ep("10.244.1.5", false)]);
        let fw = firewall_chain(&sp.name);
        assert_eq!(r.chains[&fw], vec!["ip saddr != { 192.168.1.0/24, 203.0.113.7 } drop".to_string()]);
        assert!(r.elements.contains(&Element { map: FIREWALL_IPS_MAP, key: "203.0.113.7 . tcp . 80".into(), value: format!("goto {fw}") }));
    }

    #[test]
    fn udp_ports_remember_their_conntrack_targets() {
        let sp = first_port(ServiceBuilder::new("ns", "dns").port("dns", 53, "UDP").external_ip("198.51.100.1"));
        let r = render_port(&ctx(), &sp, &[ep("10.244.0.5", false)]);
        let udp = r.udp.unwrap();
        assert_eq!(udp.service_ips, vec![Ipv4Addr::new(10, 96, 0, 100), Ipv4Addr::new(198, 51, 100, 1)]);
        assert_eq!(udp.endpoints, vec![Ipv4Addr::new(10, 244, 0, 5)]);
    }

    #[test]
    fn base_script_uses_node_ips_for_node_ports_or_local_addresses_without_them() {
        let s = base_script(&ctx());
        assert!(s.contains("add element ip skiff nodeport-ips { 192.168.1.10 }"));
        assert!(s.contains("ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"));
        assert!(s.contains("ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade"));
        let s = base_script(&RenderContext::default());
        assert!(s.contains("fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"));
        assert!(!s.contains(" masquerade\n"), "no egress masquerade unless asked");
    }
}
