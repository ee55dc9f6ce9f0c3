//! `skiff server`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use skiff_apiserver::{Config, Server, Settings};
use skiff_client::leader::{LeaderElector, LeaseTiming};
use skiff_client::{Client, ClientConfig};
use skiff_controllers::nodeipam::{Cidr, CidrSet};
use skiff_controllers::servicelb::AddressPool;
use skiff_controllers::ControllersConfig;
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
    /// Pod IP range of the cluster (IPv4 CIDR): each node without a pod CIDR gets
    /// the lowest free block of it. IPv4 only.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Prefix length of each node's pod CIDR, cut from --cluster-cidr.
    #[arg(long, default_value_t = skiff_controllers::nodeipam::DEFAULT_NODE_CIDR_MASK)]
    pub node_cidr_mask_size: u8,
    /// Addresses for LoadBalancer Services: an IPv4 CIDR (`192.168.1.240/28`) or a
    /// range (`192.168.1.240-192.168.1.250`). Without it, LoadBalancer Services get
    /// the addresses of the Ready nodes.
    #[arg(long, value_name = "CIDR|RANGE")]
    pub lb_pool: Option<String>,
    /// Recent events each resource's watch cache keeps, so watchers can resume from
    /// an older resourceVersion (older ones get 410 Gone and relist).
    #[arg(long, default_value_t = 10_000)]
    pub watch_cache_size: usize,
    /// Seconds between datastore compactions (history older than one interval is
    /// dropped). 0 disables compaction.
    #[arg(long, default_value_t = 300)]
    pub compaction_interval: u64,
    /// Run the controllers only while holding the `kube-system/skiff-controllers`
    /// Lease, so that of several servers on one etcd exactly one runs them. Default:
    /// on for etcd, off for SQLite (which only one server can use).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: Option<bool>,
    /// How long a leader's Lease lasts without renewal before another server may
    /// take over (as kube-controller-manager's flag).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often the leader renews and candidates retry.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// Every server's URL (comma-separated), written into DATA_DIR/kubeconfig.yaml so
    /// that Skiff's clients fail over between them. Default: this server's own URL.
    #[arg(long, value_delimiter = ',', value_name = "URLS")]
    pub server_urls: Vec<String>,
    /// Components not to run on this server (comma-separated): `scheduler`,
    /// `controllers` (the workload and node controllers). Namespace lifecycle,
    /// garbage collection and compaction always run.
    #[arg(long, value_delimiter = ',', value_name = "COMPONENTS", value_parser = ["scheduler", "controllers"])]
    pub disable: Vec<String>,
}

/// Parses `15s`, `500ms`, `2m` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration (use e.g. 15s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?} has an unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{s:?} must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
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

