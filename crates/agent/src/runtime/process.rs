//! The process runtime (RuntimeClass `process`): a pod's containers run as plain
//! host processes, in the host's network, with no image and no isolation.
//!
//! It is meant for nodes without containerd and for workloads that are host
//! programs anyway; it keeps the Kubernetes lifecycle (start, logs, exit codes,
//! probes, restarts, graceful stop) and drops everything a container would add:
//!
//! - **No image.** `command` is required (there is no entrypoint to fall back to);
//!   the image name is kept for status only, `pull_image` succeeds at once and
//!   `image_status` knows every image.
//! - **Host network.** Sandboxes report no IPs: the pod is in the host's network and
//!   the kubelet reports the node's address, as for `hostNetwork` pods.
//!   Port-forward goes to 127.0.0.1. There is no resolv.conf of the pod's own either:
//!   processes resolve names as the host does, whatever the pod's dnsPolicy.
//! - **No mounts.** A process cannot be shown a host directory at another path
//!   without a mount namespace, so volume mounts are not applied; a process that
//!   needs its volumes must be told their host paths.
//! - **No resource limits.** Requests and limits are not enforced (no cgroup is
//!   made); `runAsUser`/`runAsGroup` are applied, the rest of the security context is
//!   not.
//! - **Attach is output only.** It follows the container's log; the process's stdin
//!   is `/dev/null`. Exec runs the command on the host, with the container's
//!   environment and working directory, over pipes (a terminal request gets pipes,
//!   with stderr merged into stdout).
//!
//! Each started container has a supervisor, the process shim ([`shim_main`]), that
//! outlives the agent: it writes the CRI log and records the start and exit in the
//! container's state directory (see `state`), so a restarted agent finds its
//! running containers and the exit codes of those that ended while it was away.
//! The runtime stops a container by signalling its process group: SIGTERM, then
//! SIGKILL after the grace period.

mod host;
mod log;
mod shim;
mod state;

pub use shim::shim_main;

use std::io::SeekFrom;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;

use self::host::Signal;
use self::log::LogStream;
use self::state::{ContainerRecord, Exited, SandboxRecord, Started, CONFIG_FILE, EXITED_FILE, SANDBOX_FILE, STARTED_FILE};
use super::{
    ContainerConfig, ContainerState, ContainerStatus, ExecOutput, ImageInfo, LocalStream, RegistryAuth, Result, Runtime,
    RuntimeError, SandboxConfig, SandboxState, SandboxStatus, Stream, StreamRequest,
};

/// The RuntimeClass handler this runtime serves.
pub const HANDLER: &str = "process";

/// The image id reported for every image: there are no images.
const IMAGE_ID: &str = "process";

/// `PATH` of a container whose environment sets none (the one runc and Docker use).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a supervisor may take to start the container's process.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits for the exit to be recorded after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often state files are polled while waiting for a start or an exit.
const POLL: Duration = Duration::from_millis(20);
/// How often an attach looks for new log output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Runs pods' containers as host processes; see the module documentation.
pub struct ProcessRuntime {
    state: StateDir,
    /// The command (and leading arguments) that starts a supervisor.
    shim: Vec<String>,
}

// === impl ProcessRuntime ===

impl ProcessRuntime {
    /// A runtime keeping its state under `state_dir` (created if missing; an existing
    /// one is adopted with the sandboxes and containers in it). `shim` is the command
    /// that starts a supervisor, to which `run <container-state-dir>` is appended:
    /// `[<skiff binary>, "process-shim"]`, or the `skiff-process-shim` binary.
    pub fn new(state_dir: PathBuf, shim: Vec<String>) -> anyhow::Result<ProcessRuntime> {
        anyhow::ensure!(!shim.is_empty(), "the process runtime needs a shim command");
        let state = StateDir { root: state_dir };
        for dir in [state.root.join("sandboxes"), state.root.join("containers")] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(ProcessRuntime { state, shim })
    }

