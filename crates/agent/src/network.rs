//! The node's network, next to its kubelet: the pod bridge and host-gw routes to
//! the other nodes' pod CIDRs, the nftables service proxy and network policy,
//! cluster DNS, and the Ingress gateway.
//!
//! Everything is fed by watches and pushed: an informer event is applied to the
//! component it concerns at once (DNS records and gateway routes take effect for
//! the next query or request), and datapath changes go through one task that
//! coalesces what arrived meanwhile into one nftables transaction. Nothing polls.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use skiff_client::{Api, Client, Informer, InformerEvent, ListParams};
use tokio::sync::mpsc;

/// The namespace and Service of cluster DNS.
pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_SERVICE: &str = "kube-dns";
/// The `endpointslice.kubernetes.io/managed-by` value of slices agents write.
pub const AGENT_MANAGER: &str = "agent.skiff.io";
/// Set on Nodes whose agent runs the Ingress gateway (the Ingress status
/// controller publishes their addresses).
pub const GATEWAY_LABEL: &str = "ingress.skiff.io/gateway";

/// What the node's network runs, from the agent's flags.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The Linux bridge the node's pods are attached to; the agent creates it
    /// with the first address of the node's pod CIDR.
    pub bridge: String,
    /// All pods' addresses (every node's podCIDR lies in it).
    pub cluster_cidr: Option<(Ipv4Addr, u8)>,
    /// Masquerade pod traffic that leaves the cluster CIDR.
    pub masquerade_outside: bool,
    /// Run the nftables service proxy and network policy.
    pub service_proxy: bool,
    /// Add routes to the other nodes' pod CIDRs through their addresses.
    pub routes: bool,
    /// Serve cluster DNS on the bridge's address (port 53).
    pub dns: Option<DnsOptions>,
    /// Run the Ingress gateway.
    pub ingress: Option<IngressOptions>,
}

