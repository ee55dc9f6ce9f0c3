//! Simulated nodes.

use std::collections::BTreeMap;
use std::time::Duration;

use skiff_client::Client;

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
}

impl Default for SimConfig {
    fn default() -> Self {
        let capacity = [("cpu", "8"), ("memory", "32Gi"), ("pods", "110"), ("ephemeral-storage", "100Gi")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SimConfig { prefix: "sim".into(), nodes: 1, capacity, labels: BTreeMap::new(), zones: Vec::new(), taints: Vec::new(), heartbeat: Duration::from_secs(10) }
    }
}

/// Registers the nodes and drives their pods until the future is dropped.
pub async fn run(client: Client, config: SimConfig) -> anyhow::Result<()> {
    let _ = (client, config);
    todo!("simulated nodes")
}
