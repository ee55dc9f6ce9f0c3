//! `skiff agent`: the node agent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
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
}

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
    let client = Client::new(ClientConfig { servers: args.server.clone(), token: token.trim().to_string(), ca_pem, timeout: Duration::from_secs(30) })
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
            bail!("the {:?} runtime is not part of this build yet; use --runtime sim for simulated nodes", args.runtime)
        }
    }
}
