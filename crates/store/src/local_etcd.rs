//! Real etcd processes on loopback, for tests, benchmarks and local experiments.
//!
//! [`LocalEtcd::start`] runs an N-member cluster (Debian's `etcd-server` package, or
//! the binary named by `SKIFF_ETCD_BIN`) on free loopback ports under a temporary
//! directory, waits until it has a leader, and kills every member when dropped.
//! Members can be stopped, killed and started again to test failures.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A local etcd cluster whose members are child processes of this one.
pub struct LocalEtcd {
    _private: (),
}

impl LocalEtcd {
    /// Starts `members` members (1 or 3, usually) and waits until the cluster has
    /// a leader and answers writes. Fails with a message that says how to install
    /// etcd when the binary is missing.
    pub fn start(members: usize) -> std::io::Result<LocalEtcd> {
        let _ = members;
        todo!("local etcd: start")
    }

    /// Like [`LocalEtcd::start`], with member data directories under `dir`.
    pub fn start_in(dir: &Path, members: usize) -> std::io::Result<LocalEtcd> {
        let _ = (dir, members);
        todo!("local etcd: start in dir")
    }

    /// `host:port` client addresses, one per member, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        todo!()
    }

    /// The `--datastore` URL for every member: `etcd://127.0.0.1:p1,127.0.0.1:p2,...`.
    pub fn url(&self) -> String {
        todo!()
    }

    /// Stops member `i` with SIGTERM and waits for it to exit.
    pub fn stop_member(&mut self, i: usize) {
        let _ = i;
        todo!()
    }

    /// Kills member `i` with SIGKILL and reaps it.
    pub fn kill_member(&mut self, i: usize) {
        let _ = i;
        todo!()
    }

    /// Starts member `i` again on its old ports and data directory.
    pub fn start_member(&mut self, i: usize) -> std::io::Result<()> {
        let _ = i;
        todo!()
    }

    /// Waits until the running members have a leader and accept writes.
    pub fn wait_healthy(&self, timeout: Duration) -> std::io::Result<()> {
        let _ = timeout;
        todo!()
    }

    /// The data directory of member `i`.
    pub fn member_dir(&self, i: usize) -> PathBuf {
        let _ = i;
        todo!()
    }
}
