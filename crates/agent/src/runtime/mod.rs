//! The container runtime seen from the agent: pod sandboxes and the containers in
//! them, shaped after CRI v1 so that the CRI implementation is a thin translation.
//!
//! - [`cri`]: containerd (or any CRI runtime) over its gRPC socket; [`cni`] writes the
//!   pod network config containerd's CRI plugin reads; [`containerd`] starts and
//!   supervises a private containerd for `skiff up`.
//! - [`process`]: plain host processes (RuntimeClass `process`): no image, no
//!   isolation; the same lifecycle, logs and exit codes.
//!
//! Everything the kubelet logic needs to find its pods again after a restart lives
//! in the labels and annotations it gives sandboxes and containers, and every runtime
//! keeps them (the runtime is the source of truth, as for the kubelet).

pub mod cni;
pub mod containerd;
pub mod cri;
pub mod process;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use jiff::Timestamp;
use tokio::io::{AsyncRead, AsyncWrite};

/// Label keys the kubelet puts on sandboxes and containers (the upstream names, so
/// `crictl` users recognise them).
pub mod labels {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The sandbox, container or image does not exist (any more).
    #[error("not found: {0}")]
    NotFound(String),
    /// The image could not be pulled (bad name, no such image, registry refused).
    #[error("failed to pull image {image:?}: {message}")]
    ImagePull { image: String, message: String },
    /// The runtime could not be reached (socket missing, containerd down).
    #[error("container runtime unavailable: {0}")]
    Unavailable(String),
    /// The call timed out (ExecSync past its deadline, a stop that hung).
    #[error("timed out: {0}")]
    Timeout(String),
    /// Any other failure the runtime reported; the message is the runtime's.
    #[error("{0}")]
    Failed(String),
}

/// DNS settings of a pod's resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// A container port published on the node (`hostPort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub container_port: u16,
    pub host_port: u16,
    /// Empty for every address.
    pub host_ip: String,
}

/// What a pod's sandbox is made from.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    /// Incremented each time the pod's sandbox is recreated.
    pub attempt: u32,
    pub hostname: String,
    /// Where the pod's container logs go: `<dir>/<container>/<restartCount>.log`.
    pub log_directory: PathBuf,
    pub dns: Option<DnsConfig>,
    pub port_mappings: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `spec.hostNetwork`: no network namespace of its own.
    pub host_network: bool,
    /// Cgroup parent of the pod's containers (cgroupfs path), empty for the default.
    pub cgroup_parent: String,
    /// `net.*`/`kernel.*` sysctls from the pod's securityContext.
    pub sysctls: BTreeMap<String, String>,
    /// The RuntimeClass handler ("" for the runtime's default).
    pub runtime_handler: String,
}

/// A bind mount into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

/// Linux resources of a container, already converted from requests and limits the
/// way the kubelet converts them (cpu shares from the request, CFS quota from the
/// limit over a 100 ms period, memory limit in bytes; 0 means unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_shares: i64,
    pub cpu_quota: i64,
    pub cpu_period: i64,
    pub memory_limit_bytes: i64,
    pub oom_score_adj: i64,
}

/// Process identity and privileges of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityConfig {
    pub privileged: bool,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub read_only_root_filesystem: bool,
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
}

/// What a container is made from. `command`/`args` are the pod spec's (the runtime
/// falls back to the image's entrypoint and cmd as Kubernetes specifies).
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    pub name: String,
    /// The restart count this container instance carries.
    pub attempt: u32,
    /// The image reference as pulled (tag or digest); ignored by the process runtime.
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: Option<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    /// Relative to the sandbox's `log_directory`: `<container>/<attempt>.log`.
    pub log_path: PathBuf,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    pub resources: Resources,
    pub security: SecurityConfig,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone)]