    /// Starts the supervisor of a created container and waits until the container's
    /// process runs (or failed to).
    async fn spawn_shim(&self, id: &str) -> Result<()> {
        let dir = self.state.container_dir(id);
        // One start per container: the marker is created exclusively.
        match std::fs::OpenOptions::new().write(true).create_new(true).open(dir.join("start")) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::Failed(format!("container {id} has already been started")))
            }
            Err(e) => return Err(io_error("marking the start", e)),
        }
        let mut shim = tokio::process::Command::new(&self.shim[0]);
        shim.args(&self.shim[1..])
            .arg("run")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = shim
            .spawn()
            .map_err(|e| RuntimeError::Failed(format!("starting the process shim {:?}: {e}", self.shim[0])))?;

        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let outcome = loop {
            let exited: Option<Exited> = state::read_json(&dir.join(EXITED_FILE)).map_err(|e| io_error("reading the exit", e))?;
            if let Some(exited) = exited {
                break match exited.reason.as_str() {
                    state::reason::START_ERROR => Err(RuntimeError::Failed(exited.message)),
                    // It ran, and already ended.
                    _ => Ok(()),
                };
            }
            if dir.join(STARTED_FILE).exists() {
                break Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Look once more: the shim may have recorded something just before ending.
                if dir.join(STARTED_FILE).exists() || dir.join(EXITED_FILE).exists() {
                    continue;
                }
                let message = format!("the process shim ended ({status}) before starting the container");
                let _ = state::write_json(&dir.join(EXITED_FILE), &Exited::start_error(message.clone(), Timestamp::now()));
                break Err(RuntimeError::Failed(message));
            }
            if tokio::time::Instant::now() >= deadline {
                break Err(RuntimeError::Timeout(format!("container {id} did not start within {START_TIMEOUT:?}")));
            }
            tokio::time::sleep(POLL).await;
        };
        // The supervisor outlives this call (and the agent); reap it when it ends so it
        // does not linger as a zombie.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        outcome
    }

    /// Waits until the container's exit is recorded or `timeout` passes. When its
    /// supervisor is gone, the runtime records the exit itself, with the code of
    /// `signal` that it sent.
    async fn wait_exit(&self, id: &str, started: &Started, signal: Signal, timeout: Duration) -> Result<bool> {
        let dir = self.state.container_dir(id);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if dir.join(EXITED_FILE).exists() {
                return Ok(true);
            }
            if !host::is_alive(started.shim_pid, started.shim_start_ticks)
                && !host::is_alive(started.pid, started.pid_start_ticks)
                && !dir.join(EXITED_FILE).exists()
            {
                // What is left of the group ends with its process, as under a supervisor.
                let _ = host::kill_group(started.pid, Signal::Kill).await;
                let exited = Exited::with_code(signal.exit_code(), Timestamp::now());
                state::write_json(&dir.join(EXITED_FILE), &exited).map_err(|e| io_error("recording the exit", e))?;
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn running(&self, id: &str) -> Result<Observed> {
        let observed = self.state.observe(id).await?;
        if observed.state != ContainerState::Running {
            return Err(RuntimeError::Failed(format!("container {id} is not running")));
        }
        Ok(observed)
    }
}

#[async_trait::async_trait]
impl Runtime for ProcessRuntime {
    fn handler(&self) -> &str {
        HANDLER
    }

    async fn version(&self) -> Result<String> {
        Ok(format!("process://{}", env!("CARGO_PKG_VERSION")))
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>> {
        Ok(Some(ImageInfo {
            id: IMAGE_ID.to_string(),
            repo_tags: vec![image.to_string()],
            repo_digests: Vec::new(),
            size_bytes: 0,
        }))
    }

    async fn pull_image(&self, _image: &str, _auth: Option<&RegistryAuth>) -> Result<String> {
        Ok(IMAGE_ID.to_string())
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<String> {
        let id = new_id();
        let dir = self.state.sandbox_dir(&id);
        std::fs::create_dir_all(&dir).map_err(|e| io_error("creating the sandbox directory", e))?;
        let record = SandboxRecord {
            id: id.clone(),
            pod_name: config.pod_name.clone(),
            pod_namespace: config.pod_namespace.clone(),
            pod_uid: config.pod_uid.clone(),
            attempt: config.attempt,
            hostname: config.hostname.clone(),
            log_directory: config.log_directory.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            created_at: Timestamp::now().to_string(),
            ready: true,
        };
        state::write_json(&dir.join(SANDBOX_FILE), &record).map_err(|e| io_error("recording the sandbox", e))?;
        Ok(id)
    }

    /// Kills the sandbox's containers at once (the kubelet stopped them gracefully
    /// before, as CRI expects) and marks it not ready.
    async fn stop_sandbox(&self, id: &str) -> Result<()> {
        let mut record = match self.state.sandbox(id) {
            Ok(record) => record,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        for container in self.state.containers().await?.into_iter().filter(|c| c.record.sandbox_id == id) {
            self.stop_container(&container.record.id, Duration::ZERO).await?;
        }
        if record.ready {
            record.ready = false;
            state::write_json(&self.state.sandbox_dir(id).join(SANDBOX_FILE), &record)
                .map_err(|e| io_error("recording the sandbox", e))?;
        }
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        check_id(id)?;
        for container in self.state.containers().await?.into_iter().filter(|c| c.record.sandbox_id == id) {
            self.remove_container(&container.record.id).await?;
        }
        remove_dir(&self.state.sandbox_dir(id))
    }

    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        Ok(sandbox_status(self.state.sandbox(id)?))
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        let mut sandboxes = Vec::new();
        for id in list_dir(&self.state.root.join("sandboxes"))? {
            match self.state.sandbox(&id) {
                Ok(record) => sandboxes.push(sandbox_status(record)),
                // Being created or removed right now.
                Err(RuntimeError::NotFound(_)) => {}
                Err(e) => tracing::warn!(sandbox = %id, error = %e, "skipping an unreadable sandbox"),
            }
        }
        Ok(sandboxes)
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig, sandbox: &SandboxConfig) -> Result<String> {
        let sandbox_record = self.state.sandbox(sandbox_id)?;
        // No image means no entrypoint: `command` (else `args`, as in
        // `kubectl run x -- sh -c …`, which sets only args) is the whole argv.
        if config.command.is_empty() && config.args.is_empty() {
            return Err(RuntimeError::Failed(
                "the process runtime needs a command: there is no image to take an entrypoint from".to_string(),
            ));
        }
        let uid = id_from(config.security.run_as_user, "runAsUser")?;
        let gid = id_from(config.security.run_as_group, "runAsGroup")?;

        let id = new_id();
        let dir = self.state.container_dir(&id);
        std::fs::create_dir_all(&dir).map_err(|e| io_error("creating the container directory", e))?;
        let log_directory = if sandbox.log_directory.as_os_str().is_empty() {
            &sandbox_record.log_directory
        } else {
            &sandbox.log_directory
        };
        let log_path = if config.log_path.as_os_str().is_empty() || log_directory.as_os_str().is_empty() {
            // Nowhere given: the log stays with the container's state.
            dir.join("container.log")
        } else {
            log_directory.join(&config.log_path)
        };
        let record = ContainerRecord {
            id: id.clone(),
            sandbox_id: sandbox_id.to_string(),
            name: config.name.clone(),
            attempt: config.attempt,
            image: config.image.clone(),
            argv: config.command.iter().chain(&config.args).cloned().collect(),
            env: container_env(&config.env, uid, std::env::var("HOME").ok()),
            working_dir: match &config.working_dir {
                Some(dir) if !dir.is_empty() => PathBuf::from(dir),
                _ => self.state.sandbox_dir(sandbox_id),
            },
            log_path,
            uid,
            gid,
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            created_at: Timestamp::now().to_string(),
        };
        // Written last: a directory without a config is a container still being created.
        state::write_json(&dir.join(CONFIG_FILE), &record).map_err(|e| io_error("recording the container", e))?;
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let observed = self.state.observe(id).await?;
        if observed.state != ContainerState::Created {
            return Err(RuntimeError::Failed(format!("container {id} has already been started")));
        }
        self.state.sandbox(&observed.record.sandbox_id)?;
        self.spawn_shim(id).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let observed = self.state.observe(id).await?;
        let (ContainerState::Running, Some(started)) = (observed.state, observed.started) else {
            // Never started, or already ended.
            return Ok(());
        };
        let mut steps = vec![(Signal::Kill, KILL_TIMEOUT)];
        if !grace.is_zero() {
            steps.insert(0, (Signal::Term, grace));
        }
        for (signal, timeout) in steps {
            // The process itself may be gone while its supervisor is still copying
            // its last output; its group id may then not be signalled any more.
            if host::is_alive(started.pid, started.pid_start_ticks) {
                host::kill_group(started.pid, signal).await.map_err(|e| io_error("signalling the container", e))?;
            }
            if self.wait_exit(id, &started, signal, timeout).await? {
                return Ok(());
            }
        }
        Err(RuntimeError::Timeout(format!("container {id} did not exit within {KILL_TIMEOUT:?} of SIGKILL")))
    }

    /// Removes the container's state (killing it first if it runs). Its log file is
    /// kept: it lives in the kubelet's log directory, which the kubelet cleans.
    async fn remove_container(&self, id: &str) -> Result<()> {
        match self.state.observe(id).await {
            Ok(observed) if observed.state == ContainerState::Running => self.stop_container(id, Duration::ZERO).await?,
            Ok(_) | Err(RuntimeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        remove_dir(&self.state.container_dir(id))
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        Ok(self.state.observe(id).await?.status())
    }

    async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<ContainerStatus>> {
        Ok(self
            .state
            .containers()
            .await?
            .into_iter()
            .filter(|c| sandbox_id.is_none_or(|s| c.record.sandbox_id == s))
            .map(|c| c.status())
            .collect())
    }

    /// Runs `command` on the host with the container's environment and working
    /// directory, in a process group of its own that is killed at the timeout (zero
    /// means none, as in CRI).
    async fn exec_sync(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput> {
        let observed = self.running(id).await?;
        let mut cmd = exec_command(&observed.record, command)?;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| RuntimeError::Failed(format!("exec {:?}: {e}", command[0])))?;
        let pgid = child.id();
        let output = child.wait_with_output();
        let output = if timeout.is_zero() {
            output.await
        } else {
            match tokio::time::timeout(timeout, output).await {
                Ok(output) => output,
                Err(_) => {
                    if let Some(pgid) = pgid {
                        let _ = host::kill_group(pgid, Signal::Kill).await;
                    }
                    return Err(RuntimeError::Timeout(format!("command {command:?} timed out after {timeout:?}")));
                }
            }
        }
        .map_err(|e| RuntimeError::Failed(format!("exec {:?}: {e}", command[0])))?;
        Ok(ExecOutput { exit_code: host::exit_code(output.status), stdout: output.stdout, stderr: output.stderr })
    }

    async fn exec(&self, id: &str, request: &StreamRequest) -> Result<Stream> {
        let observed = self.running(id).await?;
        let mut cmd = exec_command(&observed.record, &request.command)?;
        cmd.stdin(if request.stdin { Stdio::piped() } else { Stdio::null() });
        let mut merged = None;
        if request.tty && request.stdout {
            // No terminal, but one output stream as a terminal would give.
            let (reader, writer) = std::io::pipe().map_err(|e| io_error("creating a pipe", e))?;
            cmd.stdout(writer.try_clone().map_err(|e| io_error("creating a pipe", e))?).stderr(writer);
            merged = Some(reader);
        } else {
            cmd.stdout(if request.stdout { Stdio::piped() } else { Stdio::null() });
            cmd.stderr(if request.stderr && !request.tty { Stdio::piped() } else { Stdio::null() });
        }
        let spawned = cmd.spawn();
        // The command holds the pipe's write ends; the reader sees EOF only once the
        // process's are the last.
        drop(cmd);
        let mut child = spawned.map_err(|e| RuntimeError::Failed(format!("exec {:?}: {e}", request.command[0])))?;

        let stdout: Option<Pin<Box<dyn AsyncRead + Send>>> = match merged {
            Some(reader) => Some(Box::pin(
                tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))
                    .map_err(|e| io_error("reading the exec's output", e))?,
            )),
            None => child.stdout.take().map(|s| Box::pin(s) as Pin<Box<dyn AsyncRead + Send>>),
        };
        let stderr = child.stderr.take().map(|s| Box::pin(s) as Pin<Box<dyn AsyncRead + Send>>);
        let stdin = child.stdin.take().map(|s| Box::pin(s) as Pin<Box<dyn AsyncWrite + Send>>);
        let (exit_tx, exit) = oneshot::channel();
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => host::exit_code(status),
                Err(_) => 255,
            };
            let _ = exit_tx.send(code);
        });
        Ok(Stream::Local(LocalStream { stdin, stdout, stderr, resize: None, exit }))
    }

    /// Follows the container's log from now on until it exits. The process's stdin
    /// is not reachable: the stream never has one.
    async fn attach(&self, id: &str, request: &StreamRequest) -> Result<Stream> {
        let observed = self.running(id).await?;
        let log_path = observed.record.log_path.clone();
        let offset = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let (stdout, stdout_writer) = pipe_if(request.stdout);
        let (stderr, stderr_writer) = pipe_if(request.stderr && !request.tty);
        let (exit_tx, exit) = oneshot::channel();
        let follower = LogFollower {
            state: self.state.clone(),
            id: id.to_string(),
            log_path,
            offset,
            stdout: stdout_writer,
            stderr: stderr_writer,
            merge: request.tty,
        };
        tokio::spawn(follower.run(exit_tx));
        Ok(Stream::Local(LocalStream { stdin: None, stdout, stderr, resize: None, exit }))
    }

    async fn port_forward(&self, sandbox_id: &str) -> Result<Stream> {
        self.state.sandbox(sandbox_id)?;
        Ok(Stream::Direct(IpAddr::V4(Ipv4Addr::LOCALHOST)))
    }
}

