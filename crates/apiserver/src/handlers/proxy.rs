//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`: the API server
//! finds the pod's node and proxies the request to that node's agent
//! (`/containerLogs`, `/exec`, `/attach`, `/portForward` on its kubelet port), as
//! kube-apiserver does with kubelets.
//!
//! The agent is reached at the Node's `InternalIP` and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, over TLS with a client certificate
//! the cluster CA signed for `skiff-apiserver`. The agent's serving certificate is
//! not verified (kube-apiserver's default without `--kubelet-certificate-authority`).
//!
//! Log bodies stream through chunk by chunk (a followed log flushes each line), and
//! upgrades (WebSocket, SPDY) pass through untouched: the agent's `101` goes back to
//! the client and the two connections are joined byte for byte. Whatever the agent
//! refuses comes back as a `Status` with the agent's code and words.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use skiff_api::{resources, StatusError, Subresource};

use crate::app::App;
use crate::request::ResourceRequest;

/// How long connecting to an agent (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent may take to answer (a followed log answers at once).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// The agent port when the Node does not say.
const DEFAULT_KUBELET_PORT: u16 = 10250;
/// The annotation kubectl (and this server) use to pick a pod's container.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// Request headers that belong to an upgrade and go to the agent as they came.
const UPGRADE_HEADERS: [&str; 6] =
    ["connection", "upgrade", "sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol", "x-stream-protocol-version"];

/// Connects to agents with the API server's client certificate. Cheap to clone.
#[derive(Clone)]
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeletClient")
    }
}

impl KubeletClient {
    /// A client presenting `cert_pem`/`key_pem` (see `pki::Credentials`).
    pub fn new(cert_pem: &str, key_pem: &str) -> anyhow::Result<KubeletClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())?.ok_or_else(|| anyhow::anyhow!("no private key in the kubelet client key"))?;
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
            .with_client_auth_cert(certs, key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient { tls: Arc::new(cfg) })
    }

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp).await
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")))
    }
}

/// Accepts any server certificate, checking only that the handshake is signed by
/// the key it presents.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

// === choosing the container and the node ===

fn container_names(pod: &Value, field: &str) -> Vec<String> {
    pod["spec"][field].as_array().map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(String::from)).collect()).unwrap_or_default()
}

/// The container a request is about: the one named, else the pod's only container,
/// else the one the `kubectl.kubernetes.io/default-container` annotation names.
pub fn choose_container(pod: &Value, requested: Option<&str>) -> Result<String, StatusError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let containers = container_names(pod, "containers");
    let init = container_names(pod, "initContainers");
    let ephemeral = container_names(pod, "ephemeralContainers");
    if let Some(c) = requested.filter(|c| !c.is_empty()) {
        if containers.iter().chain(&init).chain(&ephemeral).any(|n| n == c) {
            return Ok(c.to_string());
        }
        return Err(StatusError::bad_request(format!("container {c} is not valid for pod {name}")));
    }
    if containers.len() == 1 {
        return Ok(containers[0].clone());
    }
    if let Some(c) = pod["metadata"]["annotations"][DEFAULT_CONTAINER_ANNOTATION].as_str() {
        if containers.iter().any(|n| n == c) {
            return Ok(c.to_string());
        }
    }
    if containers.is_empty() {
        return Err(StatusError::bad_request(format!("a container name must be specified for pod {name}")));
    }
    let mut message = format!("a container name must be specified for pod {name}, choose one of: [{}]", containers.join(" "));
    if !init.is_empty() {
        message.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
    }
    Err(StatusError::bad_request(message))
}

/// Where a node's agent listens: its first `InternalIP` (else any address that is
/// an IP) and its kubelet endpoint port.
pub fn agent_address(node: &Value) -> Option<SocketAddr> {
    let addresses = node["status"]["addresses"].as_array()?;
    let ip_of = |type_: Option<&str>| {
        addresses
            .iter()
            .filter(|a| type_.is_none_or(|t| a["type"] == t))
            .find_map(|a| a["address"].as_str().and_then(|s| s.parse::<IpAddr>().ok()))
    };
    let ip = ip_of(Some("InternalIP")).or_else(|| ip_of(Some("ExternalIP"))).or_else(|| ip_of(None))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some(SocketAddr::new(ip, port))
}

