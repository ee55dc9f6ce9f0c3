//! The pods of every simulated node, driven the way a kubelet drives its own:
//!
//! - ONE list+watch of all scheduled pods (`spec.nodeName!=`), filtered to our nodes
//!   by name, feeds a map of compact [`PodView`]s; no per-node watch or task.
//! - Event handlers only record the view and queue the pod's key; a bounded pool of
//!   workers ([`SimConfig::concurrency`](super::SimConfig)) takes keys from a
//!   [`WorkQueue`], so at most that many status writes are in flight and a pod is
//!   never handled by two workers at once.
//! - A worker admits a new pod (pod count and requests against allocatable, as the
//!   kubelet's admission does; a pod address from the node's CIDR), moves its
//!   [`PodRuntime`] along, writes the status through `pods/status` when it differs,
//!   and queues the key again for the runtime's next transition (a container turning
//!   ready, exiting, restarting).
//! - A pod under deletion has its containers stopped (a terminal status), then is
//!   deleted with grace period 0 and a UID precondition, which is how a kubelet
//!   confirms a graceful deletion.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use serde_json::{json, Value};
use skiff_client::{Client, PatchType, WorkQueue};

use super::ipam::PodIps;
use super::node::Cidr;
use super::pod::{merge_patch_is_noop, rejected_status, PodRuntime, PodView, Rejection};
use super::reflector::{reflect, Delta};

/// How long a pod waits for a free address before it is tried again.
const NO_ADDRESS_RETRY: Duration = Duration::from_secs(5);
/// Writes of one sync that may meet a conflict before it gives up for a while.
const CONFLICT_RETRIES: usize = 3;
/// Failed syncs of a pod retried with the queue's exponential back-off (5 ms
/// doubling); after that every `MAX_RETRY`.
const RATE_LIMITED_TRIES: u32 = 10;
const MAX_RETRY: Duration = Duration::from_secs(10);

type Key = Arc<str>;

/// One simulated node, as the pod side needs it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub host_ip: String,
    pub cidr: Cidr,
    /// Allocatable resources in thousandths (`pods` included).
    pub allocatable: BTreeMap<String, i128>,
}

/// The pod side of the simulated nodes. Cheap to clone.
#[derive(Clone)]
pub struct Kubelet {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    nodes: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
    // std Mutex: held only for map updates, never across an await.
    state: Mutex<State>,
    queue: WorkQueue<Key>,
    concurrency: usize,
}

struct State {
    pods: HashMap<Key, Entry>,
    usage: Vec<NodeUsage>,
}

struct Entry {
    view: Arc<PodView>,
    node: usize,
    /// The containers, once the pod runs here. Only the worker holding the key
    /// touches it.
    runtime: Option<PodRuntime>,
    /// The agent confirmed the deletion; events until the pod is gone need nothing.
    deleted: bool,
}

// === admission ===

/// What one node has admitted: its pods' requests and addresses.
#[derive(Debug)]
struct NodeUsage {
    ips: PodIps,
    used: BTreeMap<String, i128>,
    admitted: HashMap<String, Admitted>,
}

#[derive(Debug)]
struct Admitted {
    requests: BTreeMap<String, i128>,
    ip: Option<Ipv4Addr>,
}

#[derive(Debug, PartialEq)]
enum Admission {
    /// Runs, with this address (`None`: host network).
    Admitted(Option<Ipv4Addr>),
    Rejected(Rejection),
    /// Fits, but the pod CIDR is exhausted: wait for an address.
    NoAddress,
}

impl NodeUsage {
    fn new(cidr: Cidr) -> NodeUsage {
        NodeUsage { ips: PodIps::new(cidr), used: BTreeMap::new(), admitted: HashMap::new() }
    }