// === impl StateDir ===

/// The runtime's state directory (cheap to clone into background tasks).
#[derive(Debug, Clone)]
struct StateDir {
    root: PathBuf,
}

/// A container as its files describe it now.
struct Observed {
    record: ContainerRecord,
    started: Option<Started>,
    exited: Option<Exited>,
    state: ContainerState,
}

impl StateDir {
    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.root.join("sandboxes").join(id)
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    fn sandbox(&self, id: &str) -> Result<SandboxRecord> {
        check_id(id)?;
        state::read_json(&self.sandbox_dir(id).join(SANDBOX_FILE))
            .map_err(|e| io_error("reading the sandbox", e))?
            .ok_or_else(|| RuntimeError::NotFound(format!("sandbox {id}")))
    }

    /// Reads a container's files and checks its processes. A container whose
    /// supervisor and process are both gone without a recorded exit (killed, or the
    /// host rebooted) gets an exit recorded now, with code 255 as containerd reports
    /// an unknown exit, and what is left of its process group is killed, as its
    /// supervisor would have done.
    async fn observe(&self, id: &str) -> Result<Observed> {
        check_id(id)?;
        let dir = self.container_dir(id);
        let record: ContainerRecord = state::read_json(&dir.join(CONFIG_FILE))
            .map_err(|e| io_error("reading the container", e))?
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        let read_exited = || state::read_json::<Exited>(&dir.join(EXITED_FILE)).map_err(|e| io_error("reading the exit", e));
        let started: Option<Started> =
            state::read_json(&dir.join(STARTED_FILE)).map_err(|e| io_error("reading the start", e))?;
        let mut exited = read_exited()?;
        if let (Some(started), None) = (&started, &exited) {
            if !host::is_alive(started.shim_pid, started.shim_start_ticks) {
                // The supervisor may have recorded the exit just before ending.
                exited = read_exited()?;
                if exited.is_none() && !host::is_alive(started.pid, started.pid_start_ticks) {
                    let _ = host::kill_group(started.pid, Signal::Kill).await;
                    let lost = Exited {
                        exit_code: 255,
                        reason: state::reason::ERROR.to_string(),
                        message: "the process ended while its supervisor was not running; its exit code is unknown".to_string(),
                        finished_at: Some(Timestamp::now().to_string()),
                    };
                    state::write_json(&dir.join(EXITED_FILE), &lost).map_err(|e| io_error("recording the exit", e))?;
                    exited = Some(lost);
                }
            }
        }
        let state = match (&started, &exited) {
            (_, Some(_)) => ContainerState::Exited,
            (Some(_), None) => ContainerState::Running,
            (None, None) => ContainerState::Created,
        };
        Ok(Observed { record, started, exited, state })
    }