// === the agent's path and query ===

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect()
}

fn last<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn flag(pairs: &[(String, String)], key: &str) -> bool {
    matches!(last(pairs, key), Some("" | "1" | "true" | "True" | "TRUE"))
}

fn invalid_log_options(pod: &str, message: String) -> StatusError {
    StatusError::new(422, "Invalid", format!("PodLogOptions \"{pod}\" is invalid: {message}"))
}

/// The kubelet query for `pods/log` (upstream's `PodLogOptions`, validated).
fn log_query(pod: &str, pairs: &[(String, String)]) -> Result<String, StatusError> {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for key in ["follow", "previous", "timestamps"] {
        if flag(pairs, key) {
            out.append_pair(key, "true");
        }
    }
    let int = |key: &str| -> Result<Option<i64>, StatusError> {
        match last(pairs, key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| StatusError::bad_request(format!("invalid value {v:?} for query parameter {key}"))),
        }
    };
    let since_seconds = int("sinceSeconds")?;
    let since_time = last(pairs, "sinceTime").filter(|s| !s.is_empty());
    if since_seconds.is_some() && since_time.is_some() {
        return Err(invalid_log_options(pod, ": Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into()));
    }
    if let Some(s) = since_seconds {
        if s < 1 {
            return Err(invalid_log_options(pod, format!("sinceSeconds: Invalid value: {s}: must be greater than 0")));
        }
        out.append_pair("sinceSeconds", &s.to_string());
    }
    if let Some(t) = since_time {
        let ts = skiff_api::meta::parse_time(t).ok_or_else(|| StatusError::bad_request(format!("invalid value {t:?} for query parameter sinceTime")))?;
        out.append_pair("sinceTime", &skiff_api::meta::format_time(ts));
    }
    if let Some(n) = int("tailLines")? {
        if n < 0 {
            return Err(invalid_log_options(pod, format!("tailLines: Invalid value: {n}: must be greater than or equal to 0")));
        }
        out.append_pair("tailLines", &n.to_string());
    }
    if let Some(n) = int("limitBytes")? {
        if n < 1 {
            return Err(invalid_log_options(pod, format!("limitBytes: Invalid value: {n}: must be greater than 0")));
        }
        out.append_pair("limitBytes", &n.to_string());
    }
    Ok(out.finish())
}

/// The kubelet query for `pods/exec` and `pods/attach`.
fn session_query(pairs: &[(String, String)], exec: bool) -> Result<String, StatusError> {
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for key in ["stdin", "stdout", "stderr", "tty"] {
        if flag(pairs, key) {
            out.append_pair(key, "1");
            any |= key != "tty";
        }
    }
    if !any {
        return Err(StatusError::bad_request("you must specify at least 1 of stdin, stdout, stderr"));
    }
    if exec {
        let commands: Vec<&str> = pairs.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.as_str()).collect();
        if commands.is_empty() {
            return Err(StatusError::bad_request("you must specify at least one command for the container"));
        }
        for c in commands {
            out.append_pair("command", c);
        }
    }
    Ok(out.finish())
}

// === the proxy ===