    /// The kubelet's resource admission: the pod count, then every requested
    /// resource, against allocatable minus what admitted pods use.
    fn admit(&mut self, node: &NodeInfo, uid: &str, requests: &BTreeMap<String, i128>, host_network: bool) -> Admission {
        if let Some(a) = self.admitted.get(uid) {
            return Admission::Admitted(a.ip);
        }
        let pods = self.admitted.len() as i128;
        let max_pods = node.allocatable.get("pods").map_or(i128::MAX, |m| m / 1000);
        if pods + 1 > max_pods {
            return Admission::Rejected(out_of("pods", 1, pods, max_pods));
        }
        let order = ["cpu", "memory", "ephemeral-storage"];
        let names = order.iter().map(|s| s.to_string()).filter(|n| requests.contains_key(n)).chain(requests.keys().filter(|k| !order.contains(&k.as_str())).cloned());
        for name in names {
            // Extended resources the node does not know are left out: they may be
            // cluster-level resources (upstream removes them before the check).
            if is_extended(&name) && !node.allocatable.contains_key(&name) {
                continue;
            }
            let want = requests[&name];
            let used = self.used.get(&name).copied().unwrap_or(0);
            let capacity = node.allocatable.get(&name).copied().unwrap_or(0);
            if want > capacity - used {
                // cpu in millicores, everything else in units, as the kubelet prints them.
                let unit = |v: i128| if name == "cpu" { v } else { (v + 999).div_euclid(1000) };
                return Admission::Rejected(out_of(&name, unit(want), unit(used), unit(capacity)));
            }
        }
        let ip = if host_network {
            None
        } else {
            match self.ips.allocate() {
                Some(ip) => Some(ip),
                None => return Admission::NoAddress,
            }
        };
        self.charge(uid, requests, ip);
        Admission::Admitted(ip)
    }

    /// Counts a pod that already runs (adopted after an agent restart) without
    /// checking it: the kubelet never evicts what it admitted before.
    fn record(&mut self, uid: &str, requests: &BTreeMap<String, i128>, ip: Option<&str>) {
        if self.admitted.contains_key(uid) {
            return;
        }
        let ip = ip.and_then(|s| s.parse::<Ipv4Addr>().ok()).filter(|ip| self.ips.reserve(*ip));
        self.charge(uid, requests, ip);
    }

    fn charge(&mut self, uid: &str, requests: &BTreeMap<String, i128>, ip: Option<Ipv4Addr>) {
        for (name, v) in requests {
            *self.used.entry(name.clone()).or_default() += v;
        }
        self.admitted.insert(uid.to_string(), Admitted { requests: requests.clone(), ip });
    }

    fn release(&mut self, uid: &str) {
        let Some(a) = self.admitted.remove(uid) else { return };
        for (name, v) in &a.requests {
            if let Some(u) = self.used.get_mut(name) {
                *u -= v;
            }
        }
        if let Some(ip) = a.ip {
            self.ips.release(ip);
        }
    }
}

/// An error that goes away by itself: no server reachable, or one that is busy.
fn is_transient(e: &skiff_client::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => matches!(code, 409 | 429) || code >= 500,
    }
}

/// `IsExtendedResourceName`: a domain-qualified name outside `kubernetes.io/`.
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

fn out_of(resource: &str, requested: i128, used: i128, capacity: i128) -> Rejection {
    Rejection {
        reason: format!("OutOf{resource}"),
        message: format!("Pod was rejected: Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}"),
    }
}

// === impl Kubelet ===

impl Kubelet {
    pub fn new(client: Client, nodes: Vec<NodeInfo>, concurrency: usize) -> Kubelet {
        let by_name = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        let usage = nodes.iter().map(|n| NodeUsage::new(n.cidr)).collect();
        let state = State { pods: HashMap::new(), usage };
        Kubelet { shared: Arc::new(Shared { client, nodes, by_name, state: Mutex::new(state), queue: WorkQueue::new(), concurrency: concurrency.max(1) }) }
    }

