//! The node side of the simulated nodes: registration, heartbeats and status.
//!
//! - Registration creates each Node with its status (one request), or adopts a Node of
//!   the same name: our labels and taints are set, its status becomes ours. Pod
//!   CIDRs are picked so that no two nodes of the cluster share one.
//! - Heartbeats: one task renews every node's Lease in `kube-node-lease`, spread
//!   evenly over the heartbeat interval in small batches of bounded concurrency —
//!   5,000 nodes at 10 s make 500 small writes a second, not a burst.
//! - Node status: written every [`SimConfig::node_status_interval`](super::SimConfig)
//!   (the kubelet's nodeStatusReportFrequency, 5 min), spread the same way, and at
//!   once when the node needs it: one watch of all nodes reports a node of ours that
//!   was deleted (it is registered again, as a kubelet does) or that someone marked
//!   not Ready.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use skiff_client::{Client, WorkQueue};

use super::kubelet::NodeInfo;
use super::node::{assign_pod_cidrs, internal_ip, reports_ready, Cidr, NodeTemplate};
use super::reflector::{list, reflect, Delta};

/// What a kubelet puts in `leaseDurationSeconds`.
pub const LEASE_DURATION_SECONDS: i32 = 40;
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Heartbeat batches are at least this far apart; the interval is cut into slots.
const SLOT: Duration = Duration::from_millis(100);
/// Tries of one write that meets conflicts.
const CONFLICT_RETRIES: usize = 5;
/// The first delay after a failed registration or status write; doubles to 30 s.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Why the nodes could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The server refused the Node itself (invalid labels, taints …): retrying
    /// cannot help.
    #[error("registering node {node}: {source}")]
    Refused {
        node: String,
        #[source]
        source: skiff_client::Error,
    },
    #[error(transparent)]
    Config(#[from] super::node::ConfigError),
}

/// The simulated nodes. Cheap to clone.
#[derive(Clone)]
pub struct Nodes {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    template: NodeTemplate,
    cidrs: Vec<Cidr>,
    /// Node UIDs (for the Leases' owner references), by index.
    uids: Mutex<Vec<String>>,
    by_name: HashMap<String, usize>,
    concurrency: usize,
    heartbeat: Duration,
    status_interval: Duration,
    /// Node indices whose status is due.
    queue: WorkQueue<usize>,
}

