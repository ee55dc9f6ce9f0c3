//! A small Kubernetes API client for Skiff's own components (leader election now;
//! controllers and agents later).
//!
//! - [`Client`]: JSON requests with a bearer token and the cluster CA, over a list of
//!   server URLs. A request that cannot reach a server (connect error, timeout, or
//!   503 from a server that lost its datastore) moves on to the next URL, and the
//!   client sticks to the server that answered.
//! - [`config::ClientConfig`]: the URLs, token and CA, read from a kubeconfig (the
//!   `skiff.dev/servers` cluster extension lists every server).
//! - [`leader`]: Lease-based leader election with upstream's timing semantics.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod config;
pub mod leader;

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use serde_json::Value;

pub use config::ClientConfig;

/// What a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-2xx `Status`.
    #[error("{code} {reason}: {message}")]
    Api { code: u16, reason: String, message: String, status: Value },
    /// No server could be reached (every URL was tried).
    #[error("no API server reachable: {0}")]
    Unreachable(String),
    /// The answer was not what the API promises.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl Error {
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Patch flavours (the request's Content-Type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    /// Server-side apply; needs `fieldManager` in the query.
    Apply,
}

/// One watch event.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    pub kind: String,
    pub object: Value,
}

pub type WatchEvents = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;

/// An API client over one or more servers. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    _private: (),
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client> {
        let _ = config;
        todo!()
    }

    /// The server URL requests currently go to.
    pub fn current_server(&self) -> String {
        todo!()
    }

    /// GET `path` (e.g. `/api/v1/namespaces/default/pods/x`).
    pub async fn get(&self, path: &str) -> Result<Value> {
        let _ = path;
        todo!()
    }

    /// POST `body` to the collection `path`.
    pub async fn create(&self, path: &str, body: &Value) -> Result<Value> {
        let _ = (path, body);
        todo!()
    }

    /// PUT `body` to `path`.
    pub async fn update(&self, path: &str, body: &Value) -> Result<Value> {
        let _ = (path, body);
        todo!()
    }

    pub async fn patch(&self, path: &str, kind: PatchType, body: &Value) -> Result<Value> {
        let _ = (path, kind, body);
        todo!()
    }

    /// DELETE `path`; returns the answer (the object, or a Status).
    pub async fn delete(&self, path: &str) -> Result<Value> {
        let _ = path;
        todo!()
    }

    /// GET `path` with `watch=1` added; the stream ends when the server closes it.
    pub async fn watch(&self, path: &str) -> Result<WatchEvents> {
        let _ = path;
        todo!()
    }

    /// Any request: method, path (with query), optional body and content type.
    /// Returns the status code and body of a 2xx answer, `Error::Api` otherwise.
    pub async fn request(&self, method: http::Method, path: &str, body: Option<(Bytes, &str)>) -> Result<(u16, Bytes)> {
        let _ = (method, path, body);
        todo!()
    }
}
