//! A small Kubernetes API client for Skiff's own components: the scheduler, the
//! controllers and the node agents talk to the API through it, as kubectl does.
//!
//! - [`Client`]: JSON requests with a bearer token and the cluster CA, over a list of
//!   server URLs. A request that cannot reach a server (connect error, timeout, or
//!   for reads a 503 from a server that lost its datastore) moves on to the next
//!   URL, and the client sticks to the server that answered.
//! - [`config::ClientConfig`]: the URLs, token and CA, read from a kubeconfig (the
//!   `skiff.dev/servers` cluster extension lists every server).
//! - [`api`]: [`Api<K>`], typed requests for one kind with the k8s-openapi types.
//! - [`informer`]: [`Informer<K>`], list+watch into a local [`Store<K>`] with event
//!   handlers; relists on 410 Gone.
//! - [`queue`]: [`WorkQueue<T>`], client-go's work queue with per-item back-off.
//! - [`events`]: [`EventRecorder`], core/v1 Events with repeats counted.
//! - [`leader`]: Lease-based leader election with upstream's timing semantics.
//!
//! Requests carry `Accept: application/json`; the untyped verbs of [`Client`] take
//! and return `serde_json::Value`s, which is what leader election and tests need.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod api;
pub mod config;
pub mod events;
pub mod informer;
pub mod leader;
pub mod queue;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::Method;
use serde_json::{json, Value};

