//! This node's Node object: registration with the host's capacity, addresses and
//! system info, Lease heartbeats in kube-node-lease, and status updates.
//!
//! - [`HostFacts`]: what the host says about itself (online CPUs, `MemTotal`, the
//!   size of the storage directory's filesystem, machine and boot ids, kernel and
//!   OS), read from `/proc`, `/sys` and `/etc` by small pure parsers.
//! - [`register`]: creates the Node, or adopts one of the same name (our labels,
//!   taints and annotation are set over it, its status becomes ours), then waits
//!   until the Node has a pod CIDR. The server's node IPAM controller allocates
//!   it; a CIDR asked for with `--pod-cidr` is set at registration instead, when
//!   no other Node holds it.
//! - [`run`]: renews the Lease every heartbeat, writes the status when what it
//!   should say changed (Ready follows the runtime answering `Version`) or every
//!   5 minutes, and registers the Node again if someone deleted it.
//!
//! Allocatable is capacity minus the kubelet's default hard eviction thresholds
//! (`memory.available<100Mi`, `nodefs.available<10%`): what upstream reports with
//! no kube-reserved or system-reserved set. CPU and pods are not reserved.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use skiff_client::{Api, Client, ListParams};

use crate::runtime::Runtime;
use crate::sim::node::{kubelet_conditions, parse_taint, Cidr, LABEL_ARCH, LABEL_HOSTNAME, LABEL_OS};

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
    /// The pod CIDR to ask for when the Node has none and no other Node holds it
    /// (`--pod-cidr`); None: the server allocates one.
    pub pod_cidr: Option<String>,
}

/// What the rest of the kubelet needs to know about the registered node.
/// [`register`] returns it only once the Node has a pod CIDR.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub name: String,
    pub node_ip: IpAddr,
    /// spec.podCIDRs (the first is spec.podCIDR).
    pub pod_cidrs: Vec<String>,
    /// status.allocatable, as quantities ("4", "8038232Ki", "110").
    pub allocatable: BTreeMap<String, String>,
}

/// The annotation that tells the local-path provisioner where this node keeps
/// volume data.
pub const STORAGE_ANNOTATION: &str = "storage.skiff.io/local-path";
/// What the kubelet reports as its version: the API server's Kubernetes version,
/// marked as Skiff's.
pub const KUBELET_VERSION: &str = crate::sim::node::KUBELET_VERSION;
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// What a kubelet puts in `leaseDurationSeconds`.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the status is written when nothing changed (upstream's
/// nodeStatusReportFrequency); the Lease is the liveness signal in between.
pub const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(300);
/// How often registration looks for the pod CIDR the server allocates, and how
/// often it says that it is still waiting.
const POD_CIDR_POLL: Duration = Duration::from_millis(250);
const POD_CIDR_WAIT_LOG: Duration = Duration::from_secs(10);

/// The kubelet's default `evictionHard` thresholds, which is what allocatable
/// holds back: 100Mi of memory and 10% of the node filesystem.
const MEMORY_RESERVED_KI: u64 = 100 * 1024;
const STORAGE_RESERVED_PERCENT: u64 = 10;
/// How long the runtime may take to answer `Version` before it counts as down.
const RUNTIME_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries of one write that meets conflicts before waiting for the next round.
const CONFLICT_RETRIES: usize = 5;
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(10);

const READY_MESSAGE: &str = "kubelet is posting ready status";
const RUNTIME_DOWN_MESSAGE: &str = "container runtime is down";

/// Why the node cannot be registered however often we try.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Taint(#[from] crate::sim::node::ConfigError),
    /// `--pod-cidr` is no IPv4 CIDR.
    #[error("the pod CIDR {0:?} to ask for is not an IPv4 CIDR")]
    InvalidPodCidr(String),
    /// The server refused the Node itself (invalid labels, say).
    #[error("the API server refused node {node}: {source}")]
    Refused {
        node: String,
        #[source]
        source: Box<skiff_client::Error>,
    },
}

// === host facts ===

/// What the host says about itself, as the Node reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Online CPUs.
    pub cpus: u32,
    /// `MemTotal` in KiB.
    pub memory_ki: u64,
    /// Size of the filesystem holding the storage directory, in bytes.
    pub storage_bytes: u64,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    /// GOARCH spelling: amd64, arm64, …
    pub architecture: String,
}

impl HostFacts {
    /// Reads the host's facts; what cannot be read stays empty (or falls back:
    /// the CPU count to the parallelism this process sees, the system UUID to the
    /// machine id). `storage_dir` is created if missing.
    pub async fn read(storage_dir: &Path) -> HostFacts {
        let text = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpus = parse_cpu_list(&text("/sys/devices/system/cpu/online"))
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1));
        let machine_id = text("/etc/machine-id").trim().to_string();
        let system_uuid = match text("/sys/class/dmi/id/product_uuid").trim() {
            "" => machine_id.clone(),
            uuid => uuid.to_lowercase(),
        };
        if let Err(e) = std::fs::create_dir_all(storage_dir) {
            tracing::warn!(dir = %storage_dir.display(), error = %e, "cannot create the storage directory");
        }
        HostFacts {
            cpus,
            memory_ki: parse_meminfo_total(&text("/proc/meminfo")).unwrap_or(0),
            storage_bytes: filesystem_size(storage_dir).await.unwrap_or(0),
            machine_id,
            system_uuid,
            boot_id: text("/proc/sys/kernel/random/boot_id").trim().to_string(),
            kernel_version: text("/proc/sys/kernel/osrelease").trim().to_string(),
            os_image: parse_os_release(&text("/etc/os-release")).unwrap_or_else(|| "Linux".into()),
            architecture: kube_arch(std::env::consts::ARCH).to_string(),
        }
    }

    /// status.capacity: cpu, memory, ephemeral-storage, pods, hugepages.
    pub fn capacity(&self, max_pods: u32) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("cpu".to_string(), self.cpus.to_string()),
            ("memory".to_string(), format!("{}Ki", self.memory_ki)),
            ("ephemeral-storage".to_string(), bytes_quantity(self.storage_bytes)),
            ("pods".to_string(), max_pods.to_string()),
            ("hugepages-1Gi".to_string(), "0".to_string()),
            ("hugepages-2Mi".to_string(), "0".to_string()),
        ])
    }

    /// status.allocatable: capacity minus the default hard eviction thresholds.
    pub fn allocatable(&self, max_pods: u32) -> BTreeMap<String, String> {
        let mut allocatable = self.capacity(max_pods);
        allocatable.insert("memory".into(), format!("{}Ki", self.memory_ki.saturating_sub(MEMORY_RESERVED_KI)));
        let storage = self.storage_bytes - self.storage_bytes * STORAGE_RESERVED_PERCENT / 100;
        allocatable.insert("ephemeral-storage".into(), bytes_quantity(storage));
        allocatable
    }
}

