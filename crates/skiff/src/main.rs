//! `skiff`: one binary that runs a Kubernetes-compatible cluster.
//!
//! Subcommands live in their own modules: [`up`] runs a whole single-node
//! cluster (server and node agent in one process), [`server`] runs the API server
//! on the embedded datastore, [`agent`] the node agent, [`images`] builds and
//! imports the node's local images, [`bench`] measures it all.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod agent;
mod bench;
mod datastore;
mod images;
mod server;
mod up;

use clap::{Parser, Subcommand};

// The API server allocates many short-lived JSON values per request; mimalloc
// handles that pattern markedly better than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Skiff runs a Kubernetes-compatible cluster from one binary.
///
/// Start a one-node cluster, then point kubectl at the kubeconfig it writes:
///
///   skiff images build && skiff up
///   KUBECONFIG=/var/lib/skiff/kubeconfig.yaml kubectl get nodes
///
/// Logs go to stderr; set SKIFF_LOG (e.g. SKIFF_LOG=debug) to change the level.
#[derive(Parser)]
#[command(name = "skiff", version, about, long_about, propagate_version = true, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a one-node cluster: the server and this host as its node, in one process.
    ///
    /// Pods run on a containerd of its own (under DATA_DIR/containerd, next to any
    /// system containerd), or as host processes when containerd is not installed.
    /// RuntimeClass `process` runs a pod as host processes either way.
    ///
    /// Example:
    ///   skiff images build && skiff up
    ///   export KUBECONFIG=/var/lib/skiff/kubeconfig.yaml
    ///   kubectl get nodes
    #[command(verbatim_doc_comment)]
    Up(up::UpArgs),
    /// Run the API server (with its datastore, watch caches and built-in controllers).
    ///
    /// On first start it creates a cluster CA, a serving certificate, an admin token
    /// and a node join token in DATA_DIR, and writes DATA_DIR/kubeconfig.yaml.
    /// Restarting with the same DATA_DIR keeps every object and credential.
    ///
    /// Example:
    ///   skiff server --data-dir ./skiff-data --listen 127.0.0.1:6443
    ///   export KUBECONFIG=./skiff-data/kubeconfig.yaml
    ///   kubectl create deployment web --image=nginx:1.27
    #[command(verbatim_doc_comment)]
    Server(server::ServerArgs),
    /// Run the node agent: register node(s) and run the pods bound to them.
    ///
    /// Example (three simulated nodes against a local server):
    ///   skiff agent --server https://127.0.0.1:6443 --token-file ./skiff-data/node-token \
    ///     --node-name sim --runtime sim --nodes 3
    #[command(verbatim_doc_comment)]
    Agent(agent::AgentArgs),
    /// Measure Skiff against baselines taken in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Move a cluster's objects between datastores (SQLite to etcd).
    #[command(subcommand)]
    Datastore(datastore::DatastoreCommand),
    /// Build the node's local images (pause, busybox) or import image archives.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// The process runtime's per-container supervisor (started by the agent).
    #[command(hide = true)]
    ProcessShim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::ProcessShim { args } = cli.command {
        // A supervisor of its own: no runtime, no logging setup of ours.
        std::process::exit(skiff_agent::runtime::process::shim_main(args));
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| "info,hickory_server=warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Bench(cmd) => bench::run(cmd).await,
            Command::Datastore(cmd) => datastore::run(cmd).await,
            Command::Up(args) => up::run(args).await,
            Command::Images(cmd) => images::run(cmd).await,
            Command::ProcessShim { .. } => unreachable!("handled before the runtime starts"),
        }
    })
}
