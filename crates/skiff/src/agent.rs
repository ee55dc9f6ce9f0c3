//! `skiff agent`: the node agent. With `--runtime cri` or `process` it is a
//! kubelet for this host; with `--runtime sim` it registers simulated nodes.
//!
//! The helpers that turn flags into a [`KubeletConfig`] are shared with `skiff up`,
//! which runs the same kubelet next to its server.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use skiff_agent::kubelet::node::NodeConfig;
use skiff_agent::kubelet::stream::StreamConfig;
use skiff_agent::kubelet::KubeletConfig;
use skiff_agent::network::{DnsOptions, IngressOptions, NetworkConfig};
use skiff_agent::runtime::cri::CriRuntime;
use skiff_agent::runtime::process::{self, ProcessRuntime};
use skiff_agent::runtime::Runtime;
use skiff_agent::sim::SimConfig;
use skiff_client::{Client, ClientConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// containerd over CRI (real containers).
    Cri,
    /// Plain host processes (no images, no isolation).
    Process,
    /// Simulated nodes whose pods "run" instantly (tests and scale benchmarks).
    Sim,
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// API server URL; several, comma-separated, to fail over between servers.
    #[arg(long, value_delimiter = ',', required = true)]
    pub server: Vec<String>,
    /// File holding the node join token (the server writes DATA_DIR/node-token).
    #[arg(long)]
    pub token_file: PathBuf,
    /// CA certificate of the cluster. Default: pki/ca.crt next to the token file
    /// (the server's data directory).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// This node's name; with --nodes N the nodes are NAME-0 … NAME-(N-1).
    #[arg(long)]
    pub node_name: String,
    /// The agent's state directory.
    #[arg(long, default_value = "/var/lib/skiff-agent")]
    pub data_dir: PathBuf,
    #[arg(long, value_enum, default_value = "cri")]
    pub runtime: RuntimeKind,
    /// Simulated nodes to register (--runtime sim only).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// CPU of each simulated node.
    #[arg(long, default_value = "8")]
    pub node_cpu: String,
    /// Memory of each simulated node.
    #[arg(long, default_value = "32Gi")]
    pub node_memory: String,
    /// Pod capacity of each simulated node.
    #[arg(long, default_value = "110")]
    pub node_pods: String,
    /// Extended resources of each simulated node, e.g. nvidia.com/gpu=2.
    #[arg(long, value_delimiter = ',')]
    pub extended_resources: Vec<String>,
    /// Labels on every simulated node, k=v,k2=v2.
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Zones assigned round-robin to simulated nodes (topology.kubernetes.io/zone).
    #[arg(long, value_delimiter = ',')]
    pub zones: Vec<String>,
    /// Taints on every simulated node, key=value:Effect.
    #[arg(long, value_delimiter = ',')]
    pub node_taints: Vec<String>,
    /// Node Lease renewal interval.
    #[arg(long, default_value = "10s", value_parser = crate::server::parse_duration)]
    pub heartbeat: Duration,
    /// containerd's socket (--runtime cri).
    #[arg(long, default_value = DEFAULT_CONTAINERD_SOCKET)]
    pub containerd_socket: PathBuf,
    /// The address the API server and other nodes reach this node at. Default:
    /// the address of the interface holding the default route.
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Port of the agent's HTTPS endpoint (logs, exec, attach, port-forward).
    #[arg(long, default_value_t = DEFAULT_KUBELET_PORT)]
    pub kubelet_port: u16,
    /// Nameservers for pods with dnsPolicy ClusterFirst, comma-separated. Empty:
    /// the host's resolv.conf.
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<String>,
    /// The cluster's DNS domain (pods' search path).
    #[arg(long, default_value = DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
    /// Pods this node runs at most (status.capacity.pods).
    #[arg(long, default_value_t = DEFAULT_MAX_PODS)]
    pub max_pods: u32,
    /// The Linux bridge the node's pods are attached to (--runtime cri).
    #[arg(long, default_value = skiff_agent::kubelet::POD_BRIDGE)]
    pub cni_bridge: String,
    /// The pod CIDR this node asks for when it registers. Default: the one the
    /// server allocates from its --cluster-cidr.
    #[arg(long)]
    pub pod_cidr: Option<String>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// The node's network: bridge, host-gw routes, nftables service proxy and network
/// policy, cluster DNS, Ingress gateway (real nodes with --runtime cri).
#[derive(Args, Debug, Clone)]
pub struct NetworkArgs {
    /// Every pod's address lies in it; the same as the server's --cluster-cidr.
    #[arg(long, default_value = DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: String,
    /// Masquerade pod traffic that leaves the cluster CIDR behind the node's
    /// address, so pods reach the outside; `=false` keeps pods inside the cluster.
    /// Default: off for `skiff agent`, on for `skiff up`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub masquerade_outside: Option<bool>,
    /// Leave Services and NetworkPolicy out of the node's datapath (no nftables
    /// table); pods still get addresses and routes.
    #[arg(long)]
    pub no_service_proxy: bool,
    /// Do not serve cluster DNS on this node.
    #[arg(long)]
    pub no_dns: bool,
    /// Where cluster DNS sends names outside the cluster domain, comma-separated
    /// IP or IP:PORT; `none` for nowhere. Default: the nameservers of the host's
    /// /etc/resolv.conf.
    #[arg(long, value_delimiter = ',')]
    pub dns_upstream: Vec<String>,
    /// Port of the node's Ingress gateway for HTTP, on every address (0: none).
    #[arg(long, default_value_t = 80)]
    pub ingress_http_port: u16,
    /// Port of the node's Ingress gateway for HTTPS (0: none).
    #[arg(long, default_value_t = 443)]
    pub ingress_https_port: u16,
}

pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";

impl NetworkArgs {
    /// The network a real node runs, from these flags.
    pub fn config(&self, bridge: &str, cluster_domain: &str) -> anyhow::Result<NetworkConfig> {
        let cluster_cidr = skiff_net::Cidr::parse(&self.cluster_cidr)
            .map(|c| (c.addr, c.prefix))
            .with_context(|| format!("--cluster-cidr {:?} must be an IPv4 CIDR like 10.244.0.0/16", self.cluster_cidr))?;
        let upstreams = dns_upstreams(&self.dns_upstream)?;
        let ingress = (self.ingress_http_port != 0 || self.ingress_https_port != 0)
            .then(|| IngressOptions { http_port: self.ingress_http_port, https_port: self.ingress_https_port });
        Ok(NetworkConfig {
            bridge: bridge.to_string(),
            cluster_cidr: Some(cluster_cidr),
            masquerade_outside: self.masquerade_outside.unwrap_or(false),
            service_proxy: !self.no_service_proxy,
            routes: true,
            dns: (!self.no_dns).then(|| DnsOptions { cluster_domain: cluster_domain.to_string(), upstreams, port: 53 }),
            ingress,
        })
    }
}

/// `--dns-upstream`: explicit servers, `none`, or the host's resolv.conf.
fn dns_upstreams(given: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let given: Vec<&str> = given.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    if given == ["none"] {
        return Ok(Vec::new());
    }
    if given.is_empty() {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        return Ok(skiff_dns::parse_resolv_conf(&text));
    }
    given
        .iter()
        .map(|s| {
            s.parse::<SocketAddr>()
                .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| anyhow::anyhow!("--dns-upstream {s:?} must be an IP or IP:PORT (or `none`)"))
        })
        .collect()
}

