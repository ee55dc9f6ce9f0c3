//! A private containerd, started and supervised by `skiff up` when containerd is
//! installed but not running: its config, root, state and socket all live under the
//! data directory, as k3s does.
//!
//! The supervisor restarts containerd when it exits (with back-off), and the
//! containers keep running meanwhile: their shims outlive containerd by design.
//! [`Containerd::stop`] stops it gracefully; dropping the handle kills it.
//!
//! Signals other than SIGKILL are sent with the host's `kill(1)`: the crate forbids
//! unsafe code, and the process is always one this supervisor started and has not
//! reaped yet, so its pid cannot have been reused.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cri::CriRuntime;

/// The containerd namespace the CRI plugin keeps its images and containers in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// How long a fresh containerd may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a graceful stop waits before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Restart back-off: doubled after each quick exit, back to the start after a run
/// longer than [`STABLE_RUN`].
const RESTART_BACKOFF_MIN: Duration = Duration::from_secs(1);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
const STABLE_RUN: Duration = Duration::from_secs(60);

/// `sun_path` holds 107 bytes and a NUL; containerd also listens on
/// `<socket>.ttrpc`, six bytes longer.
const MAX_SOCKET_PATH: usize = 107 - ".ttrpc".len();

/// Where a supervised containerd keeps everything.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// Root of everything: `<dir>/containerd/{config.toml,root,state,containerd.sock}`.
    pub data_dir: PathBuf,
    /// CNI plugin binaries (Debian: /usr/lib/cni).
    pub cni_bin_dir: PathBuf,
    /// Where the agent writes the CNI conflist.
    pub cni_conf_dir: PathBuf,
    /// The sandbox ("pause") image, which must be imported, never pulled.
    pub sandbox_image: String,
}

/// The files of a supervised containerd under `<data_dir>/containerd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdPaths {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl ContainerdPaths {
    pub fn new(data_dir: &Path) -> ContainerdPaths {
        let dir = data_dir.join("containerd");
        ContainerdPaths {
            config: dir.join("config.toml"),
            root: dir.join("root"),
            state: dir.join("state"),
            socket: dir.join("containerd.sock"),
            log: dir.join("containerd.log"),
            dir,
        }
    }
}

/// The containerd binary on PATH (or in /usr/bin, /usr/local/bin), if installed.
pub fn find_binary() -> Option<PathBuf> {
    find_program("containerd")
}

