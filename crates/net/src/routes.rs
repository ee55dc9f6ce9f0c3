//! Host-gw routing and the pod bridge, through rtnetlink.
//!
//! Every node's pods live in that node's pod CIDR (`spec.podCIDR`, allocated by the server).
//! With nodes on one L2 segment, no overlay is needed: each node routes every other node's
//! pod CIDR to that node's InternalIP (`10.244.2.0/24 via 192.168.1.12`), and the other node
//! forwards into its bridge. [`RouteManager`] keeps those routes in the main table, marked
//! with protocol [`ROUTE_PROTOCOL`] so that routes left by an earlier run (or for nodes that
//! are gone) are recognised and removed, while routes of anybody else are never touched.
//!
//! [`ensure_bridge`] creates the pod bridge with the gateway address before the first pod
//! exists, so node-local services (cluster DNS) can bind the gateway address early; the CNI
//! bridge plugin later attaches pods to the same bridge. [`enable_forwarding`] turns on the
//! sysctls routing and bridged filtering need.
//!
//! IPv4 only: IPv6 pod CIDRs and addresses are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Node;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, RouteMessageBuilder};

/// The routing protocol number (`proto 90` in `ip route`) of the routes Skiff adds. Any
/// route in the main table with it belongs to Skiff, and one that no current node explains
/// is stale.
pub const ROUTE_PROTOCOL: u8 = 0x5a;

/// `/proc/sys` files [`enable_forwarding`] sets to 1.
const FORWARDING_SYSCTLS: [&str; 2] = ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/bridge/bridge-nf-call-iptables"];

// errno values the kernel answers with, which decide what to do next.
const EEXIST: i32 = 17;
const ENODEV: i32 = 19;
const ESRCH: i32 = 3;
const ENETUNREACH: i32 = 101;
const EHOSTUNREACH: i32 = 113;

/// Why routes or the bridge could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No netlink socket (not Linux, or out of file descriptors).
    #[error("opening a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    /// The kernel refused a request.
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// The bridge's name is taken by an interface of another kind.
    #[error("interface {name} exists and is not a bridge")]
    NotABridge { name: String },
    #[error("/{prefix} is not an IPv4 prefix length")]
    InvalidPrefix { prefix: u8 },
    /// A sysctl could not be written (`bridge-nf-call-iptables` is missing when the kernel
    /// has no br_netfilter).
    #[error("writing {path}: {source}")]
    Sysctl {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl RouteError {
    fn netlink(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> RouteError {
        let op = op.into();
        move |source| RouteError::Netlink { op, source }
    }
}

/// The errno of a kernel refusal, if that is what the error is.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => Some(msg.raw_code().abs()),
        _ => None,
    }
}

// === impl Netlink ===

/// A netlink handle whose connection task stops when this is dropped.
struct Netlink {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Netlink {
    fn connect() -> Result<Netlink, RouteError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(RouteError::Connect)?;
        Ok(Netlink { handle, task: tokio::spawn(connection) })
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === impl RouteManager ===

/// Keeps this node's host-gw routes to the other nodes' pod CIDRs.
pub struct RouteManager {
    node_name: String,
    netlink: Netlink,
    /// Nodes skipped at the last sync, so each is logged once rather than at every sync.
    skipped: BTreeSet<String>,
}

/// One route this node should have: `dst/len via gateway`.
type Wanted = BTreeMap<(Ipv4Addr, u8), Ipv4Addr>;

impl RouteManager {
    /// `node_name` is this node; routes it adds carry a distinctive protocol number
    /// ([`ROUTE_PROTOCOL`]) so stale ones can be found and removed.
    pub async fn new(node_name: &str) -> Result<Self, RouteError> {
        Ok(RouteManager { node_name: node_name.to_string(), netlink: Netlink::connect()?, skipped: BTreeSet::new() })
    }