pub use api::{Api, DeleteParams, ListParams, ObjectList};
pub use config::ClientConfig;
pub use events::{EventRecorder, EventType};
pub use informer::{Informer, InformerEvent, Store};
pub use queue::WorkQueue;

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
    /// The configuration cannot make a client (no server URL, a CA that is not PEM).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl Error {
    /// The HTTP status of an API error; `None` when no server gave an answer.
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
    /// The `reason` of an API error (`NotFound`, `Conflict`, `AlreadyExists`, ...).
    pub fn reason(&self) -> Option<&str> {
        match self {
            Error::Api { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Patch flavours (the request's Content-Type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    /// Server-side apply; needs `fieldManager` in the query. The body is sent as
    /// JSON, which is YAML too.
    Apply,
}

impl PatchType {
    /// The Content-Type that selects this flavour on the server.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// One watch event.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    pub kind: String,
    pub object: Value,
}

pub type WatchEvents = Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>;


/// How long establishing a connection (TCP and TLS) may take, at most. Far below
/// the request deadline: a healthy server accepts in milliseconds, and a dead or
/// unroutable one should cost a failover quickly, watches included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of a non-Status error body goes into an error message.
const MAX_ERROR_TEXT: usize = 1024;

// === impl Client ===

/// An API client over one or more servers. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    http: reqwest::Client,
    servers: Vec<String>,
    timeout: Duration,
    /// Index into `servers` of the server that answered last; requests start there.
    current: AtomicUsize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("servers", &self.shared.servers).field("current", &self.current_server()).finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client> {
        let servers: Vec<String> = config.servers.iter().map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty()).collect();
        if servers.is_empty() {
            return Err(Error::Config("no server URL".into()));
        }
        for s in &servers {
            let url = reqwest::Url::parse(s).map_err(|e| Error::Config(format!("server URL {s:?}: {e}")))?;
            if url.scheme() != "https" {
                return Err(Error::Config(format!("server URL {s:?}: only https is supported")));
            }
        }
        let roots = reqwest::Certificate::from_pem_bundle(config.ca_pem.as_bytes()).map_err(|e| Error::Config(format!("CA bundle: {e}")))?;
        if roots.is_empty() {
            return Err(Error::Config("the CA bundle holds no PEM certificate".into()));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", config.token.trim())).map_err(|_| Error::Config("the token is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));

        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            // Only the cluster CA: a Skiff server never has a publicly signed certificate.
            .tls_built_in_root_certs(false)
            .default_headers(headers)
            .user_agent(concat!("skiff-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeout.min(CONNECT_TIMEOUT))
            // Finds half-open watch connections to a server that vanished.
            .tcp_keepalive(Duration::from_secs(30))
            .no_proxy();
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
        let http = builder.build().map_err(|e| Error::Config(format!("building the HTTP client: {}", describe(&e))))?;
        Ok(Client { shared: Arc::new(Shared { http, servers, timeout: config.timeout, current: AtomicUsize::new(0) }) })
    }

    /// The server URL requests currently go to.
    pub fn current_server(&self) -> String {
        self.shared.servers[self.current_index()].clone()
    }

    /// Every server URL, in configured order.
    pub fn servers(&self) -> &[String] {
        &self.shared.servers
    }

    /// GET `path` (e.g. `/api/v1/namespaces/default/pods/x`).
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.json(Method::GET, path, None).await
    }

    /// POST `body` to the collection `path`.
    pub async fn create(&self, path: &str, body: &Value) -> Result<Value> {
        self.json(Method::POST, path, Some((to_bytes(body)?, "application/json"))).await
    }

    /// PUT `body` to `path`.
    pub async fn update(&self, path: &str, body: &Value) -> Result<Value> {
        self.json(Method::PUT, path, Some((to_bytes(body)?, "application/json"))).await
    }

    pub async fn patch(&self, path: &str, kind: PatchType, body: &Value) -> Result<Value> {
        self.json(Method::PATCH, path, Some((to_bytes(body)?, kind.content_type()))).await
    }

    /// DELETE `path`; returns the answer (the object, or a Status).
    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.json(Method::DELETE, path, None).await
    }

    /// GET `path` with `watch=1` added; the stream ends when the server closes it.
    ///
    /// Only connecting and the wait for the response headers are bounded by
    /// deadlines; the stream itself may stay open as long as the server keeps it.
    pub async fn watch(&self, path: &str) -> Result<WatchEvents> {
        let path = with_watch(path);
        let mut failures = Vec::new();
        for idx in self.order() {
            let url = self.url(idx, &path);
            let sent = tokio::time::timeout(self.shared.timeout, self.builder(&Method::GET, &url, None, None).send()).await;
            let resp = match sent {
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) => {
                    failures.push(format!("{url}: {}", describe(&e.without_url())));
                    continue;
                }
                Err(_) => {
                    failures.push(format!("{url}: no answer within {:?}", self.shared.timeout));
                    continue;
                }
            };
            let code = resp.status().as_u16();
            if !(200..300).contains(&code) {
                let body = tokio::time::timeout(self.shared.timeout, resp.bytes()).await.ok().and_then(|b| b.ok()).unwrap_or_default();
                let err = api_error(code, &body);
                if code == 503 {
                    failures.push(format!("{url}: {err}"));
                    continue;
                }
                self.set_current(idx);
                return Err(err);
            }
            self.set_current(idx);
            return Ok(decode_events(resp, url));
        }
        Err(Error::Unreachable(failures.join("; ")))
    }

    /// Any request: method, path (with query), optional body and content type.
    /// Returns the status code and body of a 2xx answer, `Error::Api` otherwise.
    ///
    /// Failover: a server that cannot be connected to, or does not answer in time,
    /// is skipped for every verb. A read (GET, HEAD) also skips a server that
    /// answers 503 or breaks the connection mid-answer; a write does not, since it
    /// may have been applied, so its 503 is returned as an API error.
    pub async fn request(&self, method: Method, path: &str, body: Option<(Bytes, &str)>) -> Result<(u16, Bytes)> {
        let read = method == Method::GET || method == Method::HEAD;
        let mut failures = Vec::new();
        for idx in self.order() {
            let url = self.url(idx, path);
            let resp = match self.builder(&method, &url, body.as_ref(), Some(self.shared.timeout)).send().await {
                Ok(resp) => resp,
                Err(e) => {
                    let skip = read || e.is_connect() || e.is_timeout();
                    failures.push(format!("{url}: {}", describe(&e.without_url())));
                    if skip {
                        continue;
                    }
                    return Err(Error::Unreachable(failures.join("; ")));
                }
            };
            let code = resp.status().as_u16();
            let bytes = match resp.bytes().await {
                Ok(bytes) => bytes,
                Err(e) => {
                    failures.push(format!("{url}: reading the answer: {}", describe(&e.without_url())));
                    if read {
                        continue;
                    }
                    // The server answered with `code`, so a write reached it:
                    // sending it again elsewhere could apply it twice.
                    return Err(Error::Unreachable(failures.join("; ")));
                }
            };
            if (200..300).contains(&code) {
                self.set_current(idx);
                return Ok((code, bytes));
            }
            let err = api_error(code, &bytes);
            if code == 503 && read {
                failures.push(format!("{url}: {err}"));
                continue;
            }
            self.set_current(idx);
            return Err(err);
        }
        Err(Error::Unreachable(failures.join("; ")))
    }

    async fn json(&self, method: Method, path: &str, body: Option<(Bytes, &str)>) -> Result<Value> {
        let (_, bytes) = self.request(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(format!("{path}: the answer is not JSON: {e}")))
    }

    fn current_index(&self) -> usize {
        self.shared.current.load(Ordering::Relaxed) % self.shared.servers.len()
    }

    fn set_current(&self, idx: usize) {
        let previous = self.shared.current.swap(idx, Ordering::Relaxed);
        if previous != idx {
            tracing::info!(server = %self.shared.servers[idx], "switched API server");
        }
    }

    /// Server indices to try: the current one first, then the others in order.
    fn order(&self) -> impl Iterator<Item = usize> {
        let n = self.shared.servers.len();
        let start = self.current_index();
        (0..n).map(move |i| (start + i) % n)
    }

    fn url(&self, idx: usize, path: &str) -> String {
        let base = &self.shared.servers[idx];
        if path.starts_with('/') {
            format!("{base}{path}")
        } else {
            format!("{base}/{path}")
        }
    }

    fn builder(&self, method: &Method, url: &str, body: Option<&(Bytes, &str)>, timeout: Option<Duration>) -> reqwest::RequestBuilder {
        let mut req = self.shared.http.request(method.clone(), url);
        if let Some((bytes, content_type)) = body {
            req = req.header(CONTENT_TYPE, *content_type).body(bytes.clone());
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        req
    }
}

