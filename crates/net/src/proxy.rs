//! The service proxy: Services as nftables rules in `table ip skiff`, like kube-proxy's
//! nftables mode.
//!
//! The node agent feeds the [`Proxier`] Services and EndpointSlices from its informers
//! (`apply_*` / `delete_*`) and calls [`Proxier::sync`] when [`Proxier::dirty`] says there is
//! something to write. A sync writes one nft transaction holding only the objects of the
//! services that changed since the last one: their dispatch-map elements are added or
//! deleted, their chains flushed and refilled, and their stale chains and sets deleted. A
//! failed transaction changes nothing in the kernel and leaves the changes pending, so the
//! next sync retries them.
//!
//! What is programmed, per service port (see [`render`] for the layout of the table):
//!
//! - the IPv4 cluster IP, external IPs, load-balancer IPs (not `ipMode: Proxy`) and the
//!   NodePort on the node IPs, DNATed to endpoints picked at random (`numgen`), with
//!   `sessionAffinity: ClientIP` through per-endpoint sets with a timeout;
//! - endpoints from the EndpointSlices labelled with the service's name, matched by port name
//!   and protocol: the ready ones, or if none is ready the serving and terminating ones;
//!   `internalTrafficPolicy`/`externalTrafficPolicy: Local` use this node's endpoints only,
//!   except that pods and the node reach external addresses through all endpoints;
//! - no usable endpoint at all: the service's addresses reject new connections; endpoints
//!   elsewhere but none here under policy Local: they drop them;
//! - masquerading of hairpin traffic, of cluster-IP traffic from outside the cluster CIDR,
//!   of external traffic under policy Cluster, and (if configured) of pod traffic leaving the
//!   cluster CIDR;
//! - `loadBalancerSourceRanges` on load-balancer IPs.
//!
//! Not done: topology hints and `trafficDistribution`, health-check NodePorts, IPv6.
//!
//! After a change of a UDP service's endpoints, conntrack entries that would keep sending to
//! removed endpoints (or to nowhere) are deleted with the `conntrack` tool (see
//! [`conntrack`]); without the tool that step is skipped with one warning.
//!
//! # Cost
//!
//! [`Proxier::sync`] returns how long it took and how big the script was. Timing a sync of
//! [`testing::synthetic_cluster`] is the benchmark: one sync for N services at once, then one
//! after changing a single EndpointSlice.

pub mod conntrack;
pub mod model;
pub mod render;
pub mod testing;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use self::conntrack::{Conntrack, ConntrackCli, ConntrackDelete, ConntrackError};
use self::model::{
    endpoints_for, parse_service, parse_slice, Cidr, Protocol, ServiceKey, ServicePortInfo,
    ServicePortName, SliceInfo,
};
use self::render::{base_script, render_port, Element, Rendered, RenderContext, UdpTargets};
use crate::nft::{Nft, NftError, FAMILY, TABLE};

pub use self::render::MASQUERADE_MARK;

/// What the proxy needs to know about its node.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// This node's name: endpoints whose `nodeName` equals it are local.
    pub node_name: String,
    /// NodePort answers on these (and on LB/external IPs as usual). Empty: on every local
    /// address but loopback.
    pub node_ips: Vec<Ipv4Addr>,
    /// Pod traffic; ClusterIP traffic from outside it is masqueraded (upstream's clusterCIDR
    /// rule), and pod traffic to external and load-balancer IPs short-circuits to the cluster
    /// endpoints under `externalTrafficPolicy: Local`.
    pub cluster_cidr: Option<(Ipv4Addr, u8)>,
    /// Masquerade pod traffic leaving the cluster CIDR (pods reach the outside only when this
    /// is on). Needs `cluster_cidr`.
    pub masquerade_outside: bool,
    /// The pods' bridge name. The rules do not need it: pods are recognised by the cluster
    /// CIDR, and hairpin traffic by the endpoint address.
    pub pod_bridge: Option<String>,
}

/// What a sync did.
#[derive(Debug, Clone, Default)]
pub struct SyncStats {
    /// Services whose objects in the table changed.
    pub services_changed: usize,
    /// Wall time of the sync: building the script, the nft transaction, conntrack cleanup.
    pub duration: Duration,
    /// Size of the nft script (0 when there was nothing to write).
    pub script_bytes: usize,
}

