//! An API server inside the test process, for the tests of this module and of
//! [`crate::kubelet::env`] that read and watch real objects.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skiff_apiserver::{Config, Server, Settings};
use skiff_client::{Client, ClientConfig};

pub(crate) struct TestServer {
    _server: Server,
    config: ClientConfig,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("store"));
        let config = Config::new(dir.path().join("data"), "127.0.0.1:0".parse().expect("address"), Settings::default());
        let server = Server::start(config, store).await.expect("server starts");
        let mut config = ClientConfig::from_kubeconfig(&server.kubeconfig).expect("the kubeconfig reads");
        config.timeout = Duration::from_secs(30);
        TestServer { _server: server, config, _dir: dir }
    }

    pub(crate) fn client(&self) -> Client {
        Client::new(self.config.clone()).expect("client")
    }

    /// The cluster CA the server's certificate chains to.
    pub(crate) fn ca_pem(&self) -> String {
        self.config.ca_pem.clone()
    }

    /// Creates `obj` (a JSON manifest with its namespace in the metadata) and
    /// returns what the server stored.
    pub(crate) async fn create(&self, obj: Value) -> Value {
        let path = collection_path(&obj);
        self.client().create(&path, &obj).await.unwrap_or_else(|e| panic!("creating {path}: {e}"))
    }
}

/// `/api/v1/namespaces/<ns>/<plural>` for the core kinds the tests create.
pub(crate) fn collection_path(obj: &Value) -> String {
    let kind = obj["kind"].as_str().expect("a kind");
    let plural = match kind {
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "Service" => "services",
        "Pod" => "pods",
        "ServiceAccount" => "serviceaccounts",
        "PersistentVolumeClaim" => "persistentvolumeclaims",
        "PersistentVolume" => return "/api/v1/persistentvolumes".to_string(),
        "Node" => return "/api/v1/nodes".to_string(),
        other => panic!("no path for kind {other}"),
    };
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
    format!("/api/v1/namespaces/{ns}/{plural}")
}
