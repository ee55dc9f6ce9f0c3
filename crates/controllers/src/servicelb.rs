//! ServiceLB: the built-in load balancer for Services of type LoadBalancer, in
//! the manner of k3s's ServiceLB, with the events and the cleanup finalizer of
//! upstream's service controller (`staging/src/k8s.io/cloud-provider/controllers/service`).
//!
//! It handles the Services that name no `spec.loadBalancerClass`, or
//! [`LOAD_BALANCER_CLASS`]. Each gets `status.loadBalancer.ingress`, written
//! through `services/status`, from one of two sources:
//!
//! - **A pool** (`skiff server --lb-pool 192.168.1.240/28` or
//!   `--lb-pool 192.168.1.240-192.168.1.250`): one address per Service, the one it
//!   asked for in `spec.loadBalancerIP` when that is in the pool and free, else the
//!   one it already has, else the lowest free one. In use means listed in another
//!   Service's status; when two Services claim one address, the older keeps it.
//!   The node agents' service proxy answers on the address (`ipMode: VIP`).
//! - **The nodes**, without a pool: the addresses of every Ready node (their
//!   ExternalIPs if any node has one, else their InternalIPs, sorted), and only
//!   the nodes with a ready endpoint under `externalTrafficPolicy: Local`. Every
//!   such Service then listens on the same addresses, so, as with k3s's host
//!   ports, a port can belong to one Service only: a Service that wants a
//!   protocol and port an older one holds stays pending, with a Warning event.
//!
//! The finalizer `service.kubernetes.io/load-balancer-cleanup` goes on before the
//! first status is written and comes off (after the status is cleared) when the
//! Service stops being a LoadBalancer or is deleted.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};
use skiff_client::{Api, EventRecorder, EventType, InformerEvent, PatchType, WorkQueue};

use crate::nodeipam::{Cidr, CidrError};
use crate::podutil::{key_of, run_workers, split_key};
use crate::Context;

/// The event source, as upstream's service controller names it.
pub const COMPONENT: &str = "service-controller";
/// The `spec.loadBalancerClass` this controller answers to (besides none).
pub const LOAD_BALANCER_CLASS: &str = "skiff.io/servicelb";
/// Keeps a Service until its load balancer is cleaned up (upstream's).
pub const FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";
/// Nodes with this label carry no load-balanced traffic (upstream's).
pub const LABEL_EXCLUDE_BALANCERS: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// The label that ties an EndpointSlice to its Service.
const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The ingress points' `ipMode`: traffic to the address is meant for the
/// Service itself, and the nodes' proxy delivers it.
pub const IP_MODE_VIP: &str = "VIP";

pub const REASON_ENSURING: &str = "EnsuringLoadBalancer";
pub const REASON_ENSURED: &str = "EnsuredLoadBalancer";
pub const REASON_DELETING: &str = "DeletingLoadBalancer";
pub const REASON_DELETED: &str = "DeletedLoadBalancer";
/// No address can be given (k3s's reason for a load balancer without nodes).
pub const REASON_UNAVAILABLE: &str = "UnAvailableLoadBalancer";
/// The pool cannot give the Service an address.
pub const REASON_ALLOCATION_FAILED: &str = "AllocationFailed";
const NO_NODES_MESSAGE: &str = "There are no available nodes for LoadBalancer";
/// One worker: pool allocations read and extend one shared picture of which
/// addresses are taken, so two syncs must never pick at once.
const WORKERS: usize = 1;

// === impl AddressPool ===

/// The addresses `--lb-pool` hands out: an inclusive range of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    first: Ipv4Addr,
    last: Ipv4Addr,
}

/// Why an `--lb-pool` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("{0:?} is neither an IPv4 CIDR (a.b.c.d/n) nor a range (a.b.c.d-a.b.c.e)")]
    Syntax(String),
    #[error(transparent)]
    Cidr(#[from] CidrError),
    #[error("the range {first}-{last} ends before it starts")]
    Reversed { first: Ipv4Addr, last: Ipv4Addr },
}