/// The service proxy of one node.
pub struct Proxier {
    cfg: ProxyConfig,
    ctx: RenderContext,
    nft: Arc<dyn Nft>,
    conntrack: Arc<dyn Conntrack>,
    /// The skeleton is in the table.
    initialized: bool,
    /// The next sync follows `init`: chains it creates may exist from before and are flushed.
    after_init: bool,
    services: HashMap<ServiceKey, Vec<ServicePortInfo>>,
    slices: HashMap<(String, String), SliceInfo>,
    slices_by_service: HashMap<ServiceKey, BTreeSet<String>>,
    /// Services whose objects must be recomputed at the next sync.
    pending: BTreeSet<ServiceKey>,
    /// What the table holds per service port, as of the last successful sync.
    applied: BTreeMap<ServicePortName, Rendered>,
    /// Which port holds each map key: two services may claim the same external IP and port;
    /// the first keeps it, so the transaction does not fail on a duplicate.
    owners: HashMap<(&'static str, String), ServicePortName>,
    conntrack_warned: bool,
}

// === impl Proxier ===

impl Proxier {
    /// A proxier writing through `nft`; stale UDP flows are deleted with the `conntrack`
    /// tool of the caller's namespace (see [`Proxier::with_conntrack`]).
    pub fn new(cfg: ProxyConfig, nft: Arc<dyn Nft>) -> Proxier {
        let ctx = RenderContext {
            node_ips: cfg.node_ips.clone(),
            cluster_cidr: cfg.cluster_cidr.map(|(addr, prefix)| Cidr { addr, prefix: prefix.min(32) }.network()),
            masquerade_outside: cfg.masquerade_outside,
        };
        Proxier {
            cfg,
            ctx,
            nft,
            conntrack: Arc::new(ConntrackCli::new()),
            initialized: false,
            after_init: false,
            services: HashMap::new(),
            slices: HashMap::new(),
            slices_by_service: HashMap::new(),
            pending: BTreeSet::new(),
            applied: BTreeMap::new(),
            owners: HashMap::new(),
            conntrack_warned: false,
        }
    }

    /// Uses `conntrack` to delete stale UDP flows (tests pass a recording fake or a
    /// namespaced [`ConntrackCli`]).
    pub fn with_conntrack(mut self, conntrack: Arc<dyn Conntrack>) -> Self {
        self.conntrack = conntrack;
        self
    }

    /// The configuration the proxier was made with.
    pub fn config(&self) -> &ProxyConfig {
        &self.cfg
    }

    /// Creates the proxy's base objects (after nft::reset_table by the caller).
    ///
    /// Calling it again rewrites the skeleton and empties the dispatch maps, and the next
    /// sync writes every service again: the way back after the table was reset under the
    /// proxier's feet.
    pub async fn init(&mut self) -> Result<(), NftError> {
        self.nft.apply(&base_script(&self.ctx)).await?;
        self.initialized = true;
        self.after_init = true;
        self.applied.clear();
        self.owners.clear();
        self.pending.extend(self.services.keys().cloned());
        Ok(())
    }

    /// Takes a Service (added or changed). Services that get no rules (headless,
    /// ExternalName, no IPv4 cluster IP) are as good as deleted.
    pub fn apply_service(&mut self, svc: &Service) {
        let key = ServiceKey::new(
            svc.metadata.namespace.as_deref().unwrap_or("default"),
            svc.metadata.name.as_deref().unwrap_or_default(),
        );
        let ports = parse_service(svc);
        if ports.is_empty() {
            if self.services.remove(&key).is_some() {
                self.pending.insert(key);
            }
            return;
        }
        if self.services.get(&key) != Some(&ports) {
            self.services.insert(key.clone(), ports);
            self.pending.insert(key);
        }
    }

    /// Forgets a Service; its objects go at the next sync.
    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        let key = ServiceKey::new(namespace, name);
        if self.services.remove(&key).is_some() {
            self.pending.insert(key);
        }
    }

    /// Takes an EndpointSlice (added or changed). Slices the proxy ignores (not IPv4, no
    /// `kubernetes.io/service-name` label) are as good as deleted.
    pub fn apply_slice(&mut self, slice: &EndpointSlice) {
        let namespace = slice.metadata.namespace.as_deref().unwrap_or("default");
        let name = slice.metadata.name.as_deref().unwrap_or_default();
        match parse_slice(slice) {
            None => self.delete_slice(namespace, name),
            Some(info) => {
                let key = (namespace.to_string(), name.to_string());
                if self.slices.get(&key) == Some(&info) {
                    return;
                }
                if let Some(old) = self.slices.remove(&key) {
                    self.unindex_slice(&old.service, name);
                }
                self.slices_by_service.entry(info.service.clone()).or_default().insert(name.to_string());
                self.pending.insert(info.service.clone());
                self.slices.insert(key, info);
            }
        }
    }

