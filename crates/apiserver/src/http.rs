//! The HTTPS front door: TLS (rustls), HTTP/1.1 and HTTP/2, authentication, and the
//! dispatch of each request to its verb.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, Response, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use skiff_api::{openapi, StatusError, KUBERNETES_VERSION};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::app::{App, User};
use crate::discovery;
use crate::handlers::{self, MAX_BODY};
use crate::output::{error_response, json_response, value_response};
use crate::request::{parse_path, DiscoveryPath, Query, Target};
use crate::watch;

/// Builds the rustls server configuration from PEM strings.
pub fn tls_config(cert_pem: &str, key_pem: &str) -> anyhow::Result<rustls::ServerConfig> {
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())?.ok_or_else(|| anyhow::anyhow!("no private key in PEM"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves `router` over TLS on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: rustls::ServerConfig, router: Router) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, _peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                _ => return,
            };
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let router = router.clone();
                async move {
                    use tower::ServiceExt;
                    router.oneshot(req.map(Body::new)).await
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http2().max_concurrent_streams(1000);
            let _ = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await;
        });
    }
}

/// The router: everything goes through [`dispatch`].
pub fn router(app: App, advertise: String, kubelet: handlers::proxy::KubeletClient) -> Router {
    Router::new().fallback(dispatch).with_state(Arc::new((app, advertise, kubelet)))
}

fn authenticate(app: &App, req: &Request) -> Option<User> {
    let auth = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer "))?.trim();
    if constant_eq(token, &app.tokens.admin) {
        Some(User { name: "admin".into(), groups: vec!["system:masters".into(), "system:authenticated".into()] })
    } else if constant_eq(token, &app.tokens.node) {
        Some(User { name: "system:node-bootstrap".into(), groups: vec!["system:nodes".into(), "system:authenticated".into()] })
    } else {
        app.sa_tokens.authenticate(token, jiff::Timestamp::now().as_second())
    }
}

/// Compares secrets without an early exit, so timing does not leak a prefix.
fn constant_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn read_body(body: Body) -> Result<Bytes, StatusError> {
    // Reads up to MAX_BODY; past it, keeps draining (up to a hard cap) so the client
    // can finish sending and read the 413 instead of seeing a broken pipe.
    const DRAIN_CAP: usize = 64 * 1024 * 1024;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| StatusError::bad_request(format!("reading the request body failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= MAX_BODY {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_CAP {
                break;
            }
        }
    }
    if seen > MAX_BODY {
        return Err(StatusError::too_large(format!("Request entity too large: limit is {MAX_BODY}")));
    }
    Ok(buf.freeze())
}

async fn dispatch(State(state): State<Arc<(App, String, handlers::proxy::KubeletClient)>>, req: Request) -> Response<Body> {
    let (app, advertise) = (&state.0, &state.1);
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match handle(app, advertise, &state.2, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    resp
}

async fn handle(app: &App, advertise: &str, kubelet: &handlers::proxy::KubeletClient, req: Request) -> Result<Response<Body>, StatusError> {
    let target = parse_path(req.uri().path())?;
    // Health endpoints are open, as load balancers and probes need them.
    if let Target::Health(which) = target {
        let ok = which != "readyz" || app.is_ready();
        let (code, text) = if ok { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "[-]datastore failed: not ready\nreadyz check failed") };
        let mut r = Response::new(Body::from(text));
        *r.status_mut() = code;
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        return Ok(r);
    }
    let Some(_user) = authenticate(app, &req) else { return Err(StatusError::unauthorized()) };
    // Logs, exec, attach and port-forward go to the pod's agent, body and upgrade
    // untouched.
    if let Target::Resource(rr) = &target {
        use skiff_api::Subresource::{Attach, Exec, Log, PortForward};
        if matches!(rr.subresource, Some(Log | Exec | Attach | PortForward)) {
            return handlers::proxy::serve(app, kubelet, rr, req).await;
        }
    }
    let query = Query::parse(req.uri().query());
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    match target {
        Target::Health(_) => unreachable!("answered above"),
        Target::Version => Ok(value_response(StatusCode::OK, &version())),
        Target::Metrics => {
            let body = crate::metrics::render(app);
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            Ok(r)
        }
        Target::NotFound => Err(not_found_path(req.uri().path())),
        Target::Openapi(p) => openapi_response(&p),
        Target::Discovery(d) => {
            if req.method() != Method::GET {
                return Err(StatusError::method_not_allowed("discovery is read-only"));
            }
            discovery_response(d, &accept, advertise)
        }
        Target::Resource(rr) => {
            let method = req.method().clone();
            let headers = req.headers().clone();
            let body = read_body(req.into_body()).await?;
            let watch_req = rr.legacy_watch || query.flag("watch");
            match method {
                Method::GET if watch_req => {
                    if rr.name.is_some() {
                        // Watching one object: a field selector on its name.
                        let mut q = query.clone();
                        let name = rr.name.clone().unwrap_or_default();
                        let sel = match q.get("fieldSelector").filter(|s| !s.is_empty()) {
                            Some(s) => format!("{s},metadata.name={name}"),
                            None => format!("metadata.name={name}"),
                        };
                        q.0.insert("fieldSelector".into(), sel);
                        let mut rr2 = rr.clone();
                        rr2.name = None;
                        watch::watch(app, &rr2, &q, &headers).await
                    } else {
                        watch::watch(app, &rr, &query, &headers).await
                    }
                }
                Method::GET if rr.name.is_some() => handlers::get(app, &rr, &query, &headers).await,
                Method::GET => handlers::list(app, &rr, &query, &headers).await,
                Method::POST => handlers::create(app, &rr, &query, &headers, &body).await,
                Method::PUT => handlers::update(app, &rr, &query, &headers, &body).await,
                Method::PATCH => handlers::patch(app, &rr, &query, &headers, &body).await,
                Method::DELETE => handlers::delete(app, &rr, &query, &headers, &body).await,
                other => Err(StatusError::method_not_allowed(format!("method {other} is not supported"))),
            }
        }
    }
}