fn to_bytes(body: &Value) -> Result<Bytes> {
    serde_json::to_vec(body).map(Bytes::from).map_err(|e| Error::Decode(format!("encoding the request body: {e}")))
}

/// An error with its causes: reqwest's own message alone ("error sending
/// request") does not say whether the port was closed or the certificate wrong.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Adds `watch=1` to `path` unless its query already asks for a watch.
fn with_watch(path: &str) -> String {
    match path.split_once('?') {
        None => format!("{path}?watch=1"),
        Some((_, query)) if query.split('&').any(|kv| kv == "watch" || kv.starts_with("watch=")) => path.to_string(),
        Some((_, "")) => format!("{path}watch=1"),
        Some(_) => format!("{path}&watch=1"),
    }
}

/// The `reason` upstream clients give an error answer that carries no Status.
fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

/// `Error::Api` from an error answer: its `Status`, or one made up from the code
/// and the body's text.
fn api_error(code: u16, body: &[u8]) -> Error {
    if let Ok(status) = serde_json::from_slice::<Value>(body) {
        if status.get("kind").and_then(Value::as_str) == Some("Status") {
            let reason = status.get("reason").and_then(Value::as_str).filter(|r| !r.is_empty()).unwrap_or(reason_for(code)).to_string();
            let message = status.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
            return Error::Api { code, reason, message, status };
        }
    }
    let text = String::from_utf8_lossy(body);
    let mut message = text.trim().to_string();
    if message.len() > MAX_ERROR_TEXT {
        let mut cut = MAX_ERROR_TEXT;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    if message.is_empty() {
        message = http::StatusCode::from_u16(code).ok().and_then(|c| c.canonical_reason()).unwrap_or("error").to_string();
    }
    let reason = reason_for(code).to_string();
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    Error::Api { code, reason, message, status }
}

// === watch decoding ===

#[derive(serde::Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    object: Value,
}