/// Serves one of the streaming subresources of `rr` (a pod).
pub async fn serve(app: &App, kubelet: &KubeletClient, rr: &ResourceRequest, mut req: Request) -> Result<Response<Body>, StatusError> {
    let sub = rr.subresource.expect("only streaming subresources are routed here");
    let name = rr.name.clone().unwrap_or_default();
    let namespace = rr.namespace.clone().unwrap_or_default();
    match (sub, req.method()) {
        (Subresource::Log, &Method::GET) => {}
        (Subresource::Exec | Subresource::Attach | Subresource::PortForward, &Method::GET | &Method::POST) => {}
        (_, m) => return Err(StatusError::method_not_allowed(format!("{m} is not supported on pods/{}", sub.name()))),
    }
    let pairs = query_pairs(req.uri().query());
    let (pod, _) = app.read_existing(rr.res, Some(&namespace), &name).await?;
    let (path, query) = match sub {
        Subresource::Log => {
            let container = choose_container(&pod, last(&pairs, "container"))?;
            (format!("/containerLogs/{}/{}/{}", enc(&namespace), enc(&name), enc(&container)), log_query(&name, &pairs)?)
        }
        Subresource::Exec | Subresource::Attach => {
            let container = choose_container(&pod, last(&pairs, "container"))?;
            let verb = if sub == Subresource::Exec { "exec" } else { "attach" };
            (format!("/{verb}/{}/{}/{}", enc(&namespace), enc(&name), enc(&container)), session_query(&pairs, sub == Subresource::Exec)?)
        }
        _ => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (_, p) in pairs.iter().filter(|(k, _)| k == "ports") {
                q.append_pair("port", p);
            }
            (format!("/portForward/{}/{}", enc(&namespace), enc(&name)), q.finish())
        }
    };
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string();
    if node_name.is_empty() {
        if sub == Subresource::Log {
            // Upstream answers an unscheduled pod's log with an empty body.
            return Ok(text_response(StatusCode::OK, Body::empty()));
        }
        return Err(StatusError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    let nodes = resources::lookup("", "v1", "nodes").expect("nodes are served");
    let (node, _) = app.read_existing(nodes, None, &node_name).await?;
    let addr = agent_address(&node)
        .ok_or_else(|| StatusError::unavailable(format!("node \"{node_name}\" has no address to reach its agent at")))?;

    let unreachable = |e: &dyn std::fmt::Display| StatusError::unavailable(format!("error dialing backend: the agent of node \"{node_name}\" at {addr}: {e}"));
    let tls = kubelet.connect(addr).await.map_err(|e| unreachable(&e))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });

    let upgrading = req.headers().contains_key(header::UPGRADE);
    let uri = if query.is_empty() { path } else { format!("{path}?{query}") };
    let mut upstream = hyper::Request::builder().method(req.method().clone()).uri(uri);
    let headers = upstream.headers_mut().expect("a fresh request builder");
    headers.insert(header::HOST, HeaderValue::from_str(&addr.to_string()).expect("an address is a valid header"));
    if let Some(ua) = req.headers().get(header::USER_AGENT) {
        headers.insert(header::USER_AGENT, ua.clone());
    }
    if upgrading {
        copy_headers(req.headers(), headers);
    }
    let upstream = upstream.body(Empty::<Bytes>::new()).map_err(|e| StatusError::internal(e.to_string()))?;
    let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));
    let mut resp = match tokio::time::timeout(RESPONSE_TIMEOUT, send.send_request(upstream)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(unreachable(&e)),
        Err(_) => return Err(unreachable(&"no response in time")),
    };
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(StatusError::internal(format!("the agent of node \"{node_name}\" switched protocols unasked")));
        };
        let agent_upgrade = hyper::upgrade::on(&mut resp);
        let mut answer = Response::new(Body::empty());
        *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for (k, v) in resp.headers() {
            answer.headers_mut().append(k, v.clone());
        }
        tokio::spawn(async move {
            if let (Ok(client), Ok(agent)) = tokio::join!(client_upgrade, agent_upgrade) {
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(agent)).await;
            }
        });
        return Ok(answer);
    }
    if !status.is_success() {
        let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(agent_error(status, &body));
    }
    if upgrading {
        return Err(StatusError::bad_request("Upgrade request required"));
    }
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let mut answer = text_response(status, Body::new(resp.into_body()));
    if let Some(ct) = content_type {
        answer.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(answer)
}

