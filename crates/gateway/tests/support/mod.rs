//! Test support: pods (small HTTP servers on loopback), the Kubernetes objects
//! that route to them, and HTTP(S) clients.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::ByteString;
use skiff_gateway::{Gateway, GatewayConfig, Routes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

pub const NS: &str = "default";

// === pods ===

/// A pod: an HTTP/1.1 server that answers `<name> <method> <path>` (and, for a
/// request with a body, the body's length), echoes the forwarding headers it got
/// as `x-seen-*`, and turns an `Upgrade` request into an echo tunnel. Dropping
/// it closes the listener and every connection.
pub struct Pod {
    pub addr: SocketAddr,
    pub name: &'static str,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pod {
    pub async fn start(name: &'static str) -> Pod {
        Pod::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(name: &'static str, addr: SocketAddr) -> Pod {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        let counter = counter.clone();
                        let service = hyper::service::service_fn(move |req| {
                            counter.fetch_add(1, Ordering::SeqCst);
                            answer(name, req)
                        });
                        conns.spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(tcp), service)
                                .with_upgrades()
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Pod { addr, name, hits, task }
    }

    /// Requests this pod answered.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn answer(name: &'static str, mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::builder();
    for (seen, header) in [
        ("x-seen-host", "host"),
        ("x-seen-forwarded-for", "x-forwarded-for"),
        ("x-seen-forwarded-host", "x-forwarded-host"),
        ("x-seen-forwarded-proto", "x-forwarded-proto"),
        ("x-seen-real-ip", "x-real-ip"),
        ("x-seen-request-id", "x-request-id"),
        ("x-seen-private", "x-private"),
        ("x-seen-keep-alive", "keep-alive"),
    ] {
        if let Some(v) = req.headers().get(header) {
            resp = resp.header(seen, v);
        }
    }
    if req.headers().contains_key("upgrade") {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 1024];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let resp = resp
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Full::new(Bytes::new()))
            .unwrap();
        return Ok(resp);
    }
    if req.uri().path() == "/first-chunk" {
        // Answers as soon as the first piece of the body arrives.
        let n = match req.body_mut().frame().await {
            Some(Ok(frame)) => frame.into_data().map(|d| d.len()).unwrap_or(0),
            _ => 0,
        };
        return Ok(resp.body(Full::new(Bytes::from(format!("{name} first chunk {n}")))).unwrap());
    }
    let line = format!("{name} {} {}", req.method(), req.uri().path());
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let text = if body.is_empty() { line } else { format!("{line} {}", body.len()) };
    Ok(resp.body(Full::new(Bytes::from(text))).unwrap())
}

/// A pod that reads each request and closes the connection without answering;
/// it counts the requests it swallowed.
pub struct Dropper {
    pub addr: SocketAddr,
    swallowed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Dropper {
    pub async fn start() -> Dropper {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let swallowed = Arc::new(AtomicUsize::new(0));
        let counter = swallowed.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else { continue };
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                // Read the whole head (and, for the tests, the small body with it).
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                drop(tcp);
            }
        });
        Dropper { addr, swallowed, task }
    }

    pub fn swallowed(&self) -> usize {
        self.swallowed.load(Ordering::SeqCst)
    }
}

/// A pod that answers the first request of each connection, keeping it
/// alive, and closes the connection when the next request arrives: the race
/// of a pod closing an idle keep-alive connection, made certain.
pub struct OneAnswerPerConnection {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OneAnswerPerConnection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OneAnswerPerConnection {
    pub async fn start() -> OneAnswerPerConnection {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut tcp, _)) = accepted else { continue };
                        conns.spawn(async move {
                            if read_head(&mut tcp).await {
                                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                                read_head(&mut tcp).await;
                            }
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        OneAnswerPerConnection { addr, task }
    }
}

/// Reads one request head (and whatever body came with it); false at EOF.
async fn read_head(tcp: &mut tokio::net::TcpStream) -> bool {
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// An address nothing listens on (bound, then closed).
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

// === objects ===

pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        creation_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap())),
        ..Default::default()
    }
}