fn not_found_path(path: &str) -> StatusError {
    let mut e = StatusError::new(404, "NotFound", "the server could not find the requested resource");
    e.causes = vec![skiff_api::Cause { reason: "UnexpectedServerResponse".into(), field: String::new(), message: format!("404 page not found: {path}") }];
    e
}

/// `/version`.
pub fn version() -> serde_json::Value {
    let v = KUBERNETES_VERSION.trim_start_matches('v');
    let mut parts = v.split('.');
    json!({
        "major": parts.next().unwrap_or("1"),
        "minor": parts.next().unwrap_or("33"),
        "emulationMajor": "1",
        "emulationMinor": "33",
        "gitVersion": format!("{}+skiff-{}", KUBERNETES_VERSION, env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

fn openapi_response(path: &str) -> Result<Response<Body>, StatusError> {
    if path == "v3" || path == "v3/" {
        return Ok(value_response(StatusCode::OK, &openapi::v3_index()));
    }
    let rest = path.strip_prefix("v3/").ok_or_else(|| not_found_path(&format!("/openapi/{path}")))?;
    let segs: Vec<&str> = rest.split('/').collect();
    let doc = match segs.as_slice() {
        ["api", "v1"] => openapi::v3_document("", "v1"),
        ["apis", g, v] => openapi::v3_document(g, v),
        _ => None,
    };
    match doc {
        Some(bytes) => {
            let mut r = json_response(StatusCode::OK, Bytes::from_static(bytes));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
            Ok(r)
        }
        None => Err(not_found_path(&format!("/openapi/{path}"))),
    }
}

fn discovery_response(d: DiscoveryPath, accept: &str, advertise: &str) -> Result<Response<Body>, StatusError> {
    let aggregated = discovery::aggregated_media_type(accept);
    let (v, media) = match (d, aggregated) {
        (DiscoveryPath::Api, Some(m)) => (discovery::aggregated(true, &format!("apidiscovery.k8s.io/{}", if m.contains("v2beta1") { "v2beta1" } else { "v2" })), m),
        (DiscoveryPath::Apis, Some(m)) => (discovery::aggregated(false, &format!("apidiscovery.k8s.io/{}", if m.contains("v2beta1") { "v2beta1" } else { "v2" })), m),
        (DiscoveryPath::Api, None) => (discovery::api_versions(advertise), "application/json"),
        (DiscoveryPath::Apis, None) => (discovery::api_group_list(), "application/json"),
        (DiscoveryPath::ApiVersion, _) => (discovery::resource_list("", "v1").expect("core/v1 exists"), "application/json"),
        (DiscoveryPath::Group(g), _) => (discovery::api_group(&g).ok_or_else(|| not_found_path(&format!("/apis/{g}")))?, "application/json"),
        (DiscoveryPath::GroupVersion(g, v), _) => (discovery::resource_list(&g, &v).ok_or_else(|| not_found_path(&format!("/apis/{g}/{v}")))?, "application/json"),
    };
    let mut r = value_response(StatusCode::OK, &v);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_str(media).expect("static media type"));
    Ok(r)
}

/// The address clients should use, for `serverAddressByClientCIDRs`.
pub fn advertise_address(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}
