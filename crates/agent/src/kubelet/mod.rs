//! The kubelet: runs the pods bound to this node on a [`Runtime`].
//!
//! - [`node`]: Node registration from the host's facts, Lease heartbeats, status.
//! - [`volumes`] and [`env`]: what a container sees (mounts, environment).
//! - [`probe`]: liveness, readiness and startup probes, and lifecycle hooks.
//! - [`stream`]: the agent's HTTPS endpoint for logs, exec, attach and
//!   port-forward, which only the API server may call.
//! - the pod side, after upstream's kubelet:
//!   - [`worker`]: one worker per pod (admission, sync, termination, status
//!     writes) and [`pods`], the registry of this node's pods;
//!   - [`manager`]: one sync of a pod on its runtime, from [`actions`] (what to do,
//!     a pure function of the spec and [`podstate`], what the runtime has);
//!   - [`status`]: the pod status reported (phase, conditions, container
//!     statuses); [`backoff`]: restart and pull back-off;
//!   - [`sandbox`], [`container`] and [`images`]: what is asked of the runtime;
//!     [`admission`]: whether a pod fits; [`host`]: the seam to volumes, env,
//!     probes and events;
//!   - the relist (upstream's PLEG) notices container exits and orphans.

pub mod actions;
pub mod admission;
pub mod backoff;
pub mod container;
pub mod env;
#[cfg(test)]
pub mod fake_runtime;
pub mod host;
pub mod images;
pub mod manager;
pub mod node;
mod pleg;
pub mod pods;
pub mod podstate;
pub mod probe;
pub mod sandbox;
pub mod status;
pub mod stream;
pub mod volumes;
pub mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use skiff_client::Client;

use crate::runtime::Runtime;

/// Everything the kubelet needs.
#[derive(Clone)]
pub struct KubeletConfig {
    pub node: node::NodeConfig,
    /// The agent's state: pods' volumes under `pods/<uid>`, logs under `logs/`.
    pub data_dir: PathBuf,
    /// The runtime for pods without a RuntimeClass.
    pub runtime: Arc<dyn Runtime>,
    /// Runtimes by RuntimeClass handler (e.g. "process"), besides the default.
    pub handlers: BTreeMap<String, Arc<dyn Runtime>>,
    /// Nameservers given to pods with dnsPolicy ClusterFirst (empty: the host's).
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    /// The agent's HTTPS endpoint for logs/exec/attach/port-forward.
    pub stream: stream::StreamConfig,
    /// The cluster CA (PEM): the `ca.crt` of service account token volumes.
    pub ca_pem: String,
    /// How often every pod is synced even when nothing changed.
    pub sync_period: Duration,
    /// The Linux bridge pods are attached to (CNI); [`POD_BRIDGE`] by default.
    pub cni_bridge: String,
    /// The node's network (bridge, routes, service proxy, DNS, Ingress gateway),
    /// run when the default runtime is CRI. None: pods get only what CNI gives.
    pub network: Option<crate::network::NetworkConfig>,
}

/// How often the runtime is asked again while it does not answer at startup.
const RUNTIME_WAIT: Duration = Duration::from_secs(2);
/// The Linux bridge pods are attached to by default (CNI).
pub const POD_BRIDGE: &str = crate::runtime::cni::DEFAULT_BRIDGE;

/// Registers the node and runs its pods until the future is dropped.
///
/// Startup waits for the default runtime to answer, registers the Node, writes the
/// CNI config for its pod CIDRs (when the default runtime is CRI), then runs the
/// heartbeats, the volume manager, the agent's endpoint, the probers' results and
/// the pod workers. The first of them to fail ends the kubelet with its error.
pub async fn run(client: Client, config: KubeletConfig) -> anyhow::Result<()> {
    let version = loop {
        match config.runtime.version().await {
            Ok(v) => break v,
            Err(e) => {
                tracing::warn!(error = %e, "waiting for the container runtime");
                tokio::time::sleep(RUNTIME_WAIT).await;
            }
        }
    };
    let node = node::register(&client, &config.node, &version).await?;
    tracing::info!(node = %node.name, ip = %node.node_ip, runtime = %version, pod_cidrs = ?node.pod_cidrs, "node registered");
    let network = config.network.clone().filter(|_| config.runtime.handler() == "cri");
    if config.runtime.handler() == "cri" {
        let cni = config.data_dir.join("cni");
        crate::runtime::cni::write_conflist(&cni.join("net.d"), &config.cni_bridge, &node.pod_cidrs, &cni.join("ipam"))
            .map_err(|e| anyhow::anyhow!("writing the CNI config under {}: {e}", cni.display()))?;
    }
    let mut cluster_dns = config.cluster_dns.clone();
    if cluster_dns.is_empty() && network.as_ref().is_some_and(|n| n.dns.is_some()) {
        cluster_dns = crate::network::cluster_dns_address(&client).await.into_iter().collect();
    }

    let volumes = Arc::new(volumes::VolumeManager::new(client.clone(), &config.data_dir, &node.name, config.ca_pem.clone()));
    let (probes, probe_updates) = probe::ProbeManager::new();
    let host = Arc::new(host::KubeletHost {
        client: client.clone(),
        volumes: volumes.clone(),
        probes: Arc::new(probes),
        recorder: skiff_client::EventRecorder::new(client.clone(), "kubelet", Some(&node.name)),
    });
    let kubelet = worker::Kubelet::new(worker::KubeletParts {
        client: client.clone(),
        node_name: node.name.clone(),
        node_ip: node.node_ip,
        allocatable: node.allocatable.clone(),
        runtime: config.runtime.clone(),
        handlers: config.handlers.clone(),
        host,
        data_dir: config.data_dir.clone(),
        dns: sandbox::NodeDns::new(cluster_dns, config.cluster_domain.clone()),
        sync_period: config.sync_period,
        clock: backoff::Clock::system(),
    });

    // Dropping the set (with this future) stops every task.
    let mut tasks: tokio::task::JoinSet<anyhow::Result<()>> = tokio::task::JoinSet::new();
    tasks.spawn(node::run(client.clone(), config.node.clone(), node.clone(), config.runtime.clone()));
    tasks.spawn(async move {
        volumes.run().await;
        Ok(())
    });
    tasks.spawn(stream::serve(config.stream.clone(), kubelet.registry()));
    if let Some(net) = network {
        let node_net = crate::network::NodeNet { name: node.name.clone(), node_ip: node.node_ip, pod_cidrs: node.pod_cidrs.clone() };
        tasks.spawn(crate::network::run(client.clone(), net, node_net));
    }
    tasks.spawn(async move {
        kubelet.run(probe_updates).await;
        Ok(())
    });
    match tasks.join_next().await {
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(anyhow::anyhow!("a kubelet task failed: {e}")),
        _ => Err(anyhow::anyhow!("a kubelet task ended")),
    }
}