#[derive(Debug, Clone)]
pub struct DnsOptions {
    pub cluster_domain: String,
    /// Where names outside the cluster domain go.
    pub upstreams: Vec<SocketAddr>,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct IngressOptions {
    /// Ports on every address of the node; 0 leaves that listener out.
    pub http_port: u16,
    pub https_port: u16,
}

/// What the kubelet learnt at registration.
#[derive(Debug, Clone)]
pub struct NodeNet {
    pub name: String,
    pub node_ip: IpAddr,
    pub pod_cidrs: Vec<String>,
}

/// How soon a failed datapath write is tried again when nothing else changes.
const RETRY: Duration = Duration::from_secs(1);

/// A change for the datapath task.
enum Change {
    Service(InformerEvent<Service>),
    Slice(InformerEvent<EndpointSlice>),
    Pod(InformerEvent<Pod>),
    Namespace(InformerEvent<Namespace>),
    Policy(InformerEvent<NetworkPolicy>),
    Nodes,
}

/// The kube-dns Service's cluster IP: the nameserver of pods with dnsPolicy
/// ClusterFirst when `--cluster-dns` is not given. The server creates the Service
/// at its start; without it (after 30 s) pods get the host's resolvers.
pub async fn cluster_dns_address(client: &Client) -> Option<String> {
    let api: Api<Service> = Api::namespaced(client, DNS_NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match api.get_opt(DNS_SERVICE).await {
            Ok(Some(svc)) => match svc.spec.and_then(|s| s.cluster_ip).filter(|ip| ip.parse::<IpAddr>().is_ok()) {
                Some(ip) => return Some(ip),
                None => {
                    tracing::warn!("the kube-dns Service has no cluster IP; pods use the host's resolvers");
                    return None;
                }
            },
            Ok(None) if Instant::now() >= deadline => {
                tracing::warn!("there is no kube-system/kube-dns Service; pods use the host's resolvers (pass --cluster-dns)");
                return None;
            }
            Ok(None) => {}
            Err(e) if Instant::now() >= deadline => {
                tracing::warn!(error = %e, "reading the kube-dns Service failed; pods use the host's resolvers");
                return None;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs the node's network until the future is dropped or a part fails.
pub async fn run(client: Client, cfg: NetworkConfig, node: NodeNet) -> anyhow::Result<()> {
    let pod_cidr = node
        .pod_cidrs
        .iter()
        .find_map(|c| skiff_net::Cidr::parse(c))
        .ok_or_else(|| anyhow::anyhow!("node {} has no IPv4 podCIDR", node.name))?;
    let gateway = pod_cidr.first_host();
    skiff_net::routes::enable_forwarding().map_err(|e| anyhow::anyhow!("enabling IPv4 forwarding: {e}"))?;
    skiff_net::routes::ensure_bridge(&cfg.bridge, gateway, pod_cidr.prefix)
        .await
        .map_err(|e| anyhow::anyhow!("creating the pod bridge {}: {e}", cfg.bridge))?;
    // Pods may reach services whose endpoint is on the node's loopback (the API
    // server of `skiff up` listens on 127.0.0.1): DNAT to 127.0.0.0/8 from the
    // bridge needs route_localnet there.
    let localnet = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", cfg.bridge);
    if let Err(e) = std::fs::write(&localnet, "1") {
        tracing::warn!(error = %e, path = %localnet, "pods cannot reach services served on the node's loopback");
    }

    let informers = Informers::new(&client);
    let (tx, rx) = mpsc::unbounded_channel::<Change>();
    let mut tasks: tokio::task::JoinSet<anyhow::Result<()>> = tokio::task::JoinSet::new();

    // Cluster DNS: records follow Services and EndpointSlices as events arrive.
    let mut dns_server = None;
    if let Some(dns) = &cfg.dns {
        let records = skiff_dns::Records::new(&dns.cluster_domain);
        let r = records.clone();
        informers.services.on_event(Arc::new(move |ev: &InformerEvent<Service>| match ev {
            InformerEvent::Applied { new, .. } => r.apply_service(new),
            InformerEvent::Deleted(s) => r.delete_service(ns_of(&s.metadata), name_of(&s.metadata)),
        }));
        let r = records.clone();
        informers.slices.on_event(Arc::new(move |ev: &InformerEvent<EndpointSlice>| match ev {
            InformerEvent::Applied { new, .. } => r.apply_slice(new),
            InformerEvent::Deleted(s) => r.delete_slice(ns_of(&s.metadata), name_of(&s.metadata)),
        }));
        let addr = SocketAddr::new(IpAddr::V4(gateway), dns.port);
        let server = skiff_dns::DnsServer::bind(
            &[addr],
            records,
            skiff_dns::DnsConfig { cluster_domain: dns.cluster_domain.clone(), upstreams: dns.upstreams.clone(), ttl: 5 },
        )
        .await
        .map_err(|e| anyhow::anyhow!("serving cluster DNS on {addr}: {e}"))?;
        tracing::info!(%addr, "cluster DNS serving");
        dns_server = Some(server);
        // Written again whenever someone else changes or deletes it (the Node was
        // deleted and registered again, say).
        let changed = Arc::new(tokio::sync::Notify::new());
        let (n, slice_name) = (changed.clone(), dns_slice_name(&node.name));
        informers.slices.on_event(Arc::new(move |ev: &InformerEvent<EndpointSlice>| {
            let m = &ev.object().metadata;
            // Our own writes come back too: the publisher then finds nothing to do.
            if ns_of(m) == DNS_NAMESPACE && name_of(m) == slice_name {
                n.notify_one();
            }
        }));
        let (c, n) = (client.clone(), node.clone());
        tasks.spawn(async move {
            loop {
                publish_dns_endpoints(&c, &n, gateway, addr.port()).await;
                changed.notified().await;
            }
        });
    }

    // The Ingress gateway: routes follow Ingresses, classes, Services, slices and
    // TLS Secrets.
    let mut gateway_server = None;
    if let Some(ing) = &cfg.ingress {
        let gcfg = skiff_gateway::GatewayConfig {
            http: (ing.http_port != 0).then(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), ing.http_port)),
            https: (ing.https_port != 0).then(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), ing.https_port)),
            class_name: "skiff".into(),
            controller: "skiff.io/ingress".into(),
        };
        let routes = skiff_gateway::Routes::new(&gcfg);
        feed_gateway(&informers, &routes);
        match skiff_gateway::Gateway::start(gcfg, routes).await {
            Ok(g) => {
                tracing::info!(http = ?g.http_addr(), https = ?g.https_addr(), "ingress gateway serving");
                gateway_server = Some(g);
                let (c, name) = (client.clone(), node.name.clone());
                tasks.spawn(async move {
                    label_gateway_node(c, name).await;
                    Ok(())
                });
            }
            // Another program may hold the ports on a shared host: the node still
            // runs pods and services, without Ingress.
            Err(e) => tracing::warn!(error = %e, "the ingress gateway could not start; this node serves no Ingress"),
        }
    }

    // The datapath: one task owns the proxy, the policy engine and the routes.
    let t = tx.clone();
    informers.services.on_event(Arc::new(move |ev: &InformerEvent<Service>| {
        let _ = t.send(Change::Service(clone_event(ev)));
    }));
    let t = tx.clone();
    informers.slices.on_event(Arc::new(move |ev: &InformerEvent<EndpointSlice>| {
        let _ = t.send(Change::Slice(clone_event(ev)));
    }));
    let t = tx.clone();
    informers.nodes.on_event(Arc::new(move |_: &InformerEvent<Node>| {
        let _ = t.send(Change::Nodes);
    }));
    if cfg.service_proxy {
        let t = tx.clone();
        informers.pods.on_event(Arc::new(move |ev: &InformerEvent<Pod>| {
            let _ = t.send(Change::Pod(clone_event(ev)));
        }));
        let t = tx.clone();
        informers.namespaces.on_event(Arc::new(move |ev: &InformerEvent<Namespace>| {
            let _ = t.send(Change::Namespace(clone_event(ev)));
        }));
        let t = tx.clone();
        informers.policies.on_event(Arc::new(move |ev: &InformerEvent<NetworkPolicy>| {
            let _ = t.send(Change::Policy(clone_event(ev)));
        }));
    }
    drop(tx);

    let datapath = Datapath::new(&cfg, &node).await?;
    let nodes_store = informers.nodes.store();
    let synced = informers.clone();
    tasks.spawn(async move {
        synced.wait_synced().await;
        datapath.run(rx, nodes_store).await
    });
    tasks.spawn(async move {
        informers.run().await;
        Ok(())
    });

    // Tasks that finish their job (labelling the node) end with Ok; the first
    // failure ends the network.
    let result = loop {
        match tasks.join_next().await {
            Some(Ok(Ok(()))) => continue,
            Some(Ok(Err(e))) => break Err(e),
            Some(Err(e)) => break Err(anyhow::anyhow!("a network task failed: {e}")),
            None => break Err(anyhow::anyhow!("every network task ended")),
        }
    };
    drop((dns_server, gateway_server));
    result
}

fn clone_event<K: Clone>(ev: &InformerEvent<K>) -> InformerEvent<K> {
    match ev {
        InformerEvent::Applied { old, new } => InformerEvent::Applied { old: old.clone(), new: new.clone() },
        InformerEvent::Deleted(o) => InformerEvent::Deleted(o.clone()),
    }
}

fn ns_of(m: &ObjectMeta) -> &str {
    m.namespace.as_deref().unwrap_or("")
}

fn name_of(m: &ObjectMeta) -> &str {
    m.name.as_deref().unwrap_or("")
}

fn feed_gateway(informers: &Informers, routes: &skiff_gateway::Routes) {
    let r = routes.clone();
    informers.ingresses.on_event(Arc::new(move |ev: &InformerEvent<Ingress>| match ev {
        InformerEvent::Applied { new, .. } => r.apply_ingress(new),
        InformerEvent::Deleted(o) => r.delete_ingress(ns_of(&o.metadata), name_of(&o.metadata)),
    }));
    let r = routes.clone();
    informers.ingress_classes.on_event(Arc::new(move |ev: &InformerEvent<IngressClass>| match ev {
        InformerEvent::Applied { new, .. } => r.apply_ingress_class(new),
        InformerEvent::Deleted(o) => r.delete_ingress_class(name_of(&o.metadata)),
    }));
    let r = routes.clone();
    informers.services.on_event(Arc::new(move |ev: &InformerEvent<Service>| match ev {
        InformerEvent::Applied { new, .. } => r.apply_service(new),
        InformerEvent::Deleted(o) => r.delete_service(ns_of(&o.metadata), name_of(&o.metadata)),
    }));
    let r = routes.clone();
    informers.slices.on_event(Arc::new(move |ev: &InformerEvent<EndpointSlice>| match ev {
        InformerEvent::Applied { new, .. } => r.apply_slice(new),
        InformerEvent::Deleted(o) => r.delete_slice(ns_of(&o.metadata), name_of(&o.metadata)),
    }));
    let r = routes.clone();
    informers.tls_secrets.on_event(Arc::new(move |ev: &InformerEvent<Secret>| match ev {
        InformerEvent::Applied { new, .. } => r.apply_secret(new),
        InformerEvent::Deleted(o) => r.delete_secret(ns_of(&o.metadata), name_of(&o.metadata)),
    }));
}

/// The watches the node's network needs (cluster-wide).
#[derive(Clone)]
struct Informers {
    services: Informer<Service>,
    slices: Informer<EndpointSlice>,
    nodes: Informer<Node>,
    pods: Informer<Pod>,
    namespaces: Informer<Namespace>,
    policies: Informer<NetworkPolicy>,
    ingresses: Informer<Ingress>,
    ingress_classes: Informer<IngressClass>,
    tls_secrets: Informer<Secret>,
}

impl Informers {
    fn new(client: &Client) -> Informers {
        Informers {
            services: Informer::all(client),
            slices: Informer::all(client),
            nodes: Informer::all(client),
            pods: Informer::all(client),
            namespaces: Informer::all(client),
            policies: Informer::all(client),
            ingresses: Informer::all(client),
            ingress_classes: Informer::all(client),
            tls_secrets: Informer::new(
                Api::all(client),
                ListParams { field_selector: Some("type=kubernetes.io/tls".into()), ..ListParams::default() },
            ),
        }
    }

