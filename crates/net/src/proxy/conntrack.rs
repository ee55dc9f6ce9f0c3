//! Deleting stale UDP conntrack entries.
//!
//! UDP has no connection to close: once conntrack has an entry for a client's flow, every
//! later datagram follows it, to an endpoint that may be gone, or (when the first datagram
//! found no endpoint) to nowhere. Like kube-proxy, the proxier deletes such entries after a
//! sync: flows DNATed to removed endpoints, and flows to service addresses that just got their
//! first endpoint. TCP needs none of this (a dead endpoint resets or times out the connection).

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::process::Command;

/// Which UDP conntrack entries to delete.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConntrackDelete {
    /// Flows to a service address and port (`--orig-dst IP --orig-port-dst PORT`).
    ServiceIp { ip: Ipv4Addr, port: u16 },
    /// Flows to a NodePort on any address (`--orig-port-dst PORT`).
    NodePort { port: u16 },
    /// Flows to a service address and port that were DNATed to `endpoint`.
    ServiceIpEndpoint { ip: Ipv4Addr, port: u16, endpoint: Ipv4Addr },
    /// Flows to a NodePort that were DNATed to `endpoint`.
    NodePortEndpoint { port: u16, endpoint: Ipv4Addr },
}

impl ConntrackDelete {
    /// The `conntrack` arguments selecting these entries.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["-D".into(), "-p".into(), "udp".into()];
        match self {
            ConntrackDelete::ServiceIp { ip, port } => {
                a.extend(["--orig-dst".into(), ip.to_string(), "--orig-port-dst".into(), port.to_string()]);
            }
            ConntrackDelete::NodePort { port } => {
                a.extend(["--orig-port-dst".into(), port.to_string()]);
            }
            ConntrackDelete::ServiceIpEndpoint { ip, port, endpoint } => {
                a.extend([
                    "--orig-dst".into(),
                    ip.to_string(),
                    "--orig-port-dst".into(),
                    port.to_string(),
                    "--dst-nat".into(),
                    endpoint.to_string(),
                ]);
            }
            ConntrackDelete::NodePortEndpoint { port, endpoint } => {
                a.extend([
                    "--orig-port-dst".into(),
                    port.to_string(),
                    "--dst-nat".into(),
                    endpoint.to_string(),
                ]);
            }
        }
        a
    }
}

/// Why entries could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The `conntrack` binary is not installed (package `conntrack`).
    #[error("the conntrack binary is not installed")]
    Missing,
    #[error("running conntrack: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("conntrack {args}: {stderr}")]
    Failed { args: String, stderr: String },
}

/// Deletes conntrack entries.
#[async_trait::async_trait]
pub trait Conntrack: Send + Sync {
    /// Deletes the entries `filter` selects; deleting nothing is success.
    async fn delete(&self, filter: &ConntrackDelete) -> Result<(), ConntrackError>;
}

// === impl ConntrackCli ===

/// Runs `conntrack -D …`, optionally inside a named network namespace (through `nsenter`).
#[derive(Debug, Default)]
pub struct ConntrackCli {
    netns: Option<String>,
    missing: AtomicBool,
}

impl ConntrackCli {
    pub fn new() -> Self {
        Self::default()
    }

    /// Deletes entries of the named network namespace's conntrack table.
    pub fn in_netns(name: &str) -> Self {
        ConntrackCli { netns: Some(name.to_string()), missing: AtomicBool::new(false) }
    }
}

#[async_trait::async_trait]
impl Conntrack for ConntrackCli {
    async fn delete(&self, filter: &ConntrackDelete) -> Result<(), ConntrackError> {
        if self.missing.load(Ordering::Relaxed) {
            return Err(ConntrackError::Missing);
        }
        let args = filter.args();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", crate::nft::netns_path(ns).display())).arg("conntrack");
                c
            }
            None => Command::new("conntrack"),
        };
        let out = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await;
        let out = match out {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.missing.store(true, Ordering::Relaxed);
                return Err(ConntrackError::Missing);
            }
            Err(e) => return Err(ConntrackError::Spawn(e)),
            Ok(out) => out,
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        // nsenter reports a missing program with a failed exit status and a message.
        if self.netns.is_some() && out.status.code() == Some(127) && stderr.contains("failed to execute") {
            self.missing.store(true, Ordering::Relaxed);
            return Err(ConntrackError::Missing);
        }
        // conntrack exits 1 with "0 flow entries have been deleted" when nothing matched.
        if out.status.success() || stderr.contains("0 flow entries") {
            return Ok(());
        }
        Err(ConntrackError::Failed { args: args.join(" "), stderr: stderr.trim().to_string() })
    }
}

// === impl RecordingConntrack ===

/// Records deletions instead of running them (unit tests).
#[derive(Debug, Default, Clone)]
pub struct RecordingConntrack {
    pub deleted: Arc<Mutex<Vec<ConntrackDelete>>>,
}

impl RecordingConntrack {
    /// The deletions so far, sorted, and forgets them.
    pub fn take_sorted(&self) -> Vec<ConntrackDelete> {
        let mut v = std::mem::take(&mut *self.deleted.lock().expect("recording lock"));
        v.sort();
        v
    }
}

#[async_trait::async_trait]
impl Conntrack for RecordingConntrack {
    async fn delete(&self, filter: &ConntrackDelete) -> Result<(), ConntrackError> {
        self.deleted.lock().expect("recording lock").push(filter.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_spell_conntrack_arguments() {
        let f = ConntrackDelete::ServiceIpEndpoint {
            ip: Ipv4Addr::new(10, 96, 0, 10),
            port: 53,
            endpoint: Ipv4Addr::new(10, 244, 0, 5),
        };
        assert_eq!(
            f.args().join(" "),
            "-D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --dst-nat 10.244.0.5"
        );
        assert_eq!(ConntrackDelete::NodePort { port: 30053 }.args().join(" "), "-D -p udp --orig-port-dst 30053");
    }
}
