//! Real etcd processes on loopback, for tests, benchmarks and local experiments.
//!
//! [`LocalEtcd::start`] runs an N-member cluster (Debian's `etcd-server` package, or
//! the binary named by `SKIFF_ETCD_BIN`) on free loopback ports under a temporary
//! directory, waits until it has a leader, and kills every member when dropped.
//! Members can be stopped, killed and started again to test failures.
//!
//! Each member gets three ports: client, peer, and a plain-HTTP metrics port whose
//! `/health` endpoint the harness polls (so health checks work the same whether or
//! not the client port speaks TLS). A member's output goes to `member.log` in its
//! data directory, not to the test's stderr; failures quote its tail.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long [`LocalEtcd::start`] waits for a new cluster to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts at starting a cluster when a freshly picked port was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// How much of `member.log` error messages quote.
const LOG_TAIL: usize = 4096;

/// Makes cluster tokens and temporary directory names unique within the process.
static CLUSTERS: AtomicU64 = AtomicU64::new(0);

/// TLS for the members' client port (peers talk plain HTTP on loopback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEtcdTls {
    /// The members' serving certificate (valid for 127.0.0.1) and its key.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// CA that client certificates must be signed by; `Some` turns on
    /// `--client-cert-auth`.
    pub client_ca_file: Option<PathBuf>,
}

/// A local etcd cluster whose members are child processes of this one.
pub struct LocalEtcd {
    binary: PathBuf,
    /// Root of the member directories.
    dir: PathBuf,
    /// Removed on drop when the harness created it.
    temporary: Option<TempDir>,
    token: String,
    tls: Option<LocalEtcdTls>,
    members: Vec<Member>,
}

struct Member {
    name: String,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
    child: Option<Child>,
}

/// A directory removed (with its contents) when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// === impl LocalEtcd ===

impl LocalEtcd {
    /// Starts `members` members (1 or 3, usually) and waits until the cluster has
    /// a leader and answers writes. Fails with a message that says how to install
    /// etcd when the binary is missing.
    pub fn start(members: usize) -> io::Result<LocalEtcd> {
        Self::start_with(None, members, None)
    }

    /// Like [`LocalEtcd::start`], with member data directories under `dir`.
    pub fn start_in(dir: &Path, members: usize) -> io::Result<LocalEtcd> {
        Self::start_with(Some(dir), members, None)
    }

    /// Like [`LocalEtcd::start`], with clients talking TLS to the members (and,
    /// with `client_ca_file`, having to present a client certificate).
    pub fn start_tls(members: usize, tls: LocalEtcdTls) -> io::Result<LocalEtcd> {
        Self::start_with(None, members, Some(tls))
    }

    fn start_with(dir: Option<&Path>, members: usize, tls: Option<LocalEtcdTls>) -> io::Result<LocalEtcd> {
        if members == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an etcd cluster needs at least one member"));
        }
        let binary = find_binary()?;
        let id = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let unique = format!("{}-{id}-{nanos}", std::process::id());
        let (dir, temporary) = match dir {
            Some(dir) => (dir.to_path_buf(), None),
            None => {
                let dir = std::env::temp_dir().join(format!("skiff-etcd-{unique}"));
                (dir.clone(), Some(TempDir(dir)))
            }
        };
        std::fs::create_dir_all(&dir)?;

        let mut last_error = None;
        for attempt in 0..START_ATTEMPTS {
            let ports = free_ports(members * 3)?;
            let mut etcd = LocalEtcd {
                binary: binary.clone(),
                dir: dir.clone(),
                temporary: None,
                // A fresh token per attempt: members of a failed attempt must not
                // be mistaken for this one's.
                token: format!("skiff-{unique}-{attempt}"),
                tls: tls.clone(),
                members: (0..members)
                    .map(|i| Member {
                        name: format!("m{i}"),
                        dir: dir.join(format!("m{i}")),
                        client_port: ports[3 * i],
                        peer_port: ports[3 * i + 1],
                        metrics_port: ports[3 * i + 2],
                        child: None,
                    })
                    .collect(),
            };
            let started = (0..members).try_for_each(|i| {
                let _ = std::fs::remove_dir_all(&etcd.members[i].dir);
                etcd.spawn(i, "new")
            });
            match started.and_then(|()| etcd.wait_healthy(START_TIMEOUT)) {
                Ok(()) => {
                    etcd.temporary = temporary;
                    return Ok(etcd);
                }
                Err(e) => {
                    // Another process may have taken a port between picking and
                    // binding it: try again on new ports.
                    let clash = (0..members).any(|i| etcd.log_tail(i).contains("address already in use"));
                    drop(etcd);
                    if !clash {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("etcd did not start")))
    }

    /// `host:port` client addresses, one per member, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect()
    }