    /// Waits for the watches the datapath's first sync depends on.
    async fn wait_synced(&self) {
        self.services.wait_synced().await;
        self.slices.wait_synced().await;
        self.nodes.wait_synced().await;
        self.pods.wait_synced().await;
        self.namespaces.wait_synced().await;
        self.policies.wait_synced().await;
    }

    async fn run(self) {
        tokio::join!(
            self.services.run(),
            self.slices.run(),
            self.nodes.run(),
            self.pods.run(),
            self.namespaces.run(),
            self.policies.run(),
            self.ingresses.run(),
            self.ingress_classes.run(),
            self.tls_secrets.run(),
        );
    }
}

/// The parts that write the kernel's state.
struct Datapath {
    proxy: Option<skiff_net::proxy::Proxier>,
    policy: Option<skiff_net::policy::PolicyEngine>,
    routes: Option<skiff_net::routes::RouteManager>,
}

impl Datapath {
    async fn new(cfg: &NetworkConfig, node: &NodeNet) -> anyhow::Result<Datapath> {
        let mut proxy = None;
        let mut policy = None;
        if cfg.service_proxy {
            let nft: Arc<dyn skiff_net::nft::Nft> = Arc::new(skiff_net::nft::NftCli::new());
            skiff_net::nft::reset_table(nft.as_ref()).await.map_err(|e| anyhow::anyhow!("creating the nftables table: {e}"))?;
            let node_ips = match node.node_ip {
                IpAddr::V4(ip) => vec![ip],
                IpAddr::V6(_) => Vec::new(),
            };
            let mut p = skiff_net::proxy::Proxier::new(
                skiff_net::proxy::ProxyConfig {
                    node_name: node.name.clone(),
                    node_ips,
                    cluster_cidr: cfg.cluster_cidr,
                    masquerade_outside: cfg.masquerade_outside,
                    pod_bridge: Some(cfg.bridge.clone()),
                },
                nft.clone(),
            );
            p.init().await.map_err(|e| anyhow::anyhow!("setting up the service proxy: {e}"))?;
            let mut e = skiff_net::policy::PolicyEngine::new(skiff_net::policy::PolicyConfig { node_name: node.name.clone() }, nft);
            e.init().await.map_err(|e| anyhow::anyhow!("setting up network policy: {e}"))?;
            proxy = Some(p);
            policy = Some(e);
        }
        let routes = if cfg.routes {
            Some(skiff_net::routes::RouteManager::new(&node.name).await.map_err(|e| anyhow::anyhow!("opening netlink: {e}"))?)
        } else {
            None
        };
        Ok(Datapath { proxy, policy, routes })
    }