impl AddressPool {
    /// The addresses from `first` to `last`, both included.
    pub fn range(first: Ipv4Addr, last: Ipv4Addr) -> Result<AddressPool, PoolError> {
        if u32::from(first) > u32::from(last) {
            return Err(PoolError::Reversed { first, last });
        }
        Ok(AddressPool { first, last })
    }

    /// A CIDR's addresses, less its network and broadcast addresses when it has
    /// more than two.
    pub fn cidr(cidr: Cidr) -> AddressPool {
        let (mut first, mut last) = (cidr.first(), cidr.last());
        if cidr.prefix <= 30 {
            first += 1;
            last -= 1;
        }
        AddressPool { first: Ipv4Addr::from(first), last: Ipv4Addr::from(last) }
    }

    pub fn first(&self) -> Ipv4Addr {
        self.first
    }

    pub fn last(&self) -> Ipv4Addr {
        self.last
    }

    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.last) - u32::from(self.first)) + 1
    }

    /// Never true: a pool holds at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
    }

    /// The lowest address of the pool that is not `used`.
    pub fn lowest_free(&self, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from).find(|ip| !used.contains(ip))
    }
}

impl fmt::Display for AddressPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for AddressPool {
    type Err = PoolError;
    fn from_str(s: &str) -> Result<AddressPool, PoolError> {
        let s = s.trim();
        if s.contains('/') {
            return Ok(AddressPool::cidr(s.parse()?));
        }
        let bad = || PoolError::Syntax(s.to_string());
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
        let last: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
        AddressPool::range(first, last)
    }
}

// === what a Service should get ===

/// Whether this controller gives the Service a load balancer.
pub fn wants_load_balancer(svc: &Service) -> bool {
    let Some(spec) = svc.spec.as_ref() else { return false };
    spec.type_.as_deref() == Some("LoadBalancer") && spec.load_balancer_class.as_deref().is_none_or(|c| c == LOAD_BALANCER_CLASS)
}

pub fn has_finalizer(svc: &Service) -> bool {
    svc.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// Whether the load balancer must be torn down: the finalizer is there but the
/// Service is going away or no longer wants one (upstream `needsCleanup`).
pub fn needs_cleanup(svc: &Service) -> bool {
    has_finalizer(svc) && (svc.metadata.deletion_timestamp.is_some() || !wants_load_balancer(svc))
}

/// The ingress points a Service's status lists.
pub fn status_ingress(svc: &Service) -> Vec<LoadBalancerIngress> {
    svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.clone()).unwrap_or_default()
}

/// The IPv4 addresses in a Service's status.
pub fn status_ips(svc: &Service) -> Vec<Ipv4Addr> {
    status_ingress(svc).iter().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect()
}

/// Ingress points for addresses, as this controller writes them.
pub fn ingress_for(ips: &[Ipv4Addr]) -> Vec<LoadBalancerIngress> {
    ips.iter().map(|ip| LoadBalancerIngress { ip: Some(ip.to_string()), ip_mode: Some(IP_MODE_VIP.into()), ..Default::default() }).collect()
}

/// Older first: creation time, then namespace/name. Who keeps a contested
/// address or port.
pub fn older(a: &Service, b: &Service) -> Ordering {
    let created = |s: &Service| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a).cmp(&created(b)).then_with(|| key_of(&a.metadata).cmp(&key_of(&b.metadata)))
}

/// Why a Service gets no address for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub reason: &'static str,
    pub message: String,
}

/// The pool's address for a Service. `current` are the addresses its status
/// lists; `used` those other Services hold.
pub fn pool_address(pool: &AddressPool, requested: Option<&str>, current: &[Ipv4Addr], used: &HashSet<Ipv4Addr>) -> Result<Ipv4Addr, Pending> {
    let failed = |message: String| Pending { reason: REASON_ALLOCATION_FAILED, message };
    if let Some(requested) = requested.map(str::trim).filter(|r| !r.is_empty()) {
        let ip: Ipv4Addr = requested.parse().map_err(|_| failed(format!("spec.loadBalancerIP {requested:?} is not an IPv4 address")))?;
        if !pool.contains(ip) {
            return Err(failed(format!("spec.loadBalancerIP {ip} is not in the load balancer pool {pool}")));
        }
        if used.contains(&ip) {
            return Err(failed(format!("spec.loadBalancerIP {ip} is already in use by another Service")));
        }
        return Ok(ip);
    }
    if let Some(ip) = current.iter().find(|ip| pool.contains(**ip) && !used.contains(ip)) {
        return Ok(*ip);
    }
    pool.lowest_free(used).ok_or_else(|| failed(format!("no address left in the load balancer pool {pool}")))
}

