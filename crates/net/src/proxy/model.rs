//! What the proxy keeps of Services and EndpointSlices, and which endpoints a service port uses.
//!
//! Everything here is pure: API objects in, plain values out. The parsing follows kube-proxy's
//! change trackers (pkg/proxy/serviceport.go, endpointslicecache.go) for the IPv4 family, and
//! [`categorize_endpoints`] follows `CategorizeEndpoints` (pkg/proxy/topology.go) without
//! topology hints.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;

pub use crate::cidr::Cidr;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Session affinity timeout when `sessionAffinityConfig.clientIP.timeoutSeconds` is unset (3 h).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;

/// A transport protocol a Service port can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Parses the API spelling; unset means TCP, as the API server defaults it.
    pub fn from_api(p: Option<&str>) -> Option<Protocol> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The nftables spelling (`tcp`, `udp`, `sctp`), also used in chain names.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Namespace and name of a Service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        ServiceKey { namespace: namespace.to_string(), name: name.to_string() }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port of a Service: the unit the proxy programs (upstream's `ServicePortName`).
///
/// Ordered by service first, so all ports of a service sit next to each other in a `BTreeMap`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub service: ServiceKey,
    /// The port's name; empty for the single unnamed port of a service.
    pub port: String,
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.port)
    }
}

/// What the proxy needs of one Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortInfo {
    pub name: ServicePortName,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// 0 when the port has no NodePort.
    pub node_port: u16,
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip` of a LoadBalancer service, except `ipMode: Proxy`.
    pub load_balancer_ips: Vec<Ipv4Addr>,
    pub load_balancer_source_ranges: Vec<Cidr>,
    /// `internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
    /// `externalTrafficPolicy: Local` on a port that accepts external traffic at all.
    pub external_policy_local: bool,
    /// `sessionAffinity: ClientIP` and its timeout in seconds.
    pub affinity_timeout: Option<u32>,
}

impl ServicePortInfo {
    /// Reached by NodePort, external IPs or load-balancer IPs.
    pub fn externally_accessible(&self) -> bool {
        self.node_port != 0 || !self.external_ips.is_empty() || !self.load_balancer_ips.is_empty()
    }

    /// Cluster endpoints are needed for internal traffic with policy Cluster, and for any
    /// external traffic (even with policy Local, pods and the node short-circuit to them).
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || self.externally_accessible()
    }

    /// Node-local endpoints are needed for either Local policy.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || self.external_policy_local
    }
}

/// Parses a Service into its programmable ports.
///
/// Returns an empty list for services that get no rules: headless (`clusterIP: None`),
/// `ExternalName`, services without an IPv4 cluster IP, and services without ports.
pub fn parse_service(svc: &Service) -> Vec<ServicePortInfo> {
    let Some(spec) = svc.spec.as_ref() else { return Vec::new() };
    let namespace = svc.metadata.namespace.as_deref().unwrap_or("default");
    let Some(name) = svc.metadata.name.as_deref() else { return Vec::new() };
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    if type_ == "ExternalName" {
        return Vec::new();
    }
    let Some(cluster_ip) = ipv4_cluster_ip(spec.cluster_ip.as_deref(), spec.cluster_ips.as_deref())
    else {
        return Vec::new();
    };
    // Loopback and unspecified addresses are never taken over: DNAT in the output
    // hook would capture the node's own local services (a node registered with a
    // loopback address hands it out as a load-balancer address).
    let routable = |ip: &Ipv4Addr| !ip.is_loopback() && !ip.is_unspecified();
    let external_ips: Vec<Ipv4Addr> = dedup(
        spec.external_ips.iter().flatten().filter_map(|ip| ip.trim().parse().ok()).filter(routable).collect(),
    );
    let load_balancer_ips: Vec<Ipv4Addr> = if type_ == "LoadBalancer" {
        dedup(
            svc.status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter(|ing| ing.ip_mode.as_deref() != Some("Proxy"))
                .filter_map(|ing| ing.ip.as_deref()?.trim().parse().ok())
                .filter(routable)
                .collect(),
        )
    } else {
        Vec::new()
    };
    let load_balancer_source_ranges: Vec<Cidr> = spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .filter_map(|r| Cidr::parse_or_address(r))
        .collect();
    let internal_policy_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let etp_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    let has_node_ports = type_ == "NodePort" || type_ == "LoadBalancer";

    let service = ServiceKey::new(namespace, name);
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::from_api(p.protocol.as_deref()) else { continue };
        let Ok(port) = u16::try_from(p.port) else { continue };
        if port == 0 {
            continue;
        }
        let node_port = if has_node_ports {
            p.node_port.and_then(|n| u16::try_from(n).ok()).unwrap_or(0)
        } else {
            0
        };
        let mut info = ServicePortInfo {
            name: ServicePortName {
                service: service.clone(),
                port: p.name.clone().unwrap_or_default(),
                protocol,
            },
            cluster_ip,
            port,
            node_port,
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            load_balancer_source_ranges: load_balancer_source_ranges.clone(),
            internal_policy_local,
            external_policy_local: false,
            affinity_timeout,
        };
        info.external_policy_local = etp_local && info.externally_accessible();
        out.push(info);
    }
    out
}