/// A Service with one port `http` (80).
pub fn service(name: &str) -> Service {
    Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort { name: Some("http".into()), port: 80, ..Default::default() }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// A slice of `service` with ready endpoints (all on the same port).
pub fn slice(name: &str, service: &str, addrs: &[SocketAddr]) -> EndpointSlice {
    slice_with(name, service, addrs, true)
}

pub fn slice_with(name: &str, service: &str, addrs: &[SocketAddr], ready: bool) -> EndpointSlice {
    let mut m = meta(name);
    m.labels = Some(BTreeMap::from([("kubernetes.io/service-name".to_string(), service.to_string())]));
    let port = addrs.first().map(|a| a.port()).unwrap_or(1);
    assert!(addrs.iter().all(|a| a.port() == port), "one port per slice");
    EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        endpoints: addrs
            .iter()
            .map(|a| Endpoint {
                addresses: vec![a.ip().to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: Some(true),
                    terminating: Some(!ready),
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(port.into()),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

pub fn backend(service: &str) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.into(),
            port: Some(ServiceBackendPort { name: None, number: Some(80) }),
        }),
        resource: None,
    }
}

/// An Ingress of class `skiff`, built up path by path.
pub struct MakeIngress(Ingress);

pub fn ingress(name: &str) -> MakeIngress {
    MakeIngress(Ingress {
        metadata: meta(name),
        spec: Some(IngressSpec { ingress_class_name: Some("skiff".into()), ..Default::default() }),
        status: None,
    })
}

impl MakeIngress {
    pub fn path(mut self, host: Option<&str>, path: &str, path_type: &str, service: &str) -> Self {
        let rules = self.0.spec.as_mut().unwrap().rules.get_or_insert_with(Vec::new);
        let host = host.map(str::to_string);
        let i = match rules.iter().position(|r| r.host == host) {
            Some(i) => i,
            None => {
                rules.push(IngressRule { host, http: Some(HTTPIngressRuleValue { paths: vec![] }) });
                rules.len() - 1
            }
        };
        rules[i].http.as_mut().unwrap().paths.push(HTTPIngressPath {
            path: Some(path.into()),
            path_type: path_type.into(),
            backend: backend(service),
        });
        self
    }

    pub fn default_backend(mut self, service: &str) -> Self {
        self.0.spec.as_mut().unwrap().default_backend = Some(backend(service));
        self
    }

    pub fn tls(mut self, hosts: &[&str], secret: &str) -> Self {
        self.0.spec.as_mut().unwrap().tls.get_or_insert_with(Vec::new).push(IngressTLS {
            hosts: Some(hosts.iter().map(|h| h.to_string()).collect()),
            secret_name: Some(secret.into()),
        });
        self
    }

    pub fn class(mut self, class: Option<&str>) -> Self {
        self.0.spec.as_mut().unwrap().ingress_class_name = class.map(Into::into);
        self
    }

    pub fn obj(self) -> Ingress {
        self.0
    }
}

/// A certificate for `names`, as a `kubernetes.io/tls` Secret and as the PEM a client trusts.
pub fn tls_secret(name: &str, names: &[&str]) -> (Secret, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap().pem();
    let secret = Secret {
        metadata: meta(name),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(cert.clone().into_bytes())),
            ("tls.key".to_string(), ByteString(key.serialize_pem().into_bytes())),
        ])),
        ..Default::default()
    };
    (secret, cert)
}

// === the gateway ===

pub fn config() -> GatewayConfig {
    GatewayConfig {
        http: Some("127.0.0.1:0".parse().unwrap()),
        https: Some("127.0.0.1:0".parse().unwrap()),
        class_name: "skiff".into(),
        controller: "skiff.io/ingress".into(),
    }
}

pub async fn start() -> (Gateway, Routes) {
    let cfg = config();
    let routes = Routes::new(&cfg);
    let gateway = Gateway::start(cfg, routes.clone()).await.unwrap();
    (gateway, routes)
}

/// Routes `host` `/` to a Service `name` whose endpoints are `pods`.
pub fn serve(routes: &Routes, name: &str, host: &str, pods: &[&Pod]) {
    routes.apply_service(&service(name));
    for (i, pod) in pods.iter().enumerate() {
        routes.apply_slice(&slice(&format!("{name}-{i}"), name, &[pod.addr]));
    }
    routes.apply_ingress(&ingress(name).path(Some(host), "/", "Prefix", name).obj());
}

// === clients ===

/// What a client got back.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn read(resp: Response<Incoming>) -> anyhow::Result<Answer> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Answer { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// One HTTP/1.1 request on a new connection.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> anyhow::Result<Answer> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    read(sender.send_request(req).await?).await
}

pub async fn get(addr: SocketAddr, host: &str, path: &str) -> anyhow::Result<Answer> {
    let req = Request::builder().uri(path).header("host", host).body(Full::new(Bytes::new()))?;
    send(addr, req).await
}

/// A client config trusting only `ca_pem`, offering `alpn`.
pub fn client_tls(ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// One HTTPS request (HTTP/1.1) to `host` with SNI `host`, trusting only `ca_pem`.
pub async fn https_get(addr: SocketAddr, host: &str, path: &str, ca_pem: &str) -> anyhow::Result<Answer> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
    let tls = client_tls(ca_pem, &[b"http/1.1"]).connect(name, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = Request::builder().uri(path).header("host", host).body(Full::new(Bytes::new()))?;
    read(sender.send_request(req).await?).await
}

/// One HTTPS request over HTTP/2 (negotiated by ALPN).
pub async fn https_h2_get(addr: SocketAddr, host: &str, path: &str, ca_pem: &str) -> anyhow::Result<Answer> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
    let tls = client_tls(ca_pem, &[b"h2"]).connect(name, tcp).await?;
    anyhow::ensure!(tls.get_ref().1.alpn_protocol() == Some(b"h2"), "h2 was not negotiated");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = Request::builder()
        .version(http::Version::HTTP_2)
        .uri(format!("https://{host}{path}"))
        .body(Full::new(Bytes::new()))?;
    read(sender.send_request(req).await?).await
}

/// Requests over one HTTP/2 connection (prior knowledge, no TLS).
pub async fn h2_get(addr: SocketAddr, host: &str, paths: &[&str]) -> anyhow::Result<Vec<Answer>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let mut answers = Vec::new();
    for path in paths {
        let mut sender = sender.clone();
        let req = Request::builder()
            .version(http::Version::HTTP_2)
            .uri(format!("http://{host}{path}"))
            .body(Full::new(Bytes::new()))?;
        answers.push(read(sender.send_request(req).await?).await?);
    }
    Ok(answers)
}