    /// Every container that is fully created.
    async fn containers(&self) -> Result<Vec<Observed>> {
        let mut containers = Vec::new();
        for id in list_dir(&self.root.join("containers"))? {
            match self.observe(&id).await {
                Ok(observed) => containers.push(observed),
                Err(RuntimeError::NotFound(_)) => {}
                Err(e) => tracing::warn!(container = %id, error = %e, "skipping an unreadable container"),
            }
        }
        Ok(containers)
    }
}

impl Observed {
    fn status(self) -> ContainerStatus {
        let exited = self.exited.unwrap_or(Exited { exit_code: 0, reason: String::new(), message: String::new(), finished_at: None });
        ContainerStatus {
            id: self.record.id,
            sandbox_id: self.record.sandbox_id,
            name: self.record.name,
            attempt: self.record.attempt,
            state: self.state,
            created_at: state::timestamp(Some(&self.record.created_at)),
            started_at: state::timestamp(self.started.as_ref().map(|s| s.started_at.as_str())),
            finished_at: state::timestamp(exited.finished_at.as_deref()),
            exit_code: exited.exit_code,
            reason: exited.reason,
            message: exited.message,
            image: self.record.image,
            image_ref: IMAGE_ID.to_string(),
            log_path: self.record.log_path,
            labels: self.record.labels,
            annotations: self.record.annotations,
        }
    }
}