pub const DEFAULT_CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
pub const DEFAULT_MAX_PODS: u32 = 110;
/// How often the kubelet syncs every pod when nothing changed (upstream's
/// syncFrequency).
const SYNC_PERIOD: Duration = Duration::from_secs(60);

fn pairs(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{what} {kv:?} must look like key=value"),
        })
        .collect()
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&args.token_file).with_context(|| format!("reading the join token {}", args.token_file.display()))?;
    let ca_file = match &args.ca_file {
        Some(f) => f.clone(),
        None => args.token_file.parent().map(|d| d.join("pki/ca.crt")).unwrap_or_default(),
    };
    let ca_pem = std::fs::read_to_string(&ca_file).with_context(|| format!("reading the cluster CA {} (pass --ca-file)", ca_file.display()))?;
    let client = Client::new(ClientConfig { servers: args.server.clone(), token: token.trim().to_string(), ca_pem: ca_pem.clone(), timeout: Duration::from_secs(30) })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    match args.runtime {
        RuntimeKind::Sim => {
            let mut capacity = BTreeMap::new();
            capacity.insert("cpu".to_string(), args.node_cpu.clone());
            capacity.insert("memory".to_string(), args.node_memory.clone());
            capacity.insert("pods".to_string(), args.node_pods.clone());
            capacity.insert("ephemeral-storage".to_string(), "100Gi".to_string());
            capacity.extend(pairs(&args.extended_resources, "--extended-resources")?);
            let config = SimConfig {
                prefix: args.node_name.clone(),
                nodes: args.nodes.max(1),
                capacity,
                labels: pairs(&args.node_labels, "--node-labels")?,
                zones: args.zones.clone(),
                taints: args.node_taints.clone(),
                heartbeat: args.heartbeat,
                ..SimConfig::default()
            };
            eprintln!("skiff agent: {} simulated node(s) named {}{}", config.nodes, config.prefix, if config.nodes > 1 { "-N" } else { "" });
            skiff_agent::sim::run(client, config).await
        }
        RuntimeKind::Cri | RuntimeKind::Process => {
            let process = process_runtime(&args.data_dir)?;
            let runtimes = match args.runtime {
                RuntimeKind::Cri => {
                    let cri = CriRuntime::connect(&args.containerd_socket).await.with_context(|| {
                        format!(
                            "containerd does not answer on {} (is it running? `systemctl start containerd`, or pass --containerd-socket, or use --runtime process)",
                            args.containerd_socket.display()
                        )
                    })?;
                    Runtimes::cri(Arc::new(cri), process)
                }
                _ => Runtimes::process(process),
            };
            let node = NodeOptions {
                name: args.node_name.clone(),
                node_ip: args.node_ip,
                labels: pairs(&args.node_labels, "--node-labels")?,
                taints: args.node_taints.clone(),
                kubelet_port: args.kubelet_port,
                heartbeat: args.heartbeat,
                max_pods: args.max_pods,
                cluster_dns: args.cluster_dns.clone(),
                cluster_domain: args.cluster_domain.clone(),
                cni_bridge: args.cni_bridge.clone(),
                pod_cidr: args.pod_cidr.clone(),
                network: match args.runtime {
                    RuntimeKind::Cri => Some(args.network.config(&args.cni_bridge, &args.cluster_domain)?),
                    _ => None,
                },
            };
            let config = kubelet_config(&node, &args.data_dir, &ca_pem, runtimes);
            eprintln!(
                "skiff agent: node {} on the {} runtime, agent endpoint on port {}",
                config.node.name,
                config.runtime.handler(),
                args.kubelet_port
            );
            skiff_agent::kubelet::run(client, config).await
        }
    }
}

