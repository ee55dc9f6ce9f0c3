//! The agent's HTTPS endpoint (port 10250 by default), called only by the API
//! server: container logs, exec, attach and port-forward.
//!
//! The paths are the kubelet's, so the API server proxies `pods/log`, `pods/exec`,
//! `pods/attach` and `pods/portforward` the way kube-apiserver does:
//!
//! - `GET /containerLogs/{namespace}/{pod}/{container}?follow&previous&tailLines&…`
//!   streams the container's log ([`logs`]).
//! - `/exec/{namespace}/{pod}/{container}?command=…&stdin&stdout&stderr&tty` and
//!   `/attach/…` are upgrades. Sessions the runtime runs itself ([`Stream::Local`],
//!   the process runtime) are served over the WebSocket channel protocols
//!   ([`channel`]); sessions of a CRI runtime ([`Stream::Remote`]) are relayed to
//!   its streaming server ([`relay`]), SPDY or WebSocket alike.
//! - `/portForward/{namespace}/{pod}` is relayed to the runtime likewise.
//!
//! Callers authenticate with a client certificate ([`tls`]): the cluster CA must
//! have signed it, for `skiff-apiserver`.
//!
//! What a CRI streaming server cannot do is `v5.channel.k8s.io` (it predates it);
//! a client that offers only v5 is refused with 400 before anything runs, which
//! kubectl answers by retrying over SPDY — where closing stdin works, unlike in v4.

pub mod channel;
#[path = "logs.rs"]
pub mod logs;
pub mod relay;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::runtime::{ContainerState, Runtime, Stream, StreamRequest};
use channel::{ChannelProtocol, SessionKind};
use tls::Caller;

#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub listen: SocketAddr,
    /// The cluster CA: callers must present a client certificate it signed, for the
    /// API server's identity.
    pub ca_pem: String,
    /// Where the agent keeps its serving certificate.
    pub data_dir: PathBuf,
}

/// A pod as the streaming endpoints need it.
#[derive(Clone)]
pub struct PodTarget {
    pub uid: String,
    pub runtime: Arc<dyn Runtime>,
    pub sandbox_id: Option<String>,
    /// The pod's log directory: `<dir>/<container>/<restartCount>.log`.
    pub log_dir: PathBuf,
    /// Container name → id of its current (or last) instance.
    pub containers: BTreeMap<String, String>,
}

/// Finds pods by namespace and name (the kubelet's pod registry implements it).
pub trait PodLookup: Send + Sync + 'static {
    fn lookup(&self, namespace: &str, name: &str) -> Option<PodTarget>;
}

/// Response bodies of the endpoint.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Serves until the future is dropped.
pub async fn serve(config: StreamConfig, pods: Arc<dyn PodLookup>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| anyhow::anyhow!("listening on {}: {e}", config.listen))?;
    serve_on(listener, config, pods).await
}

/// Like [`serve`], on a listener the caller bound (port 0 in tests).
pub async fn serve_on(listener: tokio::net::TcpListener, config: StreamConfig, pods: Arc<dyn PodLookup>) -> anyhow::Result<()> {
    let (cert, key) = tls::serving_certificate(&config.data_dir)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(&cert, &key, &config.ca_pem)?));
    tracing::info!(addr = %listener.local_addr()?, "serving logs, exec, attach and port-forward");
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let pods = pods.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await else { return };
            let caller = Caller::from_certificates(tls.get_ref().1.peer_certificates());
            let service = hyper::service::service_fn(move |req| {
                let (pods, caller) = (pods.clone(), caller.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(req, &caller, pods.as_ref()).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).with_upgrades().await;
        });
    }
}

// === responses ===