/// The IPv4 cluster IP: the primary one, or the IPv4 entry of a dual-stack `clusterIPs`.
fn ipv4_cluster_ip(primary: Option<&str>, all: Option<&[String]>) -> Option<Ipv4Addr> {
    match primary.map(str::trim) {
        None | Some("") | Some("None") => return None,
        Some(ip) => {
            if let Ok(v4) = ip.parse::<Ipv4Addr>() {
                return Some(v4);
            }
        }
    }
    all.into_iter().flatten().find_map(|ip| ip.trim().parse::<Ipv4Addr>().ok())
}

fn dedup(mut ips: Vec<Ipv4Addr>) -> Vec<Ipv4Addr> {
    let mut seen = std::collections::HashSet::new();
    ips.retain(|ip| seen.insert(*ip));
    ips
}

// === EndpointSlices ===

/// A port of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicePort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// An endpoint of an EndpointSlice, with its conditions as kube-proxy reads them: unset
/// `ready` and `serving` mean true, unset `terminating` means false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceEndpoint {
    pub ip: Ipv4Addr,
    pub node_name: Option<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// What the proxy keeps of one EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    pub service: ServiceKey,
    pub ports: Vec<SlicePort>,
    pub endpoints: Vec<SliceEndpoint>,
}

/// Parses an EndpointSlice; `None` when the proxy ignores it (no service-name label, not
/// IPv4, no name).
pub fn parse_slice(slice: &EndpointSlice) -> Option<SliceInfo> {
    if slice.address_type != "IPv4" {
        return None;
    }
    slice.metadata.name.as_deref()?;
    let namespace = slice.metadata.namespace.as_deref().unwrap_or("default");
    let service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .filter(|s| !s.is_empty())?;
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port = u16::try_from(p.port?).ok().filter(|p| *p != 0)?;
            Some(SlicePort {
                // Upstream skips ports without a name; hand-written slices for single-port
                // services often leave it out, and it can only mean the unnamed port.
                name: p.name.clone().unwrap_or_default(),
                protocol: Protocol::from_api(p.protocol.as_deref())?,
                port,
            })
        })
        .collect();
    let endpoints = slice
        .endpoints
        .iter()
        .filter_map(|ep| {
            // Like upstream, only the first address counts.
            let ip: Ipv4Addr = ep.addresses.first()?.trim().parse().ok()?;
            let cond = ep.conditions.clone().unwrap_or_default();
            Some(SliceEndpoint {
                ip,
                node_name: ep.node_name.clone(),
                ready: cond.ready.unwrap_or(true),
                serving: cond.serving.unwrap_or(true),
                terminating: cond.terminating.unwrap_or(false),
            })
        })
        .collect();
    Some(SliceInfo { service: ServiceKey::new(namespace, service), ports, endpoints })
}

/// One endpoint of one service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// On this node (`nodeName` equals the proxy's node name).
    pub local: bool,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// The endpoints of `port` across all slices of its service: matched by port name and