    /// Forgets an EndpointSlice.
    pub fn delete_slice(&mut self, namespace: &str, name: &str) {
        if let Some(old) = self.slices.remove(&(namespace.to_string(), name.to_string())) {
            self.unindex_slice(&old.service, name);
        }
    }

    fn unindex_slice(&mut self, service: &ServiceKey, slice: &str) {
        if let Some(names) = self.slices_by_service.get_mut(service) {
            names.remove(slice);
            if names.is_empty() {
                self.slices_by_service.remove(service);
            }
        }
        self.pending.insert(service.clone());
    }

    /// True when applied changes have not been synced yet.
    pub fn dirty(&self) -> bool {
        !self.pending.is_empty() || !self.initialized
    }

    /// Writes everything that changed since the last sync in ONE nft transaction.
    ///
    /// Creates the skeleton first (in the same transaction) if [`Proxier::init`] was not
    /// called. On error nothing was applied and the changes stay pending.
    pub async fn sync(&mut self) -> Result<SyncStats, NftError> {
        let start = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        let plan = self.plan(&pending);

        let mut script = String::new();
        if !self.initialized {
            script.push_str(&base_script(&self.ctx));
        }
        plan.tx.write(&mut script);
        if !script.is_empty() {
            if let Err(e) = self.nft.apply(&script).await {
                self.pending.extend(pending);
                return Err(e);
            }
        }
        self.initialized = true;
        self.after_init = false;

        // The kernel has it: make it the applied state.
        for (port, old) in &plan.old {
            for e in &old.elements {
                if self.owners.get(&(e.map, e.key.clone())) == Some(port) {
                    self.owners.remove(&(e.map, e.key.clone()));
                }
            }
            self.applied.remove(port);
        }
        for (port, new) in plan.new {
            for e in &new.elements {
                self.owners.insert((e.map, e.key.clone()), port.clone());
            }
            self.applied.insert(port, new);
        }

        for filter in &plan.conntrack {
            self.delete_conntrack(filter).await;
        }

        let stats = SyncStats {
            services_changed: plan.services_changed,
            duration: start.elapsed(),
            script_bytes: script.len(),
        };
        tracing::debug!(
            services = pending.len(),
            changed = stats.services_changed,
            bytes = stats.script_bytes,
            elapsed = ?stats.duration,
            "synced service rules"
        );
        Ok(stats)
    }