/// `name` on PATH, or in the usual system directories when PATH lacks them (a
/// service manager's PATH can be minimal).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/bin", "/usr/bin", "/usr/local/sbin", "/usr/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// containerd's config (version 2) for a private instance: everything under
/// `paths.dir`, the CRI plugin with the given sandbox image and CNI directories,
/// runc with cgroupfs (the agent manages cgroups as cgroupfs paths), overlayfs.
pub fn config_toml(config: &ContainerdConfig, paths: &ContainerdPaths) -> String {
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    let mut toml = String::new();
    let mut line = |text: String| {
        toml.push_str(&text);
        toml.push('\n');
    };
    line("# Written by the Skiff agent on every start; edits are overwritten.".into());
    line("version = 2".into());
    line(format!("root = {}", quote(&paths.root)));
    line(format!("state = {}", quote(&paths.state)));
    // Keep the node's containers alive when memory runs out, rather than the
    // daemon that manages them.
    line("oom_score = -999".into());
    line(r#"disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]"#.into());
    line(String::new());
    line("[grpc]".into());
    line(format!("  address = {}", quote(&paths.socket)));
    line(String::new());
    line(r#"[plugins."io.containerd.internal.v1.opt"]"#.into());
    line(format!("  path = {}", quote(&paths.dir.join("opt"))));
    line(String::new());
    line(format!("[{cri}]"));
    line(format!("  sandbox_image = {}", quote_str(&config.sandbox_image)));
    line(r#"  stream_server_address = "127.0.0.1""#.into());
    line(r#"  stream_server_port = "0""#.into());
    // Pods may not be less likely to be OOM-killed than containerd itself. With the
    // -999 above nothing is clamped; where containerd may not lower its own score
    // (no CAP_SYS_RESOURCE, as in some VMs and containers), the sandbox's -998 would
    // otherwise make runc fail to create every pod.
    line("  restrict_oom_score_adj = true".into());
    line(format!("[{cri}.containerd]"));
    line(r#"  snapshotter = "overlayfs""#.into());
    line(r#"  default_runtime_name = "runc""#.into());
    line(format!("[{cri}.containerd.runtimes.runc]"));
    line(r#"  runtime_type = "io.containerd.runc.v2""#.into());
    line(format!("[{cri}.containerd.runtimes.runc.options]"));
    line("  SystemdCgroup = false".into());
    line(format!("[{cri}.cni]"));
    line(format!("  bin_dir = {}", quote(&config.cni_bin_dir)));
    line(format!("  conf_dir = {}", quote(&config.cni_conf_dir)));
    line("  max_conf_num = 1".into());
    toml
}

/// A TOML basic string. JSON's escapes are a subset of TOML's, so a JSON string
/// literal is a valid TOML one.
fn quote_str(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn quote(path: &Path) -> String {
    quote_str(&path.to_string_lossy())
}

/// A running containerd this process started; it is restarted if it exits, and
/// stopped when this is dropped.
pub struct Containerd {
    socket: PathBuf,
    log: PathBuf,
    /// `None` when an already running containerd on the same socket was adopted.
    supervisor: Option<Supervisor>,
}

struct Supervisor {
    shutdown: watch::Sender<Option<Shutdown>>,
    task: JoinHandle<()>,
    pid: watch::Receiver<Option<u32>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    /// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
    Graceful,
    /// SIGKILL at once.
    Kill,
}

// === impl Containerd ===

impl Containerd {
    /// Writes the config, starts containerd and waits until its socket answers.
    pub async fn start(config: ContainerdConfig) -> anyhow::Result<Containerd> {
        let binary = find_binary().context("containerd is not installed (looked on PATH and in /usr/bin, /usr/local/bin)")?;
        let paths = ContainerdPaths::new(&config.data_dir);
        let socket_len = paths.socket.as_os_str().len();
        if socket_len > MAX_SOCKET_PATH {
            anyhow::bail!(
                "containerd's socket {} would be {socket_len} bytes long, more than a unix socket path may be ({MAX_SOCKET_PATH}); use a shorter data directory",
                paths.socket.display()
            );
        }
        for dir in [&paths.dir, &paths.root, &paths.state] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::create_dir_all(&config.cni_conf_dir).with_context(|| format!("creating {}", config.cni_conf_dir.display()))?;

        // A containerd left running on this socket by an earlier agent (one that was
        // killed before it could stop it) owns the root directory; a second one
        // could not start. It is adopted instead, unsupervised.
        if CriRuntime::connect(&paths.socket).await.is_ok() {
            tracing::warn!(socket = %paths.socket.display(), "a containerd already answers on the socket; using it as it is");
            return Ok(Containerd { socket: paths.socket, log: paths.log, supervisor: None });
        }

        write_atomically(&paths.config, config_toml(&config, &paths).as_bytes()).with_context(|| format!("writing {}", paths.config.display()))?;
        let mut child = spawn(&binary, &paths)?;
        tracing::info!(pid = child.id(), config = %paths.config.display(), log = %paths.log.display(), "started containerd");

        if let Err(error) = wait_until_ready(&mut child, &paths).await {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(error);
        }

        let (shutdown, shutdown_rx) = watch::channel(None);
        let (pid_tx, pid) = watch::channel(child.id());
        let task = tokio::spawn(supervise(binary, paths.clone(), child, shutdown_rx, pid_tx));
        Ok(Containerd { socket: paths.socket, log: paths.log, supervisor: Some(Supervisor { shutdown, task, pid }) })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// containerd's own log (its stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The pid of the containerd running now, if this handle started it.
    pub fn pid(&self) -> Option<u32> {
        self.supervisor.as_ref().and_then(|s| *s.pid.borrow())
    }

    /// Stops containerd (SIGTERM, SIGKILL after ten seconds) and waits for it to
    /// exit. Containers keep running in their shims; stop them first to end them.
    pub async fn stop(mut self) {
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.shutdown.send(Some(Shutdown::Graceful));
            let _ = supervisor.task.await;
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(supervisor) = self.supervisor.take() {
            // The supervisor kills it as soon as it runs again; if the runtime is
            // shutting down instead, dropping the task drops the child, which is
            // killed on drop.
            let _ = supervisor.shutdown.send(Some(Shutdown::Kill));
        }
    }
}

fn spawn(binary: &Path, paths: &ContainerdPaths) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&paths.log).with_context(|| format!("opening {}", paths.log.display()))?;
    let stderr = log.try_clone()?;
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(&paths.config)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(stderr))
        // Its own process group: a Ctrl-C meant for the agent must not reach
        // containerd before the agent has stopped its pods.
        .process_group(0)
        .kill_on_drop(true);
    command.spawn().with_context(|| format!("starting {}", binary.display()))
}

async fn wait_until_ready(child: &mut Child, paths: &ContainerdPaths) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("containerd exited during start ({status}); see {}:\n{}", paths.log.display(), log_tail(&paths.log));
        }
        if CriRuntime::connect(&paths.socket).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "containerd did not answer CRI on {} within {START_TIMEOUT:?}; see {}:\n{}",
                paths.socket.display(),
                paths.log.display(),
                log_tail(&paths.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last lines of containerd's log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// Waits for containerd to exit and starts it again, until asked to stop.
async fn supervise(binary: PathBuf, paths: ContainerdPaths, mut child: Child, mut shutdown: watch::Receiver<Option<Shutdown>>, pid: watch::Sender<Option<u32>>) {
    let mut backoff = RESTART_BACKOFF_MIN;
    let mut started = Instant::now();
    loop {
        let status = tokio::select! {
            status = child.wait() => status,
            how = asked_to_stop(&mut shutdown) => {
                terminate(&mut child, how).await;
                let _ = pid.send(None);
                return;
            }
        };
        let _ = pid.send(None);
        let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        if started.elapsed() >= STABLE_RUN {
            backoff = RESTART_BACKOFF_MIN;
        }
        tracing::error!(%status, restart_in = ?backoff, log = %paths.log.display(), "containerd exited; restarting it");

        // Sleep, then start again; a failed start waits longer before the next try.
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = asked_to_stop(&mut shutdown) => return,
            }
            backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
            match spawn(&binary, &paths) {
                Ok(next) => {
                    tracing::info!(pid = next.id(), "restarted containerd");
                    child = next;
                    let _ = pid.send(child.id());
                    started = Instant::now();
                    break;
                }
                Err(error) => tracing::error!(error = format!("{error:#}"), "restarting containerd failed"),
            }
        }
    }
}

/// Resolves when the handle asks for a stop, with how to stop; a dropped handle
/// (the sender gone) means kill.
async fn asked_to_stop(shutdown: &mut watch::Receiver<Option<Shutdown>>) -> Shutdown {
    match shutdown.wait_for(Option::is_some).await {
        Ok(asked) => (*asked).unwrap_or(Shutdown::Kill),
        Err(_) => Shutdown::Kill,
    }
}

async fn terminate(child: &mut Child, how: Shutdown) {
    if how == Shutdown::Graceful {
        if let Some(pid) = child.id() {
            let sent = Command::new("kill").arg("-TERM").arg(pid.to_string()).stdin(Stdio::null()).status().await;
            if matches!(sent, Ok(status) if status.success()) {
                if let Ok(status) = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
                    log_exit(status);
                    return;
                }
                tracing::warn!(pid, "containerd did not stop within {STOP_TIMEOUT:?}; killing it");
            }
        }
    }
    let _ = child.start_kill();
    log_exit(child.wait().await);
}

fn log_exit(status: std::io::Result<ExitStatus>) {
    match status {
        Ok(status) => tracing::info!(%status, "containerd stopped"),
        Err(error) => tracing::warn!(%error, "waiting for containerd to stop"),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Imports a docker-save or OCI archive into containerd's CRI namespace (`k8s.io`)
/// with `ctr` (shipped with containerd) and returns the names of the images it
/// imported.
pub async fn import_image(socket: &Path, archive: &Path) -> anyhow::Result<Vec<String>> {
    let ctr = find_program("ctr").context("ctr is not installed (it comes with containerd)")?;
    let mut command = Command::new(&ctr);
    command
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE, "images", "import", "--all-platforms"])
        .arg(archive)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .with_context(|| format!("importing {}: ctr did not finish within five minutes", archive.display()))?
        .with_context(|| format!("running {}", ctr.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!("importing {} failed ({}): {}{}", archive.display(), output.status, String::from_utf8_lossy(&output.stderr).trim(), stdout.trim());
    }
    let names = imported_names(&stdout);
    if names.is_empty() {
        anyhow::bail!("importing {}: ctr reported no image: {}", archive.display(), stdout.trim());
    }
    Ok(names)
}

/// The names in `ctr images import` output: one `unpacking NAME (DIGEST)...done`
/// line per image.
fn imported_names(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("unpacking "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(data_dir: &str) -> ContainerdConfig {
        ContainerdConfig {
            data_dir: data_dir.into(),
            cni_bin_dir: "/usr/lib/cni".into(),
            cni_conf_dir: "/var/lib/skiff/cni/net.d".into(),
            sandbox_image: "skiff.local/pause:3.10".into(),
        }
    }

    #[test]
    fn everything_lives_under_the_data_directory() {
        let paths = ContainerdPaths::new(Path::new("/var/lib/skiff"));
        assert_eq!(paths.config, Path::new("/var/lib/skiff/containerd/config.toml"));
        assert_eq!(paths.socket, Path::new("/var/lib/skiff/containerd/containerd.sock"));
        assert_eq!(paths.log, Path::new("/var/lib/skiff/containerd/containerd.log"));

        let toml = config_toml(&config("/var/lib/skiff"), &paths);
        for expected in [
            "version = 2\n",
            "root = \"/var/lib/skiff/containerd/root\"\n",
            "state = \"/var/lib/skiff/containerd/state\"\n",
            "[grpc]\n  address = \"/var/lib/skiff/containerd/containerd.sock\"\n",
            "  sandbox_image = \"skiff.local/pause:3.10\"\n",
            "  snapshotter = \"overlayfs\"\n",
            "  runtime_type = \"io.containerd.runc.v2\"\n",
            "  SystemdCgroup = false\n",
            "  restrict_oom_score_adj = true\n",
            "  bin_dir = \"/usr/lib/cni\"\n",
            "  conf_dir = \"/var/lib/skiff/cni/net.d\"\n",
        ] {
            assert!(toml.contains(expected), "missing {expected:?} in\n{toml}");
        }
    }

    #[test]
    fn paths_are_quoted_as_toml_strings() {
        let paths = ContainerdPaths::new(Path::new("/data/a \"b\"\\c"));
        let toml = config_toml(&config("/data"), &paths);
        assert!(toml.contains(r#"root = "/data/a \"b\"\\c/containerd/root""#), "{toml}");
    }

    #[test]
    fn ctr_output_names_the_imported_images() {
        let output = "unpacking skiff.local/busybox:1.35 (sha256:aa9c)...done\nunpacking skiff.local/pause:3.10 (sha256:bb01)...done\n";
        assert_eq!(imported_names(output), vec!["skiff.local/busybox:1.35", "skiff.local/pause:3.10"]);
        assert!(imported_names("").is_empty());
    }

    #[test]
    fn containerd_is_found_where_debian_installs_it() {
        // The package may be missing on a developer machine; when it is present
        // it is found, and what is found runs.
        if Path::new("/usr/bin/containerd").exists() {
            assert!(find_binary().is_some());
        }
        assert!(find_program("surely-not-a-program-skiff-needs").is_none());
    }

    #[tokio::test]
    async fn a_data_directory_too_deep_for_a_socket_is_refused() {
        if find_binary().is_none() {
            return;
        }
        let deep = format!("/tmp/{}", "d".repeat(120));
        let error = Containerd::start(config(&deep)).await.err().expect("the socket path is too long");
        assert!(format!("{error:#}").contains("unix socket path"), "{error:#}");
        assert!(!Path::new(&deep).exists());
    }
}