/// protocol, deduplicated by `ip:port` (a local copy wins, as upstream), sorted by address.
pub fn endpoints_for<'a>(
    port: &ServicePortName,
    slices: impl IntoIterator<Item = &'a SliceInfo>,
    node_name: &str,
) -> Vec<Endpoint> {
    let mut by_addr: BTreeMap<(Ipv4Addr, u16), Endpoint> = BTreeMap::new();
    for slice in slices {
        for sp in slice.ports.iter().filter(|sp| sp.name == port.port && sp.protocol == port.protocol) {
            for ep in &slice.endpoints {
                let local =
                    !node_name.is_empty() && ep.node_name.as_deref() == Some(node_name);
                let e = Endpoint {
                    ip: ep.ip,
                    port: sp.port,
                    local,
                    ready: ep.ready,
                    serving: ep.serving,
                    terminating: ep.terminating,
                };
                match by_addr.get(&(e.ip, e.port)) {
                    Some(existing) if !local || existing.local => {}
                    _ => {
                        by_addr.insert((e.ip, e.port), e);
                    }
                }
            }
        }
    }
    by_addr.into_values().collect()
}

/// The endpoints a service port uses on this node (upstream's `CategorizeEndpoints`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categorized {
    /// Endpoints for traffic policy Cluster: the ready ones, or if none is ready, the
    /// serving and terminating ones. Empty when the port never uses Cluster policy.
    pub cluster: Vec<Endpoint>,
    /// Endpoints for traffic policy Local: this node's ready ones, or if none is ready,
    /// this node's serving and terminating ones. Empty when the port never uses Local policy.
    pub local: Vec<Endpoint>,
    /// The union of both: every endpoint this node may DNAT to.
    pub all_reachable: Vec<Endpoint>,
    /// Whether the service has usable endpoints anywhere in the cluster.
    pub has_any: bool,
}

