//! The endpoints and endpointslice controllers (upstream pkg/controller/endpoint and
//! pkg/controller/endpointslice): for every Service with a selector, the pods it
//! selects become an `Endpoints` object of the same name (ready and not-ready
//! addresses, ports resolved per pod) and `EndpointSlice`s of at most
//! [`MAX_ENDPOINTS_PER_SLICE`] endpoints with ready/serving/terminating conditions.
//!
//! Services without a selector are left to their owners (the `kubernetes` Service's
//! endpoints are the API server's). Pods without an IP are not endpoints yet.
//! Slices are updated in place: endpoints that did not change stay where they are.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Node, ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_client::{Api, DeleteParams, InformerEvent, WorkQueue};

use crate::podutil::{is_pod_ready, key_of, run_workers, split_key};
use crate::Context;

pub const COMPONENT: &str = "endpoint-controller";
pub const SLICE_COMPONENT: &str = "endpointslice-controller";
/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice, and this controller's value of it.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Set (empty) on the endpoints of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
const WORKERS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] skiff_client::Error),
}

/// Runs both controllers (they share one queue of Service keys) until dropped.
pub async fn run(ctx: Context) {
    let queue: WorkQueue<String> = WorkQueue::new();
    register_handlers(&ctx, &queue);
    ctx.services.wait_synced().await;
    ctx.pods.wait_synced().await;
    ctx.endpoints.wait_synced().await;
    ctx.endpoint_slices.wait_synced().await;
    ctx.nodes.wait_synced().await;
    let c = ctx.clone();
    run_workers(COMPONENT, queue, WORKERS, move |key| {
        let c = c.clone();
        async move { sync(&c, &key).await }
    })
    .await;
}

fn register_handlers(ctx: &Context, queue: &WorkQueue<String>) {
    let q = queue.clone();
    ctx.services.on_event(Arc::new(move |ev: &InformerEvent<Service>| match ev {
        InformerEvent::Applied { new, .. } => q.add(key_of(&new.metadata)),
        InformerEvent::Deleted(svc) => q.add(key_of(&svc.metadata)),
    }));

    let (q, services) = (queue.clone(), ctx.services.store());
    ctx.pods.on_event(Arc::new(move |ev: &InformerEvent<Pod>| {
        let (old, new) = match ev {
            InformerEvent::Applied { old, new } => (old.as_deref(), &**new),
            InformerEvent::Deleted(pod) => (None, &**pod),
        };
        if let Some(old) = old {
            if old.metadata.resource_version == new.metadata.resource_version {
                return;
            }
        }
        let ns = new.metadata.namespace.as_deref().unwrap_or("");
        for svc in services.list_namespace(ns) {
            if old.is_some_and(|o| selects(&svc, o)) || selects(&svc, new) {
                q.add(key_of(&svc.metadata));
            }
        }
    }));

    // Zones come from node labels.
    let (q, services) = (queue.clone(), ctx.services.store());
    ctx.nodes.on_event(Arc::new(move |ev: &InformerEvent<Node>| {
        if let InformerEvent::Applied { old: Some(old), new } = ev {
            if old.metadata.labels.as_ref().and_then(|l| l.get(ZONE_LABEL)) == new.metadata.labels.as_ref().and_then(|l| l.get(ZONE_LABEL)) {
                return;
            }
            for svc in services.list() {
                if selector(&svc).is_some() {
                    q.add(key_of(&svc.metadata));
                }
            }
        }
    }));

    // Someone else changed or deleted what we maintain: put it back.
    let q = queue.clone();
    ctx.endpoints.on_event(Arc::new(move |ev: &InformerEvent<Endpoints>| {
        if let InformerEvent::Deleted(ep) = ev {
            q.add(key_of(&ep.metadata));
        }
    }));
    let q = queue.clone();
    ctx.endpoint_slices.on_event(Arc::new(move |ev: &InformerEvent<EndpointSlice>| {
        let slice = match ev {
            InformerEvent::Applied { new, .. } => new,
            InformerEvent::Deleted(s) => s,
        };
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
            return;
        }
        if let Some(svc) = labels.get(SERVICE_NAME_LABEL) {
            q.add(format!("{}/{svc}", slice.metadata.namespace.as_deref().unwrap_or("")));
        }
    }));
}