// === attach ===

/// Copies what a container writes to its log, from `offset` on, to an attach
/// session until the container exits or the session's reader goes away.
struct LogFollower {
    state: StateDir,
    id: String,
    log_path: PathBuf,
    offset: u64,
    stdout: Option<DuplexStream>,
    stderr: Option<DuplexStream>,
    /// Stderr goes to stdout (a terminal was asked for).
    merge: bool,
}

impl LogFollower {
    async fn run(mut self, exit: oneshot::Sender<i32>) {
        let wanted = self.stdout.is_some() || self.stderr.is_some();
        let mut pending = Vec::new();
        loop {
            // Looked at before reading, so that all output written before the exit
            // is read before stopping.
            let ended = match self.state.observe(&self.id).await {
                Ok(observed) => observed.exited.map(|e| e.exit_code),
                // Removed: no exit code to report.
                Err(_) => return,
            };
            pending.extend(self.read_new().await);
            while let Some(newline) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=newline).collect();
                if let Some(record) = log::parse_record(&line[..newline]) {
                    self.write(record.stream, &record.output()).await;
                }
            }
            if let Some(code) = ended {
                // Dropping the writers ends the session's streams.
                drop((self.stdout.take(), self.stderr.take()));
                let _ = exit.send(code);
                return;
            }
            if wanted && self.stdout.is_none() && self.stderr.is_none() {
                // The client is gone.
                return;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }

    /// What was appended to the log since the last read (from the start again if the
    /// file was replaced by a shorter one).
    async fn read_new(&mut self) -> Vec<u8> {
        let Ok(mut file) = tokio::fs::File::open(&self.log_path).await else {
            return Vec::new();
        };
        let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            self.offset = 0;
        }
        let mut buf = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).await.is_ok() && file.read_to_end(&mut buf).await.is_ok() {
            self.offset += buf.len() as u64;
        }
        buf
    }

    async fn write(&mut self, stream: LogStream, bytes: &[u8]) {
        let target = match stream {
            LogStream::Stderr if !self.merge => &mut self.stderr,
            _ => &mut self.stdout,
        };
        if let Some(writer) = target {
            if writer.write_all(bytes).await.is_err() {
                *target = None;
            }
        }
    }
}

fn pipe_if(wanted: bool) -> (Option<Pin<Box<dyn AsyncRead + Send>>>, Option<DuplexStream>) {
    if !wanted {
        return (None, None);
    }
    let (writer, reader) = tokio::io::duplex(64 * 1024);
    (Some(Box::pin(reader)), Some(writer))
}

// === helpers ===

fn sandbox_status(record: SandboxRecord) -> SandboxStatus {
    SandboxStatus {
        id: record.id,
        state: if record.ready { SandboxState::Ready } else { SandboxState::NotReady },
        // The host's network: the kubelet reports the node's address.
        ips: Vec::new(),
        created_at: state::timestamp(Some(&record.created_at)),
        attempt: record.attempt,
        labels: record.labels,
        annotations: record.annotations,
    }
}