    /// Applies changes as they come: everything queued meanwhile goes into one
    /// sync.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Change>, nodes: skiff_client::Store<Node>) -> anyhow::Result<()> {
        let mut nodes_dirty = true;
        loop {
            // Drain what is there without waiting, then sync.
            while let Ok(change) = rx.try_recv() {
                nodes_dirty |= self.apply(change);
            }
            self.sync(&mut nodes_dirty, &nodes).await;
            // What failed is tried again after a pause even if nothing else comes.
            let pending = nodes_dirty || self.proxy.as_ref().is_some_and(|p| p.dirty()) || self.policy.as_ref().is_some_and(|p| p.dirty());
            let next = if pending {
                match tokio::time::timeout(RETRY, rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => continue,
                }
            } else {
                rx.recv().await
            };
            match next {
                Some(change) => nodes_dirty |= self.apply(change),
                None => return Ok(()),
            }
        }
    }

    /// Returns whether the nodes changed.
    fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Service(ev) => {
                if let Some(p) = &mut self.proxy {
                    match ev {
                        InformerEvent::Applied { new, .. } => p.apply_service(&new),
                        InformerEvent::Deleted(o) => p.delete_service(ns_of(&o.metadata), name_of(&o.metadata)),
                    }
                }
            }
            Change::Slice(ev) => {
                if let Some(p) = &mut self.proxy {
                    match ev {
                        InformerEvent::Applied { new, .. } => p.apply_slice(&new),
                        InformerEvent::Deleted(o) => p.delete_slice(ns_of(&o.metadata), name_of(&o.metadata)),
                    }
                }
            }
            Change::Pod(ev) => {
                if let Some(e) = &mut self.policy {
                    match ev {
                        InformerEvent::Applied { new, .. } => e.apply_pod(&new),
                        InformerEvent::Deleted(o) => e.delete_pod(ns_of(&o.metadata), name_of(&o.metadata)),
                    }
                }
            }
            Change::Namespace(ev) => {
                if let Some(e) = &mut self.policy {
                    match ev {
                        InformerEvent::Applied { new, .. } => e.apply_namespace(&new),
                        InformerEvent::Deleted(o) => e.delete_namespace(name_of(&o.metadata)),
                    }
                }
            }
            Change::Policy(ev) => {
                if let Some(e) = &mut self.policy {
                    match ev {
                        InformerEvent::Applied { new, .. } => e.apply_policy(&new),
                        InformerEvent::Deleted(o) => e.delete_policy(ns_of(&o.metadata), name_of(&o.metadata)),
                    }
                }
            }
            Change::Nodes => return true,
        }
        false
    }

    /// Writes what changed. Failures are logged and retried with the next change
    /// or after [`RETRY`], so one bad transaction does not stop the node.
    async fn sync(&mut self, nodes_dirty: &mut bool, nodes: &skiff_client::Store<Node>) {
        if let Some(p) = &mut self.proxy {
            if p.dirty() {
                let started = Instant::now();
                match p.sync().await {
                    Ok(stats) => tracing::debug!(services = stats.services_changed, took = ?started.elapsed(), "service rules synced"),
                    Err(e) => tracing::warn!(error = %e, "syncing service rules failed; retrying"),
                }
            }
        }
        if let Some(e) = &mut self.policy {
            if e.dirty() {
                if let Err(err) = e.sync().await {
                    tracing::warn!(error = %err, "syncing network policy failed; retrying");
                }
            }
        }
        if *nodes_dirty {
            if let Some(r) = &mut self.routes {
                let list: Vec<Node> = nodes.list().iter().map(|n| (**n).clone()).collect();
                match r.sync(&list).await {
                    Ok(()) => *nodes_dirty = false,
                    Err(e) => tracing::warn!(error = %e, "syncing routes to other nodes failed; retrying"),
                }
            } else {
                *nodes_dirty = false;
            }
        }
    }
}