/// Bytes as the kubelet writes them: `Ki` when they are whole KiB, else plain.
fn bytes_quantity(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

/// Counts the CPUs of a kernel CPU list (`/sys/devices/system/cpu/online`: `0-3,6`).
pub fn parse_cpu_list(list: &str) -> Option<u32> {
    let list = list.trim();
    if list.is_empty() {
        return None;
    }
    let mut n = 0u32;
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.trim().parse::<u32>().ok()?;
                n += 1;
            }
        }
    }
    Some(n)
}

/// `MemTotal` of `/proc/meminfo`, in KiB (the kernel's "kB" are KiB).
pub fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(n),
        Some(_) => None,
    }
}

/// `PRETTY_NAME` of `/etc/os-release`, unquoted.
pub fn parse_os_release(os_release: &str) -> Option<String> {
    let value = os_release.lines().find_map(|l| l.trim().strip_prefix("PRETTY_NAME="))?;
    let value = value.trim();
    let unquoted = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\''))).unwrap_or(value);
    (!unquoted.is_empty()).then(|| unquoted.to_string())
}

/// The filesystem size from `stat -f -c '%S %b'` (fundamental block size, blocks).
pub fn parse_statfs(output: &str) -> Option<u64> {
    let mut words = output.split_whitespace();
    let block: u64 = words.next()?.parse().ok()?;
    let blocks: u64 = words.next()?.parse().ok()?;
    block.checked_mul(blocks)
}

/// Asks coreutils' `stat` for the size of the filesystem holding `dir` (or its
/// nearest existing parent).
async fn filesystem_size(dir: &Path) -> Option<u64> {
    let dir = dir.ancestors().find(|d| d.exists())?;
    let out = tokio::process::Command::new("stat").args(["-f", "-c", "%S %b"]).arg(dir).output().await.ok()?;
    out.status.success().then(|| parse_statfs(&String::from_utf8_lossy(&out.stdout))).flatten()
}

/// Rust's architecture names in Kubernetes' (Go's) spelling.
pub fn kube_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        other => other,
    }
}

// === addresses ===

/// The interface of the default IPv4 route in `/proc/net/route` (the one with
/// the lowest metric when there are several).
pub fn default_route_interface(route: &str) -> Option<String> {
    const RTF_UP: u32 = 0x1;
    route
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            let metric: u32 = f[6].parse().ok()?;
            (f[1] == "00000000" && f[7] == "00000000" && flags & RTF_UP != 0).then(|| (metric, f[0].to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// The first global IPv4 address of `iface` in `ip -o -4 addr show` output.
pub fn parse_ip_addr(output: &str, iface: &str) -> Option<Ipv4Addr> {
    output.lines().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "inet")?;
        if words.get(1).map(|w| w.trim_end_matches(':')) != Some(iface) || words.contains(&"host") {
            return None;
        }
        words.get(at + 1)?.split('/').next()?.parse().ok()
    })
}

/// The address of the interface holding the default route, else 127.0.0.1.
pub async fn detect_node_ip() -> IpAddr {
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    if let Some(iface) = default_route_interface(&route) {
        let out = tokio::process::Command::new("ip").args(["-o", "-4", "addr", "show", "dev", &iface]).output().await;
        if let Ok(out) = out {
            if let Some(ip) = parse_ip_addr(&String::from_utf8_lossy(&out.stdout), &iface) {
                return IpAddr::V4(ip);
            }
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

// === pod CIDR ===

/// The pod CIDR to set at registration: `wanted` (the CIDR the node had before,
/// or `--pod-cidr`) unless another Node's CIDR overlaps it; None leaves the
/// choice to the server.
pub fn requested_pod_cidr<'a>(wanted: Option<&str>, others: impl IntoIterator<Item = &'a str>) -> Result<Option<Cidr>, NodeError> {
    let Some(wanted) = wanted else { return Ok(None) };
    let cidr: Cidr = wanted.parse().map_err(|_| NodeError::InvalidPodCidr(wanted.to_string()))?;
    let overlaps = |other: &Cidr| {
        let mask = u32::MAX.checked_shl(32 - u32::from(cidr.prefix.min(other.prefix))).unwrap_or(0);
        u32::from(cidr.base) & mask == u32::from(other.base) & mask
    };
    if let Some(holder) = others.into_iter().find(|o| o.parse::<Cidr>().is_ok_and(|o| overlaps(&o))) {
        tracing::warn!(pod_cidr = %cidr, held = %holder, "another node holds the pod CIDR asked for; the server allocates one instead");
        return Ok(None);
    }
    Ok(Some(cidr))
}

// === the Node object ===

/// Whether the runtime answered its last health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeHealth {
    /// Its `<name>://<version>`.
    Up(String),
    Down,
}

/// Everything the status is made of.
#[derive(Debug, Clone)]
pub struct StatusInputs<'a> {
    pub config: &'a NodeConfig,
    pub facts: &'a HostFacts,
    pub node_ip: IpAddr,
    /// The runtime version last seen (kept in nodeInfo while the runtime is down).
    pub runtime_version: &'a str,
    pub runtime_up: bool,
}