    /// Watches the pods and runs the workers, forever.
    pub async fn run(self) {
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.shared.concurrency {
            let this = self.clone();
            workers.spawn(async move { this.work().await });
        }
        let decode = {
            let this = self.clone();
            move |v: Value| this.decode(v)
        };
        let apply = {
            let this = self.clone();
            move |d: Delta<PodView>| this.apply(d)
        };
        reflect(self.shared.client.clone(), "/api/v1/pods".into(), "fieldSelector=spec.nodeName%21%3D".into(), decode, apply).await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under the lock is a few infallible map operations.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A view of the pod if it is bound to one of our nodes.
    fn decode(&self, v: Value) -> Option<PodView> {
        let node = v.pointer("/spec/nodeName").and_then(Value::as_str)?;
        if !self.shared.by_name.contains_key(node) {
            return None;
        }
        PodView::from_value(v)
    }

    // --- event handlers: record and queue, nothing else ---

    fn apply(&self, delta: Delta<PodView>) {
        self.apply_with(delta, true);
    }

    /// `enqueue` false: a copy the agent wrote itself, which needs no further look.
    fn apply_with(&self, delta: Delta<PodView>, enqueue: bool) {
        let mut keys = Vec::new();
        {
            let mut st = self.lock();
            match delta {
                Delta::Replace(views) => {
                    let mut seen = HashSet::with_capacity(views.len());
                    for view in views {
                        let key = self.upsert(&mut st, view);
                        seen.insert(key.clone());
                        keys.push(key);
                    }
                    let gone: Vec<Key> = st.pods.keys().filter(|k| !seen.contains(*k)).cloned().collect();
                    for key in gone {
                        if let Some(e) = st.pods.remove(&key) {
                            st.usage[e.node].release(&e.view.uid);
                        }
                    }
                }
                Delta::Upsert(view) => keys.push(self.upsert(&mut st, view)),
                Delta::Delete(view) => {
                    let key: Key = view.key().into();
                    if st.pods.get(&key).is_some_and(|e| e.view.uid == view.uid) {
                        st.pods.remove(&key);
                    }
                    if let Some(&node) = self.shared.by_name.get(&view.node_name) {
                        st.usage[node].release(&view.uid);
                    }
                }
            }
        }
        if enqueue {
            for key in keys {
                self.shared.queue.add(key);
            }
        }
    }

    fn upsert(&self, st: &mut State, view: PodView) -> Key {
        let key: Key = view.key().into();
        let node = self.shared.by_name[&view.node_name];
        let current = match st.pods.get_mut(&key) {
            Some(e) if e.view.uid == view.uid => {
                // A watch event may trail a copy a write returned: keep the newer.
                if matches!((view.revision(), e.view.revision()), (Some(new), Some(old)) if new < old) {
                    return key;
                }
                e.view = Arc::new(view);
                e.view.clone()
            }
            Some(e) => {
                // Same name, new pod.
                let old = std::mem::replace(e, Entry { view: Arc::new(view), node, runtime: None, deleted: false });
                st.usage[old.node].release(&old.view.uid);
                e.view.clone()
            }
            None => {
                let view = Arc::new(view);
                st.pods.insert(key.clone(), Entry { view: view.clone(), node, runtime: None, deleted: false });
                view
            }
        };
        // Pods that already run here (the agent restarted) are counted before any
        // new pod is admitted: the whole first list goes through here at once.
        if current.is_terminal() {
            st.usage[node].release(&current.uid);
        } else if current.started {
            st.usage[node].record(&current.uid, &current.requests, current.pod_ip.as_deref());
        }
        key
    }

    // --- workers ---

    async fn work(&self) {
        while let Some(key) = self.shared.queue.next().await {
            match self.sync(&key).await {
                Ok(Some(after)) => {
                    self.shared.queue.forget(&key);
                    self.shared.queue.add_after(key.clone(), after);
                }
                Ok(None) => self.shared.queue.forget(&key),
                Err(e) => {
                    if is_transient(&e) {
                        tracing::debug!(pod = %key, error = %e, "pod sync failed; retrying");
                    } else {
                        tracing::warn!(pod = %key, error = %e, "pod sync failed; retrying");
                    }
                    // Back off quickly at first, then no slower than MAX_RETRY, so
                    // that pods catch up soon after the server comes back.
                    if self.shared.queue.num_requeues(&key) >= RATE_LIMITED_TRIES {
                        self.shared.queue.add_after(key.clone(), MAX_RETRY);
                    } else {
                        self.shared.queue.add_rate_limited(key.clone());
                    }
                }
            }
            self.shared.queue.done(&key);
        }
    }

    /// One step for one pod; returns when it wants to be looked at again.
    async fn sync(&self, key: &Key) -> Result<Option<Duration>, skiff_client::Error> {
        let now = Timestamp::now();
        let Some((view, node, mut runtime)) = ({
            let st = self.lock();
            st.pods.get(key).filter(|e| !e.deleted).map(|e| (e.view.clone(), e.node, e.runtime.clone()))
        }) else {
            return Ok(None);
        };
        let host_ip = self.shared.nodes[node].host_ip.clone();

        if view.deleting {
            return self.finish_deletion(key, &view, node, runtime, now).await;
        }
        if view.is_terminal() {
            // Terminal in the API (our doing or anyone's): nothing runs any more.
            self.store(key, &view, None, true);
            return Ok(None);
        }

        let observed = view.status();
        let mut rejection = None;
        if runtime.is_none() {
            runtime = PodRuntime::adopt(&view, &observed, now);
        }
        if runtime.is_none() {
            let admission = {
                let mut st = self.lock();
                if st.pods.get(key).is_none_or(|e| e.view.uid != view.uid) {
                    return Ok(None);
                }
                st.usage[node].admit(&self.shared.nodes[node], &view.uid, &view.requests, view.host_network)
            };
            match admission {
                Admission::Admitted(ip) => {
                    for problem in &view.behaviour_problems {
                        tracing::warn!(pod = %key, "ignoring annotation {problem}");
                    }
                    runtime = Some(PodRuntime::start(&view, ip.map(|ip| ip.to_string()), now));
                }
                Admission::Rejected(r) => rejection = Some(r),
                Admission::NoAddress => {
                    tracing::warn!(pod = %key, node = %view.node_name, "no free pod address; waiting");
                    return Ok(Some(NO_ADDRESS_RETRY));
                }
            }
        }

        let (desired, next) = match (&rejection, runtime.as_mut()) {
            (Some(r), _) => (rejected_status(&view, &observed, r, now), None),
            (None, Some(rt)) => {
                let next = rt.advance(&view, now);
                (rt.status(&view, &host_ip, &observed, now), next)
            }
            (None, None) => return Ok(None),
        };
        let terminal = runtime.as_ref().is_some_and(|rt| rt.phase().is_terminal());
        let desired = serde_json::to_value(&desired).map_err(|e| skiff_client::Error::Decode(e.to_string()))?;
        if !merge_patch_is_noop(&desired, &view.status_value()) {
            let written = self.write_status(key, &view, &desired).await?;
            if written.is_none() {
                // The pod is gone, or changed under us: its next event brings it back.
                self.store(key, &view, runtime, false);
                return Ok(None);
            }
        }
        self.store(key, &view, runtime, terminal || rejection.is_some());
        Ok(next.map(|at| Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)))
    }