/// The runtimes of a real node: the default one and those by RuntimeClass handler.
pub struct Runtimes {
    pub default: Arc<dyn Runtime>,
    pub handlers: BTreeMap<String, Arc<dyn Runtime>>,
}

impl Runtimes {
    /// containerd by default, host processes for RuntimeClass `process`.
    pub fn cri(cri: Arc<dyn Runtime>, process: Arc<dyn Runtime>) -> Runtimes {
        Runtimes { default: cri, handlers: BTreeMap::from([(process::HANDLER.to_string(), process)]) }
    }

    /// Host processes for every pod (RuntimeClass `process` included).
    pub fn process(process: Arc<dyn Runtime>) -> Runtimes {
        Runtimes { default: process.clone(), handlers: BTreeMap::from([(process::HANDLER.to_string(), process)]) }
    }
}

/// The process runtime with its state under `<data_dir>/process`; its shim is
/// this binary's hidden `process-shim` subcommand, so nothing else needs
/// installing.
pub fn process_runtime(data_dir: &Path) -> anyhow::Result<Arc<dyn Runtime>> {
    let exe = std::env::current_exe().context("finding this binary (the process runtime's shim)")?;
    let runtime = ProcessRuntime::new(data_dir.join("process"), vec![exe.to_string_lossy().into_owned(), "process-shim".into()])?;
    Ok(Arc::new(runtime))
}

/// What a real node is told by flags.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub name: String,
    pub node_ip: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<String>,
    pub kubelet_port: u16,
    pub heartbeat: Duration,
    pub max_pods: u32,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub cni_bridge: String,
    pub pod_cidr: Option<String>,
    pub network: Option<NetworkConfig>,
}

/// The kubelet's configuration: state under `data_dir` (pods, logs, the CNI
/// config, the endpoint's certificate), local-path volumes under
/// `data_dir/storage`, the endpoint on every address at the kubelet port.
pub fn kubelet_config(node: &NodeOptions, data_dir: &Path, ca_pem: &str, runtimes: Runtimes) -> KubeletConfig {
    KubeletConfig {
        node: NodeConfig {
            name: node.name.clone(),
            node_ip: node.node_ip,
            labels: node.labels.clone(),
            taints: node.taints.clone(),
            kubelet_port: node.kubelet_port,
            heartbeat: node.heartbeat,
            max_pods: node.max_pods,
            storage_dir: data_dir.join("storage"),
            pod_cidr: node.pod_cidr.clone(),
        },
        data_dir: data_dir.to_path_buf(),
        runtime: runtimes.default,
        handlers: runtimes.handlers,
        cluster_dns: node.cluster_dns.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        cluster_domain: node.cluster_domain.clone(),
        stream: StreamConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), node.kubelet_port),
            ca_pem: ca_pem.to_string(),
            data_dir: data_dir.to_path_buf(),
        },
        ca_pem: ca_pem.to_string(),
        sync_period: SYNC_PERIOD,
        cni_bridge: node.cni_bridge.clone(),
        network: node.network.clone(),
    }
}

/// This host's name as a node name: the kernel's hostname, lowercased (as the
/// kubelet does).
pub fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").or_else(|_| std::fs::read_to_string("/etc/hostname")).unwrap_or_default();
    match name.trim().to_lowercase() {
        n if n.is_empty() => "localhost".to_string(),
        n => n,
    }
}