    /// For every other node with spec.podCIDR(s) and an InternalIP: `podCIDR via InternalIP`
    /// (replaced if it changed); removes routes it added earlier for nodes that are gone or
    /// changed. Skips nodes whose InternalIP is not directly reachable (the kernel would
    /// refuse such a gateway, and a route through a router would not reach the node's bridge).
    ///
    /// Every route is tried even when one fails; the first failure is returned.
    pub async fn sync(&mut self, nodes: &[Node]) -> Result<(), RouteError> {
        let mut wanted: Wanted = BTreeMap::new();
        let mut skipped = BTreeSet::new();
        let mut sorted: Vec<&Node> = nodes.iter().collect();
        sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for node in sorted {
            let name = node.metadata.name.clone().unwrap_or_default();
            if name == self.node_name {
                continue;
            }
            let cidrs = pod_cidrs(node);
            let Some(gateway) = internal_ip(node) else { continue };
            if cidrs.is_empty() {
                continue;
            }
            if !self.directly_reachable(gateway).await? {
                if !self.skipped.contains(&name) {
                    tracing::warn!(node = %name, %gateway, "not routing to the pods of a node whose InternalIP is not on a directly connected network");
                }
                skipped.insert(name);
                continue;
            }
            for cidr in cidrs {
                match wanted.get(&cidr) {
                    Some(other) if *other != gateway => {
                        tracing::warn!(node = %name, cidr = %format!("{}/{}", cidr.0, cidr.1), "pod CIDR claimed by two nodes; keeping the first");
                    }
                    _ => {
                        wanted.insert(cidr, gateway);
                    }
                }
            }
        }
        self.skipped = skipped;

        let mut first_err = None;
        let installed = self.installed().await?;
        for ((dst, len), (gateway, msg)) in &installed {
            if wanted.get(&(*dst, *len)) == Some(gateway) {
                continue;
            }
            if wanted.contains_key(&(*dst, *len)) {
                // Replaced below.
                continue;
            }
            match self.netlink.handle.route().del(msg.clone()).execute().await {
                Ok(()) => tracing::info!(dst = %format!("{dst}/{len}"), %gateway, "removed host-gw route"),
                Err(e) if errno(&e) == Some(ESRCH) => {}
                Err(e) => {
                    let err = RouteError::netlink(format!("deleting route {dst}/{len} via {gateway}"))(e);
                    tracing::warn!(%err, "host-gw route");
                    first_err.get_or_insert(err);
                }
            }
        }
        for ((dst, len), gateway) in &wanted {
            if installed.get(&(*dst, *len)).map(|(gw, _)| gw) == Some(gateway) {
                continue;
            }
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(*dst, *len)
                .gateway(*gateway)
                .protocol(RouteProtocol::from(ROUTE_PROTOCOL))
                .build();
            match self.netlink.handle.route().add(route).replace().execute().await {
                Ok(()) => tracing::info!(dst = %format!("{dst}/{len}"), %gateway, "host-gw route"),
                Err(e) => {
                    let err = RouteError::netlink(format!("adding route {dst}/{len} via {gateway}"))(e);
                    tracing::warn!(%err, "host-gw route");
                    first_err.get_or_insert(err);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The routes of the main table that carry [`ROUTE_PROTOCOL`], by destination.
    async fn installed(&self) -> Result<BTreeMap<(Ipv4Addr, u8), (Ipv4Addr, RouteMessage)>, RouteError> {
        let dump = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let routes: Vec<RouteMessage> = self
            .netlink
            .handle
            .route()
            .get(dump)
            .execute()
            .try_collect()
            .await
            .map_err(RouteError::netlink("listing routes"))?;
        let mut out = BTreeMap::new();
        for r in routes {
            if u8::from(r.header.protocol) != ROUTE_PROTOCOL
                || r.header.table != RouteHeader::RT_TABLE_MAIN
                || r.header.address_family != AddressFamily::Inet
            {
                continue;
            }
            let mut dst = Ipv4Addr::UNSPECIFIED;
            let mut gateway = Ipv4Addr::UNSPECIFIED;
            for attr in &r.attributes {
                match attr {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = *a,
                    RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = *a,
                    _ => {}
                }
            }
            out.insert((dst, r.header.destination_prefix_length), (gateway, r));
        }
        Ok(out)
    }

    /// Whether the kernel reaches `addr` without a gateway (it is on a connected network).
    async fn directly_reachable(&self, addr: Ipv4Addr) -> Result<bool, RouteError> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(addr, 32).build();
        let answer: Result<Vec<RouteMessage>, _> = self.netlink.handle.route().get(query).execute().try_collect().await;
        let routes = match answer {
            Ok(routes) => routes,
            Err(e) if matches!(errno(&e), Some(ENETUNREACH | EHOSTUNREACH)) => return Ok(false),
            Err(e) => return Err(RouteError::netlink(format!("looking up the route to {addr}"))(e)),
        };
        Ok(routes.iter().any(|r| {
            r.header.kind == RouteType::Unicast
                && !r.attributes.iter().any(|a| matches!(a, RouteAttribute::Gateway(_) | RouteAttribute::MultiPath(_)))
        }))
    }
}

/// The node's IPv4 pod CIDRs (`spec.podCIDRs`, else `spec.podCIDR`), as network and length.
fn pod_cidrs(node: &Node) -> Vec<(Ipv4Addr, u8)> {
    let spec = node.spec.as_ref();
    let listed = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    let cidrs = if listed.is_empty() { spec.and_then(|s| s.pod_cidr.clone()).into_iter().collect() } else { listed };
    cidrs.iter().filter_map(|c| crate::Cidr::parse(c)).map(|c| (c.addr, c.prefix)).collect()
}

/// The node's first IPv4 `InternalIP`.
fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    addresses.iter().filter(|a| a.type_ == "InternalIP").find_map(|a| a.address.parse().ok())
}

// === the pod bridge ===

/// Creates (or adopts) the bridge `name` with `gateway/prefix` as its address and brings it up,
/// so that services (DNS) can bind the gateway address before the first pod exists; compatible
/// with the CNI bridge plugin (isGateway) which later attaches pods to it.
///
/// Other IPv4 addresses on the bridge are removed: the CNI plugin refuses a bridge whose
/// address differs from the gateway, which is what a pod CIDR change would otherwise leave.
pub async fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<(), RouteError> {
    if prefix > 32 {
        return Err(RouteError::InvalidPrefix { prefix });
    }
    let nl = Netlink::connect()?;
    let link = match find_link(&nl.handle, name).await? {
        Some(link) => link,
        None => {
            match nl.handle.link().add(LinkBridge::new(name).build()).execute().await {
                Ok(()) => tracing::info!(bridge = %name, "created pod bridge"),
                // Created meanwhile (by the CNI plugin for a first pod): adopt it.
                Err(e) if errno(&e) == Some(EEXIST) => {}
                Err(e) => return Err(RouteError::netlink(format!("creating bridge {name}"))(e)),
            }
            find_link(&nl.handle, name).await?.ok_or_else(|| RouteError::NotABridge { name: name.to_string() })?
        }
    };
    let is_bridge = link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    });
    if !is_bridge {
        return Err(RouteError::NotABridge { name: name.to_string() });
    }
    let index = link.header.index;