/// Whether the node's Ready condition is True.
pub fn node_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a node carries load-balanced traffic (upstream's node predicate:
/// Ready, not excluded by label, not about to be removed by the autoscaler).
pub fn node_eligible(node: &Node) -> bool {
    let excluded = node.metadata.labels.as_ref().is_some_and(|l| l.contains_key(LABEL_EXCLUDE_BALANCERS));
    let leaving = node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|ts| ts.iter().any(|t| t.key == "ToBeDeletedByClusterAutoscaler"));
    node_ready(node) && !excluded && !leaving && node.metadata.deletion_timestamp.is_none()
}

/// A node's IPv4 addresses of one type.
pub fn node_ips(node: &Node, type_: &str) -> Vec<Ipv4Addr> {
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    addresses.into_iter().flatten().filter(|a| a.type_ == type_).filter_map(|a| a.address.parse().ok()).collect()
}

/// The addresses of the eligible nodes (only those named in `only`, when given):
/// their ExternalIPs if any has one, else their InternalIPs; sorted, without
/// repeats.
pub fn node_addresses<'a>(nodes: impl IntoIterator<Item = &'a Node>, only: Option<&HashSet<String>>) -> Vec<Ipv4Addr> {
    let mut external = BTreeSet::new();
    let mut internal = BTreeSet::new();
    for node in nodes {
        if !node_eligible(node) || only.is_some_and(|o| !o.contains(node.metadata.name.as_deref().unwrap_or(""))) {
            continue;
        }
        external.extend(node_ips(node, "ExternalIP"));
        internal.extend(node_ips(node, "InternalIP"));
    }
    let chosen = if external.is_empty() { internal } else { external };
    chosen.into_iter().collect()
}

/// The nodes that run a ready endpoint of the Service, per its EndpointSlices.
pub fn nodes_with_ready_endpoints<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> HashSet<String> {
    let mut nodes = HashSet::new();
    for slice in slices {
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if let (true, Some(node)) = (ready, ep.node_name.as_ref()) {
                nodes.insert(node.clone());
            }
        }
    }
    nodes
}

/// The protocol/port pairs a Service listens on.
fn service_ports(svc: &Service) -> Vec<(String, i32)> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    ports.into_iter().flatten().map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port)).collect()
}

/// Which of the Services that share the node addresses are locked out, and by
/// whom: going from oldest to newest, a Service gets its ports when no Service
/// before it that got its own holds one of them (as hostPorts are first come,
/// first served). Keyed by namespace/name; the value says which Service holds
/// which port.
pub fn port_conflicts(services: &[&Service]) -> HashMap<String, Pending> {
    let mut ordered: Vec<&Service> = services.to_vec();
    ordered.sort_by(|a, b| older(a, b));
    let mut holders: HashMap<(String, i32), String> = HashMap::new();
    let mut blocked = HashMap::new();
    for svc in ordered {
        let key = key_of(&svc.metadata);
        let ports = service_ports(svc);
        if let Some((port, holder)) = ports.iter().find_map(|p| holders.get(p).map(|h| (p, h))) {
            let message = format!("port {}/{} on the node addresses is already used by LoadBalancer Service {holder}", port.1, port.0);
            blocked.insert(key, Pending { reason: REASON_UNAVAILABLE, message });
            continue;
        }
        for p in ports {
            holders.insert(p, key.clone());
        }
    }
    blocked
}

// === the controller ===

