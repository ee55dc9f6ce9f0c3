//! The agent's HTTPS endpoint (port 10250 by default), called only by the API
//! server: container logs, exec, attach and port-forward.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::runtime::Runtime;

#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub listen: SocketAddr,
    /// The cluster CA: callers must present a client certificate it signed, for the
    /// API server's identity.
    pub ca_pem: String,
    /// Where the agent keeps its serving certificate.
    pub data_dir: PathBuf,
}

/// A pod as the streaming endpoints need it.
#[derive(Clone)]
pub struct PodTarget {
    pub uid: String,
    pub runtime: Arc<dyn Runtime>,
    pub sandbox_id: Option<String>,
    /// The pod's log directory: `<dir>/<container>/<restartCount>.log`.
    pub log_dir: PathBuf,
    /// Container name → id of its current (or last) instance.
    pub containers: BTreeMap<String, String>,
}

/// Finds pods by namespace and name (the kubelet's pod registry implements it).
pub trait PodLookup: Send + Sync + 'static {
    fn lookup(&self, namespace: &str, name: &str) -> Option<PodTarget>;
}

/// Serves until the future is dropped.
pub async fn serve(config: StreamConfig, pods: Arc<dyn PodLookup>) -> anyhow::Result<()> {
    let _ = pods;
    anyhow::bail!("the agent endpoint on {} is not built yet", config.listen)
}