/// The Service's selector, if it is one this controller serves.
fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    if svc.metadata.namespace.as_deref() == Some("default") && svc.metadata.name.as_deref() == Some("kubernetes") {
        return None;
    }
    spec.selector.as_ref()
}

fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(sel) = selector(svc) else { return false };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, Error> {
    let (ns, name) = split_key(key);
    if ns == "default" && name == "kubernetes" {
        return Ok(None);
    }
    let Some(svc) = ctx.services.store().get(ns, name) else {
        delete_all(ctx, ns, name).await?;
        return Ok(None);
    };
    if selector(&svc).is_none() {
        return Ok(None);
    }
    let pods: Vec<Arc<Pod>> = ctx.pods.store().list_namespace(ns).into_iter().filter(|p| selects(&svc, p)).collect();
    sync_endpoints(ctx, &svc, &pods).await?;
    sync_slices(ctx, &svc, &pods).await?;
    Ok(None)
}

async fn delete_all(ctx: &Context, ns: &str, name: &str) -> Result<(), Error> {
    let eps: Api<Endpoints> = Api::namespaced(&ctx.client, ns);
    if ctx.endpoints.store().get(ns, name).is_some() {
        match eps.delete(name, &DeleteParams::default()).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let slices: Api<EndpointSlice> = Api::namespaced(&ctx.client, ns);
    for slice in managed_slices(ctx, ns, name) {
        match slices.delete(slice.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

// === pods as endpoints ===

/// Whether a pod belongs in the endpoints at all (upstream
/// `ShouldPodBeInEndpoints`): it has an IP, is not being deleted (unless
/// terminating pods are included), and has not finished for good.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if pod_ipv4(pod).is_none() {
        return false;
    }
    if !include_terminating && pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let phase = crate::podutil::pod_phase(pod);
    match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
        Some("Never") => phase != "Failed" && phase != "Succeeded",
        Some("OnFailure") => phase != "Succeeded",
        _ => true,
    }
}

/// The pod's IPv4 address (`status.podIP`, else the first IPv4 of `podIPs`).
pub fn pod_ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let is_v4 = |ip: &str| ip.parse::<Ipv4Addr>().is_ok();
    if let Some(ip) = status.pod_ip.as_deref().filter(|ip| is_v4(ip)) {
        return Some(ip.to_string());
    }
    status.pod_ips.iter().flatten().map(|p| p.ip.as_str()).find(|ip| is_v4(ip)).map(String::from)
}

/// The container port a Service port reaches on this pod (upstream `FindPort`): a
/// numeric targetPort as is, a named one looked up among the pod's container ports
/// of the same protocol. `None` when the pod has no such named port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(0)) => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers.iter().chain(sidecars).flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
                (p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol).then_some(p.container_port)
            })
        }
    }
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The pod's hostname when it lives under the Service as its subdomain.
fn endpoint_hostname(svc: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref() && pod.metadata.namespace == svc.metadata.namespace).then(|| hostname.to_string())
}

fn node_name(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty())
}

// === Endpoints ===