    let addresses: Vec<AddressMessage> = nl
        .handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(RouteError::netlink(format!("listing the addresses of {name}")))?;
    let mut present = false;
    for addr in addresses {
        if addr.header.family != AddressFamily::Inet {
            continue;
        }
        let ip = addr.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        if ip == Some(IpAddr::V4(gateway)) && addr.header.prefix_len == prefix {
            present = true;
            continue;
        }
        let shown = ip.map(|ip| format!("{ip}/{}", addr.header.prefix_len)).unwrap_or_default();
        nl.handle
            .address()
            .del(addr)
            .execute()
            .await
            .map_err(RouteError::netlink(format!("removing {shown} from {name}")))?;
        tracing::info!(bridge = %name, address = %shown, "removed a stale address from the pod bridge");
    }
    if !present {
        match nl.handle.address().add(index, IpAddr::V4(gateway), prefix).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(EEXIST) => {}
            Err(e) => return Err(RouteError::netlink(format!("adding {gateway}/{prefix} to {name}"))(e)),
        }
    }
    nl.handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(RouteError::netlink(format!("bringing {name} up")))?;
    Ok(())
}

async fn find_link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, RouteError> {
    let found: Result<Vec<LinkMessage>, _> = handle.link().get().match_name(name.to_string()).execute().try_collect().await;
    match found {
        Ok(mut links) => Ok(links.pop()),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(RouteError::netlink(format!("looking up interface {name}"))(e)),
    }
}

/// Sets net.ipv4.ip_forward=1 and net.bridge.bridge-nf-call-iptables=1 in the current network
/// namespace (writes /proc/sys). The first lets the node route between its bridge and the
/// other nodes; the second sends bridged pod-to-pod traffic through the `ip` family's hooks,
/// where the service proxy and network policy see it.
pub fn enable_forwarding() -> Result<(), RouteError> {
    for path in FORWARDING_SYSCTLS {
        std::fs::write(path, "1").map_err(|source| RouteError::Sysctl { path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidrs: serde_json::Value, addresses: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"podCIDRs": cidrs},
            "status": {"addresses": addresses}
        }))
        .unwrap()
    }

    #[test]
    fn pod_cidrs_keep_ipv4_networks_only() {
        let n = node("a", json!(["10.244.1.7/24", "fd00:1::/64", "nonsense"]), json!([]));
        assert_eq!(pod_cidrs(&n), vec![("10.244.1.0".parse().unwrap(), 24)]);
        let single: Node =
            serde_json::from_value(json!({"metadata": {"name": "b"}, "spec": {"podCIDR": "10.244.2.0/24"}})).unwrap();
        assert_eq!(pod_cidrs(&single), vec![("10.244.2.0".parse().unwrap(), 24)]);
    }

    #[test]
    fn the_gateway_is_the_first_ipv4_internal_ip() {
        let n = node(
            "a",
            json!([]),
            json!([
                {"type": "Hostname", "address": "a"},
                {"type": "ExternalIP", "address": "203.0.113.1"},
                {"type": "InternalIP", "address": "fd00::1"},
                {"type": "InternalIP", "address": "192.168.1.12"}
            ]),
        );
        assert_eq!(internal_ip(&n), Some("192.168.1.12".parse().unwrap()));
        assert_eq!(internal_ip(&node("b", json!([]), json!([{"type": "Hostname", "address": "b"}]))), None);
    }

    #[test]
    fn our_protocol_number_is_not_a_named_one() {
        assert_eq!(RouteProtocol::from(ROUTE_PROTOCOL), RouteProtocol::Other(ROUTE_PROTOCOL));
    }
}