/// The controllers' settings from the networking flags.
pub fn controllers_config(args: &ServerArgs, service_cidr: (std::net::Ipv4Addr, u8)) -> anyhow::Result<ControllersConfig> {
    let cluster: Cidr = args.cluster_cidr.parse().map_err(|e| anyhow::anyhow!("--cluster-cidr: {e}"))?;
    CidrSet::new(cluster, args.node_cidr_mask_size).map_err(|e| anyhow::anyhow!("--node-cidr-mask-size: {e}"))?;
    if cluster.overlaps(&Cidr::from(service_cidr)) {
        eprintln!("  warning: --cluster-cidr {cluster} overlaps --service-cidr {}/{}; pod CIDRs skip the overlap", service_cidr.0, service_cidr.1);
    }
    let lb_pool = match &args.lb_pool {
        Some(pool) => Some(pool.parse::<AddressPool>().map_err(|e| anyhow::anyhow!("--lb-pool: {e}"))?),
        None => None,
    };
    Ok(ControllersConfig {
        cluster_cidr: Some((cluster.base, cluster.prefix)),
        node_cidr_mask: args.node_cidr_mask_size,
        service_cidr: Some(service_cidr),
        lb_pool,
    })
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
    let service_cidr = parse_cidr(&args.service_cidr)?;
    let controllers_config = controllers_config(&args, service_cidr)?;
    let store = open_store(&args.datastore, &args.data_dir, &args.etcd_tls).await?;
    let settings = Settings {
        service_cidr,
        watch_history: args.watch_cache_size.max(1),
        compaction_interval: (args.compaction_interval > 0).then(|| std::time::Duration::from_secs(args.compaction_interval)),
        ..Settings::default()
    };
    let leader_elect = args.leader_elect.unwrap_or(args.datastore != "sqlite");
    let timing = LeaseTiming {
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    };
    if leader_elect && !(timing.retry_period < timing.renew_deadline && timing.renew_deadline < timing.lease_duration) {
        bail!("leader election needs retry period < renew deadline < lease duration (got {:?}, {:?}, {:?})", timing.retry_period, timing.renew_deadline, timing.lease_duration);
    }
    let started = std::time::Instant::now();
    let mut config = Config::new(args.data_dir.clone(), args.listen, settings);
    config.run_controllers = false;
    config.kubeconfig_servers = args.server_urls.clone();
    let server = Server::start(config, store).await?;
    // The controllers and the scheduler are API clients of this server. They talk to
    // this server only: a server cut off from its datastore must fail to renew the
    // Lease and stop leading, not renew through a peer.
    let own_client = |timeout: Duration| -> anyhow::Result<Client> {
        Client::new(ClientConfig {
            servers: vec![server.url()],
            token: std::fs::read_to_string(args.data_dir.join("pki/admin.token"))?.trim().to_string(),
            ca_pem: std::fs::read_to_string(args.data_dir.join("pki/ca.crt"))?,
            timeout,
        })
        .map_err(|e| anyhow::anyhow!("building the in-process API client: {e}"))
    };
    let components = Components {
        app: server.app.clone(),
        client: own_client(Duration::from_secs(30))?,
        scheduler: !args.disable.iter().any(|d| d == "scheduler"),
        controllers: !args.disable.iter().any(|d| d == "controllers"),
        controllers_config,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut elector_task = None;
    let mut direct_task = None;
    if leader_elect {
        let identity = identity(&args.data_dir)?;
        let client = own_client(timing.retry_period.max(Duration::from_secs(1)))?;
        let elector = LeaderElector::new(client, "kube-system", CONTROLLERS_LEASE, &identity, timing);
        eprintln!("  controllers: run while this server holds kube-system/{CONTROLLERS_LEASE} (identity {identity})");
        let stopped = async move {
            let _ = stop_rx.await;
        };
        elector_task = Some(tokio::spawn(elector.run_until(move || components.clone().run(), stopped)));
    } else {
        direct_task = Some(tokio::spawn(components.run()));
    }
    eprintln!("skiff server listening on https://{} (ready in {} ms)", server.addr, started.elapsed().as_millis());
    eprintln!("  admin kubeconfig: {}", server.kubeconfig.display());
    eprintln!("  node join token:  {}", args.data_dir.join("node-token").display());
    eprintln!("next: KUBECONFIG={} kubectl get namespaces", server.kubeconfig.display());
    // Machine-readable line for scripts and tests.
    println!("listening {}", server.addr);
    shutdown_signal().await;
    eprintln!("skiff server: shutting down");
    // Hand the controllers' Lease over at once rather than after its duration.
    let _ = stop_tx.send(());
    if let Some(task) = elector_task {
        if tokio::time::timeout(Duration::from_secs(3), task).await.is_err() {
            eprintln!("skiff server: could not release the controllers' Lease in time; another server takes over when it expires");
        }
    }
    if let Some(task) = direct_task {
        task.abort();
    }
    drop(server);
    Ok(())
}

/// What runs on exactly one server: the built-in lifecycle loops, the controllers
/// and the scheduler.
#[derive(Clone)]
struct Components {
    app: skiff_apiserver::App,
    client: Client,
    scheduler: bool,
    controllers: bool,
    controllers_config: ControllersConfig,
}

impl Components {
    /// Runs each component as its own task, so that one failing does not stop the
    /// others; dropping this future (leadership lost) aborts them all.
    async fn run(self) {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(Server::controllers(self.app.clone()));
        if self.scheduler {
            tasks.spawn(skiff_scheduler::run(self.client.clone(), skiff_scheduler::SchedulerConfig::default()));
        }
        if self.controllers {
            tasks.spawn(skiff_controllers::run(self.client.clone(), self.controllers_config.clone()));
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a control-plane component stopped");
            }
        }
    }
}

/// The Lease that decides which server runs the controllers.
pub const CONTROLLERS_LEASE: &str = "skiff-controllers";

/// This server's leader-election identity: the host name and an id kept in the data
/// directory, so a restarted server recognises its own Lease and renews it at once.
fn identity(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("identity");
    let id = match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            id
        }
    };
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    Ok(if host.is_empty() { id } else { format!("{host}_{id}") })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_plain_seconds() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