/// Keeps `kube-system/kube-dns-<node>` pointing at this node's DNS server, so the
/// kube-dns Service (internalTrafficPolicy Local) sends each node's pods to their
/// own node.
async fn publish_dns_endpoints(client: &Client, node: &NodeNet, addr: Ipv4Addr, port: u16) {
    let api: Api<EndpointSlice> = Api::namespaced(client, DNS_NAMESPACE);
    let name = dns_slice_name(&node.name);
    let nodes: Api<Node> = Api::all(client);
    let mut retry = Duration::from_millis(500);
    loop {
        let uid = match nodes.get(&node.name).await {
            Ok(n) => n.metadata.uid.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "reading this node for its DNS endpoint failed; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let slice = dns_slice(&name, node, &uid, addr, port);
        let result = match api.get_opt(&name).await {
            Ok(Some(current)) if same_slice(&current, &slice) => return,
            Ok(Some(current)) => {
                let mut next = slice.clone();
                next.metadata.resource_version = current.metadata.resource_version.clone();
                api.replace(&name, &next).await.map(|_| ())
            }
            Ok(None) => api.create(&slice).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                tracing::info!(slice = %name, %addr, "published this node's DNS endpoint");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, slice = %name, "publishing the DNS endpoint failed; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn dns_slice_name(node: &str) -> String {
    format!("{DNS_SERVICE}-{node}")
}

fn same_slice(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.endpoints == b.endpoints && a.ports == b.ports && a.metadata.labels == b.metadata.labels
}

fn dns_slice(name: &str, node: &NodeNet, uid: &str, addr: Ipv4Addr, port: u16) -> EndpointSlice {
    let port = |name: &str, proto: &str| EndpointPort {
        name: Some(name.into()),
        port: Some(port.into()),
        protocol: Some(proto.into()),
        app_protocol: None,
    };
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(DNS_NAMESPACE.into()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/service-name".to_string(), DNS_SERVICE.to_string()),
                ("endpointslice.kubernetes.io/managed-by".to_string(), AGENT_MANAGER.to_string()),
            ])),
            owner_references: (!uid.is_empty()).then(|| {
                vec![OwnerReference { api_version: "v1".into(), kind: "Node".into(), name: node.name.clone(), uid: uid.to_string(), ..Default::default() }]
            }),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![addr.to_string()],
            conditions: Some(EndpointConditions { ready: Some(true), serving: Some(true), terminating: Some(false) }),
            node_name: Some(node.name.clone()),
            ..Default::default()
        }],
        ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
    }
}

