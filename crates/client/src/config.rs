//! Where the servers are and how to authenticate: a kubeconfig, or explicit values.

use std::path::Path;
use std::time::Duration;

/// The extension name under a kubeconfig cluster that lists every server URL.
pub const SERVERS_EXTENSION: &str = "skiff.dev/servers";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `https://host:port` URLs, tried in order (the first that answers is kept).
    pub servers: Vec<String>,
    /// Bearer token.
    pub token: String,
    /// PEM CA bundle that signed the servers' certificates.
    pub ca_pem: String,
    /// Deadline of each request (not of watches).
    pub timeout: Duration,
}

impl ClientConfig {
    /// Reads the current context of a kubeconfig: the cluster's `server` first, then
    /// the URLs in its `skiff.dev/servers` extension; the user's `token`; the
    /// cluster's `certificate-authority-data` (or `certificate-authority` file).
    pub fn from_kubeconfig(path: &Path) -> anyhow::Result<ClientConfig> {
        let _ = path;
        todo!()
    }
}