/// The status this kubelet reports. Conditions keep their lastTransitionTime
/// while their status stays what `previous` says.
pub fn node_status(inputs: &StatusInputs<'_>, previous: Option<&NodeStatus>, now: Timestamp) -> NodeStatus {
    let ready = if inputs.runtime_up { ("True", "KubeletReady", READY_MESSAGE) } else { ("False", "KubeletNotReady", RUNTIME_DOWN_MESSAGE) };
    let conditions = kubelet_conditions(ready, previous, now);
    let quantities = |m: BTreeMap<String, String>| m.into_iter().map(|(k, v)| (k, Quantity(v))).collect::<BTreeMap<_, _>>();
    let f = inputs.facts;
    NodeStatus {
        capacity: Some(quantities(f.capacity(inputs.config.max_pods))),
        allocatable: Some(quantities(f.allocatable(inputs.config.max_pods))),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: inputs.node_ip.to_string() },
            NodeAddress { type_: "Hostname".into(), address: inputs.config.name.clone() },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(inputs.config.kubelet_port) }) }),
        node_info: Some(NodeSystemInfo {
            machine_id: f.machine_id.clone(),
            system_uuid: f.system_uuid.clone(),
            boot_id: f.boot_id.clone(),
            kernel_version: f.kernel_version.clone(),
            os_image: f.os_image.clone(),
            container_runtime_version: inputs.runtime_version.to_string(),
            kubelet_version: KUBELET_VERSION.into(),
            kube_proxy_version: String::new(),
            operating_system: "linux".into(),
            architecture: f.architecture.clone(),
            ..Default::default()
        }),
        // Images and volumes in use are other parts' to report; keep what is there.
        images: previous.and_then(|p| p.images.clone()),
        volumes_in_use: previous.and_then(|p| p.volumes_in_use.clone()),
        volumes_attached: previous.and_then(|p| p.volumes_attached.clone()),
        ..Default::default()
    }
}

/// Whether writing `desired` would change what `current` tells readers: any
/// field but the conditions' heartbeat times.
pub fn status_changed(current: Option<&NodeStatus>, desired: &NodeStatus) -> bool {
    let Some(current) = current else { return true };
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        if let Some(cs) = s.conditions.as_mut() {
            cs.sort_by(|a, b| a.type_.cmp(&b.type_));
        }
        s
    };
    strip(current) != strip(desired)
}

/// The labels this kubelet sets: the configured ones, then the well-known ones
/// over them.
pub fn node_labels(config: &NodeConfig, architecture: &str) -> BTreeMap<String, String> {
    let mut labels = config.labels.clone();
    for (k, v) in [
        (LABEL_HOSTNAME, config.name.as_str()),
        (LABEL_OS, "linux"),
        (LABEL_ARCH, architecture),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", architecture),
    ] {
        labels.insert(k.to_string(), v.to_string());
    }
    labels
}

/// A new Node for this host, with `cidr` as its pod CIDR if given.
pub fn new_node(config: &NodeConfig, architecture: &str, taints: &[Taint], cidr: Option<&Cidr>, status: NodeStatus) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            labels: Some(node_labels(config, architecture)),
            annotations: Some(BTreeMap::from([(STORAGE_ANNOTATION.to_string(), config.storage_dir.display().to_string())])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then(|| taints.to_vec()),
            pod_cidr: cidr.map(Cidr::to_string),
            pod_cidrs: cidr.map(|c| vec![c.to_string()]),
            ..Default::default()
        }),
        status: Some(status),
    }
}

/// Brings an existing Node in line with this kubelet: our labels and annotation
/// set, our taints added (taints others put there, such as the node lifecycle
/// controller's, stay), the pod CIDR filled in when it has none. `None` when it
/// already is.
pub fn adopt_node(existing: &Node, config: &NodeConfig, architecture: &str, taints: &[Taint], cidr: Option<&Cidr>) -> Option<Node> {
    let mut node = existing.clone();
    node.metadata.labels.get_or_insert_with(BTreeMap::new).extend(node_labels(config, architecture));
    node.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(STORAGE_ANNOTATION.to_string(), config.storage_dir.display().to_string());
    let spec = node.spec.get_or_insert_with(NodeSpec::default);
    let mine = spec.taints.get_or_insert_with(Vec::new);
    for t in taints {
        if !mine.iter().any(|x| x.key == t.key && x.effect == t.effect) {
            mine.push(t.clone());
        }
    }
    if mine.is_empty() {
        spec.taints = None;
    }
    if let (None, Some(cidr)) = (pod_cidrs(&node).first(), cidr) {
        let spec = node.spec.get_or_insert_with(NodeSpec::default);
        spec.pod_cidr = Some(cidr.to_string());
        spec.pod_cidrs = Some(vec![cidr.to_string()]);
    }
    (node.metadata != existing.metadata || node.spec != existing.spec).then_some(node)
}

/// spec.podCIDRs, or spec.podCIDR alone.
fn pod_cidrs(node: &Node) -> Vec<String> {
    let Some(spec) = node.spec.as_ref() else { return Vec::new() };
    match (&spec.pod_cidrs, &spec.pod_cidr) {
        (Some(cs), _) if !cs.is_empty() => cs.clone(),
        (_, Some(c)) if !c.is_empty() => vec![c.clone()],
        _ => Vec::new(),
    }
}

// === registration ===

/// Registers (or adopts) the Node and waits until it has a pod CIDR, which the
/// caller writes the CNI config from. `runtime_version` is the runtime's
/// `<name>://<version>`.
pub async fn register(client: &Client, config: &NodeConfig, runtime_version: &str) -> anyhow::Result<NodeHandle> {
    let node_ip = match config.node_ip {
        Some(ip) => ip,
        None => detect_node_ip().await,
    };
    let facts = HostFacts::read(&config.storage_dir).await;
    let registrar = Registrar::new(client, config, &facts, node_ip)?;
    let node = registrar.register(runtime_version, true, None).await?;
    let node = registrar.wait_for_pod_cidr(node, runtime_version).await?;
    Ok(registrar.handle(&node))
}

/// One registration's fixed inputs.
struct Registrar<'a> {
    nodes: Api<Node>,
    config: &'a NodeConfig,
    facts: &'a HostFacts,
    node_ip: IpAddr,
    taints: Vec<Taint>,
}

