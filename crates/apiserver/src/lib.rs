//! The Kubernetes-compatible API server.
//!
//! A short tour:
//! - [`http`]: TLS, HTTP/1.1 + HTTP/2, authentication, and dispatch to the verbs.
//! - [`request`]: path and query parsing (upstream's `RequestInfo`).
//! - [`handlers`]: get, list, create, update, patch, delete(collection), and the
//!   status, scale, binding and eviction subresources. [`watch`]: chunked watch streams.
//! - [`write`]: what the server sets and checks on every write (metadata, status,
//!   generation, defaults, validation, managed fields).
//! - [`app`]: shared state, the per-resource watch caches, and `guaranteed_update`.
//! - [`discovery`], [`output`] (JSON, Table, Status), [`alloc`] (cluster IPs, node ports),
//!   [`lifecycle`] (built-in namespaces, namespace termination, garbage collection),
//!   [`pki`] (CA, serving certificate, tokens, kubeconfig), [`metrics`].
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod alloc;
pub mod app;
pub mod discovery;
pub mod fuzzing;
pub mod handlers;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod object;
pub mod output;
pub mod pki;
pub mod request;
pub mod satoken;
pub mod watch;
pub mod write;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use skiff_store::Store;

pub use app::{App, Settings};

/// How to run a server.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub settings: Settings,
    /// Run the built-in controllers (namespace lifecycle, garbage collection,
    /// compaction) inside `start`. Set it to false when something else decides where
    /// they run (leader election), and run [`Server::controllers`] there.
    pub run_controllers: bool,
    /// Server URLs written into the kubeconfig (all servers of an HA control plane).
    /// Empty means this server's own address.
    pub kubeconfig_servers: Vec<String>,
}

impl Config {
    /// A single server that runs its own controllers.
    pub fn new(data_dir: PathBuf, listen: SocketAddr, settings: Settings) -> Config {
        Config { data_dir, listen, settings, run_controllers: true, kubeconfig_servers: Vec::new() }
    }
}

/// A running server; dropping it stops serving.
pub struct Server {
    pub app: App,
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Server {
    /// Starts serving on `config.listen` over `store`: creates credentials on first
    /// start, fills the watch caches, bootstraps built-in objects, writes the kubeconfig.
    pub async fn start(config: Config, store: Arc<dyn Store>) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let creds = pki::load_or_create_shared(&config.data_dir, addr, store.as_ref()).await?;
        let app = App::new(store, app::Tokens { admin: creds.admin_token.clone(), node: creds.node_token.clone() }, config.settings.clone())
            .await
            .context("loading the datastore into the watch caches")?;
        let _ = app.ca_pem.set(creds.ca_pem.clone());
        let advertise = http::advertise_address(addr);
        let tls = http::tls_config(&creds.server_cert_pem, &creds.server_key_pem)?;
        let kubelet = handlers::proxy::KubeletClient::new(&creds.kubelet_client_cert_pem, &creds.kubelet_client_key_pem)?;
        let router = http::router(app.clone(), advertise.clone(), kubelet);
        let serve = tokio::spawn(http::serve(listener, tls, router));
        let advertise_ip = advertise.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']']).to_string()).unwrap_or_default();
        lifecycle::bootstrap(&app, &advertise_ip, addr.port()).await.map_err(|e| anyhow::anyhow!("bootstrapping built-in objects: {e}"))?;
        let mut tasks = vec![serve, tokio::spawn(watch_datastore_health(app.clone()))];
        if config.run_controllers {
            tasks.push(tokio::spawn(Server::controllers(app.clone())));
        }
        app.set_ready(true);
        let own = format!("https://{advertise}");
        let mut servers = config.kubeconfig_servers.clone();
        if servers.is_empty() {
            servers.push(own);
        }
        let kubeconfig = pki::write_kubeconfig(&config.data_dir, &creds, &servers)?;
        Ok(Server { app, addr, kubeconfig, tasks })
    }

    /// The URL this server's own components use to reach it.
    pub fn url(&self) -> String {
        format!("https://{}", http::advertise_address(self.addr))
    }

    /// The built-in controllers: namespace termination and garbage collection, and
    /// periodic compaction when configured. Runs until dropped; exactly one server
    /// of a cluster should run it at a time.
    pub async fn controllers(app: App) {
        let compaction = app.settings.compaction_interval;
        let lifecycle = lifecycle::run(app.clone());
        match compaction {
            Some(every) => {
                tokio::join!(lifecycle, lifecycle::compact(app, every));
            }
            None => lifecycle.await,
        }
    }
}

/// How often readiness re-checks the datastore, and how long one check may take.
const HEALTH_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Keeps `/readyz` true to the datastore: a server whose datastore stops answering a
/// consistent read (etcd without quorum, say) reports not ready, so load balancers
/// and clients move to another server; it turns ready again when reads succeed.
async fn watch_datastore_health(app: App) {
    let mut tick = tokio::time::interval(HEALTH_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let healthy = match tokio::time::timeout(HEALTH_TIMEOUT, app.store.current_revision()).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                if app.is_ready() {
                    tracing::warn!(error = %e, "datastore check failed; reporting not ready");
                }
                false
            }
            Err(_) => {
                if app.is_ready() {
                    tracing::warn!("datastore check timed out; reporting not ready");
                }
                false
            }
        };
        if healthy && !app.is_ready() {
            tracing::info!("datastore answers again; reporting ready");
        }
        app.set_ready(healthy);
    }
}