/// Sorts `endpoints` of `sp` into the sets the rules need. Topology hints are not used.
pub fn categorize_endpoints(endpoints: &[Endpoint], sp: &ServicePortInfo) -> Categorized {
    let mut out = Categorized::default();
    if endpoints.is_empty() {
        return out;
    }
    let usable = |eps: &mut dyn Iterator<Item = &Endpoint>| -> Vec<Endpoint> {
        let eps: Vec<&Endpoint> = eps.collect();
        let ready: Vec<Endpoint> = eps.iter().filter(|e| e.ready).map(|e| (*e).clone()).collect();
        if !ready.is_empty() {
            return ready;
        }
        eps.iter().filter(|e| e.serving && e.terminating).map(|e| (*e).clone()).collect()
    };
    if sp.uses_cluster_endpoints() {
        out.cluster = usable(&mut endpoints.iter());
        out.has_any = !out.cluster.is_empty();
    }
    if !sp.uses_local_endpoints() {
        out.all_reachable = out.cluster.clone();
        return out;
    }
    out.has_any = out.has_any || endpoints.iter().any(|e| e.ready || (e.serving && e.terminating));
    out.local = usable(&mut endpoints.iter().filter(|e| e.local));
    if !sp.uses_cluster_endpoints() {
        out.all_reachable = out.local.clone();
        return out;
    }
    let mut all: Vec<Endpoint> = out.cluster.clone();
    for e in &out.local {
        if !all.iter().any(|a| a.ip == e.ip && a.port == e.port) {
            all.push(e.clone());
        }
    }
    all.sort();
    out.all_reachable = all;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::testing::{ServiceBuilder, SliceBuilder};

    fn ep(ip: &str, local: bool, ready: bool, serving: bool, terminating: bool) -> Endpoint {
        Endpoint { ip: ip.parse().unwrap(), port: 80, local, ready, serving, terminating }
    }

    fn port_info(svc: ServiceBuilder) -> ServicePortInfo {
        parse_service(&svc.build()).remove(0)
    }

    #[test]
    fn headless_external_name_and_ipv6_services_get_no_ports() {
        assert!(parse_service(&ServiceBuilder::new("ns", "h").cluster_ip("None").build()).is_empty());
        assert!(parse_service(&ServiceBuilder::new("ns", "e").type_("ExternalName").build()).is_empty());
        assert!(parse_service(&ServiceBuilder::new("ns", "v6").cluster_ip("fd00::1").build()).is_empty());
        let dual = ServiceBuilder::new("ns", "d").cluster_ip("fd00::1").cluster_ips(&["fd00::1", "10.96.0.7"]);
        assert_eq!(port_info(dual).cluster_ip, Ipv4Addr::new(10, 96, 0, 7));
    }

    #[test]
    fn node_ports_count_only_for_node_port_and_load_balancer_services() {
        let np = ServiceBuilder::new("ns", "a").type_("NodePort").port("http", 80, "TCP").node_port(30080);
        assert_eq!(port_info(np).node_port, 30080);
        let cip = ServiceBuilder::new("ns", "a").port("http", 80, "TCP").node_port(30080);
        assert_eq!(port_info(cip).node_port, 0);
    }

    #[test]
    fn loopback_load_balancer_and_external_ips_are_left_alone() {
        let svc = ServiceBuilder::new("default", "web")
            .type_("LoadBalancer")
            .port("http", 80, "TCP")
            .external_ip("127.0.0.1")
            .external_ip("192.0.2.7")
            .lb_ingress("127.0.0.1", None)
            .lb_ingress("192.0.2.8", None);
        let info = port_info(svc);
        assert_eq!(info.external_ips, vec![Ipv4Addr::new(192, 0, 2, 7)]);
        assert_eq!(info.load_balancer_ips, vec![Ipv4Addr::new(192, 0, 2, 8)]);
    }

    #[test]
    fn load_balancer_ips_skip_proxy_mode_and_ipv6() {
        let svc = ServiceBuilder::new("ns", "lb")
            .type_("LoadBalancer")
            .lb_ingress("192.0.2.1", None)
            .lb_ingress("192.0.2.2", Some("Proxy"))
            .lb_ingress("2001:db8::1", None)
            .lb_ingress("192.0.2.3", Some("VIP"));
        assert_eq!(
            port_info(svc).load_balancer_ips,
            vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 3)]
        );
    }

    #[test]
    fn external_policy_local_needs_external_access() {
        let svc = ServiceBuilder::new("ns", "a").external_traffic_policy("Local");
        assert!(!port_info(svc.clone()).external_policy_local);
        assert!(port_info(svc.external_ip("198.51.100.4")).external_policy_local);
    }

    #[test]
    fn session_affinity_defaults_to_three_hours() {
        let svc = ServiceBuilder::new("ns", "a").session_affinity(None);
        assert_eq!(port_info(svc).affinity_timeout, Some(10800));
        let svc = ServiceBuilder::new("ns", "a").session_affinity(Some(60));
        assert_eq!(port_info(svc).affinity_timeout, Some(60));
        assert_eq!(port_info(ServiceBuilder::new("ns", "a")).affinity_timeout, None);
    }

    #[test]
    fn slices_without_the_service_label_or_not_ipv4_are_ignored() {
        let mut s = SliceBuilder::new("ns", "s1", "svc").build();
        assert!(parse_slice(&s).is_some());
        s.metadata.labels = None;
        assert!(parse_slice(&s).is_none());
        let mut s = SliceBuilder::new("ns", "s1", "svc").build();
        s.address_type = "IPv6".into();
        assert!(parse_slice(&s).is_none());
    }

    #[test]
    fn endpoints_match_ports_by_name_and_protocol_across_slices() {
        let a = parse_slice(
            &SliceBuilder::new("ns", "a", "svc")
                .port("http", 8080, "TCP")
                .port("dns", 53, "UDP")
                .endpoint("10.244.0.5", Some("n1"))
                .build(),
        )
        .unwrap();
        let b = parse_slice(
            &SliceBuilder::new("ns", "b", "svc")
                .port("http", 8080, "TCP")
                .endpoint("10.244.1.5", Some("n2"))
                .endpoint("10.244.0.5", Some("n1"))
                .build(),
        )
        .unwrap();
        let name = ServicePortName {
            service: ServiceKey::new("ns", "svc"),
            port: "http".into(),
            protocol: Protocol::Tcp,
        };
        let eps = endpoints_for(&name, [&a, &b], "n1");
        let addrs: Vec<String> = eps.iter().map(|e| e.to_string()).collect();
        assert_eq!(addrs, vec!["10.244.0.5:8080", "10.244.1.5:8080"]);
        assert!(eps[0].local && !eps[1].local);
        let udp = ServicePortName { protocol: Protocol::Tcp, port: "dns".into(), ..name };
        assert!(endpoints_for(&udp, [&a, &b], "n1").is_empty(), "dns is UDP, not TCP");
    }

    #[test]
    fn cluster_endpoints_are_the_ready_ones() {
        let sp = port_info(ServiceBuilder::new("ns", "a"));
        let eps = [ep("10.0.0.1", false, true, true, false), ep("10.0.0.2", false, false, true, true)];
        let c = categorize_endpoints(&eps, &sp);
        assert_eq!(c.cluster, vec![eps[0].clone()]);
        assert!(c.local.is_empty());
        assert_eq!(c.all_reachable, c.cluster);
        assert!(c.has_any);
    }

    #[test]
    fn serving_terminating_endpoints_are_used_only_when_none_is_ready() {
        let sp = port_info(ServiceBuilder::new("ns", "a"));
        let eps = [
            ep("10.0.0.1", false, false, true, true),
            ep("10.0.0.2", false, false, false, true),
            ep("10.0.0.3", false, false, true, false),
        ];
        let c = categorize_endpoints(&eps, &sp);
        assert_eq!(c.cluster, vec![eps[0].clone()], "only serving and terminating");
        let none = [ep("10.0.0.2", false, false, false, true)];
        let c = categorize_endpoints(&none, &sp);
        assert!(c.cluster.is_empty() && !c.has_any);
    }

    #[test]
    fn internal_policy_local_uses_only_this_nodes_endpoints() {
        let sp = port_info(ServiceBuilder::new("ns", "a").internal_traffic_policy("Local"));
        let remote = ep("10.0.1.1", false, true, true, false);
        let local_term = ep("10.0.0.1", true, false, true, true);
        let c = categorize_endpoints(&[remote.clone(), local_term.clone()], &sp);
        assert!(c.cluster.is_empty(), "cluster endpoints are not used");
        assert_eq!(c.local, vec![local_term.clone()], "falls back to local serving-terminating");
        assert_eq!(c.all_reachable, vec![local_term]);
        assert!(c.has_any);
        let c = categorize_endpoints(&[remote], &sp);
        assert!(c.local.is_empty() && c.has_any, "remote endpoints exist, none here");
    }

    #[test]
    fn external_policy_local_keeps_cluster_endpoints_for_short_circuits() {
        let sp = port_info(
            ServiceBuilder::new("ns", "a")
                .type_("NodePort")
                .node_port(30000)
                .external_traffic_policy("Local"),
        );
        let remote = ep("10.0.1.1", false, true, true, false);
        let local_ready = ep("10.0.0.1", true, true, true, false);
        let local_term = ep("10.0.0.2", true, false, true, true);
        // Sorted by address, as endpoints_for returns them.
        let c = categorize_endpoints(&[local_ready.clone(), local_term.clone(), remote.clone()], &sp);
        assert_eq!(c.cluster, vec![local_ready.clone(), remote.clone()]);
        assert_eq!(c.local, vec![local_ready.clone()]);
        assert_eq!(c.all_reachable, vec![local_ready, remote.clone()]);
        // Only a terminating local endpoint: it is reachable for Local traffic next to the
        // ready remote one for Cluster traffic.
        let c = categorize_endpoints(&[local_term.clone(), remote.clone()], &sp);
        assert_eq!(c.local, vec![local_term.clone()]);
        assert_eq!(c.all_reachable, vec![local_term, remote]);
    }
}