pub(crate) fn empty_body() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A plain-text answer, as the kubelet gives its errors (the API server turns them
/// into Status objects).
pub(crate) fn text_response(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut text = text.into();
    text.push('\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed_unsync())
        .expect("valid response")
}

/// `Sec-WebSocket-Accept` for the request's key, if it is a WebSocket handshake.
pub(crate) fn websocket_accept(headers: &HeaderMap) -> Option<String> {
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    Some(tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// Which upgrade a streaming request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    WebSocket,
    Spdy,
}

fn upgrade_of(headers: &HeaderMap) -> Option<Upgrade> {
    let value = headers.get(header::UPGRADE)?.to_str().ok()?.trim().to_ascii_lowercase();
    match value.as_str() {
        "websocket" => Some(Upgrade::WebSocket),
        v if v.starts_with("spdy/") => Some(Upgrade::Spdy),
        _ => None,
    }
}

// === routing ===

async fn handle(req: Request<Incoming>, caller: &Caller, pods: &dyn PodLookup) -> Response<Body> {
    match caller {
        Caller::ApiServer => {}
        Caller::Anonymous => return text_response(StatusCode::UNAUTHORIZED, "Unauthorized: a client certificate signed by the cluster CA is required"),
        Caller::Other(cn) => {
            return text_response(StatusCode::FORBIDDEN, format!("Forbidden: user {cn:?} may not use the node's streaming endpoints"))
        }
    }
    let segments: Vec<String> = req
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (segs.as_slice(), &method) {
        (["healthz"], &Method::GET) => text_response(StatusCode::OK, "ok"),
        (["containerLogs", ns, pod, container], &Method::GET) => container_logs(&req, pods, ns, pod, container).await,
        (["exec", ns, pod, container], &Method::GET | &Method::POST) => {
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            session(req, pods, &ns, &pod, &container, SessionKind::Exec).await
        }
        (["attach", ns, pod, container], &Method::GET | &Method::POST) => {
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            session(req, pods, &ns, &pod, &container, SessionKind::Attach).await
        }
        (["portForward", ns, pod], &Method::GET | &Method::POST) => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            port_forward(req, pods, &ns, &pod).await
        }
        (["containerLogs" | "exec" | "attach" | "portForward" | "healthz", ..], _) if segs.len() >= 3 || segs == ["healthz"] => {
            text_response(StatusCode::METHOD_NOT_ALLOWED, format!("method {method} is not allowed"))
        }
        _ => text_response(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect()
}

fn pod_not_found(ns: &str, pod: &str) -> Response<Body> {
    text_response(StatusCode::NOT_FOUND, format!("pod \"{pod}\" not found in namespace \"{ns}\""))
}

// === logs ===

async fn container_logs(req: &Request<Incoming>, pods: &dyn PodLookup, ns: &str, pod: &str, container: &str) -> Response<Body> {
    let pairs = query_pairs(req);
    let options = match logs::LogOptions::from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), jiff::Timestamp::now()) {
        Ok(o) => o,
        Err(e) => return text_response(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(target) = pods.lookup(ns, pod) else { return pod_not_found(ns, pod) };
    let container_dir = target.log_dir.join(container);
    let (instance, path) = match logs::select_file(&container_dir, options.previous, container, pod) {
        Ok(f) => f,
        Err(e @ logs::LogError::Io(_)) => return text_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return text_response(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let follow = match (options.follow && !options.previous, target.containers.get(container)) {
        (true, Some(id)) => {
            let (runtime, id) = (target.runtime.clone(), id.clone());
            let running: logs::StillRunning = Box::new(move || {
                let (runtime, id) = (runtime.clone(), id.clone());
                Box::pin(async move { matches!(runtime.container_status(&id).await, Ok(s) if s.state == ContainerState::Running) })
            });
            Some(logs::Follow { running, container_dir, instance })
        }
        _ => None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        if let Err(e) = logs::read_log(&path, &options, follow, tx).await {
            tracing::debug!(path = %path.display(), error = %e, "reading a container log failed");
        }
    });
    let frames = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx)) });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(StreamBody::new(frames).boxed_unsync())
        .expect("valid response")
}

// === exec and attach ===

/// The session the query asks for (upstream's `PodExecOptions`/`PodAttachOptions`
/// as the kubelet reads them).
pub fn stream_request(pairs: &[(String, String)]) -> StreamRequest {
    let flag = |k: &str| pairs.iter().any(|(key, v)| key == k && matches!(v.as_str(), "" | "1" | "true" | "True" | "TRUE"));
    let tty = flag("tty");
    StreamRequest {
        command: pairs.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect(),
        stdin: flag("stdin"),
        stdout: flag("stdout"),
        // A terminal merges stderr into stdout.
        stderr: flag("stderr") && !tty,
        tty,
    }
}

async fn session(req: Request<Incoming>, pods: &dyn PodLookup, ns: &str, pod: &str, container: &str, kind: SessionKind) -> Response<Body> {
    let request = stream_request(&query_pairs(&req));
    if !request.stdin && !request.stdout && !request.stderr {
        return text_response(StatusCode::BAD_REQUEST, "you must specify at least 1 of stdin, stdout, stderr");
    }
    if kind == SessionKind::Exec && request.command.is_empty() {
        return text_response(StatusCode::BAD_REQUEST, "you must specify at least one command for the container");
    }
    let Some(upgrade) = upgrade_of(req.headers()) else {
        return text_response(StatusCode::BAD_REQUEST, "Upgrade request required");
    };
    let offered = channel::offered_protocols(req.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok()));
    let negotiated = match upgrade {
        Upgrade::WebSocket => match channel::negotiate(&offered) {
            Some(n) => Some(n),
            None => return text_response(StatusCode::BAD_REQUEST, format!("requested protocol(s) are not supported: {offered:?}")),
        },
        Upgrade::Spdy => None,
    };
    let Some(target) = pods.lookup(ns, pod) else { return pod_not_found(ns, pod) };
    let Some(id) = target.containers.get(container).cloned() else {
        return text_response(StatusCode::NOT_FOUND, format!("container \"{container}\" not found in pod \"{pod}\""));
    };
    // The process runtime serves sessions itself ([`Stream::Local`]) and only over
    // WebSocket: refuse SPDY before its command starts.
    if upgrade == Upgrade::Spdy && target.runtime.handler() == crate::runtime::process::HANDLER {
        return text_response(
            StatusCode::BAD_REQUEST,
            "SPDY streams are not supported for pods of the process runtime; use a WebSocket (v4.channel.k8s.io or v5.channel.k8s.io) client",
        );
    }
    let stream = match kind {
        SessionKind::Exec => target.runtime.exec(&id, &request).await,
        SessionKind::Attach => target.runtime.attach(&id, &request).await,
    };
    let stream = match stream {
        Ok(s) => s,
        Err(crate::runtime::RuntimeError::NotFound(m)) => return text_response(StatusCode::NOT_FOUND, m),
        Err(e) => return text_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match (stream, negotiated) {
        (Stream::Local(local), Some((protocol, echo))) => accept_local(req, protocol, echo, local, request, kind),
        (Stream::Local(_), None) => text_response(StatusCode::BAD_REQUEST, "SPDY streams are not supported by this runtime"),
        (Stream::Remote(url), None) => relay::relay_upgrade(req, &url, None).await,
        (Stream::Remote(url), Some(_)) => {
            // The runtime's server speaks up to v4: offer it what the client offers
            // below v5; with nothing left, let the client fall back to SPDY.
            let older: Vec<&str> = offered.iter().map(String::as_str).filter(|p| *p != ChannelProtocol::V5.name()).collect();
            if older.is_empty() && !offered.is_empty() {
                return text_response(
                    StatusCode::BAD_REQUEST,
                    "the container runtime's streaming server does not support v5.channel.k8s.io; retry with SPDY/3.1 or v4.channel.k8s.io",
                );
            }
            let protocols = (!older.is_empty()).then(|| older.join(", "));
            relay::relay_upgrade(req, &url, protocols).await
        }
        (Stream::Direct(_), _) => text_response(StatusCode::INTERNAL_SERVER_ERROR, "the runtime returned a port-forward address for an exec or attach"),
    }
}

/// Switches the client to `protocol` and serves the session from the pipes.
fn accept_local(
    mut req: Request<Incoming>,
    protocol: ChannelProtocol,
    echo: bool,
    local: crate::runtime::LocalStream,
    request: StreamRequest,
    kind: SessionKind,
) -> Response<Body> {
    let Some(accept) = websocket_accept(req.headers()) else {
        return text_response(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        channel::serve_local(ws, protocol, local, request, kind).await;
    });
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept);
    if echo {
        resp = resp.header(header::SEC_WEBSOCKET_PROTOCOL, protocol.name());
    }
    resp.body(empty_body()).expect("valid 101 response")
}