/// A host command with a container's environment, working directory and user, in a
/// process group of its own (so that a timeout can kill all of it).
fn exec_command(record: &ContainerRecord, command: &[String]) -> Result<tokio::process::Command> {
    let Some((program, args)) = command.split_first() else {
        return Err(RuntimeError::Failed("exec needs a command".to_string()));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(record.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&record.working_dir)
        .process_group(0);
    if let Some(gid) = record.gid {
        cmd.gid(gid);
    }
    if let Some(uid) = record.uid {
        cmd.uid(uid);
    }
    Ok(cmd)
}

/// The container's environment with what a container runtime always sets: `PATH`
/// (there is no image to give one) and `HOME`: the agent's own for a process that
/// runs as the agent's user, `/` for another user (there is no image's passwd file
/// to look it up in).
fn container_env(env: &[(String, String)], uid: Option<u32>, agent_home: Option<String>) -> Vec<(String, String)> {
    let home = match (uid, agent_home) {
        (None, Some(home)) if !home.is_empty() => home,
        _ => "/".to_string(),
    };
    let mut env = env.to_vec();
    for (name, default) in [("PATH", DEFAULT_PATH.to_string()), ("HOME", home)] {
        if !env.iter().any(|(k, _)| k == name) {
            env.push((name.to_string(), default));
        }
    }
    env
}

fn id_from(value: Option<i64>, field: &str) -> Result<Option<u32>> {
    value
        .map(|v| u32::try_from(v).map_err(|_| RuntimeError::Failed(format!("{field} {v} is not a valid id"))))
        .transpose()
}

/// A new sandbox or container id: 32 random bytes in hex, like containerd's.
fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Ids become path components: anything but a plain name cannot be one of ours.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(RuntimeError::NotFound(format!("{id:?} is not a valid id")));
    }
    Ok(())
}

fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("listing the state directory", e)),
    };
    let mut ids: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    ids.sort();
    Ok(ids)
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing the state directory", e)),
    }
}

fn io_error(doing: &str, e: std::io::Error) -> RuntimeError {
    RuntimeError::Failed(format!("{doing}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_gets_a_path_and_home_unless_it_has_them() {
        let env = container_env(&[("FOO".into(), "bar".into()), ("HOME".into(), "/work".into())], None, None);
        assert_eq!(
            env,
            vec![
                ("FOO".to_string(), "bar".to_string()),
                ("HOME".to_string(), "/work".to_string()),
                ("PATH".to_string(), DEFAULT_PATH.to_string()),
            ]
        );
        let home = |uid, agent: Option<&str>| {
            let env = container_env(&[], uid, agent.map(str::to_string));
            env.into_iter().find(|(k, _)| k == "HOME").map(|(_, v)| v).unwrap()
        };
        assert_eq!(home(None, Some("/root")), "/root");
        assert_eq!(home(Some(1000), Some("/root")), "/");
        assert_eq!(home(None, None), "/");
    }

    #[test]
    fn ids_are_64_hex_digits_and_paths_are_not_ids() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(check_id(&id).is_ok());
        for bad in ["", "..", "a/b", "../../etc"] {
            assert!(matches!(check_id(bad), Err(RuntimeError::NotFound(_))), "{bad:?}");
        }
    }
}