/// What the controller keeps between syncs. std Mutexes: nothing async happens
/// while they are held.
#[derive(Default)]
struct State {
    /// Pool addresses written to a Service's status that the informer may not
    /// show yet, by namespace/name.
    written: Mutex<HashMap<String, Vec<Ipv4Addr>>>,
    /// The pending reason last reported per Service, so that a Service that stays
    /// pending gets one Warning, not one per sync.
    warned: Mutex<HashMap<String, Pending>>,
}

impl State {
    fn forget(&self, key: &str) {
        self.written.lock().unwrap().remove(key);
        self.warned.lock().unwrap().remove(key);
    }
}

/// Runs the controller until the future is dropped.
pub async fn run(ctx: Context) {
    let queue: WorkQueue<String> = WorkQueue::new();
    let state = Arc::new(State::default());
    let services = ctx.services.store();
    // Every LoadBalancer Service may be affected by every other one (ports on
    // the node addresses, pool addresses), so a change to one looks at all.
    let enqueue_all = {
        let q = queue.clone();
        let services = services.clone();
        move || {
            for svc in services.list() {
                if wants_load_balancer(&svc) || has_finalizer(&svc) {
                    q.add(key_of(&svc.metadata));
                }
            }
        }
    };
    let all = enqueue_all.clone();
    let s = state.clone();
    let q = queue.clone();
    ctx.services.on_event(Arc::new(move |ev: &InformerEvent<Service>| match ev {
        InformerEvent::Applied { old, new } => {
            let was = old.as_ref().is_some_and(|o| wants_load_balancer(o) || has_finalizer(o));
            if wants_load_balancer(new) || has_finalizer(new) || was {
                q.add(key_of(&new.metadata));
                let changed = old.as_ref().is_none_or(|o| o.spec != new.spec || status_ingress(o) != status_ingress(new) || o.metadata.deletion_timestamp != new.metadata.deletion_timestamp);
                if changed {
                    all();
                }
            }
        }
        InformerEvent::Deleted(svc) => {
            s.forget(&key_of(&svc.metadata));
            if wants_load_balancer(svc) || has_finalizer(svc) {
                all();
            }
        }
    }));
    let all = enqueue_all.clone();
    ctx.nodes.on_event(Arc::new(move |ev: &InformerEvent<Node>| {
        let relevant = |n: &Node| (node_eligible(n), node_ips(n, "InternalIP"), node_ips(n, "ExternalIP"));
        match ev {
            InformerEvent::Applied { old: Some(old), new } if relevant(old) == relevant(new) => {}
            _ => all(),
        }
    }));
    let q = queue.clone();
    let services = ctx.services.store();
    ctx.endpoint_slices.on_event(Arc::new(move |ev: &InformerEvent<EndpointSlice>| {
        let slice = ev.object();
        let ns = slice.metadata.namespace.as_deref().unwrap_or("");
        let Some(name) = slice.metadata.labels.as_ref().and_then(|l| l.get(LABEL_SERVICE_NAME)) else { return };
        if let Some(svc) = services.get(ns, name) {
            if wants_load_balancer(&svc) && local_traffic(&svc) {
                q.add(key_of(&svc.metadata));
            }
        }
    }));
    ctx.services.wait_synced().await;
    ctx.nodes.wait_synced().await;
    ctx.endpoint_slices.wait_synced().await;
    let recorder = ctx.recorder(COMPONENT);
    run_workers(COMPONENT, queue, WORKERS, move |key| {
        let (ctx, state, recorder) = (ctx.clone(), state.clone(), recorder.clone());
        async move { sync(&ctx, &state, &recorder, &key).await }
    })
    .await;
}

fn local_traffic(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local")
}

