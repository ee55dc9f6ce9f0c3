//! Serving one request: route it, redirect it, or forward it to an endpoint.
//!
//! Forwarding follows ingress-nginx's defaults:
//! - HTTP/1.1 to the pod whatever the client spoke, hop-by-hop headers removed,
//!   `Host` kept, `X-Forwarded-For`/`-Host`/`-Port`/`-Proto`, `X-Real-IP` and
//!   `X-Request-ID` set (the client's own forwarding headers are not trusted);
//! - request and response bodies streamed, never buffered;
//! - upgrades (WebSocket) joined end to end once the pod switches protocols;
//! - a second attempt on another endpoint when the first one failed, if the pod
//!   never saw the request, or the request is idempotent and has no body: a
//!   pod that just went away costs a retry, not an error.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::endpoints::InFlight;
use crate::host;
use crate::metrics::Metrics;
use crate::pool::{Body, Pool, SendError, UpstreamError};
use crate::routes::Routes;
use crate::table::{Backend, Target};

/// Endpoints tried per request: the first, and one retry elsewhere.
const MAX_ATTEMPTS: usize = 2;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The client side of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    pub(crate) remote: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) tls: bool,
}

/// What every connection of one gateway shares.
pub(crate) struct Proxy {
    routes: Routes,
    pool: Pool,
    metrics: Metrics,
    /// The HTTPS listener's port, where redirects point; `None`: no redirects.
    https_port: Option<u16>,
    /// Closes when the gateway stops, ending upgraded tunnels.
    shutdown: watch::Receiver<()>,
}

impl Proxy {
    pub(crate) fn new(routes: Routes, metrics: Metrics, https_port: Option<u16>, shutdown: watch::Receiver<()>) -> Proxy {
        Proxy { routes, pool: Pool::default(), metrics, https_port, shutdown }
    }

    /// Serves one request and counts its response.
    pub(crate) async fn handle(&self, req: Request<Incoming>, peer: Peer) -> Response<Body> {
        let resp = self.serve(req, peer).await;
        self.metrics.record(resp.status());
        resp
    }

    async fn serve(&self, req: Request<Incoming>, peer: Peer) -> Response<Body> {
        let authority = authority(&req);
        let host = host::normalize(&authority);
        let (target, redirect) = {
            let table = self.routes.table();
            let (server, location) = table.route(&host, req.uri().path());
            let Some(location) = location else { return not_found() };
            tracing::trace!(%host, path = req.uri().path(), ingress = ?location.ingress, "routed");
            let redirect = !peer.tls
                && self.https_port.is_some()
                && (location.force_ssl_redirect || (server.tls.is_some() && location.ssl_redirect));
            (location.target.clone(), redirect)
        };
        if redirect {
            return redirect_to_https(&host, peer, self.https_port, req.uri());
        }
        match target {
            Target::NotFound => not_found(),
            Target::Service(backend) => self.forward(req, &backend, peer, &authority).await,
        }
    }

    async fn forward(&self, mut req: Request<Incoming>, backend: &Backend, peer: Peer, authority: &str) -> Response<Body> {
        if backend.endpoints.current().is_empty() {
            tracing::debug!(backend = ?backend.key, "no endpoints");
            return unavailable();
        }
        let upgrade = upgrade_protocol(&req);
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let replayable = is_idempotent(req.method()) && hyper::body::Body::is_end_stream(req.body());
        let mut request = upstream_request(req, peer, authority, upgrade);
        // A request without body can be rebuilt for a retry even after it went out.
        let copy = replayable.then(|| copy_head(&request));

        let mut tried: Vec<SocketAddr> = Vec::with_capacity(MAX_ATTEMPTS);
        let mut last_error = None;
        let mut stale_forgiven = false;
        while tried.len() < MAX_ATTEMPTS {
            let endpoints = backend.endpoints.current();
            let Some(i) = backend.picker.pick(&endpoints, &tried) else { break };
            let endpoint = &endpoints[i];
            if !tried.is_empty() {
                self.metrics.retried();
            }
            tried.push(endpoint.addr());
            let in_flight = endpoint.begin();
            match self.pool.send(endpoint.addr(), request).await {
                Ok(resp) => return self.respond(resp, in_flight, client_upgrade),
                Err(SendError::NotSent { request: back, error }) => {
                    tracing::warn!(backend = ?backend.key, %error, "endpoint unreachable; the request was not sent");
                    request = *back;
                    last_error = Some(error);
                }
                Err(SendError::Sent { error, reused }) => {
                    tracing::warn!(backend = ?backend.key, %error, "endpoint failed during the exchange");
                    last_error = Some(error);
                    match &copy {
                        Some(head) => request = head.with_body(empty_body()),
                        None => break,
                    }
                    // A kept-alive connection the pod was closing says nothing
                    // about the pod: one such failure does not use up the retry.
                    if reused && !stale_forgiven {
                        stale_forgiven = true;
                        tried.pop();
                    }
                }
            }
        }
        match last_error {
            None => unavailable(),
            Some(UpstreamError::ConnectTimeout { .. }) => text(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out\n"),
            Some(_) => text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"),
        }
    }

    /// The client's response: the pod's, without hop-by-hop headers, or the 101
    /// that starts a tunnel between the two upgraded connections.
    fn respond(&self, mut resp: Response<Incoming>, in_flight: InFlight, client_upgrade: Option<OnUpgrade>) -> Response<Body> {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client) = client_upgrade else {
                tracing::warn!("an endpoint switched protocols without being asked to");
                return text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n");
            };
            let upstream = hyper::upgrade::on(&mut resp);
            let mut shutdown = self.shutdown.clone();
            tokio::spawn(async move {
                let _in_flight = in_flight;
                match tokio::try_join!(client, upstream) {
                    Ok((client, upstream)) => {
                        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                    Err(error) => tracing::debug!(%error, "upgrade failed"),
                }
            });
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, empty_body());
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, Tracked { inner: body, _in_flight: in_flight }.map_err(Into::into).boxed_unsync())
    }
}