    /// Keeps the runtime for the next sync (if the pod is still the same one), and
    /// gives its resources back once it no longer runs.
    fn store(&self, key: &Key, view: &PodView, runtime: Option<PodRuntime>, release: bool) {
        let mut st = self.lock();
        let State { pods, usage } = &mut *st;
        if let Some(e) = pods.get_mut(key).filter(|e| e.view.uid == view.uid) {
            e.runtime = if release { None } else { runtime };
            if release {
                usage[e.node].release(&view.uid);
            }
        }
    }

    /// Writes the status (a merge patch with the resourceVersion as precondition).
    /// On a conflict it reads the pod again and gives up (`Ok(None)`) if the newer
    /// copy needs another look: the key is queued again with it.
    async fn write_status(&self, key: &Key, view: &PodView, status: &Value) -> Result<Option<()>, skiff_client::Error> {
        let path = format!("/api/v1/namespaces/{}/pods/{}/status", view.namespace, view.name);
        let body = json!({"metadata": {"resourceVersion": view.resource_version}, "status": status});
        match self.shared.client.patch(&path, PatchType::Merge, &body).await {
            Ok(pod) => {
                if let Some(newer) = self.decode(pod) {
                    self.apply_with(Delta::Upsert(newer), false);
                }
                Ok(Some(()))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) if e.is_conflict() => {
                self.refresh(key, view).await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the pod again after a conflict and queues it (the watch may trail).
    async fn refresh(&self, key: &Key, view: &PodView) -> Result<(), skiff_client::Error> {
        let path = format!("/api/v1/namespaces/{}/pods/{}", view.namespace, view.name);
        match self.shared.client.get(&path).await {
            Ok(pod) => {
                if let Some(newer) = self.decode(pod) {
                    self.apply(Delta::Upsert(newer));
                } else {
                    self.shared.queue.add(key.clone());
                }
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stops the containers (a terminal status, so controllers see how the pod
    /// ended), then confirms the deletion: grace period 0, UID precondition.
    async fn finish_deletion(&self, key: &Key, view: &PodView, node: usize, runtime: Option<PodRuntime>, now: Timestamp) -> Result<Option<Duration>, skiff_client::Error> {
        // A pod started before an agent restart is stopped like any other.
        let runtime = runtime.or_else(|| PodRuntime::adopt(view, &view.status(), now));
        if let Some(mut rt) = runtime.filter(|_| !view.is_terminal()) {
            rt.stop(now);
            let mut current = Arc::new(view.clone());
            for _ in 0..CONFLICT_RETRIES {
                let status = rt.status(&current, &self.shared.nodes[node].host_ip, &current.status(), now);
                let status = serde_json::to_value(&status).map_err(|e| skiff_client::Error::Decode(e.to_string()))?;
                if merge_patch_is_noop(&status, &current.status_value()) || self.write_status(key, &current, &status).await?.is_some() {
                    break;
                }
                // A conflict: try again on the copy just read; after a few tries go
                // on with the deletion regardless, as the kubelet does once its
                // containers are gone.
                match self.lock().pods.get(key).filter(|e| e.view.uid == view.uid) {
                    Some(e) => current = e.view.clone(),
                    None => break,
                }
            }
        }
        let path = format!("/api/v1/namespaces/{}/pods/{}", view.namespace, view.name);
        let body = json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": view.uid}});
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        match self.shared.client.request(http::Method::DELETE, &path, Some((body, "application/json"))).await {
            Ok(_) => {}
            // Gone already, or a new pod of the same name: nothing of ours to delete.
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => return Err(e),
        }
        self.store(key, view, None, true);
        if let Some(e) = self.lock().pods.get_mut(key).filter(|e| e.view.uid == view.uid) {
            e.deleted = true;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(pods: i128, cpu: &str) -> NodeInfo {
        let mut allocatable = BTreeMap::new();
        allocatable.insert("pods".to_string(), pods * 1000);
        allocatable.insert("cpu".to_string(), skiff_api::validation::quantity::Quantity::parse(cpu).unwrap().milli_value());
        allocatable.insert("memory".to_string(), 1024 * 1024 * 1024 * 1000);
        NodeInfo { name: "sim-0".into(), host_ip: "127.244.0.1".into(), cidr: "10.244.0.0/24".parse().unwrap(), allocatable }
    }

    fn req(pairs: &[(&str, i128)]) -> BTreeMap<String, i128> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn pods_are_admitted_until_cpu_runs_out() {
        let n = node(110, "2");
        let mut u = NodeUsage::new(n.cidr);
        assert_eq!(u.admit(&n, "a", &req(&[("cpu", 1500)]), false), Admission::Admitted(Some(Ipv4Addr::new(10, 244, 0, 2))));
        let Admission::Rejected(r) = u.admit(&n, "b", &req(&[("cpu", 1000)]), false) else { panic!() };
        assert_eq!(r.reason, "OutOfcpu");
        assert_eq!(r.message, "Pod was rejected: Node didn't have enough resource: cpu, requested: 1000, used: 1500, capacity: 2000");
        u.release("a");
        assert!(matches!(u.admit(&n, "b", &req(&[("cpu", 1000)]), false), Admission::Admitted(Some(_))));
    }

    #[test]
    fn memory_and_extended_resources_are_reported_in_units() {
        let mut n = node(110, "8");
        let mut u = NodeUsage::new(n.cidr);
        let Admission::Rejected(r) = u.admit(&n, "a", &req(&[("memory", 2 * 1024 * 1024 * 1024 * 1000)]), false) else { panic!() };
        assert_eq!(r.reason, "OutOfmemory");
        assert!(r.message.ends_with("memory, requested: 2147483648, used: 0, capacity: 1073741824"), "{}", r.message);
        n.allocatable.insert("example.com/fpga".to_string(), 1000);
        let Admission::Rejected(r) = u.admit(&n, "b", &req(&[("example.com/fpga", 2000)]), false) else { panic!() };
        assert_eq!(r.reason, "OutOfexample.com/fpga");
        assert!(r.message.ends_with("example.com/fpga, requested: 2, used: 0, capacity: 1"), "{}", r.message);
        assert!(
            matches!(u.admit(&n, "c", &req(&[("nvidia.com/gpu", 1000)]), false), Admission::Admitted(_)),
            "an extended resource the node does not know is not the node's to check"
        );
    }

    #[test]
    fn the_pod_count_is_checked_first() {
        let n = node(1, "8");
        let mut u = NodeUsage::new(n.cidr);
        assert!(matches!(u.admit(&n, "a", &BTreeMap::new(), false), Admission::Admitted(_)));
        let Admission::Rejected(r) = u.admit(&n, "b", &req(&[("cpu", 100_000)]), false) else { panic!() };
        assert_eq!((r.reason.as_str(), r.message.as_str()), ("OutOfpods", "Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 1, capacity: 1"));
    }

    #[test]
    fn adopted_pods_keep_their_address_and_count_against_the_node() {
        let n = node(110, "1");
        let mut u = NodeUsage::new(n.cidr);
        u.record("old", &req(&[("cpu", 1000)]), Some("10.244.0.2"));
        let Admission::Rejected(r) = u.admit(&n, "new", &req(&[("cpu", 1)]), false) else { panic!() };
        assert_eq!(r.reason, "OutOfcpu");
        assert_eq!(u.admit(&n, "free", &BTreeMap::new(), false), Admission::Admitted(Some(Ipv4Addr::new(10, 244, 0, 3))));
        assert_eq!(u.admit(&n, "free", &BTreeMap::new(), false), Admission::Admitted(Some(Ipv4Addr::new(10, 244, 0, 3))), "admitting twice changes nothing");
    }

    #[test]
    fn host_network_pods_take_no_address_and_exhaustion_waits() {
        let mut n = node(1000, "8");
        n.cidr = "10.244.0.0/30".parse().unwrap();
        let mut u = NodeUsage::new(n.cidr);
        assert_eq!(u.admit(&n, "h", &BTreeMap::new(), true), Admission::Admitted(None));
        assert_eq!(u.admit(&n, "a", &BTreeMap::new(), false), Admission::Admitted(Some(Ipv4Addr::new(10, 244, 0, 2))));
        assert_eq!(u.admit(&n, "b", &BTreeMap::new(), false), Admission::NoAddress);
        assert!(!u.admitted.contains_key("b"), "a pod waiting for an address holds nothing");
    }
}
