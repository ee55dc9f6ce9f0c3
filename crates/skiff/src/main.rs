//! `skiff`: one binary that runs a Kubernetes-compatible cluster.
//!
//! Subcommands live in their own modules: [`server`] runs the API server on the
//! embedded datastore, [`bench`] measures it.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod agent;
mod bench;
mod datastore;
mod server;

use clap::{Parser, Subcommand};

// The API server allocates many short-lived JSON values per request; mimalloc
// handles that pattern markedly better than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Skiff runs a Kubernetes-compatible cluster from one binary.
///
/// Start a server, then point kubectl at the kubeconfig it writes:
///
///   skiff server --data-dir /var/lib/skiff --listen 127.0.0.1:6443
///   KUBECONFIG=/var/lib/skiff/kubeconfig.yaml kubectl get namespaces
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Bench(cmd) => bench::run(cmd).await,
            Command::Datastore(cmd) => datastore::run(cmd).await,
        }
    })
}