/// Brings one Service's load balancer in line with its spec.
async fn sync(ctx: &Context, state: &State, recorder: &EventRecorder, key: &str) -> Result<Option<Duration>, skiff_client::Error> {
    let (ns, name) = split_key(key);
    let Some(svc) = ctx.services.store().get(ns, name) else {
        state.forget(key);
        return Ok(None);
    };
    let api: Api<Service> = Api::namespaced(&ctx.client, ns);
    if needs_cleanup(&svc) {
        return cleanup(&api, state, recorder, &svc).await;
    }
    if !wants_load_balancer(&svc) || svc.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let desired = match desired_addresses(ctx, state, &svc) {
        Ok(ips) => {
            state.warned.lock().unwrap().remove(key);
            ips
        }
        Err(pending) => {
            let fresh = state.warned.lock().unwrap().insert(key.to_string(), pending.clone()).as_ref() != Some(&pending);
            if fresh {
                recorder.record(svc.as_ref(), EventType::Warning, pending.reason, &pending.message);
            }
            Vec::new()
        }
    };
    let ingress = ingress_for(&desired);
    let adding_finalizer = !has_finalizer(&svc);
    if !adding_finalizer && status_ingress(&svc) == ingress {
        return Ok(None);
    }
    recorder.record(svc.as_ref(), EventType::Normal, REASON_ENSURING, "Ensuring load balancer");
    if adding_finalizer {
        // Before any address is handed out, so the Service cannot go away
        // without its status being cleaned up.
        let mut finalizers = svc.metadata.finalizers.clone().unwrap_or_default();
        finalizers.push(FINALIZER.to_string());
        api.patch(name, PatchType::Merge, &json!({"metadata": {"finalizers": finalizers, "resourceVersion": svc.metadata.resource_version}})).await?;
    }
    if status_ingress(&svc) != ingress {
        write_status(&api, name, &ingress).await?;
        if ctx.config.lb_pool.is_some() {
            state.written.lock().unwrap().insert(key.to_string(), desired.clone());
        }
    }
    if !desired.is_empty() {
        let ips: Vec<String> = desired.iter().map(Ipv4Addr::to_string).collect();
        tracing::info!(service = %key, addresses = %ips.join(","), "ensured load balancer");
        recorder.record(svc.as_ref(), EventType::Normal, REASON_ENSURED, "Ensured load balancer");
    }
    Ok(None)
}