/// Labels the Node as running the gateway, so Ingress status lists its address.
async fn label_gateway_node(client: Client, name: String) {
    let api: Api<Node> = Api::all(&client);
    let patch = serde_json::json!({"metadata": {"labels": {GATEWAY_LABEL: "true"}}});
    let mut retry = Duration::from_millis(500);
    loop {
        match api.patch(&name, skiff_client::PatchType::Merge, &patch).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "labelling the node as an ingress gateway failed; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dns_slice_points_the_kube_dns_service_at_this_node() {
        let node = NodeNet { name: "n1".into(), node_ip: "192.0.2.1".parse().unwrap(), pod_cidrs: vec!["10.244.1.0/24".into()] };
        let s = dns_slice("kube-dns-n1", &node, "u1", Ipv4Addr::new(10, 244, 1, 1), 53);
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["kubernetes.io/service-name"], "kube-dns");
        assert_eq!(labels["endpointslice.kubernetes.io/managed-by"], AGENT_MANAGER);
        assert_eq!(s.endpoints[0].addresses, vec!["10.244.1.1".to_string()]);
        assert_eq!(s.endpoints[0].node_name.as_deref(), Some("n1"));
        let ports = s.ports.unwrap();
        assert_eq!(ports.iter().map(|p| (p.name.clone().unwrap(), p.protocol.clone().unwrap())).collect::<Vec<_>>(), vec![("dns".into(), "UDP".into()), ("dns-tcp".into(), "TCP".into())]);
        assert_eq!(s.metadata.owner_references.unwrap()[0].uid, "u1");
    }
}