/// The subsets of a Service's Endpoints (upstream `syncService` then
/// `RepackSubsets`): each selected pod's address, ready or not, with the ports it
/// resolves; addresses that resolve the same ports share a subset.
pub fn endpoint_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let tolerate_unready = spec.publish_not_ready_addresses.unwrap_or(false);
    let ports = spec.ports.unwrap_or_default();
    // Address -> (ready, ports); keyed by IP and pod uid.
    let mut addrs: BTreeMap<(String, String), (EndpointAddress, bool, BTreeSet<PortKey>)> = BTreeMap::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let addr = EndpointAddress { ip: ip.clone(), hostname: endpoint_hostname(svc, pod), node_name: node_name(pod), target_ref: Some(target_ref(pod)) };
        let ready = tolerate_unready || is_pod_ready(pod);
        let mut resolved = BTreeSet::new();
        if ports.is_empty() {
            // Only headless Services publish port-less endpoints.
            if !is_headless(svc) {
                continue;
            }
        } else {
            for p in &ports {
                if let Some(n) = find_port(pod, p) {
                    resolved.insert(PortKey { name: p.name.clone().unwrap_or_default(), port: n, protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()), app_protocol: p.app_protocol.clone() });
                }
            }
            if resolved.is_empty() {
                continue;
            }
        }
        addrs.insert((ip, pod.metadata.uid.clone().unwrap_or_default()), (addr, ready, resolved));
    }
    let mut groups: BTreeMap<BTreeSet<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for (_, (addr, ready, ports)) in addrs {
        let g = groups.entry(ports).or_default();
        if ready {
            g.0.push(addr);
        } else {
            g.1.push(addr);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| {
                ports.into_iter().map(|p| EndpointPort { name: (!p.name.is_empty()).then_some(p.name), port: p.port, protocol: Some(p.protocol), app_protocol: p.app_protocol }).collect()
            }),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: String,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

/// The labels of a Service's endpoints: the Service's own, plus the headless marker.
fn endpoint_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

async fn sync_endpoints(ctx: &Context, svc: &Service, pods: &[Arc<Pod>]) -> Result<(), Error> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let subsets = endpoint_subsets(svc, pods);
    let subsets = (!subsets.is_empty()).then_some(subsets);
    let labels = endpoint_labels(svc);
    let api: Api<Endpoints> = Api::namespaced(&ctx.client, &ns);
    match ctx.endpoints.store().get(&ns, &name) {
        Some(cur) => {
            if cur.subsets == subsets && cur.metadata.labels.clone().unwrap_or_default() == labels {
                return Ok(());
            }
            let mut updated = (*cur).clone();
            updated.subsets = subsets;
            updated.metadata.labels = Some(labels);
            api.replace(&name, &updated).await?;
        }
        None => {
            let ep = Endpoints { metadata: ObjectMeta { name: Some(name), namespace: Some(ns), labels: Some(labels), ..Default::default() }, subsets };
            match api.create(&ep).await {
                Ok(_) => {}
                // Created meanwhile (the cache is behind): the next sync updates it.
                Err(e) if e.reason() == Some("AlreadyExists") => return Err(e.into()),
                Err(e) if crate::podutil::is_namespace_terminating(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

// === EndpointSlices ===

/// One desired endpoint of a slice, with the ports its pod resolves.
#[derive(Debug, Clone)]
pub struct DesiredEndpoint {
    pub ports: Vec<SlicePort>,
    pub endpoint: Endpoint,
}

/// The slice endpoints a Service should have (upstream endpointslice
/// `reconcile` inputs): every selected pod with an IPv4 address, terminating ones
/// included, with `serving` = ready, `ready` = serving and not terminating (or
/// `publishNotReadyAddresses`), and the zone of its node.
pub fn desired_endpoints(svc: &Service, pods: &[Arc<Pod>], node_zone: &dyn Fn(&str) -> Option<String>) -> Vec<DesiredEndpoint> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let ports = spec.ports.unwrap_or_default();
    let mut out = Vec::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let slice_ports: Vec<SlicePort> = ports
            .iter()
            .filter_map(|p| {
                find_port(pod, p).map(|n| SlicePort {
                    name: Some(p.name.clone().unwrap_or_default()),
                    port: Some(n),
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        if !ports.is_empty() && slice_ports.is_empty() {
            continue;
        }
        let serving = is_pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let node = node_name(pod);
        let endpoint = Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions { ready: Some(publish || (serving && !terminating)), serving: Some(serving), terminating: Some(terminating) }),
            hostname: endpoint_hostname(svc, pod),
            zone: node.as_deref().and_then(node_zone),
            node_name: node,
            target_ref: Some(target_ref(pod)),
            deprecated_topology: None,
            hints: None,
        };
        out.push(DesiredEndpoint { ports: slice_ports, endpoint });
    }
    out
}

/// What to write to bring a Service's slices to the desired endpoints.
#[derive(Debug, Default)]
pub struct SlicePlan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

/// Identity of an endpoint across syncs: its pod (or address when it has none).
fn endpoint_key(e: &Endpoint) -> String {
    e.target_ref.as_ref().and_then(|r| r.uid.clone()).unwrap_or_else(|| e.addresses.join(","))
}

fn ports_key(ports: &[SlicePort]) -> String {
    let mut keys: Vec<String> =
        ports.iter().map(|p| format!("{}/{}/{}/{}", p.name.as_deref().unwrap_or(""), p.port.unwrap_or(0), p.protocol.as_deref().unwrap_or("TCP"), p.app_protocol.as_deref().unwrap_or(""))).collect();
    keys.sort();
    keys.join(",")
}

/// A new slice for `svc` (server-named from `{svc}-`), owned by the Service.
pub fn new_slice(svc: &Service, ports: Vec<SlicePort>, endpoints: Vec<Endpoint>) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: name.clone(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: (!ports.is_empty()).then_some(ports),
    }
}

fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = endpoint_labels(svc);
    labels.insert(SERVICE_NAME_LABEL.into(), svc.metadata.name.clone().unwrap_or_default());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels
}

/// The ports of one port set and its endpoints by identity.
type PortSetEndpoints = (Vec<SlicePort>, Vec<(String, Endpoint)>);

/// Reconciles existing slices with the desired endpoints (upstream
/// `reconcileByAddressType`, simplified): per port set, endpoints stay in their
/// slice (updated if changed), stale ones go, new ones fill slices with room before
/// new slices are made; empty slices are deleted, except that a Service with no
/// endpoints at all keeps one empty placeholder slice.
pub fn plan_slices(svc: &Service, existing: &[EndpointSlice], desired: Vec<DesiredEndpoint>, max_per_slice: usize) -> SlicePlan {
    let mut plan = SlicePlan::default();
    let labels = slice_labels(svc);
    // Desired endpoints by port set, then by identity (kept in pod order).
    let mut wanted: BTreeMap<String, PortSetEndpoints> = BTreeMap::new();
    for d in desired {
        let entry = wanted.entry(ports_key(&d.ports)).or_insert_with(|| (d.ports.clone(), Vec::new()));
        entry.1.push((endpoint_key(&d.endpoint), d.endpoint));
    }
    let total_wanted: usize = wanted.values().map(|(_, e)| e.len()).sum();

    let mut placed: HashSet<(String, String)> = HashSet::new();
    // Slices kept (with their new content), by port set.
    let mut kept: BTreeMap<String, Vec<(EndpointSlice, bool)>> = BTreeMap::new();
    let mut placeholder_kept = false;
    for slice in existing {
        let ports = slice.ports.clone().unwrap_or_default();
        let pkey = ports_key(&ports);
        let Some((_, wanted_eps)) = wanted.get(&pkey) else {
            if total_wanted == 0 && slice.endpoints.is_empty() && ports.is_empty() && !placeholder_kept {
                placeholder_kept = true;
                let labels_ok = slice.metadata.labels.as_ref() == Some(&labels);
                if !labels_ok {
                    let mut s = slice.clone();
                    s.metadata.labels = Some(labels.clone());
                    plan.update.push(s);
                }
                continue;
            }
            plan.delete.push(slice.metadata.name.clone().unwrap_or_default());
            continue;
        };
        let mut changed = slice.metadata.labels.as_ref() != Some(&labels);
        let mut endpoints = Vec::new();
        for e in &slice.endpoints {
            let k = endpoint_key(e);
            if placed.contains(&(pkey.clone(), k.clone())) {
                changed = true; // a duplicate across slices: keep one
                continue;
            }
            match wanted_eps.iter().find(|(wk, _)| *wk == k) {
                Some((_, want)) => {
                    if want != e {
                        changed = true;
                    }
                    endpoints.push(want.clone());
                    placed.insert((pkey.clone(), k));
                }
                None => changed = true,
            }
        }
        let mut s = slice.clone();
        s.endpoints = endpoints;
        s.metadata.labels = Some(labels.clone());
        kept.entry(pkey).or_default().push((s, changed));
    }

    for (pkey, (ports, eps)) in wanted {
        let mut fresh: Vec<Endpoint> = eps.into_iter().filter(|(k, _)| !placed.contains(&(pkey.clone(), k.clone()))).map(|(_, e)| e).collect();
        let slices = kept.remove(&pkey).unwrap_or_default();
        for (mut s, mut changed) in slices {
            let room = max_per_slice.saturating_sub(s.endpoints.len());
            if room > 0 && !fresh.is_empty() {
                let take = room.min(fresh.len());
                s.endpoints.extend(fresh.drain(..take));
                changed = true;
            }
            if s.endpoints.is_empty() {
                plan.delete.push(s.metadata.name.clone().unwrap_or_default());
            } else if changed {
                plan.update.push(s);
            }
        }
        while !fresh.is_empty() {
            let take = max_per_slice.min(fresh.len());
            let chunk: Vec<Endpoint> = fresh.drain(..take).collect();
            plan.create.push(new_slice(svc, ports.clone(), chunk));
        }
    }
    // Port sets no longer wanted at all.
    for (_, slices) in kept {
        for (s, _) in slices {
            plan.delete.push(s.metadata.name.clone().unwrap_or_default());
        }
    }
    if total_wanted == 0 && !placeholder_kept {
        plan.create.push(new_slice(svc, Vec::new(), Vec::new()));
    }
    plan
}

fn managed_slices(ctx: &Context, ns: &str, svc: &str) -> Vec<Arc<EndpointSlice>> {
    let mut slices: Vec<Arc<EndpointSlice>> = ctx
        .endpoint_slices
        .store()
        .list_namespace(ns)
        .into_iter()
        .filter(|s| {
            let labels = s.metadata.labels.clone().unwrap_or_default();
            labels.get(SERVICE_NAME_LABEL).map(String::as_str) == Some(svc) && labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        })
        .collect();
    slices.sort_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp).then_with(|| a.metadata.name.cmp(&b.metadata.name)));
    slices
}

async fn sync_slices(ctx: &Context, svc: &Service, pods: &[Arc<Pod>]) -> Result<(), Error> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let nodes = ctx.nodes.store();
    let zone = |node: &str| nodes.get("", node).and_then(|n| n.metadata.labels.as_ref().and_then(|l| l.get(ZONE_LABEL).cloned()));
    let desired = desired_endpoints(svc, pods, &zone);
    let existing: Vec<EndpointSlice> = managed_slices(ctx, &ns, &name).into_iter().map(|s| (*s).clone()).collect();
    let plan = plan_slices(svc, &existing, desired, MAX_ENDPOINTS_PER_SLICE);
    let api: Api<EndpointSlice> = Api::namespaced(&ctx.client, &ns);
    // Create and update before deleting, so endpoints never vanish in between.
    for slice in &plan.create {
        match api.create(slice).await {
            Ok(_) => {}
            Err(e) if crate::podutil::is_namespace_terminating(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for slice in &plan.update {
        api.replace(slice.metadata.name.as_deref().unwrap_or(""), slice).await?;
    }
    for slice in &plan.delete {
        match api.delete(slice, &DeleteParams::default()).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    struct MakePod(Pod);

    impl MakePod {
        fn new(name: &str, ip: &str) -> MakePod {
            MakePod(Pod {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("ns".into()),
                    uid: Some(format!("uid-{name}")),
                    labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    node_name: Some("n1".into()),
                    containers: vec![Container {
                        name: "c".into(),
                        ports: Some(vec![ContainerPort { name: Some("http".into()), container_port: 8080, ..Default::default() }]),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                status: Some(PodStatus { phase: Some("Running".into()), pod_ip: (!ip.is_empty()).then(|| ip.to_string()), ..Default::default() }),
            })
        }
        fn ready(mut self) -> Self {
            self.0.status.as_mut().unwrap().conditions = Some(vec![PodCondition { type_: "Ready".into(), status: "True".into(), ..Default::default() }]);
            self
        }
        fn terminating(mut self) -> Self {
            self.0.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
            self
        }
        fn obj(self) -> Arc<Pod> {
            Arc::new(self.0)
        }
    }

    fn svc(ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta { name: Some("web".into()), namespace: Some("ns".into()), uid: Some("svc-uid".into()), ..Default::default() },
            spec: Some(ServiceSpec { selector: Some([("app".to_string(), "web".to_string())].into()), ports: Some(ports), ..Default::default() }),
            status: None,
        }
    }

    fn port(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort { name: Some(name.into()), port, target_port: Some(target), protocol: Some("TCP".into()), ..Default::default() }
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let pod = MakePod::new("a", "10.0.0.1").obj();
        assert_eq!(find_port(&pod, &port("web", 80, IntOrString::String("http".into()))), Some(8080));
        assert_eq!(find_port(&pod, &port("web", 80, IntOrString::Int(9000))), Some(9000));
        assert_eq!(find_port(&pod, &port("web", 80, IntOrString::String("grpc".into()))), None);
        let mut udp = port("dns", 53, IntOrString::String("http".into()));
        udp.protocol = Some("UDP".into());
        assert_eq!(find_port(&pod, &udp), None, "the protocol must match too");
        let mut untargeted = port("web", 80, IntOrString::Int(0));
        untargeted.target_port = None;
        assert_eq!(find_port(&pod, &untargeted), Some(80));
    }

    #[test]
    fn endpoints_split_ready_and_not_ready_addresses_and_skip_pods_without_ip() {
        let s = svc(vec![port("web", 80, IntOrString::String("http".into()))]);
        let pods = vec![
            MakePod::new("b", "10.0.0.2").ready().obj(),
            MakePod::new("a", "10.0.0.1").ready().obj(),
            MakePod::new("c", "10.0.0.3").obj(),
            MakePod::new("noip", "").ready().obj(),
            MakePod::new("gone", "10.0.0.4").ready().terminating().obj(),
        ];
        let subsets = endpoint_subsets(&s, &pods);
        assert_eq!(subsets.len(), 1);
        let ss = &subsets[0];
        let ips: Vec<&str> = ss.addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
        assert_eq!(ips, ["10.0.0.1", "10.0.0.2"]);
        let not_ready: Vec<&str> = ss.not_ready_addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
        assert_eq!(not_ready, ["10.0.0.3"]);
        let p = &ss.ports.as_ref().unwrap()[0];
        assert_eq!((p.name.as_deref(), p.port), (Some("web"), 8080));
        let a = &ss.addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("n1"));
        assert_eq!(a.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    }

    #[test]
    fn publish_not_ready_addresses_makes_every_pod_ready() {
        let mut s = svc(vec![port("web", 80, IntOrString::Int(8080))]);
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let subsets = endpoint_subsets(&s, &[MakePod::new("c", "10.0.0.3").obj()]);
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(1));
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn pods_that_resolve_different_ports_get_their_own_subsets() {
        let s = svc(vec![port("web", 80, IntOrString::String("http".into()))]);
        let mut other = MakePod::new("b", "10.0.0.2").ready().0;
        other.spec.as_mut().unwrap().containers[0].ports.as_mut().unwrap()[0].container_port = 9090;
        let subsets = endpoint_subsets(&s, &[MakePod::new("a", "10.0.0.1").ready().obj(), Arc::new(other)]);
        assert_eq!(subsets.len(), 2);
    }

    #[test]
    fn slice_endpoints_carry_conditions_zone_and_terminating_pods() {
        let s = svc(vec![port("web", 80, IntOrString::String("http".into()))]);
        let pods = vec![MakePod::new("a", "10.0.0.1").ready().obj(), MakePod::new("t", "10.0.0.9").ready().terminating().obj(), MakePod::new("u", "10.0.0.5").obj()];
        let zone = |n: &str| (n == "n1").then(|| "zone-a".to_string());
        let d = desired_endpoints(&s, &pods, &zone);
        let conds: Vec<(bool, bool, bool)> = d
            .iter()
            .map(|d| {
                let c = d.endpoint.conditions.as_ref().unwrap();
                (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
            })
            .collect();
        assert_eq!(conds, [(true, true, false), (false, true, true), (false, false, false)]);
        assert_eq!(d[0].endpoint.zone.as_deref(), Some("zone-a"));
        assert_eq!(d[0].ports[0].port, Some(8080));
        assert_eq!(d[0].ports[0].name.as_deref(), Some("web"));
    }

    fn named(mut s: EndpointSlice, name: &str) -> EndpointSlice {
        s.metadata.name = Some(name.into());
        s
    }

    #[test]
    fn slices_hold_at_most_the_limit_and_are_updated_in_place() {
        let s = svc(vec![port("web", 80, IntOrString::Int(8080))]);
        let pods: Vec<Arc<Pod>> = (0..5).map(|i| MakePod::new(&format!("p{i}"), &format!("10.0.0.{i}")).ready().obj()).collect();
        let none = |_: &str| None;
        let plan = plan_slices(&s, &[], desired_endpoints(&s, &pods, &none), 2);
        assert_eq!(plan.create.iter().map(|s| s.endpoints.len()).collect::<Vec<_>>(), [2, 2, 1]);
        let created = plan.create[0].clone();
        assert_eq!(created.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(created.address_type, "IPv4");
        let labels = created.metadata.labels.clone().unwrap();
        assert_eq!(labels.get(SERVICE_NAME_LABEL).map(String::as_str), Some("web"));
        assert_eq!(labels.get(MANAGED_BY_LABEL).map(String::as_str), Some(MANAGED_BY));
        assert_eq!(created.metadata.owner_references.as_ref().unwrap()[0].kind, "Service");

        // Existing: s1 = [p0, p1], s2 = [p2, p3], s3 = [p4]. p1 goes away, p4 turns unready.
        let existing: Vec<EndpointSlice> =
            plan.create.into_iter().enumerate().map(|(i, s)| named(s, &format!("s{}", i + 1))).collect();
        let mut pods2: Vec<Arc<Pod>> = pods.clone();
        pods2.remove(1);
        pods2[3] = MakePod::new("p4", "10.0.0.4").obj();
        let plan = plan_slices(&s, &existing, desired_endpoints(&s, &pods2, &none), 2);
        assert!(plan.create.is_empty());
        assert!(plan.delete.is_empty());
        let updated: Vec<&str> = plan.update.iter().map(|s| s.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(updated, ["s1", "s3"], "s2 did not change");
        assert_eq!(plan.update[0].endpoints.len(), 1);
        assert_eq!(plan.update[1].endpoints[0].conditions.as_ref().unwrap().ready, Some(false));

        // Everything gone: one empty placeholder remains.
        let plan = plan_slices(&s, &existing, Vec::new(), 2);
        assert_eq!(plan.delete.len(), 3);
        assert_eq!(plan.create.len(), 1);
        assert!(plan.create[0].endpoints.is_empty() && plan.create[0].ports.is_none());
        let placeholder = named(plan.create[0].clone(), "p");
        let plan = plan_slices(&s, &[placeholder], Vec::new(), 2);
        assert!(plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty());
    }
}