/// Writes `status.loadBalancer.ingress` (none: removes it).
async fn write_status(api: &Api<Service>, name: &str, ingress: &[LoadBalancerIngress]) -> Result<(), skiff_client::Error> {
    let ingress = if ingress.is_empty() { Value::Null } else { serde_json::to_value(ingress).expect("ingress serializes") };
    match api.patch_status(name, PatchType::Merge, &json!({"status": {"loadBalancer": {"ingress": ingress}}})).await {
        Ok(_) => Ok(()),
        // Gone meanwhile: nothing left to write to.
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Clears the status and takes the finalizer off.
async fn cleanup(api: &Api<Service>, state: &State, recorder: &EventRecorder, svc: &Service) -> Result<Option<Duration>, skiff_client::Error> {
    let name = svc.metadata.name.as_deref().unwrap_or("");
    let had_addresses = !status_ingress(svc).is_empty();
    if had_addresses {
        recorder.record(svc, EventType::Normal, REASON_DELETING, "Deleting load balancer");
        if svc.metadata.deletion_timestamp.is_none() {
            write_status(api, name, &[]).await?;
        }
    }
    let finalizers: Vec<String> = svc.metadata.finalizers.iter().flatten().filter(|f| *f != FINALIZER).cloned().collect();
    let patch = json!({"metadata": {"finalizers": if finalizers.is_empty() { Value::Null } else { json!(finalizers) }, "resourceVersion": svc.metadata.resource_version}});
    match api.patch(name, PatchType::Merge, &patch).await {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    state.forget(&key_of(&svc.metadata));
    recorder.record(svc, EventType::Normal, REASON_DELETED, "Deleted load balancer");
    Ok(None)
}

/// The addresses the Service should have, or why it gets none for now.
fn desired_addresses(ctx: &Context, state: &State, svc: &Service) -> Result<Vec<Ipv4Addr>, Pending> {
    let services = ctx.services.store().list();
    match &ctx.config.lb_pool {
        Some(pool) => {
            let used = pool_addresses_in_use(state, &services, svc);
            let requested = svc.spec.as_ref().and_then(|s| s.load_balancer_ip.as_deref());
            pool_address(pool, requested, &status_ips(svc), &used).map(|ip| vec![ip])
        }
        None => {
            let sharing: Vec<&Service> = services.iter().map(|s| s.as_ref()).filter(|s| wants_load_balancer(s) && s.metadata.deletion_timestamp.is_none()).collect();
            if let Some(pending) = port_conflicts(&sharing).remove(&key_of(&svc.metadata)) {
                return Err(pending);
            }
            let nodes = ctx.nodes.store().list();
            let only = local_traffic(svc).then(|| {
                let ns = svc.metadata.namespace.as_deref().unwrap_or("");
                let name = svc.metadata.name.as_deref().unwrap_or("");
                let slices = ctx.endpoint_slices.store().list_namespace(ns);
                nodes_with_ready_endpoints(slices.iter().map(|s| s.as_ref()).filter(|s| s.metadata.labels.as_ref().and_then(|l| l.get(LABEL_SERVICE_NAME)).map(String::as_str) == Some(name)))
            });
            let ips = node_addresses(nodes.iter().map(|n| n.as_ref()), only.as_ref());
            if ips.is_empty() {
                return Err(Pending { reason: REASON_UNAVAILABLE, message: NO_NODES_MESSAGE.into() });
            }
            Ok(ips)
        }
    }
}

/// The pool addresses other Services hold: what their status lists (or what was
/// just written for them), less the addresses `svc` holds too and got first.
fn pool_addresses_in_use(state: &State, services: &[Arc<Service>], svc: &Service) -> HashSet<Ipv4Addr> {
    let key = key_of(&svc.metadata);
    let mut written = state.written.lock().unwrap();
    // What the informer shows now needs no reminder.
    written.retain(|k, ips| services.iter().any(|s| key_of(&s.metadata) == *k && status_ips(s) != *ips));
    let mine: HashSet<Ipv4Addr> = written.get(&key).cloned().unwrap_or_else(|| status_ips(svc)).into_iter().collect();
    let mut used = HashSet::new();
    for other in services {
        let other_key = key_of(&other.metadata);
        if other_key == key {
            continue;
        }
        let ips = written.get(&other_key).cloned().unwrap_or_else(|| status_ips(other));
        for ip in ips {
            // Claimed by both: the older Service keeps it.
            if mine.contains(&ip) && older(svc, other) == Ordering::Less {
                continue;
            }
            used.insert(ip);
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use k8s_openapi::api::core::v1::{LoadBalancerStatus, NodeAddress, NodeCondition, NodeStatus, ServicePort, ServiceSpec, ServiceStatus};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use std::collections::BTreeMap;

    /// A Service builder: `MakeService::new("web").lb().port(80).obj()`.
    struct MakeService(Service);

    impl MakeService {
        fn new(name: &str) -> MakeService {
            MakeService(Service {
                metadata: ObjectMeta { name: Some(name.into()), namespace: Some("default".into()), ..Default::default() },
                spec: Some(ServiceSpec { type_: Some("ClusterIP".into()), ..Default::default() }),
                status: None,
            })
        }
        fn lb(mut self) -> Self {
            self.0.spec.as_mut().unwrap().type_ = Some("LoadBalancer".into());
            self
        }
        fn class(mut self, class: &str) -> Self {
            self.0.spec.as_mut().unwrap().load_balancer_class = Some(class.into());
            self
        }
        fn port(mut self, port: i32, protocol: &str) -> Self {
            let ports = self.0.spec.as_mut().unwrap().ports.get_or_insert_with(Vec::new);
            ports.push(ServicePort { port, protocol: Some(protocol.into()), ..Default::default() });
            self
        }
        fn created(mut self, secs: i64) -> Self {
            self.0.metadata.creation_timestamp = Some(Time(Timestamp::from_second(secs).unwrap()));
            self
        }
        fn status(mut self, ips: &[&str]) -> Self {
            let ips: Vec<Ipv4Addr> = ips.iter().map(|i| i.parse().unwrap()).collect();
            self.0.status = Some(ServiceStatus { load_balancer: Some(LoadBalancerStatus { ingress: Some(ingress_for(&ips)) }), ..Default::default() });
            self
        }
        fn finalizer(mut self) -> Self {
            self.0.metadata.finalizers = Some(vec![FINALIZER.into()]);
            self
        }
        fn obj(self) -> Service {
            self.0
        }
    }

    fn node(name: &str, ready: bool, internal: &str, external: Option<&str>) -> Node {
        let mut addresses = vec![NodeAddress { type_: "InternalIP".into(), address: internal.into() }, NodeAddress { type_: "Hostname".into(), address: name.into() }];
        if let Some(e) = external {
            addresses.push(NodeAddress { type_: "ExternalIP".into(), address: e.into() });
        }
        Node {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: None,
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition { type_: "Ready".into(), status: if ready { "True" } else { "False" }.into(), ..Default::default() }]),
                addresses: Some(addresses),
                ..Default::default()
            }),
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn pools_parse_from_cidrs_and_ranges() {
        let cidr: AddressPool = "192.168.1.240/28".parse().unwrap();
        assert_eq!((cidr.first(), cidr.last(), cidr.len()), (ip("192.168.1.241"), ip("192.168.1.254"), 14));
        assert_eq!("10.0.0.7/32".parse::<AddressPool>().unwrap().to_string(), "10.0.0.7-10.0.0.7");
        let range: AddressPool = "192.168.1.240 - 192.168.1.250".parse().unwrap();
        assert_eq!(range.len(), 11);
        assert!(range.contains(ip("192.168.1.250")) && !range.contains(ip("192.168.1.251")));
        assert_eq!("10.0.0.9-10.0.0.1".parse::<AddressPool>().unwrap_err(), PoolError::Reversed { first: ip("10.0.0.9"), last: ip("10.0.0.1") });
        for bad in ["10.0.0.1", "10.0.0.1-x", "10.0.0.0/40", ""] {
            assert!(bad.parse::<AddressPool>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_unclassed_or_skiff_class_load_balancers_are_ours() {
        assert!(wants_load_balancer(&MakeService::new("a").lb().obj()));
        assert!(wants_load_balancer(&MakeService::new("a").lb().class(LOAD_BALANCER_CLASS).obj()));
        assert!(!wants_load_balancer(&MakeService::new("a").lb().class("example.com/other").obj()));
        assert!(!wants_load_balancer(&MakeService::new("a").obj()));
        // A former LoadBalancer with our finalizer needs cleaning up.
        assert!(needs_cleanup(&MakeService::new("a").finalizer().obj()));
        assert!(!needs_cleanup(&MakeService::new("a").lb().finalizer().obj()));
        let mut deleting = MakeService::new("a").lb().finalizer().obj();
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(needs_cleanup(&deleting));
    }

    #[test]
    fn the_pool_honours_requests_keeps_current_addresses_and_else_gives_the_lowest_free() {
        let pool: AddressPool = "10.0.0.10-10.0.0.12".parse().unwrap();
        let used: HashSet<Ipv4Addr> = [ip("10.0.0.10")].into();
        assert_eq!(pool_address(&pool, None, &[], &used), Ok(ip("10.0.0.11")));
        assert_eq!(pool_address(&pool, None, &[ip("10.0.0.12")], &used), Ok(ip("10.0.0.12")), "a Service keeps its address");
        assert_eq!(pool_address(&pool, Some("10.0.0.12"), &[ip("10.0.0.11")], &used), Ok(ip("10.0.0.12")), "a request wins");
        let taken = pool_address(&pool, Some("10.0.0.10"), &[], &used).unwrap_err();
        assert_eq!(taken.reason, REASON_ALLOCATION_FAILED);
        assert!(taken.message.contains("already in use"), "{}", taken.message);
        assert!(pool_address(&pool, Some("10.9.9.9"), &[], &used).unwrap_err().message.contains("not in the load balancer pool 10.0.0.10-10.0.0.12"));
        assert!(pool_address(&pool, Some("nope"), &[], &used).is_err());
        // An address that left the pool is replaced.
        assert_eq!(pool_address(&pool, None, &[ip("10.9.9.9")], &used), Ok(ip("10.0.0.11")));
        let full: HashSet<Ipv4Addr> = [ip("10.0.0.10"), ip("10.0.0.11"), ip("10.0.0.12")].into();
        assert!(pool_address(&pool, None, &[], &full).unwrap_err().message.contains("no address left"));
    }

    #[test]
    fn a_contested_pool_address_stays_with_the_older_service() {
        let state = State::default();
        let old = Arc::new(MakeService::new("old").lb().created(100).status(&["10.0.0.10"]).obj());
        let new = Arc::new(MakeService::new("new").lb().created(200).status(&["10.0.0.10"]).obj());
        let services = vec![old.clone(), new.clone()];
        assert!(pool_addresses_in_use(&state, &services, &old).is_empty());
        assert_eq!(pool_addresses_in_use(&state, &services, &new), [ip("10.0.0.10")].into());
    }

    #[test]
    fn written_addresses_count_until_the_informer_shows_them() {
        let state = State::default();
        let a = Arc::new(MakeService::new("a").lb().obj());
        let b = Arc::new(MakeService::new("b").lb().obj());
        state.written.lock().unwrap().insert("default/a".into(), vec![ip("10.0.0.10")]);
        assert_eq!(pool_addresses_in_use(&state, &[a.clone(), b.clone()], &b), [ip("10.0.0.10")].into());
        // Once the informer shows a's status, the reminder goes.
        let a_seen = Arc::new(MakeService::new("a").lb().status(&["10.0.0.10"]).obj());
        assert_eq!(pool_addresses_in_use(&state, &[a_seen, b.clone()], &b), [ip("10.0.0.10")].into());
        assert!(state.written.lock().unwrap().is_empty());
    }

    #[test]
    fn node_addresses_are_the_ready_nodes_sorted_external_first() {
        let nodes = [node("b", true, "10.1.0.2", None), node("a", true, "10.1.0.10", None), node("c", false, "10.1.0.3", None)];
        assert_eq!(node_addresses(&nodes, None), [ip("10.1.0.2"), ip("10.1.0.10")]);
        let only: HashSet<String> = ["a".to_string()].into();
        assert_eq!(node_addresses(&nodes, Some(&only)), [ip("10.1.0.10")]);
        let with_external = [node("a", true, "10.1.0.1", Some("203.0.113.9")), node("b", true, "10.1.0.2", None)];
        assert_eq!(node_addresses(&with_external, None), [ip("203.0.113.9")]);
        let mut excluded = node("a", true, "10.1.0.1", None);
        excluded.metadata.labels = Some(BTreeMap::from([(LABEL_EXCLUDE_BALANCERS.to_string(), String::new())]));
        assert!(node_addresses(&[excluded], None).is_empty());
    }

    #[test]
    fn local_traffic_goes_to_nodes_with_ready_endpoints() {
        let ep = |node: &str, ready: Option<bool>| Endpoint {
            addresses: vec!["10.244.0.5".into()],
            node_name: Some(node.into()),
            conditions: Some(EndpointConditions { ready, ..Default::default() }),
            ..Default::default()
        };
        let slice = EndpointSlice { endpoints: vec![ep("a", Some(true)), ep("b", Some(false)), ep("c", None)], ..Default::default() };
        let nodes = nodes_with_ready_endpoints([&slice]);
        assert_eq!(nodes, ["a".to_string(), "c".to_string()].into());
    }

    #[test]
    fn the_older_service_keeps_a_port_on_the_node_addresses() {
        let a = MakeService::new("a").lb().created(100).port(80, "TCP").obj();
        let b = MakeService::new("b").lb().created(200).port(80, "TCP").port(443, "TCP").obj();
        let c = MakeService::new("c").lb().created(300).port(443, "TCP").obj();
        let d = MakeService::new("d").lb().created(400).port(80, "UDP").obj();
        let blocked = port_conflicts(&[&d, &c, &b, &a]);
        assert_eq!(blocked.keys().collect::<Vec<_>>(), [&"default/b".to_string()]);
        assert_eq!(blocked["default/b"].reason, REASON_UNAVAILABLE);
        assert!(blocked["default/b"].message.contains("port 80/TCP") && blocked["default/b"].message.contains("default/a"), "{:?}", blocked["default/b"]);
        // c gets 443: b, which wanted it first, is locked out itself.
    }
}