    async fn delete_conntrack(&mut self, filter: &ConntrackDelete) {
        match self.conntrack.delete(filter).await {
            Ok(()) => {}
            Err(ConntrackError::Missing) => {
                if !self.conntrack_warned {
                    self.conntrack_warned = true;
                    tracing::warn!(
                        "the conntrack tool is not installed: stale UDP flows to removed service endpoints are not cleared"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "deleting stale UDP conntrack entries"),
        }
    }

    /// Computes the objects of the `pending` services and the transaction turning the
    /// applied ones into them. Changes nothing.
    fn plan(&self, pending: &BTreeSet<ServiceKey>) -> Plan {
        let mut plan = Plan::default();
        // Keys claimed by ports rendered in this sync.
        let mut claims: HashMap<(&'static str, String), ServicePortName> = HashMap::new();
        for svc in pending {
            let old: Vec<(&ServicePortName, &Rendered)> = self
                .applied
                .range(port_range_start(svc)..)
                .take_while(|(k, _)| &k.service == svc)
                .collect();
            let slices: Vec<&SliceInfo> = self
                .slices_by_service
                .get(svc)
                .into_iter()
                .flatten()
                .filter_map(|n| self.slices.get(&(svc.namespace.clone(), n.clone())))
                .collect();
            let mut new: Vec<(ServicePortName, Rendered)> = Vec::new();
            for sp in self.services.get(svc).into_iter().flatten() {
                // Two ports of one service with the same name and protocol are invalid; the
                // first wins.
                if new.iter().any(|(n, _)| n == &sp.name) {
                    continue;
                }
                let endpoints = endpoints_for(&sp.name, slices.iter().copied(), &self.cfg.node_name);
                let mut r = render_port(&self.ctx, sp, &endpoints);
                r.elements.retain(|e| {
                    let key = (e.map, e.key.clone());
                    let held_elsewhere = match self.owners.get(&key) {
                        Some(o) => &o.service != svc && !pending.contains(&o.service),
                        None => false,
                    };
                    if held_elsewhere || claims.get(&key).is_some_and(|o| o != &sp.name) {
                        tracing::warn!(
                            service = %sp.name, map = e.map, key = %e.key,
                            "address and port already used by another service; ignored"
                        );
                        return false;
                    }
                    claims.insert(key, sp.name.clone());
                    true
                });
                new.push((sp.name.clone(), r));
            }

            let empty = Rendered::default();
            let mut changed = false;
            let mut names: BTreeSet<&ServicePortName> = old.iter().map(|(k, _)| *k).collect();
            names.extend(new.iter().map(|(k, _)| k));
            for name in names {
                let o = old.iter().find(|(k, _)| *k == name).map(|(_, r)| *r).unwrap_or(&empty);
                let n = new.iter().find(|(k, _)| k == name).map(|(_, r)| r).unwrap_or(&empty);
                changed |= plan.tx.diff(o, n, self.after_init);
                plan.conntrack.extend(udp_cleanup(o.udp.as_ref(), n.udp.as_ref()));
            }
            if changed {
                plan.services_changed += 1;
            }
            plan.old.extend(old.into_iter().map(|(k, r)| (k.clone(), r.clone())));
            plan.new.extend(new);
        }
        plan.conntrack.sort();
        plan.conntrack.dedup();
        plan
    }
}

/// The smallest port name of `svc`, to range over its ports in a map ordered by service.
fn port_range_start(svc: &ServiceKey) -> ServicePortName {
    ServicePortName { service: svc.clone(), port: String::new(), protocol: Protocol::Tcp }
}

/// The result of [`Proxier::plan`].
#[derive(Default)]
struct Plan {
    tx: Tx,
    old: Vec<(ServicePortName, Rendered)>,
    new: Vec<(ServicePortName, Rendered)>,
    conntrack: Vec<ConntrackDelete>,
    services_changed: usize,
}

/// UDP flows to delete after a port went from `old` to `new`: flows to addresses that gained
/// or lost all endpoints, and flows DNATed to endpoints that are gone.
fn udp_cleanup(old: Option<&UdpTargets>, new: Option<&UdpTargets>) -> Vec<ConntrackDelete> {
    let served = |t: Option<&UdpTargets>| -> (BTreeSet<(Ipv4Addr, u16)>, Option<u16>) {
        match t {
            Some(t) if !t.endpoints.is_empty() => (
                t.service_ips.iter().map(|ip| (*ip, t.port)).collect(),
                (t.node_port != 0).then_some(t.node_port),
            ),
            _ => (BTreeSet::new(), None),
        }
    };
    let (old_ips, old_np) = served(old);
    let (new_ips, new_np) = served(new);
    let mut out = Vec::new();
    for (ip, port) in old_ips.symmetric_difference(&new_ips) {
        out.push(ConntrackDelete::ServiceIp { ip: *ip, port: *port });
    }
    for np in [old_np, new_np].into_iter().flatten() {
        if old_np != new_np {
            out.push(ConntrackDelete::NodePort { port: np });
        }
    }
    let new_eps: HashSet<Ipv4Addr> = new.map(|t| t.endpoints.iter().copied().collect()).unwrap_or_default();
    let removed: Vec<Ipv4Addr> =
        old.map(|t| t.endpoints.iter().copied().filter(|e| !new_eps.contains(e)).collect()).unwrap_or_default();
    for ep in removed {
        for (ip, port) in old_ips.intersection(&new_ips) {
            out.push(ConntrackDelete::ServiceIpEndpoint { ip: *ip, port: *port, endpoint: ep });
        }
        if let (Some(o), Some(n)) = (old_np, new_np) {
            if o == n {
                out.push(ConntrackDelete::NodePortEndpoint { port: o, endpoint: ep });
            }
        }
    }
    out
}

// === impl Tx ===

/// One transaction, in buckets written in an order the kernel accepts: references to an
/// object go before the object is deleted, and an object exists before it is referenced.
#[derive(Default)]
struct Tx {
    /// map → keys to delete.
    del_elements: BTreeMap<&'static str, Vec<String>>,
    flush_chains: Vec<String>,
    del_sets: Vec<String>,
    del_chains: Vec<String>,
    add_sets: Vec<(String, u32)>,
    add_chains: Vec<(String, bool)>,
    rules: Vec<(String, String)>,
    /// map → `key : value` to add.
    add_elements: BTreeMap<&'static str, Vec<String>>,
}

impl Tx {
    /// Adds what turns `old` into `new`; true if anything differs. `flush_new` also flushes
    /// chains it creates, for a table whose contents are not known.
    fn diff(&mut self, old: &Rendered, new: &Rendered, flush_new: bool) -> bool {
        let mut changed = false;
        let old_el: HashMap<(&str, &str), &str> =
            old.elements.iter().map(|e| ((e.map, e.key.as_str()), e.value.as_str())).collect();
        let new_el: HashMap<(&str, &str), &str> =
            new.elements.iter().map(|e| ((e.map, e.key.as_str()), e.value.as_str())).collect();
        for Element { map, key, value } in &old.elements {
            if new_el.get(&(*map, key.as_str())) != Some(&value.as_str()) {
                self.del_elements.entry(map).or_default().push(key.clone());
                changed = true;
            }
        }
        for Element { map, key, value } in &new.elements {
            if old_el.get(&(*map, key.as_str())) != Some(&value.as_str()) {
                self.add_elements.entry(map).or_default().push(format!("{key} : {value}"));
                changed = true;
            }
        }

        // A set cannot change its timeout: it is deleted and made again, and every chain of
        // the port that may reference it is rewritten around that.
        let mut sets_recreated = false;
        for (set, timeout) in &old.sets {
            match new.sets.get(set) {
                Some(t) if t == timeout => {}
                Some(_) => {
                    sets_recreated = true;
                    self.del_sets.push(set.clone());
                }
                None => self.del_sets.push(set.clone()),
            }
        }
        for (set, timeout) in &new.sets {
            if old.sets.get(set) != Some(timeout) {
                self.add_sets.push((set.clone(), *timeout));
                changed = true;
            }
        }
        changed |= old.sets.keys().any(|s| !new.sets.contains_key(s));

        for (chain, rules) in &old.chains {
            match new.chains.get(chain) {
                None => {
                    self.flush_chains.push(chain.clone());
                    self.del_chains.push(chain.clone());
                    changed = true;
                }
                Some(new_rules) if new_rules != rules || sets_recreated => {
                    self.flush_chains.push(chain.clone());
                    self.rules.extend(new_rules.iter().map(|r| (chain.clone(), r.clone())));
                    changed = true;
                }
                Some(_) => {}
            }
        }
        for (chain, rules) in &new.chains {
            if !old.chains.contains_key(chain) {
                self.add_chains.push((chain.clone(), flush_new));
                self.rules.extend(rules.iter().map(|r| (chain.clone(), r.clone())));
                changed = true;
            }
        }
        changed
    }

    /// Appends the transaction's commands to `out`.
    fn write(&self, out: &mut String) {
        let t = format!("{FAMILY} {TABLE}");
        for (map, keys) in &self.del_elements {
            for chunk in keys.chunks(256) {
                let _ = writeln!(out, "delete element {t} {map} {{ {} }}", chunk.join(", "));
            }
        }
        for c in &self.flush_chains {
            let _ = writeln!(out, "flush chain {t} {c}");
        }
        for s in &self.del_sets {
            let _ = writeln!(out, "delete set {t} {s}");
        }
        for c in &self.del_chains {
            let _ = writeln!(out, "delete chain {t} {c}");
        }
        for (s, timeout) in &self.add_sets {
            let _ = writeln!(
                out,
                "add set {t} {s} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}"
            );
        }
        for (c, flush) in &self.add_chains {
            let _ = writeln!(out, "add chain {t} {c}");
            if *flush {
                let _ = writeln!(out, "flush chain {t} {c}");
            }
        }
        for (c, rule) in &self.rules {
            let _ = writeln!(out, "add rule {t} {c} {rule}");
        }
        for (map, elements) in &self.add_elements {
            for chunk in elements.chunks(256) {
                let _ = writeln!(out, "add element {t} {map} {{ {} }}", chunk.join(", "));
            }
        }
    }
}

#[cfg(test)]
mod tests;
