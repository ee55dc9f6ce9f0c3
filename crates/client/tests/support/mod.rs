//! What the client's integration tests share: an in-process Skiff server on a
//! temporary SQLite store, addresses nobody listens on, a TCP relay that can be
//! cut, servers that answer 503 or nothing at all.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_apiserver::{Config, Server, Settings};
use skiff_client::{Client, ClientConfig};

/// A running server; its data (credentials under `data/`) and store live in `dir`.
pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("store"));
        let config = Config::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap(), Settings::default());
        let server = Server::start(config, store).await.expect("server starts");
        TestServer { server, dir }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.server.addr)
    }

    /// The admin kubeconfig's values, with `servers` in place of the server list.
    pub fn config(&self, servers: Vec<String>) -> ClientConfig {
        let mut config = ClientConfig::from_kubeconfig(&self.server.kubeconfig).expect("the server's kubeconfig reads");
        config.servers = servers;
        config.timeout = Duration::from_secs(5);
        config
    }

    pub fn client(&self) -> Client {
        Client::new(self.config(vec![self.url()])).expect("client")
    }
}

/// An `https://` URL of a port on which nothing listens (bound, then released).
pub fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("https://{addr}")
}

/// Relays TCP connections to `target`; dropping it closes the listener and cuts
/// every relayed connection, as if the server behind it had died.
pub struct Relay {
    pub addr: SocketAddr,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let registry = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Relay { addr, tasks }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// How a [`FakeServer`] answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// A 503 Status, as a Skiff server answers when its datastore is gone.
    Unavailable,
    /// Nothing, for a minute.
    Hang,
}

/// A server with the same CA as a real one that answers every request alike.
/// Counts requests.
pub struct FakeServer {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(same_ca_as: &Path, answer: Answer) -> FakeServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pki")).unwrap();
        for file in ["ca.crt", "ca.key"] {
            std::fs::copy(same_ca_as.join("pki").join(file), dir.path().join("pki").join(file)).unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let creds = skiff_apiserver::pki::load_or_create(dir.path(), addr).unwrap();
        let tls = skiff_apiserver::http::tls_config(&creds.server_cert_pem, &creds.server_key_pem).unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let router = axum::Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                if let Answer::Hang = answer {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                let status = serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "the datastore is unavailable", "reason": "ServiceUnavailable", "code": 503,
                });
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(status))
            }
        });
        let task = tokio::spawn(skiff_apiserver::http::serve(listener, tls, router));
        FakeServer { addr, requests, _dir: dir, task }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port that accepts connections and then says nothing, not even TLS.
pub struct Silent {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    pub async fn start() -> Silent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        Silent { addr, task }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `rx` holds `want`, at most `limit`; returns whether it did.
pub async fn wait_for(rx: &mut tokio::sync::watch::Receiver<bool>, want: bool, limit: Duration) -> bool {
    tokio::time::timeout(limit, rx.wait_for(|v| *v == want)).await.map(|r| r.is_ok()).unwrap_or(false)
}
