//! `skiff server`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use skiff_apiserver::{Config, Server, Settings};
use skiff_store::etcd::EtcdTls;
use skiff_store::{EtcdConfig, EtcdStore, SqliteStore};

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Where the datastore, certificates and kubeconfig live. Created if missing.
    #[arg(long, default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,
    /// Address to serve the HTTPS API on. Port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// The datastore: `sqlite` (embedded, the default, stored in DATA_DIR/state.db),
    /// or an etcd cluster: `etcd://host1:2379,host2:2379,host3:2379[/prefix]` (keys
    /// live under the prefix, default `/skiff`). Several servers may share one etcd.
    #[arg(long, default_value = "sqlite")]
    pub datastore: String,
    #[command(flatten)]
    pub etcd_tls: EtcdTlsArgs,
    /// Service cluster IP range (IPv4 CIDR).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: String,
    /// Recent events each resource's watch cache keeps, so watchers can resume from
    /// an older resourceVersion (older ones get 410 Gone and relist).
    #[arg(long, default_value_t = 10_000)]
    pub watch_cache_size: usize,
    /// Seconds between datastore compactions (history older than one interval is
    /// dropped). 0 disables compaction.
    #[arg(long, default_value_t = 300)]
    pub compaction_interval: u64,
}

pub fn parse_cidr(s: &str) -> anyhow::Result<(std::net::Ipv4Addr, u8)> {
    let (ip, bits) = s.split_once('/').context("a CIDR looks like 10.96.0.0/12")?;
    let ip: std::net::Ipv4Addr = ip.parse().with_context(|| format!("{ip:?} is not an IPv4 address"))?;
    let bits: u8 = bits.parse().with_context(|| format!("{bits:?} is not a prefix length"))?;
    if !(8..=30).contains(&bits) {
        bail!("the service CIDR prefix must be between /8 and /30, got /{bits}");
    }
    Ok((ip, bits))
}

/// TLS for etcd (all optional; giving a CA switches the connection to https).
#[derive(Args, Debug, Clone, Default)]
pub struct EtcdTlsArgs {
    /// CA bundle that signed the etcd members' certificates.
    #[arg(long, value_name = "FILE")]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate for etcd (with --etcd-keyfile).
    #[arg(long, value_name = "FILE", requires = "etcd_keyfile")]
    pub etcd_certfile: Option<PathBuf>,
    /// Client key for etcd (with --etcd-certfile).
    #[arg(long, value_name = "FILE", requires = "etcd_certfile")]
    pub etcd_keyfile: Option<PathBuf>,
}

impl EtcdTlsArgs {
    /// The etcd connection settings for `url` (an `etcd://…` datastore URL).
    pub fn etcd_config(&self, url: &str) -> anyhow::Result<EtcdConfig> {
        let mut config = EtcdConfig::from_url(url).map_err(|e| anyhow::anyhow!("--datastore {url}: {e}"))?;
        if let Some(ca) = &self.etcd_cafile {
            config.tls = Some(EtcdTls { ca_file: ca.clone(), cert_file: self.etcd_certfile.clone(), key_file: self.etcd_keyfile.clone() });
        } else if self.etcd_certfile.is_some() {
            bail!("--etcd-certfile needs --etcd-cafile (the CA that signed etcd's serving certificates)");
        }
        Ok(config)
    }
}

/// Opens the datastore named by `--datastore`.
pub async fn open_store(datastore: &str, data_dir: &std::path::Path, tls: &EtcdTlsArgs) -> anyhow::Result<Arc<dyn skiff_store::Store>> {
    match datastore {
        "sqlite" => {
            std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            let path = data_dir.join("state.db");
            let store = SqliteStore::open(&path).with_context(|| format!("opening the SQLite datastore at {}", path.display()))?;
            Ok(Arc::new(store))
        }
        other if other.starts_with("etcd://") => {
            let config = tls.etcd_config(other)?;
            let endpoints = config.endpoints.join(",");
            let store = EtcdStore::connect(config)
                .await
                .with_context(|| format!("connecting to etcd at {endpoints} (is it running? check with `etcdctl --endpoints={endpoints} endpoint health`)"))?;
            Ok(Arc::new(store))
        }
        other => bail!("unknown datastore {other:?}: use `sqlite` or `etcd://host:2379,…`"),
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let store = open_store(&args.datastore, &args.data_dir, &args.etcd_tls).await?;
    let settings = Settings {
        service_cidr: parse_cidr(&args.service_cidr)?,
        watch_history: args.watch_cache_size.max(1),
        compaction_interval: (args.compaction_interval > 0).then(|| std::time::Duration::from_secs(args.compaction_interval)),
        ..Settings::default()
    };
    let started = std::time::Instant::now();
    let server = Server::start(Config::new(args.data_dir.clone(), args.listen, settings), store).await?;
    eprintln!("skiff server listening on https://{} (ready in {} ms)", server.addr, started.elapsed().as_millis());
    eprintln!("  admin kubeconfig: {}", server.kubeconfig.display());
    eprintln!("  node join token:  {}", args.data_dir.join("node-token").display());
    eprintln!("next: KUBECONFIG={} kubectl get namespaces", server.kubeconfig.display());
    // Machine-readable line for scripts and tests.
    println!("listening {}", server.addr);
    shutdown_signal().await;
    eprintln!("skiff server: shutting down");
    drop(server);
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
