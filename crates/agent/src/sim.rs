//! Simulated nodes: N nodes registered from one process, with no containers — what
//! kwok and kubemark are to Kubernetes. They exist for controller tests and scale
//! benchmarks (5,000 nodes and 50,000 pods against one server).
//!
//! - [`node`]: the Node objects (labels, taints, pod CIDRs, status), pure.
//! - [`nodes`]: registration, Lease heartbeats and node status updates.
//! - [`pod`]: a pod's simulated containers and the status they make, pure.
//! - [`kubelet`]: one watch of all pods bound to our nodes, and the workers that
//!   start, advance, report and delete them.
//! - [`ipam`]: pod addresses from each node's pod CIDR.
//! - [`reflector`]: list+watch over the raw JSON client.
//!
//! Pods are steered by annotations: `sim.skiff.io/ready-after` (Running but not Ready
//! for a while), `sim.skiff.io/run-for` and `sim.skiff.io/exit-code` (containers that
//! exit: Job pods complete or fail, Always pods crash-loop with a 1 s back-off that
//! doubles up to 10 s).
//!
//! Everything scales with the number of pods and nodes, not with their product:
//! per-node work is batched into shared loops, and every write goes through a pool of
//! [`SimConfig::concurrency`] workers.

pub mod ipam;
pub mod kubelet;
pub mod node;
pub mod nodes;
pub mod pod;
pub mod reflector;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use skiff_client::Client;

use self::kubelet::Kubelet;
use self::node::NodeTemplate;
use self::nodes::Nodes;

/// What the simulated nodes look like.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Node names are `{prefix}-{i}` for i in 0..nodes (just `prefix` when nodes == 1).
    pub prefix: String,
    pub nodes: usize,
    /// Allocatable = capacity: cpu (e.g. "8"), memory ("32Gi"), pods ("110"),
    /// ephemeral-storage ("100Gi"), plus extended resources (e.g. nvidia.com/gpu: "2").
    pub capacity: BTreeMap<String, String>,
    /// Labels on every node (kubernetes.io/hostname, os and arch are added).
    pub labels: BTreeMap<String, String>,
    /// Zones assigned round-robin as topology.kubernetes.io/zone (none if empty).
    pub zones: Vec<String>,
    /// Taints on every node, `key=value:Effect` or `key:Effect`.
    pub taints: Vec<String>,
    /// Node Lease renewal interval (kubelet: 10 s).
    pub heartbeat: Duration,
    /// Requests in flight at most, per kind of work (registration, Lease renewals,
    /// pod status writes).
    pub concurrency: usize,
    /// How often a node's status is written when nothing changes (the kubelet's
    /// nodeStatusReportFrequency: 5 min). The Lease is the liveness signal.
    pub node_status_interval: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        let capacity = [("cpu", "8"), ("memory", "32Gi"), ("pods", "110"), ("ephemeral-storage", "100Gi")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SimConfig {
            prefix: "sim".into(),
            nodes: 1,
            capacity,
            labels: BTreeMap::new(),
            zones: Vec::new(),
            taints: Vec::new(),
            heartbeat: Duration::from_secs(10),
            concurrency: 64,
            node_status_interval: Duration::from_secs(300),
        }
    }
}

/// Registers the nodes and drives their pods until the future is dropped.
///
/// Fails at once on a configuration that cannot make a node (a malformed taint or
/// capacity) or a Node the server refuses; waits for a server that is not up yet.
pub async fn run(client: Client, config: SimConfig) -> anyhow::Result<()> {
    let template = NodeTemplate::new(&config)?;
    let (nodes, existing) = Nodes::plan(client.clone(), template, config.concurrency, config.heartbeat, config.node_status_interval).await?;

    let started = Instant::now();
    nodes.register_all(existing).await?;
    let registered = started.elapsed();
    let leases = nodes.first_heartbeat().await;
    tracing::info!(
        nodes = nodes.len(),
        registration_ms = registered.as_millis() as u64,
        leases_ms = (started.elapsed() - registered).as_millis() as u64,
        "simulated nodes registered"
    );

    let kubelet = Kubelet::new(client, nodes.infos(), config.concurrency);
    // Dropping the set (with this future) stops every task.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(nodes.clone().heartbeat(leases));
    tasks.spawn(nodes.run_status());
    tasks.spawn(kubelet.run());
    match tasks.join_next().await {
        Some(Err(e)) => Err(anyhow::anyhow!("a simulated node task failed: {e}")),
        _ => Err(anyhow::anyhow!("a simulated node task ended")),
    }
}