fn enc(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in UPGRADE_HEADERS {
        for v in from.get_all(name) {
            to.append(header::HeaderName::from_static(name), v.clone());
        }
    }
}

fn text_response(status: StatusCode, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// A refusal from the agent as a Status: its code, its text.
fn agent_error(status: StatusCode, body: &[u8]) -> StatusError {
    let text = String::from_utf8_lossy(body).trim().to_string();
    // An agent may already answer with a Status.
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if v["kind"] == "Status" {
            if let Some(m) = v["message"].as_str() {
                return StatusError::new(status.as_u16(), v["reason"].as_str().unwrap_or("InternalError"), m);
            }
        }
    }
    let reason = match status.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        503 => "ServiceUnavailable",
        c if c < 500 => "BadRequest",
        _ => "InternalError",
    };
    let message = if text.is_empty() { format!("the agent answered {status}") } else { text };
    StatusError::new(status.as_u16(), reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str], init: &[&str], default: Option<&str>) -> Value {
        let list = |names: &[&str]| names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"containers": list(containers), "initContainers": list(init)}});
        if let Some(d) = default {
            p["metadata"]["annotations"] = json!({DEFAULT_CONTAINER_ANNOTATION: d});
        }
        p
    }

    #[test]
    fn a_pod_with_one_container_needs_no_container_name() {
        assert_eq!(choose_container(&pod(&["only"], &[], None), None).unwrap(), "only");
        assert_eq!(choose_container(&pod(&["a", "b"], &[], Some("b")), None).unwrap(), "b");
        assert_eq!(choose_container(&pod(&["a", "b"], &["init"], None), Some("init")).unwrap(), "init");
    }

    #[test]
    fn an_ambiguous_or_unknown_container_is_a_bad_request() {
        let e = choose_container(&pod(&["a", "b"], &[], None), None).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "a container name must be specified for pod p, choose one of: [a b]"));
        let e = choose_container(&pod(&["a", "b"], &["i"], None), None).unwrap_err();
        assert_eq!(e.message, "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]");
        let e = choose_container(&pod(&["a"], &[], None), Some("zz")).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "container zz is not valid for pod p"));
    }

    #[test]
    fn the_agent_is_reached_at_the_internal_ip_and_kubelet_port() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10999}},
        }});
        assert_eq!(agent_address(&node), Some("10.0.0.5:10999".parse().unwrap()));
        let node = json!({"status": {"addresses": [{"type": "ExternalIP", "address": "::1"}]}});
        assert_eq!(agent_address(&node), Some("[::1]:10250".parse().unwrap()));
        assert_eq!(agent_address(&json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}})), None);
    }

    #[test]
    fn log_options_are_validated_as_upstream_does() {
        let q = |s: &str| query_pairs(Some(s));
        assert_eq!(log_query("p", &q("follow=true&tailLines=5&container=c")).unwrap(), "follow=true&tailLines=5");
        assert_eq!(log_query("p", &q("tailLines=-1")).unwrap_err().message, "PodLogOptions \"p\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0");
        assert_eq!(log_query("p", &q("sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z")).unwrap_err().code, 422);
        assert_eq!(log_query("p", &q("limitBytes=0")).unwrap_err().code, 422);
    }

    #[test]
    fn exec_queries_keep_the_command_words_in_order() {
        let q = query_pairs(Some("command=sh&command=-c&command=echo%20hi&stdin=true&stdout=true&container=c"));
        assert_eq!(session_query(&q, true).unwrap(), "stdin=1&stdout=1&command=sh&command=-c&command=echo+hi");
        assert_eq!(session_query(&query_pairs(Some("command=ls")), true).unwrap_err().code, 400);
    }

    #[test]
    fn agent_refusals_keep_their_code_and_words() {
        let e = agent_error(StatusCode::BAD_REQUEST, b"previous terminated container \"c\" in pod \"p\" not found\n");
        assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
        assert_eq!(e.message, "previous terminated container \"c\" in pod \"p\" not found");
    }
}