fn parse_event(line: &[u8]) -> Result<WatchEvent> {
    serde_json::from_slice::<RawEvent>(line)
        .map(|e| WatchEvent { kind: e.kind, object: e.object })
        .map_err(|e| Error::Decode(format!("watch event: {e}")))
}

/// Reads newline-delimited events; a line that is not an event is yielded as an
/// error and reading goes on, a broken connection is yielded as an error and ends
/// the stream.
fn decode_events(resp: reqwest::Response, url: String) -> WatchEvents {
    struct State {
        body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
        buf: Vec<u8>,
        /// How far `buf` is known to hold no newline.
        scanned: usize,
        ended: bool,
        url: String,
    }
    let state = State { body: Box::pin(resp.bytes_stream()), buf: Vec::new(), scanned: 0, ended: false, url };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(pos) = st.buf[st.scanned..].iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = st.buf.drain(..=st.scanned + pos).collect();
                st.scanned = 0;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some((parse_event(&line), st));
            }
            st.scanned = st.buf.len();
            if st.ended {
                if st.buf.iter().all(u8::is_ascii_whitespace) {
                    return None;
                }
                let line = std::mem::take(&mut st.buf);
                st.scanned = 0;
                return Some((parse_event(&line), st));
            }
            match st.body.next().await {
                Some(Ok(chunk)) => st.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    let err = Error::Unreachable(format!("{}: watch stream broke: {}", st.url, describe(&e.without_url())));
                    st.buf.clear();
                    st.scanned = 0;
                    st.ended = true;
                    return Some((Err(err), st));
                }
                None => st.ended = true,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_is_added_to_the_query_once() {
        assert_eq!(with_watch("/api/v1/pods"), "/api/v1/pods?watch=1");
        assert_eq!(with_watch("/api/v1/pods?"), "/api/v1/pods?watch=1");
        assert_eq!(with_watch("/api/v1/pods?resourceVersion=5"), "/api/v1/pods?resourceVersion=5&watch=1");
        assert_eq!(with_watch("/api/v1/pods?watch=true&labelSelector=a"), "/api/v1/pods?watch=true&labelSelector=a");
        assert_eq!(with_watch("/api/v1/pods?watchx=1"), "/api/v1/pods?watchx=1&watch=1");
    }

    #[test]
    fn status_bodies_become_api_errors() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"configmaps \"x\" not found","reason":"NotFound","code":404}"#;
        let err = api_error(404, body);
        assert!(err.is_not_found());
        assert_eq!(err.reason(), Some("NotFound"));
        assert_eq!(err.to_string(), "404 NotFound: configmaps \"x\" not found");
    }

    #[test]
    fn other_bodies_become_api_errors_with_the_upstream_reason() {
        let err = api_error(503, b"[-]datastore failed: not ready\n");
        let Error::Api { code, reason, message, status } = &err else { panic!("{err:?}") };
        assert_eq!((*code, reason.as_str(), message.as_str()), (503, "ServiceUnavailable", "[-]datastore failed: not ready"));
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], 503);
        let err = api_error(409, b"");
        assert!(err.is_conflict());
        assert_eq!(err.to_string(), "409 Conflict: Conflict");
        let long = "é".repeat(MAX_ERROR_TEXT);
        let Error::Api { message, .. } = api_error(500, long.as_bytes()) else { unreachable!() };
        assert!(message.len() <= MAX_ERROR_TEXT + 3);
    }

    #[test]
    fn a_client_needs_a_server_and_a_pem_ca() {
        let config = |servers: Vec<&str>, ca: &str| ClientConfig::new(servers.into_iter().map(String::from).collect(), "t", ca);
        assert!(matches!(Client::new(config(vec![], "x")), Err(Error::Config(_))));
        assert!(matches!(Client::new(config(vec!["http://127.0.0.1:1"], "x")), Err(Error::Config(_))));
        assert!(matches!(Client::new(config(vec!["https://127.0.0.1:1"], "not pem")), Err(Error::Config(_))));
    }
}