impl<'a> Registrar<'a> {
    fn new(client: &Client, config: &'a NodeConfig, facts: &'a HostFacts, node_ip: IpAddr) -> Result<Registrar<'a>, NodeError> {
        let taints = config.taints.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).map(parse_taint).collect::<Result<Vec<_>, _>>()?;
        Ok(Registrar { nodes: Api::all(client), config, facts, node_ip, taints })
    }

    fn status(&self, runtime_version: &str, runtime_up: bool, previous: Option<&NodeStatus>) -> NodeStatus {
        let inputs = StatusInputs { config: self.config, facts: self.facts, node_ip: self.node_ip, runtime_version, runtime_up };
        node_status(&inputs, previous, Timestamp::now())
    }

    fn handle(&self, node: &Node) -> NodeHandle {
        NodeHandle {
            name: self.config.name.clone(),
            node_ip: self.node_ip,
            pod_cidrs: pod_cidrs(node),
            allocatable: self.facts.allocatable(self.config.max_pods),
        }
    }

    /// Creates or adopts the Node and writes its status, retrying what may pass
    /// (conflicts, an unreachable server). `preferred` is the pod CIDR to keep if
    /// it is still free (a Node registered again after deletion).
    async fn register(&self, runtime_version: &str, runtime_up: bool, preferred: Option<&str>) -> Result<Node, NodeError> {
        let mut retry = FIRST_RETRY;
        loop {
            match self.try_register(runtime_version, runtime_up, preferred).await {
                Ok(node) => return Ok(node),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Api(e)) if matches!(e.code(), Some(400) | Some(403) | Some(422)) => {
                    return Err(NodeError::Refused { node: self.config.name.clone(), source: Box::new(e) })
                }
                Err(Attempt::Api(e)) => {
                    tracing::warn!(node = %self.config.name, error = %e, "node registration failed; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    async fn try_register(&self, runtime_version: &str, runtime_up: bool, preferred: Option<&str>) -> Result<Node, Attempt> {
        let name = &self.config.name;
        let existing = self.nodes.get_opt(name).await?;
        let cidr = match &existing {
            Some(node) if !pod_cidrs(node).is_empty() => None,
            _ => self.requested_pod_cidr(preferred).await?,
        };
        let node = match existing {
            None => {
                let status = self.status(runtime_version, runtime_up, None);
                let arch = &self.facts.architecture;
                let node = new_node(self.config, arch, &self.taints, cidr.as_ref(), status);
                match self.nodes.create(&node).await {
                    Ok(created) => {
                        tracing::info!(node = %name, pod_cidr = %pod_cidrs(&created).join(","), "registered node");
                        return Ok(created);
                    }
                    // Created since we looked: adopt it next time round.
                    Err(e) if e.reason() == Some("AlreadyExists") => return Err(Attempt::Api(e)),
                    Err(e) => return Err(e.into()),
                }
            }
            Some(node) => node,
        };
        let node = match adopt_node(&node, self.config, &self.facts.architecture, &self.taints, cidr.as_ref()) {
            Some(updated) => self.nodes.replace(name, &updated).await?,
            None => node,
        };
        let written = self.write_status(node, runtime_version, runtime_up).await?;
        tracing::info!(node = %name, pod_cidr = %pod_cidrs(&written).join(","), "adopted existing node");
        Ok(written)
    }

    /// Writes our status over `node` (a copy read from the server).
    async fn write_status(&self, mut node: Node, runtime_version: &str, runtime_up: bool) -> Result<Node, skiff_client::Error> {
        node.status = Some(self.status(runtime_version, runtime_up, node.status.as_ref()));
        self.nodes.replace_status(&self.config.name, &node).await
    }

    /// The pod CIDR to ask for: `preferred` (the one the node had) or
    /// `--pod-cidr`, unless another Node holds it. None when there is neither.
    async fn requested_pod_cidr(&self, preferred: Option<&str>) -> Result<Option<Cidr>, Attempt> {
        let Some(wanted) = preferred.or(self.config.pod_cidr.as_deref()) else { return Ok(None) };
        let others = self.nodes.list(&ListParams::default()).await?.items;
        let used: Vec<String> = others.iter().filter(|n| n.metadata.name.as_deref() != Some(&self.config.name)).flat_map(pod_cidrs).collect();
        requested_pod_cidr(Some(wanted), used.iter().map(String::as_str)).map_err(Attempt::Fatal)
    }

    /// Waits until the server has given the Node a pod CIDR (at once when it has
    /// one), registering it again if it is deleted meanwhile.
    async fn wait_for_pod_cidr(&self, mut node: Node, runtime_version: &str) -> Result<Node, NodeError> {
        let started = Instant::now();
        let mut next_log = Duration::ZERO;
        while pod_cidrs(&node).is_empty() {
            if started.elapsed() >= next_log {
                tracing::info!(node = %self.config.name, waited_s = started.elapsed().as_secs(), "waiting for the server to allocate this node's podCIDR");
                next_log += POD_CIDR_WAIT_LOG;
            }
            tokio::time::sleep(POD_CIDR_POLL).await;
            node = match self.nodes.get_opt(&self.config.name).await {
                Ok(Some(current)) => current,
                Ok(None) => self.register(runtime_version, true, None).await?,
                Err(e) => {
                    tracing::debug!(node = %self.config.name, error = %e, "reading the node failed; retrying");
                    continue;
                }
            };
        }
        Ok(node)
    }
}

/// How one registration attempt failed.
enum Attempt {
    Api(skiff_client::Error),
    Fatal(NodeError),
}

impl From<skiff_client::Error> for Attempt {
    fn from(e: skiff_client::Error) -> Attempt {
        Attempt::Api(e)
    }
}

// === heartbeats and status ===

/// Renews the node's Lease every `heartbeat` and writes its status when it changes
/// (or every 5 minutes), until the future is dropped. The Ready condition follows
/// the runtime's health (`version` answering).
pub async fn run(client: Client, config: NodeConfig, handle: NodeHandle, runtime: std::sync::Arc<dyn crate::runtime::Runtime>) -> anyhow::Result<()> {
    let mut facts = HostFacts::read(&config.storage_dir).await;
    let mut heartbeat = Heartbeat::new(&client, &config, handle)?;
    let mut tick = tokio::time::interval(config.heartbeat.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_facts = Instant::now();
    loop {
        tick.tick().await;
        if last_facts.elapsed() >= STATUS_REPORT_INTERVAL {
            // Capacity can change under a running node (memory hot-plug, a grown disk).
            facts = HostFacts::read(&config.storage_dir).await;
            last_facts = Instant::now();
        }
        let health = check_runtime(runtime.as_ref()).await;
        if let Err(e) = heartbeat.sync_status(&facts, &health).await {
            tracing::warn!(node = %config.name, error = %e, "node status update failed");
        }
        heartbeat.renew_lease().await;
    }
}

/// Asks the runtime for its version, which is what "up" means.
pub async fn check_runtime(runtime: &dyn Runtime) -> RuntimeHealth {
    match tokio::time::timeout(RUNTIME_CHECK_TIMEOUT, runtime.version()).await {
        Ok(Ok(v)) => RuntimeHealth::Up(v),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "container runtime check failed");
            RuntimeHealth::Down
        }
        Err(_) => RuntimeHealth::Down,
    }
}

/// The state kept between heartbeats.
struct Heartbeat<'a> {
    client: &'a Client,
    config: &'a NodeConfig,
    handle: NodeHandle,
    leases: Api<Lease>,
    lease: Option<Lease>,
    /// The Node's uid, for the Lease's owner reference.
    uid: String,
    runtime_version: String,
    /// When the status was last written; None forces a write.
    written: Option<Instant>,
    runtime_was_up: bool,
}