/// The host (and port) the client asked for: the URI's authority (HTTP/2,
/// absolute-form), else the Host header.
fn authority(req: &Request<Incoming>) -> String {
    if let Some(a) = req.uri().authority() {
        return a.as_str().to_string();
    }
    req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// The protocol an HTTP/1.1 request asks to upgrade to.
fn upgrade_protocol(req: &Request<Incoming>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let asks = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| req.headers().get(header::UPGRADE).cloned()).flatten()
}

fn is_idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

/// The request as the endpoint receives it.
fn upstream_request(req: Request<Incoming>, peer: Peer, authority: &str, upgrade: Option<HeaderValue>) -> Request<Body> {
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(header::UPGRADE);
    // The gateway answered any `Expect: 100-continue` itself when it read the body.
    headers.remove(header::EXPECT);
    if let Ok(v) = HeaderValue::from_str(authority) {
        if !authority.is_empty() {
            headers.insert(header::HOST, v.clone());
            headers.insert(X_FORWARDED_HOST, v);
        }
    }
    let client_ip = HeaderValue::from_str(&peer.remote.ip().to_canonical().to_string()).expect("an IP is a header value");
    headers.insert(X_FORWARDED_FOR, client_ip.clone());
    headers.insert(X_REAL_IP, client_ip);
    headers.insert(X_FORWARDED_PORT, HeaderValue::from(peer.local.port()));
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if peer.tls { "https" } else { "http" }));
    if !headers.contains_key(X_REQUEST_ID) {
        let id = format!("{:032x}", rand::random::<u128>());
        headers.insert(X_REQUEST_ID, HeaderValue::from_str(&id).expect("hex is a header value"));
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    let uri = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut out = Request::new(body.map_err(Into::into).boxed_unsync());
    *out.method_mut() = parts.method;
    *out.uri_mut() = Uri::try_from(uri).unwrap_or_else(|_| Uri::from_static("/"));
    *out.version_mut() = Version::HTTP_11;
    *out.headers_mut() = headers;
    out
}

/// What a retry needs to send the same bodiless request again.
struct Head {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

fn copy_head(req: &Request<Body>) -> Head {
    Head { method: req.method().clone(), uri: req.uri().clone(), headers: req.headers().clone() }
}

impl Head {
    fn with_body(&self, body: Body) -> Request<Body> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Removes hop-by-hop headers, and the headers `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// A response body that counts its request as in flight until it ends.
struct Tracked {
    inner: Incoming,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pub(crate) fn empty_body() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())).map_err(|never| match never {}).boxed_unsync());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "404 Not Found\n")
}

fn unavailable() -> Response<Body> {
    text(StatusCode::SERVICE_UNAVAILABLE, "503 Service Temporarily Unavailable\n")
}

/// 308 to the same host and path on the HTTPS listener.
fn redirect_to_https(host: &str, peer: Peer, https_port: Option<u16>, uri: &Uri) -> Response<Body> {
    let host = if host.is_empty() { peer.local.ip().to_string() } else { host.to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let port = match https_port {
        Some(443) | None => String::new(),
        Some(p) => format!(":{p}"),
    };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = format!("https://{host}{port}{path}");
    let mut resp = text(StatusCode::PERMANENT_REDIRECT, "308 Permanent Redirect\n");
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => text(StatusCode::BAD_REQUEST, "400 Bad Request\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn a_redirect_keeps_host_path_and_query_and_names_a_non_default_port() {
        let peer = Peer { remote: "10.0.0.9:5000".parse().unwrap(), local: "10.0.0.1:80".parse().unwrap(), tls: false };
        let uri: Uri = "/a/b?c=d".parse().unwrap();
        let r = redirect_to_https("shop.test", peer, Some(443), &uri);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()[header::LOCATION], "https://shop.test/a/b?c=d");
        let r = redirect_to_https("shop.test", peer, Some(8443), &uri);
        assert_eq!(r.headers()[header::LOCATION], "https://shop.test:8443/a/b?c=d");
    }

    #[test]
    fn only_idempotent_methods_are_replayed() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }
}