impl Nodes {
    /// Picks each node's pod CIDR: the one its Node already has, or a free one.
    /// Lists the cluster's nodes, waiting for the server if it is not up yet, and
    /// returns the Nodes of ours that exist already (for [`Nodes::register_all`]).
    pub async fn plan(
        client: Client,
        template: NodeTemplate,
        concurrency: usize,
        heartbeat: Duration,
        status_interval: Duration,
    ) -> Result<(Nodes, Vec<Option<Node>>), RegisterError> {
        let names: Vec<String> = (0..template.nodes).map(|i| template.node_name(i)).collect();
        let by_name: HashMap<String, usize> = names.iter().cloned().enumerate().map(|(i, n)| (n, i)).collect();
        // Every node's CIDR, and the whole object of ours.
        let decode = |v: Value| {
            let name = v.pointer("/metadata/name").and_then(Value::as_str)?.to_string();
            let cidr = v.pointer("/spec/podCIDR").and_then(Value::as_str).and_then(|c| c.parse::<Cidr>().ok());
            let node = if by_name.contains_key(&name) { serde_json::from_value::<Node>(v).ok() } else { None };
            Some((name, cidr, node))
        };
        let mut retry = FIRST_RETRY;
        let listed = loop {
            match list(&client, "/api/v1/nodes", "", decode).await {
                Ok((items, _)) => break items,
                Err(e) => {
                    tracing::warn!(error = %e, "listing nodes failed; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        };
        let mut mine: Vec<Option<Cidr>> = vec![None; names.len()];
        let mut existing: Vec<Option<Node>> = vec![None; names.len()];
        let mut used = HashSet::new();
        for (name, cidr, node) in listed {
            match by_name.get(&name) {
                Some(&i) => {
                    mine[i] = cidr;
                    existing[i] = node;
                }
                None => used.extend(cidr),
            }
        }
        let cidrs = assign_pod_cidrs(&mine, &used)?;
        let nodes = Nodes {
            shared: Arc::new(Shared {
                client,
                cidrs,
                uids: Mutex::new(vec![String::new(); template.nodes]),
                by_name,
                template,
                concurrency: concurrency.max(1),
                heartbeat,
                // Never a busy loop, whatever the configuration says.
                status_interval: status_interval.max(Duration::from_secs(1)),
                queue: WorkQueue::new(),
            }),
        };
        Ok((nodes, existing))
    }

    pub fn len(&self) -> usize {
        self.shared.template.nodes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the pod side needs of each node.
    pub fn infos(&self) -> Vec<NodeInfo> {
        let allocatable: BTreeMap<String, i128> = self
            .shared
            .template
            .capacity
            .iter()
            .filter_map(|(k, q)| Some((k.clone(), skiff_api::validation::quantity::Quantity::parse(&q.0).ok()?.milli_value())))
            .collect();
        (0..self.len())
            .map(|i| NodeInfo {
                name: self.shared.template.node_name(i),
                host_ip: internal_ip(&self.shared.cidrs[i]).to_string(),
                cidr: self.shared.cidrs[i],
                allocatable: allocatable.clone(),
            })
            .collect()
    }

    fn name(&self, i: usize) -> String {
        self.shared.template.node_name(i)
    }

    fn uid(&self, i: usize) -> String {
        self.shared.uids.lock().unwrap_or_else(|e| e.into_inner())[i].clone()
    }

    fn set_uid(&self, i: usize, uid: Option<&str>) {
        if let Some(uid) = uid {
            self.shared.uids.lock().unwrap_or_else(|e| e.into_inner())[i] = uid.to_string();
        }
    }

    // --- registration ---

    /// Registers every node, `concurrency` at a time: creates the missing ones and
    /// adopts the `existing` ones (as [`Nodes::plan`] found them). Transient
    /// failures are retried; a Node the server refuses is an error.
    pub async fn register_all(&self, existing: Vec<Option<Node>>) -> Result<(), RegisterError> {
        let registrations = existing.into_iter().enumerate().map(|(i, node)| self.register(i, node));
        let mut results = futures::stream::iter(registrations).buffer_unordered(self.shared.concurrency);
        while let Some(r) = results.next().await {
            r?;
        }
        Ok(())
    }

    async fn register(&self, i: usize, mut existing: Option<Node>) -> Result<(), RegisterError> {
        let mut retry = FIRST_RETRY;
        loop {
            let attempt = match existing.take() {
                // One write when nothing changed under us since the list.
                Some(node) => match self.write(i, node, true).await {
                    Err(e) if e.is_conflict() || e.is_not_found() => self.try_register(i).await,
                    other => other,
                },
                None => self.try_register(i).await,
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if is_permanent(&e) => return Err(RegisterError::Refused { node: self.name(i), source: e }),
                Err(e) => {
                    tracing::warn!(node = %self.name(i), error = %e, "registration failed; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// Creates the Node with its status; if it exists, adopts it.
    async fn try_register(&self, i: usize) -> Result<(), skiff_client::Error> {
        let t = &self.shared.template;
        let node = t.new_node(i, &self.shared.cidrs[i], Timestamp::now());
        match self.shared.client.create("/api/v1/nodes", &to_value(&node)?).await {
            Ok(created) => {
                self.set_uid(i, created.pointer("/metadata/uid").and_then(Value::as_str));
                Ok(())
            }
            Err(e) if e.reason() == Some("AlreadyExists") => self.update(i, true).await,
            Err(e) => Err(e),
        }
    }

    /// Writes our labels and taints (when `adopt`) and our status over `node`, a
    /// copy read from the server; a conflict is the caller's to handle.
    async fn write(&self, i: usize, mut node: Node, adopt: bool) -> Result<(), skiff_client::Error> {
        let name = self.name(i);
        let path = format!("/api/v1/nodes/{name}");
        let t = &self.shared.template;
        if adopt {
            if let Some(updated) = t.adopt(i, &node, &self.shared.cidrs[i]) {
                node = from_value(self.shared.client.update(&path, &to_value(&updated)?).await?)?;
            }
        }
        let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).and_then(|c| c.parse().ok()).unwrap_or(self.shared.cidrs[i]);
        node.status = Some(t.status(&name, &cidr, node.status.as_ref(), Timestamp::now()));
        let written = self.shared.client.update(&format!("{path}/status"), &to_value(&node)?).await?;
        self.set_uid(i, written.pointer("/metadata/uid").and_then(Value::as_str));
        Ok(())
    }

    /// Reads the Node and writes its status (after our labels and taints when
    /// `adopt`); a Node that is gone is created again.
    async fn update(&self, i: usize, adopt: bool) -> Result<(), skiff_client::Error> {
        let name = self.name(i);
        let path = format!("/api/v1/nodes/{name}");
        let mut last = None;
        for _ in 0..CONFLICT_RETRIES {
            let node: Node = match self.shared.client.get(&path).await {
                Ok(v) => from_value(v)?,
                Err(e) if e.is_not_found() => {
                    tracing::info!(node = %name, "node object is gone; registering it again");
                    return Box::pin(self.try_register(i)).await;
                }
                Err(e) => return Err(e),
            };
            match self.write(i, node, adopt).await {
                Err(e) if e.is_conflict() => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| skiff_client::Error::Decode("conflicts".into())))
    }

    // --- heartbeats ---

    /// Renews (or creates) every node's Lease once, `concurrency` at a time; the
    /// Leases seed [`Nodes::heartbeat`].
    pub async fn first_heartbeat(&self) -> Vec<Option<Lease>> {
        // Leases left from an earlier run are renewed from one LIST, not read one by one.
        let by_name = &self.shared.by_name;
        let decode = |v: Value| {
            let i = *by_name.get(v.pointer("/metadata/name").and_then(Value::as_str)?)?;
            Some((i, serde_json::from_value::<Lease>(v).ok()?))
        };
        let mut held: Vec<Option<Lease>> = vec![None; self.len()];
        match list(&self.shared.client, &format!("/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"), "", decode).await {
            Ok((found, _)) => found.into_iter().for_each(|(i, l)| held[i] = Some(l)),
            Err(e) => tracing::warn!(error = %e, "listing node leases failed"),
        }
        let mut leases = vec![None; self.len()];
        let renewals = held.into_iter().enumerate().map(|(i, l)| self.renew(i, l));
        let mut results = futures::stream::iter(renewals).buffer_unordered(self.shared.concurrency);
        while let Some((i, lease)) = results.next().await {
            leases[i] = lease;
        }
        leases
    }

    /// Renews the Leases forever: the nodes are split into slots of the heartbeat
    /// interval, and each slot's Leases are renewed together.
    pub async fn heartbeat(self, mut leases: Vec<Option<Lease>>) {
        let n = self.len();
        let slots = ((self.shared.heartbeat.as_millis() / SLOT.as_millis()).max(1) as usize).min(n.max(1));
        let mut interval = tokio::time::interval((self.shared.heartbeat / slots as u32).max(Duration::from_millis(10)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        let mut slot = 0;
        loop {
            interval.tick().await;
            let renewals: Vec<_> = (slot..n).step_by(slots).map(|i| self.renew(i, leases[i].take())).collect();
            let mut results = futures::stream::iter(renewals).buffer_unordered(self.shared.concurrency);
            let mut failed = 0;
            while let Some((i, lease)) = results.next().await {
                failed += usize::from(lease.is_none());
                leases[i] = lease;
            }
            if failed > 0 {
                tracing::warn!(failed, "node lease renewals failed");
            }
            slot = (slot + 1) % slots;
        }
    }

    /// Renews node `i`'s Lease from the copy held (`None`: read or create it).
    /// Returns the Lease as written, or `None` if that failed.
    async fn renew(&self, i: usize, held: Option<Lease>) -> (usize, Option<Lease>) {
        let name = self.name(i);
        let path = format!("/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{name}");
        let mut lease = held;
        for _ in 0..3 {
            let now = Timestamp::now();
            let result = match lease.take() {
                Some(mut l) => {
                    self.fill_lease(i, &mut l, now);
                    self.shared.client.update(&path, &to_value_or_null(&l)).await
                }
                None => {
                    let mut l = Lease {
                        metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(LEASE_NAMESPACE.into()), ..Default::default() },
                        spec: None,
                    };
                    self.fill_lease(i, &mut l, now);
                    self.shared.client.create(&format!("/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"), &to_value_or_null(&l)).await
                }
            };
            match result {
                Ok(v) => return (i, from_value(v).ok()),
                Err(e) if e.is_conflict() => {
                    // Someone else wrote it (or it exists already): start from theirs.
                    lease = self.shared.client.get(&path).await.ok().and_then(|v| from_value(v).ok());
                }
                Err(e) if e.is_not_found() => lease = None,
                Err(e) => {
                    tracing::debug!(node = %name, error = %e, "lease renewal failed");
                    return (i, None);
                }
            }
        }
        (i, None)
    }

    fn fill_lease(&self, i: usize, lease: &mut Lease, now: Timestamp) {
        let name = self.name(i);
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(name.clone());
        spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
        spec.renew_time = Some(MicroTime(now));
        let uid = self.uid(i);
        if !uid.is_empty() {
            // Owned by the Node, so that deleting the Node deletes its Lease.
            lease.metadata.owner_references =
                Some(vec![OwnerReference { api_version: "v1".into(), kind: "Node".into(), name, uid, ..Default::default() }]);
        }
    }

    // --- node status ---

    /// Keeps the node statuses fresh, forever: periodic writes spread over the
    /// interval, plus a watch of the nodes for ones that need a write now.
    pub async fn run_status(self) {
        let n = self.len();
        for i in 0..n {
            let offset = self.shared.status_interval.mul_f64((i + 1) as f64 / n as f64);
            self.shared.queue.add_after(i, offset);
        }
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.shared.concurrency.min(16) {
            let this = self.clone();
            workers.spawn(async move { this.status_worker().await });
        }
        let decode = {
            let by_name = self.shared.by_name.clone();
            move |v: Value| {
                let name = v.pointer("/metadata/name").and_then(Value::as_str)?;
                let i = *by_name.get(name)?;
                let node: Node = serde_json::from_value(v).ok()?;
                Some((i, reports_ready(&node), node.metadata.uid.unwrap_or_default()))
            }
        };
        let apply = {
            let this = self.clone();
            move |d: Delta<(usize, bool, String)>| this.on_node_event(d)
        };
        reflect(self.shared.client.clone(), "/api/v1/nodes".into(), String::new(), decode, apply).await;
    }

    fn on_node_event(&self, delta: Delta<(usize, bool, String)>) {
        let queue = &self.shared.queue;
        match delta {
            Delta::Replace(nodes) => {
                let mut seen = vec![false; self.len()];
                for (i, ready, _) in nodes {
                    seen[i] = true;
                    if !ready {
                        queue.add(i);
                    }
                }
                for (i, present) in seen.into_iter().enumerate() {
                    if !present {
                        queue.add(i);
                    }
                }
            }
            Delta::Upsert((i, ready, _)) => {
                if !ready {
                    queue.add(i);
                }
            }
            Delta::Delete((i, _, uid)) => {
                // Only our current Node: a stale event about an older one is noise.
                if uid.is_empty() || uid == self.uid(i) {
                    queue.add(i);
                }
            }
        }
    }

    async fn status_worker(&self) {
        let queue = &self.shared.queue;
        while let Some(i) = queue.next().await {
            match self.update(i, false).await {
                Ok(()) => {
                    queue.forget(&i);
                    queue.add_after(i, self.shared.status_interval);
                }
                Err(e) => {
                    tracing::warn!(node = %self.name(i), error = %e, "node status update failed; retrying");
                    if queue.num_requeues(&i) >= 12 {
                        // About 20 s of doubling back-off so far: keep that pace.
                        queue.add_after(i, MAX_RETRY);
                    } else {
                        queue.add_rate_limited(i);
                    }
                }
            }
            queue.done(&i);
        }
    }
}

/// A refusal that retrying will not change: the request itself is wrong.
fn is_permanent(e: &skiff_client::Error) -> bool {
    matches!(e.code(), Some(400) | Some(403) | Some(422))
}

fn to_value<T: Serialize>(t: &T) -> Result<Value, skiff_client::Error> {
    serde_json::to_value(t).map_err(|e| skiff_client::Error::Decode(e.to_string()))
}

fn to_value_or_null<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, skiff_client::Error> {
    serde_json::from_value(v).map_err(|e| skiff_client::Error::Decode(e.to_string()))
}