// === port-forward ===

async fn port_forward(req: Request<Incoming>, pods: &dyn PodLookup, ns: &str, pod: &str) -> Response<Body> {
    let Some(upgrade) = upgrade_of(req.headers()) else {
        return text_response(StatusCode::BAD_REQUEST, "Upgrade request required");
    };
    let Some(target) = pods.lookup(ns, pod) else { return pod_not_found(ns, pod) };
    let Some(sandbox) = target.sandbox_id.clone() else {
        return text_response(StatusCode::BAD_REQUEST, format!("pod \"{pod}\" has no sandbox yet"));
    };
    let stream = match target.runtime.port_forward(&sandbox).await {
        Ok(s) => s,
        Err(crate::runtime::RuntimeError::NotFound(m)) => return text_response(StatusCode::NOT_FOUND, m),
        Err(e) => return text_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match stream {
        Stream::Remote(url) => {
            let tunnel = upgrade == Upgrade::WebSocket
                && channel::offered_protocols(req.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok()))
                    .iter()
                    .any(|p| p == relay::SPDY_TUNNEL_PROTOCOL);
            if tunnel {
                relay::tunnel_port_forward(req, &url).await
            } else {
                relay::relay_upgrade(req, &url, None).await
            }
        }
        Stream::Local(_) | Stream::Direct(_) => {
            text_response(StatusCode::NOT_IMPLEMENTED, "port-forward is not supported for pods of the process runtime")
        }
    }
}

#[cfg(test)]
mod tests;