    /// The `--datastore` URL for every member: `etcd://127.0.0.1:p1,127.0.0.1:p2,...`.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// Stops member `i` with SIGTERM and waits for it to exit.
    pub fn stop_member(&mut self, i: usize) {
        let Some(mut child) = self.members[i].child.take() else { return };
        let terminated = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !terminated {
            let _ = child.kill();
        }
        // etcd exits within moments of SIGTERM; a member that hangs is killed.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Kills member `i` with SIGKILL and reaps it.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its old ports and data directory.
    pub fn start_member(&mut self, i: usize) -> io::Result<()> {
        if self.members[i].child.is_some() {
            return Ok(());
        }
        self.spawn(i, "existing")
    }

    /// Waits until the running members have a leader and accept writes: a majority
    /// of the cluster's members answer `/health` with `"health":"true"` (which etcd
    /// only says after a read through the leader).
    pub fn wait_healthy(&self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let majority = self.members.len() / 2 + 1;
        loop {
            let mut healthy = 0;
            for (i, member) in self.members.iter().enumerate() {
                if member.child.is_none() {
                    continue;
                }
                if self.exited(i) {
                    return Err(io::Error::other(format!(
                        "etcd member {} exited; the end of {}:\n{}",
                        member.name,
                        member.dir.join("member.log").display(),
                        self.log_tail(i)
                    )));
                }
                if health(member.metrics_port) {
                    healthy += 1;
                }
            }
            if healthy >= majority {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = (0..self.members.len())
                    .filter(|&i| self.members[i].child.is_some())
                    .map(|i| format!("--- {} ---\n{}", self.members[i].dir.join("member.log").display(), self.log_tail(i)))
                    .collect();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("etcd did not become healthy within {timeout:?} ({healthy} of {} members healthy, {majority} needed)\n{}", self.members.len(), logs.join("\n")),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The data directory of member `i`.
    pub fn member_dir(&self, i: usize) -> PathBuf {
        self.members[i].dir.clone()
    }

    /// Root directory holding every member's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether member `i` is running (started and not stopped or killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some() && !self.exited(i)
    }

    fn exited(&self, i: usize) -> bool {
        // `try_wait` needs `&mut`; a signal-0 probe by PID does not reap, so the
        // child can still be waited for later.
        match &self.members[i].child {
            None => true,
            Some(child) => {
                let pid = child.id();
                // /proc/PID/stat's third field is the state; Z is a zombie (exited).
                match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                    Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')).unwrap_or(false),
                    Err(_) => true,
                }
            }
        }
    }

    fn spawn(&mut self, i: usize, state: &str) -> io::Result<()> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let initial_cluster: Vec<String> = self.members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
        let member = &self.members[i];
        std::fs::create_dir_all(&member.dir)?;
        let log = File::options().create(true).append(true).open(member.dir.join("member.log"))?;
        let client_url = format!("{scheme}://127.0.0.1:{}", member.client_port);
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let mut command = Command::new(&self.binary);
        command
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(member.dir.join("data"))
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--listen-metrics-urls")
            .arg(format!("http://127.0.0.1:{}", member.metrics_port))
            .arg("--initial-cluster")
            .arg(initial_cluster.join(","))
            .arg("--initial-cluster-state")
            .arg(state)
            .arg("--initial-cluster-token")
            .arg(&self.token);
        if let Some(tls) = &self.tls {
            command.arg("--cert-file").arg(&tls.cert_file).arg("--key-file").arg(&tls.key_file);
            if let Some(ca) = &tls.client_ca_file {
                command.arg("--client-cert-auth").arg("--trusted-ca-file").arg(ca);
            }
        }
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = command.spawn().map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", self.binary.display())))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    fn log_tail(&self, i: usize) -> String {
        let mut text = Vec::new();
        if let Ok(mut file) = File::open(self.members[i].dir.join("member.log")) {
            let _ = file.read_to_end(&mut text);
        }
        let start = text.len().saturating_sub(LOG_TAIL);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }
}

impl std::fmt::Debug for LocalEtcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEtcd").field("dir", &self.dir).field("endpoints", &self.endpoints()).finish()
    }
}

// === helpers ===

/// `SKIFF_ETCD_BIN`, else `etcd` on PATH.
fn find_binary() -> io::Result<PathBuf> {
    find_binary_in(std::env::var_os("SKIFF_ETCD_BIN"), std::env::var_os("PATH").unwrap_or_default())
}

fn find_binary_in(explicit: Option<std::ffi::OsString>, path: std::ffi::OsString) -> io::Result<PathBuf> {
    if let Some(bin) = explicit {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("SKIFF_ETCD_BIN={} does not exist", bin.display())));
    }
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "etcd is not installed: `apt-get install etcd-server` (or set SKIFF_ETCD_BIN to an etcd binary)"))
}

/// `n` distinct free loopback ports. All listeners stay open until every port is
/// picked, so the kernel cannot hand out one port twice.
fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

/// Whether the member with this metrics port reports itself healthy.
fn health(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains(r#""health":"true""#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(12).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 12);
    }

    #[test]
    fn a_missing_etcd_binary_says_how_to_install_it() {
        let err = find_binary_in(None, "/nonexistent:/also/not/here".into()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("apt-get install etcd-server"), "{err}");
        let err = find_binary_in(Some("/no/such/etcd".into()), "/usr/bin".into()).unwrap_err();
        assert!(err.to_string().contains("SKIFF_ETCD_BIN=/no/such/etcd"), "{err}");
        let dir = std::env::temp_dir().join(format!("skiff-find-etcd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("etcd"), "").unwrap();
        let found = find_binary_in(None, std::env::join_paths(["/nonexistent".into(), dir.clone()]).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.unwrap(), dir.join("etcd"));
    }

    #[test]
    fn health_is_false_when_nothing_listens() {
        let port = free_ports(1).unwrap()[0];
        assert!(!health(port));
    }
}