impl<'a> Heartbeat<'a> {
    fn new(client: &'a Client, config: &'a NodeConfig, handle: NodeHandle) -> Result<Heartbeat<'a>, NodeError> {
        // Validated once, so a bad taint fails at start and not on re-registration.
        Registrar::new(client, config, &HostFacts::default(), handle.node_ip)?;
        Ok(Heartbeat {
            client,
            config,
            handle,
            leases: Api::namespaced(client, LEASE_NAMESPACE),
            lease: None,
            uid: String::new(),
            runtime_version: String::new(),
            written: Some(Instant::now()),
            runtime_was_up: true,
        })
    }

    /// Reads the Node and writes its status if it differs from what it should say
    /// or the report interval has passed; registers it again if it is gone.
    async fn sync_status(&mut self, facts: &HostFacts, health: &RuntimeHealth) -> Result<(), NodeError> {
        let up = match health {
            RuntimeHealth::Up(v) => {
                self.runtime_version = v.clone();
                true
            }
            RuntimeHealth::Down => false,
        };
        if up != self.runtime_was_up {
            if up {
                tracing::info!(node = %self.config.name, "container runtime answers again; node is Ready");
            } else {
                tracing::warn!(node = %self.config.name, "container runtime is down; node is not Ready");
            }
            self.runtime_was_up = up;
        }
        let registrar = Registrar::new(self.client, self.config, facts, self.handle.node_ip)?;
        for _ in 0..CONFLICT_RETRIES {
            let node = match registrar.nodes.get_opt(&self.config.name).await {
                Ok(Some(node)) => node,
                Ok(None) => {
                    tracing::info!(node = %self.config.name, "node object is gone; registering it again");
                    let preferred = self.handle.pod_cidrs.first().cloned();
                    let node = registrar.register(&self.runtime_version, up, preferred.as_deref()).await?;
                    self.uid = node.metadata.uid.clone().unwrap_or_default();
                    self.handle.pod_cidrs = pod_cidrs(&node);
                    self.lease = None;
                    self.written = Some(Instant::now());
                    return Ok(());
                }
                Err(e) => {
                    // Retried on the next heartbeat.
                    tracing::warn!(node = %self.config.name, error = %e, "reading the node failed");
                    return Ok(());
                }
            };
            self.uid = node.metadata.uid.clone().unwrap_or_default();
            if !pod_cidrs(&node).is_empty() {
                // Kept for a re-registration (the server may have set it late).
                self.handle.pod_cidrs = pod_cidrs(&node);
            }
            if self.runtime_version.is_empty() {
                // Down since we started: keep reporting the version registered with.
                self.runtime_version = node.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| i.container_runtime_version.clone()).unwrap_or_default();
            }
            let desired = registrar.status(&self.runtime_version, up, node.status.as_ref());
            let due = self.written.is_none_or(|w| w.elapsed() >= STATUS_REPORT_INTERVAL);
            if !due && !status_changed(node.status.as_ref(), &desired) {
                return Ok(());
            }
            let mut node = node;
            node.status = Some(desired);
            match registrar.nodes.replace_status(&self.config.name, &node).await {
                Ok(_) => {
                    self.written = Some(Instant::now());
                    return Ok(());
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => {
                    tracing::warn!(node = %self.config.name, error = %e, "writing node status failed");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Renews (or creates) the Lease; failures are logged and retried on the next
    /// heartbeat.
    async fn renew_lease(&mut self) {
        let name = &self.config.name;
        for _ in 0..3 {
            let now = Timestamp::now();
            let result = match self.lease.take() {
                Some(mut lease) => {
                    self.fill_lease(&mut lease, now);
                    self.leases.replace(name, &lease).await
                }
                None => match self.leases.get_opt(name).await {
                    Ok(Some(mut lease)) => {
                        self.fill_lease(&mut lease, now);
                        self.leases.replace(name, &lease).await
                    }
                    Ok(None) => {
                        let mut lease = Lease {
                            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(LEASE_NAMESPACE.into()), ..Default::default() },
                            spec: None,
                        };
                        self.fill_lease(&mut lease, now);
                        self.leases.create(&lease).await
                    }
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(lease) => {
                    self.lease = Some(lease);
                    return;
                }
                // Someone else wrote it, or it is gone: start again from the server's.
                Err(e) if e.is_conflict() || e.is_not_found() || e.reason() == Some("AlreadyExists") => continue,
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "node lease renewal failed");
                    return;
                }
            }
        }
    }

    fn fill_lease(&self, lease: &mut Lease, now: Timestamp) {
        let name = self.config.name.clone();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(name.clone());
        spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
        spec.renew_time = Some(MicroTime(now));
        if !self.uid.is_empty() {
            // Owned by the Node, so that deleting the Node deletes its Lease.
            lease.metadata.owner_references =
                Some(vec![OwnerReference { api_version: "v1".into(), kind: "Node".into(), name, uid: self.uid.clone(), ..Default::default() }]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeCondition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use crate::runtime::{
        ContainerConfig, ContainerStatus, ExecOutput, ImageInfo, RegistryAuth, Result as RuntimeResult, RuntimeError, SandboxConfig, SandboxStatus,
        Stream, StreamRequest,
    };
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn config(name: &str) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            node_ip: Some("10.1.2.3".parse().unwrap()),
            labels: BTreeMap::from([("team".to_string(), "a".to_string())]),
            taints: vec!["dedicated=infra:NoSchedule".into()],
            kubelet_port: 10250,
            heartbeat: Duration::from_millis(100),
            max_pods: 110,
            storage_dir: PathBuf::from("/var/lib/skiff/storage"),
            pod_cidr: None,
        }
    }

    fn facts() -> HostFacts {
        HostFacts {
            cpus: 4,
            memory_ki: 8_038_232,
            storage_bytes: 100 * 1024 * 1024 * 1024,
            machine_id: "0123456789abcdef0123456789abcdef".into(),
            system_uuid: "0123456789abcdef0123456789abcdef".into(),
            boot_id: "5e0c7a4e-1111-2222-3333-444455556666".into(),
            kernel_version: "6.1.0-18-amd64".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            architecture: "amd64".into(),
        }
    }

    fn status(up: bool, previous: Option<&NodeStatus>, now: Timestamp) -> NodeStatus {
        let (config, facts) = (config("n1"), facts());
        let inputs = StatusInputs { config: &config, facts: &facts, node_ip: "10.1.2.3".parse().unwrap(), runtime_version: "containerd://1.6.20", runtime_up: up };
        node_status(&inputs, previous, now)
    }

    fn condition<'s>(s: &'s NodeStatus, type_: &str) -> &'s NodeCondition {
        s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn cpu_lists_count_ranges_and_single_cpus() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("zero"), None);
    }

    #[test]
    fn meminfo_total_is_read_in_kibibytes() {
        let meminfo = "MemTotal:        8038232 kB\nMemFree:          123456 kB\nMemAvailable:    7000000 kB\n";
        assert_eq!(parse_meminfo_total(meminfo), Some(8_038_232));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: 12 MB\n"), None);
    }

    #[test]
    fn os_release_pretty_name_loses_its_quotes() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(parse_os_release(text).as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(parse_os_release("PRETTY_NAME=Alpine\n").as_deref(), Some("Alpine"));
        assert_eq!(parse_os_release("PRETTY_NAME=''\n"), None);
        assert_eq!(parse_os_release("ID=debian\n"), None);
    }

    #[test]
    fn filesystem_size_is_block_size_times_blocks() {
        assert_eq!(parse_statfs("4096 66053021\n"), Some(4096 * 66_053_021));
        assert_eq!(parse_statfs("4096"), None);
        assert_eq!(parse_statfs("?"), None);
    }

    #[test]
    fn architectures_take_kubernetes_names() {
        assert_eq!(kube_arch("x86_64"), "amd64");
        assert_eq!(kube_arch("aarch64"), "arm64");
        assert_eq!(kube_arch("riscv64"), "riscv64");
    }

    #[test]
    fn the_default_route_with_the_lowest_metric_names_the_interface() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
            eth1\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            down0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_interface(route).as_deref(), Some("eth1"));
        let no_default = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert_eq!(default_route_interface(no_default), None);
    }

    #[test]
    fn the_interface_address_comes_from_ip_addr_output() {
        let out = "4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever\n";
        assert_eq!(parse_ip_addr(out, "eth0"), Some(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(parse_ip_addr(out, "eth1"), None);
        let lo = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n";
        assert_eq!(parse_ip_addr(lo, "lo"), None);
    }

    #[test]
    fn a_requested_pod_cidr_is_taken_only_when_no_other_node_holds_it() {
        let got = |wanted: Option<&str>, others: &[&str]| requested_pod_cidr(wanted, others.iter().copied()).map(|c| c.map(|c| c.to_string()));
        assert_eq!(got(None, &["10.244.0.0/24"]).unwrap(), None, "nothing asked for: the server allocates");
        assert_eq!(got(Some("10.244.5.0/24"), &["10.244.0.0/24", "junk"]).unwrap().as_deref(), Some("10.244.5.0/24"));
        assert_eq!(got(Some("10.244.5.9/24"), &[]).unwrap().as_deref(), Some("10.244.5.0/24"), "normalised to the network");
        assert_eq!(got(Some("10.244.5.0/24"), &["10.244.5.0/24"]).unwrap(), None, "held by another node");
        assert_eq!(got(Some("10.244.5.0/24"), &["10.244.4.0/23"]).unwrap(), None, "inside another node's wider block");
        assert!(matches!(got(Some("10.244.5.0"), &[]), Err(NodeError::InvalidPodCidr(_))));
    }

    #[test]
    fn allocatable_holds_back_the_default_eviction_thresholds() {
        let f = facts();
        let cap = f.capacity(110);
        assert_eq!(cap["cpu"], "4");
        assert_eq!(cap["memory"], "8038232Ki");
        assert_eq!(cap["ephemeral-storage"], "104857600Ki");
        assert_eq!(cap["pods"], "110");
        assert_eq!(cap["hugepages-2Mi"], "0");
        let alloc = f.allocatable(110);
        assert_eq!(alloc["cpu"], "4");
        assert_eq!(alloc["memory"], format!("{}Ki", 8_038_232 - 100 * 1024));
        assert_eq!(alloc["ephemeral-storage"], "94371840Ki");
        assert_eq!(alloc["pods"], "110");
        // Sizes that are not whole KiB are written in bytes, as upstream does.
        let odd = HostFacts { storage_bytes: 1000, ..facts() };
        assert_eq!((odd.capacity(110)["ephemeral-storage"].as_str(), odd.allocatable(110)["ephemeral-storage"].as_str()), ("1000", "900"));
    }

    #[test]
    fn the_status_reports_the_host_and_ready_follows_the_runtime() {
        let now: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let up = status(true, None, now);
        let ready = condition(&up, "Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_deref(), ready.message.as_deref()), ("True", Some("KubeletReady"), Some(READY_MESSAGE)));
        assert_eq!(condition(&up, "MemoryPressure").status, "False");
        let info = up.node_info.as_ref().unwrap();
        assert_eq!((info.architecture.as_str(), info.operating_system.as_str()), ("amd64", "linux"));
        assert_eq!(info.container_runtime_version, "containerd://1.6.20");
        assert_eq!(info.kubelet_version, KUBELET_VERSION);
        let addresses: Vec<_> = up.addresses.as_ref().unwrap().iter().map(|a| (a.type_.as_str(), a.address.as_str())).collect();
        assert_eq!(addresses, [("InternalIP", "10.1.2.3"), ("Hostname", "n1")]);
        assert_eq!(up.daemon_endpoints.as_ref().unwrap().kubelet_endpoint.as_ref().unwrap().port, 10250);

        let later: Timestamp = "2025-01-01T00:01:00Z".parse().unwrap();
        let down = status(false, Some(&up), later);
        let ready = condition(&down, "Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_deref(), ready.message.as_deref()), ("False", Some("KubeletNotReady"), Some("container runtime is down")));
        assert_eq!(ready.last_transition_time, Some(Time(later)));
        // Conditions that did not flip keep when they last did.
        assert_eq!(condition(&down, "DiskPressure").last_transition_time, Some(Time(now)));
    }

    #[test]
    fn only_real_changes_make_the_status_due() {
        let now: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let later: Timestamp = "2025-01-01T00:00:10Z".parse().unwrap();
        let first = status(true, None, now);
        assert!(status_changed(None, &first));
        assert!(!status_changed(Some(&first), &status(true, Some(&first), later)), "heartbeat times alone are no change");
        assert!(status_changed(Some(&first), &status(false, Some(&first), later)));
        let mut marked_unknown = first.clone();
        marked_unknown.conditions.as_mut().unwrap().iter_mut().find(|c| c.type_ == "Ready").unwrap().status = "Unknown".into();
        assert!(status_changed(Some(&marked_unknown), &status(true, Some(&marked_unknown), later)));
    }

    #[test]
    fn adopting_keeps_other_taints_and_an_existing_pod_cidr() {
        let c = config("n1");
        let ours = vec![parse_taint("dedicated=infra:NoSchedule").unwrap()];
        let theirs = Taint { key: "node.kubernetes.io/unreachable".into(), effect: "NoExecute".into(), ..Default::default() };
        let existing = Node {
            metadata: ObjectMeta { name: Some("n1".into()), labels: Some(BTreeMap::from([("other".into(), "x".into())])), ..Default::default() },
            spec: Some(NodeSpec { taints: Some(vec![theirs.clone()]), pod_cidr: Some("10.244.7.0/24".into()), ..Default::default() }),
            status: None,
        };
        let fresh: Cidr = "10.244.9.0/24".parse().unwrap();
        let adopted = adopt_node(&existing, &c, "amd64", &ours, Some(&fresh)).expect("something to change");
        let labels = adopted.metadata.labels.as_ref().unwrap();
        assert_eq!((labels["other"].as_str(), labels["team"].as_str(), labels[LABEL_HOSTNAME].as_str()), ("x", "a", "n1"));
        assert_eq!(adopted.metadata.annotations.as_ref().unwrap()[STORAGE_ANNOTATION], "/var/lib/skiff/storage");
        let spec = adopted.spec.as_ref().unwrap();
        assert_eq!(spec.taints.as_ref().unwrap(), &vec![theirs, ours[0].clone()]);
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.244.7.0/24"));
        assert_eq!(adopt_node(&adopted, &c, "amd64", &ours, Some(&fresh)), None, "adopting twice changes nothing");

        let bare = Node { metadata: ObjectMeta { name: Some("n1".into()), ..Default::default() }, spec: None, status: None };
        let adopted = adopt_node(&bare, &c, "amd64", &[], Some(&fresh)).unwrap();
        assert_eq!(pod_cidrs(&adopted), ["10.244.9.0/24"]);
        assert_eq!(adopted.spec.unwrap().taints, None);
    }

    // --- against a real API server ---

    /// A runtime whose only working call is `version`, which can be switched off.
    struct FakeRuntime {
        up: AtomicBool,
    }

    fn down<T>() -> RuntimeResult<T> {
        Err(RuntimeError::Unavailable("fake".into()))
    }

    #[async_trait::async_trait]
    impl Runtime for FakeRuntime {
        fn handler(&self) -> &str {
            "fake"
        }
        async fn version(&self) -> RuntimeResult<String> {
            if self.up.load(Ordering::SeqCst) {
                Ok("fake://1.0".into())
            } else {
                down()
            }
        }
        async fn image_status(&self, _: &str) -> RuntimeResult<Option<ImageInfo>> {
            down()
        }
        async fn pull_image(&self, _: &str, _: Option<&RegistryAuth>) -> RuntimeResult<String> {
            down()
        }
        async fn run_sandbox(&self, _: &SandboxConfig) -> RuntimeResult<String> {
            down()
        }
        async fn stop_sandbox(&self, _: &str) -> RuntimeResult<()> {
            down()
        }
        async fn remove_sandbox(&self, _: &str) -> RuntimeResult<()> {
            down()
        }
        async fn sandbox_status(&self, _: &str) -> RuntimeResult<SandboxStatus> {
            down()
        }
        async fn list_sandboxes(&self) -> RuntimeResult<Vec<SandboxStatus>> {
            down()
        }
        async fn create_container(&self, _: &str, _: &ContainerConfig, _: &SandboxConfig) -> RuntimeResult<String> {
            down()
        }
        async fn start_container(&self, _: &str) -> RuntimeResult<()> {
            down()
        }
        async fn stop_container(&self, _: &str, _: Duration) -> RuntimeResult<()> {
            down()
        }
        async fn remove_container(&self, _: &str) -> RuntimeResult<()> {
            down()
        }
        async fn container_status(&self, _: &str) -> RuntimeResult<ContainerStatus> {
            down()
        }
        async fn list_containers(&self, _: Option<&str>) -> RuntimeResult<Vec<ContainerStatus>> {
            down()
        }
        async fn exec_sync(&self, _: &str, _: &[String], _: Duration) -> RuntimeResult<ExecOutput> {
            down()
        }
        async fn exec(&self, _: &str, _: &StreamRequest) -> RuntimeResult<Stream> {
            down()
        }
        async fn attach(&self, _: &str, _: &StreamRequest) -> RuntimeResult<Stream> {
            down()
        }
        async fn port_forward(&self, _: &str) -> RuntimeResult<Stream> {
            down()
        }
    }

    struct TestServer {
        server: skiff_apiserver::Server,
        dir: tempfile::TempDir,
    }

    impl TestServer {
        async fn start() -> TestServer {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).unwrap());
            let config = skiff_apiserver::Config::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap(), skiff_apiserver::Settings::default());
            let server = skiff_apiserver::Server::start(config, store).await.unwrap();
            TestServer { server, dir }
        }

        fn client(&self) -> Client {
            let mut config = skiff_client::ClientConfig::from_kubeconfig(&self.server.kubeconfig).unwrap();
            config.timeout = Duration::from_secs(10);
            Client::new(config).unwrap()
        }
    }

    async fn eventually<F, Fut>(what: &str, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    async fn ready_status(nodes: &Api<Node>, name: &str) -> Option<String> {
        let node = nodes.get_opt(name).await.ok()??;
        node.status?.conditions?.into_iter().find(|c| c.type_ == "Ready").map(|c| c.status)
    }

    /// Plays the server's node IPAM controller: gives `name` the pod CIDR `cidr`
    /// whenever it has none.
    fn allocate_pod_cidr(client: &Client, name: &str, cidr: &str) -> tokio::task::JoinHandle<()> {
        let nodes: Api<Node> = Api::all(client);
        let (name, cidr) = (name.to_string(), cidr.to_string());
        tokio::spawn(async move {
            loop {
                if let Ok(Some(node)) = nodes.get_opt(&name).await {
                    if pod_cidrs(&node).is_empty() {
                        let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
                        let _ = nodes.patch(&name, skiff_client::PatchType::Merge, &patch).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registration_waits_for_the_server_to_allocate_the_pod_cidr() {
        let ts = TestServer::start().await;
        let client = ts.client();
        let mut config = config("waiting");
        config.storage_dir = ts.dir.path().join("agent/storage");
        let registering = tokio::spawn({
            let (client, config) = (client.clone(), config.clone());
            async move { register(&client, &config, "fake://1.0").await }
        });
        let nodes: Api<Node> = Api::all(&client);
        eventually("the node registered without a pod CIDR", || async { nodes.get_opt("waiting").await.ok().flatten().is_some() }).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!registering.is_finished(), "registration returns only with a pod CIDR");
        assert!(pod_cidrs(&nodes.get("waiting").await.unwrap()).is_empty(), "the agent picks none itself");
        let ipam = allocate_pod_cidr(&client, "waiting", "10.244.3.0/24");
        let handle = tokio::time::timeout(Duration::from_secs(20), registering).await.expect("registration finishes").unwrap().unwrap();
        assert_eq!(handle.pod_cidrs, ["10.244.3.0/24"]);
        ipam.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pod_cidr_asked_for_is_set_at_registration_unless_another_node_holds_it() {
        let ts = TestServer::start().await;
        let client = ts.client();
        let mut config = config("asks");
        config.storage_dir = ts.dir.path().join("agent/storage");
        config.pod_cidr = Some("10.251.7.0/24".into());
        let handle = tokio::time::timeout(Duration::from_secs(20), register(&client, &config, "fake://1.0")).await.unwrap().unwrap();
        assert_eq!(handle.pod_cidrs, ["10.251.7.0/24"]);

        // A second node asking for the same CIDR waits for the server instead.
        let mut second = config.clone();
        second.name = "also-asks".into();
        let ipam = allocate_pod_cidr(&client, "also-asks", "10.244.0.0/24");
        let handle = tokio::time::timeout(Duration::from_secs(20), register(&client, &second, "fake://1.0")).await.unwrap().unwrap();
        assert_eq!(handle.pod_cidrs, ["10.244.0.0/24"]);
        ipam.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_registered_node_heartbeats_follows_its_runtime_and_comes_back_after_deletion() {
        let ts = TestServer::start().await;
        let client = ts.client();
        let nodes: Api<Node> = Api::all(&client);
        // Another node holds the first /24 already.
        let other = Node {
            metadata: ObjectMeta { name: Some("other".into()), ..Default::default() },
            spec: Some(NodeSpec { pod_cidr: Some("10.244.0.0/24".into()), pod_cidrs: Some(vec!["10.244.0.0/24".into()]), ..Default::default() }),
            status: None,
        };
        nodes.create(&other).await.unwrap();

        let mut config = config("worker");
        config.storage_dir = ts.dir.path().join("agent/storage");
        let ipam = allocate_pod_cidr(&client, "worker", "10.244.1.0/24");
        let handle = register(&client, &config, "fake://1.0").await.unwrap();
        ipam.abort();
        assert_eq!(handle.pod_cidrs, ["10.244.1.0/24"]);
        assert_eq!(handle.node_ip, "10.1.2.3".parse::<IpAddr>().unwrap());
        assert!(config.storage_dir.is_dir(), "the storage directory is created");
        let node = nodes.get("worker").await.unwrap();
        assert_eq!(node.metadata.annotations.as_ref().unwrap()[STORAGE_ANNOTATION], config.storage_dir.display().to_string());
        assert_eq!(node.metadata.labels.as_ref().unwrap()[LABEL_OS], "linux");
        assert_eq!(node.spec.as_ref().unwrap().taints.as_ref().unwrap()[0].key, "dedicated");
        let status = node.status.unwrap();
        let cpus: u32 = status.capacity.as_ref().unwrap()["cpu"].0.parse().unwrap();
        assert!(cpus >= 1);
        assert!(status.capacity.as_ref().unwrap()["memory"].0.ends_with("Ki"));
        assert_eq!(status.node_info.as_ref().unwrap().container_runtime_version, "fake://1.0");
        assert_eq!(ready_status(&nodes, "worker").await.as_deref(), Some("True"));

        // Registering again adopts the Node and keeps its CIDR.
        let again = register(&client, &config, "fake://1.0").await.unwrap();
        assert_eq!(again.pod_cidrs, ["10.244.1.0/24"]);

        let runtime = Arc::new(FakeRuntime { up: AtomicBool::new(true) });
        let task = tokio::spawn(run(client.clone(), config.clone(), handle, runtime.clone()));
        let leases: Api<Lease> = Api::namespaced(&client, LEASE_NAMESPACE);
        eventually("the lease", || async {
            let lease = leases.get_opt("worker").await.ok().flatten();
            lease.is_some_and(|l| l.metadata.owner_references.is_some_and(|o| o[0].kind == "Node") && l.spec.is_some_and(|s| s.renew_time.is_some()))
        })
        .await;

        runtime.up.store(false, Ordering::SeqCst);
        eventually("Ready=False while the runtime is down", || async { ready_status(&nodes, "worker").await.as_deref() == Some("False") }).await;
        let node = nodes.get("worker").await.unwrap();
        let ready = node.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.reason.as_deref(), ready.message.as_deref()), (Some("KubeletNotReady"), Some("container runtime is down")));
        runtime.up.store(true, Ordering::SeqCst);
        eventually("Ready=True again", || async { ready_status(&nodes, "worker").await.as_deref() == Some("True") }).await;

        nodes.delete("worker", &Default::default()).await.unwrap();
        eventually("the node registered again", || async { ready_status(&nodes, "worker").await.as_deref() == Some("True") }).await;
        let node = nodes.get("worker").await.unwrap();
        assert_eq!(pod_cidrs(&node), ["10.244.1.0/24"], "the node keeps its pod CIDR");
        task.abort();
    }

    #[tokio::test]
    async fn host_facts_come_from_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let facts = HostFacts::read(&dir.path().join("storage")).await;
        assert!(facts.cpus >= 1);
        assert!(facts.memory_ki > 0);
        assert!(facts.storage_bytes > 0);
        assert!(!facts.kernel_version.is_empty());
        assert_eq!(facts.architecture, kube_arch(std::env::consts::ARCH));
    }
}
