//! This node's Node object: registration with the host's capacity, addresses and
//! system info, Lease heartbeats in kube-node-lease, and status updates.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use skiff_client::Client;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// The address other nodes and the API server reach this node at (InternalIP);
    /// None: the address of the interface holding the default route, else 127.0.0.1.
    pub node_ip: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
    /// `key=value:Effect` or `key:Effect`.
    pub taints: Vec<String>,
    /// The agent's HTTPS port (status.daemonEndpoints.kubeletEndpoint).
    pub kubelet_port: u16,
    pub heartbeat: Duration,
    pub max_pods: u32,
    /// Where local-path volumes live on this node (published in the Node's
    /// `storage.skiff.io/local-path` annotation for the provisioner).
    pub storage_dir: PathBuf,
}

/// What the rest of the kubelet needs to know about the registered node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub name: String,
    pub node_ip: IpAddr,
    /// spec.podCIDRs (the first is spec.podCIDR).
    pub pod_cidrs: Vec<String>,
    /// status.allocatable, as quantities ("4", "8038232Ki", "110").
    pub allocatable: BTreeMap<String, String>,
}

/// Registers (or adopts) the Node. `runtime_version` is the runtime's
/// `<name>://<version>`.
pub async fn register(client: &Client, config: &NodeConfig, runtime_version: &str) -> anyhow::Result<NodeHandle> {
    let _ = (client, runtime_version);
    anyhow::bail!("registering node {} is not built yet", config.name)
}

/// Renews the node's Lease every `heartbeat` and writes its status when it changes
/// (or every 5 minutes), until the future is dropped. The Ready condition follows
/// the runtime's health (`version` answering).
pub async fn run(client: Client, config: NodeConfig, handle: NodeHandle, runtime: std::sync::Arc<dyn crate::runtime::Runtime>) -> anyhow::Result<()> {
    let _ = (client, handle, runtime);
    anyhow::bail!("heartbeats for node {} are not built yet", config.name)
}