pub struct SandboxStatus {
    pub id: String,
    pub state: SandboxState,
    /// The pod's addresses (first is the primary), empty for host-network pods.
    pub ips: Vec<IpAddr>,
    pub created_at: Option<Timestamp>,
    pub attempt: u32,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub id: String,
    pub sandbox_id: String,
    /// The container's name in the pod spec.
    pub name: String,
    pub attempt: u32,
    pub state: ContainerState,
    pub created_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub exit_code: i32,
    /// "OOMKilled", "Error", "Completed" for exited containers (as the runtime says).
    pub reason: String,
    pub message: String,
    /// The image as requested, and the resolved id (`sha256:…` or a digest ref).
    pub image: String,
    pub image_ref: String,
    /// Absolute path of the container's CRI-format log file.
    pub log_path: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// `sha256:…` image id.
    pub id: String,
    /// Tags and digests the runtime knows the image by.
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size_bytes: u64,
}

/// Registry credentials for one pull (from imagePullSecrets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    pub auth: String,
    pub server_address: String,
    pub identity_token: String,
    pub registry_token: String,
}

#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// An interactive exec or attach as the client asked for it.
#[derive(Debug, Clone, Default)]
pub struct StreamRequest {
    /// Empty for attach.
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Where an exec, attach or port-forward session is served.
pub enum Stream {
    /// A CRI streaming server URL (containerd's); the agent relays the client's
    /// upgraded connection there.
    Remote(String),
    /// A session the runtime runs itself (the process runtime).
    Local(LocalStream),
    /// Port-forward straight to this address (a pod in the host's network).
    Direct(IpAddr),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stream::Remote(url) => f.debug_tuple("Remote").field(url).finish(),
            Stream::Local(_) => f.write_str("Local(..)"),
            Stream::Direct(ip) => f.debug_tuple("Direct").field(ip).finish(),
        }
    }
}

/// The pipes of a process the runtime started for an exec (or the container's own
/// for an attach); `exit` resolves to the exit code when it ends.
pub struct LocalStream {
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub stdout: Option<Pin<Box<dyn AsyncRead + Send>>>,
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Terminal size changes (columns, rows), when the session has a terminal.
    pub resize: Option<tokio::sync::mpsc::UnboundedSender<(u16, u16)>>,
    pub exit: tokio::sync::oneshot::Receiver<i32>,
}

/// A container runtime: CRI (containerd) or host processes.
///
/// Every method is idempotent where CRI's is: stopping a stopped container or
/// removing a removed one succeeds.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The RuntimeClass handler this runtime serves ("cri" default, "process").
    fn handler(&self) -> &str;
    /// `<name>://<version>`, as Node.status.nodeInfo.containerRuntimeVersion shows it.
    async fn version(&self) -> Result<String>;

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>>;
    /// Pulls the image; returns its id.
    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<String>;

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<String>;
    async fn stop_sandbox(&self, id: &str) -> Result<()>;
    async fn remove_sandbox(&self, id: &str) -> Result<()>;
    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus>;
    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>>;
    /// The sandboxes of one pod (by the `io.kubernetes.pod.uid` label): what a pod
    /// sync needs, without the status of every other pod's sandbox.
    async fn list_pod_sandboxes(&self, pod_uid: &str) -> Result<Vec<SandboxStatus>> {
        Ok(self.list_sandboxes().await?.into_iter().filter(|s| s.labels.get(labels::POD_UID).map(String::as_str) == Some(pod_uid)).collect())
    }
    /// Every sandbox with its id, state, attempt, creation time and labels only
    /// (addresses may be missing): a cheap listing for noticing changes.
    async fn list_sandboxes_brief(&self) -> Result<Vec<SandboxStatus>> {
        self.list_sandboxes().await
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig, sandbox: &SandboxConfig) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// SIGTERM (or the image's stop signal), then SIGKILL after `grace`.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;
    /// Every container, or those of one sandbox.
    async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<ContainerStatus>>;
    /// Every container with its id, sandbox, name, attempt, state and labels only
    /// (exit codes and times may be missing): a cheap listing for noticing changes.
    async fn list_containers_brief(&self) -> Result<Vec<ContainerStatus>> {
        self.list_containers(None).await
    }

    /// Runs a command in a running container and collects its output (probes, hooks).
    async fn exec_sync(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput>;
    async fn exec(&self, id: &str, request: &StreamRequest) -> Result<Stream>;
    async fn attach(&self, id: &str, request: &StreamRequest) -> Result<Stream>;
    async fn port_forward(&self, sandbox_id: &str) -> Result<Stream>;
}
