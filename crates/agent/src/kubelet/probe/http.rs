//! HTTP GET for probes and lifecycle hooks, as the kubelet's `pkg/probe/http`
//! sends it: one connection per request (keep-alives off), TLS without
//! certificate verification, `User-Agent: kube-probe/1.33` and `Accept: */*`
//! unless the pod sets them, redirects followed only to the same host (a redirect
//! elsewhere ends the probe as a success with a warning), at most 10 KiB of body
//! read, and Go's `net/http` wording in failure messages because events show it.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::handlers::{dial, errno_text, join_host_port, pod_host, resolve_port, AbortOnDrop, Outcome};

/// How much of a response body is read (for the redirect warning), as upstream.
const MAX_BODY: usize = 10 * 1024;
/// Go's http.Client gives up after this many requests in one redirect chain.
const MAX_REQUESTS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// An absolute http(s) URL, split the way the client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    scheme: Scheme,
    /// Without brackets for IPv6.
    host: String,
    port: u16,
    /// Path and query, escaped, starting with `/`.
    path: String,
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme.as_str(), join_host_port(&self.host, self.port), self.path)
    }
}

impl Url {
    fn authority(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    /// Resolves a Location header against this URL (absolute, scheme-relative,
    /// absolute-path or relative reference).
    fn join(&self, location: &str) -> Result<Url, String> {
        let location = location.split('#').next().unwrap_or_default();
        if let Some((scheme, rest)) = split_scheme(location) {
            let scheme = match scheme.to_ascii_lowercase().as_str() {
                "http" => Scheme::Http,
                "https" => Scheme::Https,
                other => return Err(format!("unsupported protocol scheme {other:?}")),
            };
            return parse_authority_and_path(scheme, rest);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return parse_authority_and_path(self.scheme, rest);
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else if location.starts_with('?') {
            let base = self.path.split('?').next().unwrap_or("/");
            format!("{base}{location}")
        } else if location.is_empty() {
            self.path.clone()
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Ok(Url { path: escape_path(&path), ..self.clone() })
    }
}

/// `("https", "host/path")` for an absolute URL (one with a scheme).
fn split_scheme(location: &str) -> Option<(&str, &str)> {
    location.split_once("://").filter(|(s, _)| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
}

fn parse_authority_and_path(scheme: Scheme, rest: &str) -> Result<Url, String> {
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, hostport)| hostport);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| format!("parse {authority:?}: missing ']' in host"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => scheme.default_port(),
        Some(p) => p.parse().map_err(|_| format!("parse {authority:?}: invalid port {p:?} after host"))?,
    };
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok(Url { scheme, host: host.to_string(), port, path: escape_path(&path) })
}

/// Percent-encodes what may not appear raw in a request target (spaces,
/// controls, non-ASCII...), as Go's URL.String() does for the path.
fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'!'..=b'~' if !b"\"<>\\^`{|}".contains(&byte) => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A probe's or hook's GET, ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    url: Url,
    /// Header lines in order, without Host.
    headers: Vec<(String, String)>,
    /// The pod's own Host header, if it set one.
    host_header: Option<String>,
}

impl Request {
    /// The request for an `httpGet` action: scheme (default HTTP), host (default
    /// the pod's IP), port (number or the container's named port), path, and the
    /// pod's headers plus the kubelet's User-Agent (`kube-<purpose>/1.33`) and
    /// Accept defaults.
    pub(crate) fn for_action(get: &HTTPGetAction, container: &Container, pod_ip: Option<IpAddr>, purpose: &str) -> Result<Request, String> {
        let scheme = match get.scheme.as_deref().unwrap_or("").to_ascii_lowercase().as_str() {
            "" | "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("unsupported protocol scheme {other:?}")),
        };
        let host = match get.host.as_deref() {
            Some(host) if !host.is_empty() => host.trim_start_matches('[').trim_end_matches(']').to_string(),
            _ => pod_host(pod_ip).to_string(),
        };
        let port = resolve_port(&get.port, container)?;
        let path = get.path.as_deref().unwrap_or("");
        let path = path.split('#').next().unwrap_or_default();
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        let pairs = get.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
        Ok(Request::new(Url { scheme, host, port, path: escape_path(&path) }, pairs, purpose))
    }

    fn new(url: Url, pairs: Vec<(String, String)>, purpose: &str) -> Request {
        let named = |pairs: &[(String, String)], name: &str| pairs.iter().position(|(n, _)| n.eq_ignore_ascii_case(name));
        let mut headers = pairs;
        let host_header = named(&headers, "host").map(|i| headers[i].1.clone()).filter(|h| !h.is_empty());
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("host"));
        if named(&headers, "user-agent").is_none() {
            headers.push(("User-Agent".into(), user_agent(purpose)));
        }
        match named(&headers, "accept") {
            None => headers.push(("Accept".into(), "*/*".into())),
            // An Accept set to nothing means "send none".
            Some(i) if headers[i].1.is_empty() => headers.retain(|(n, _)| !n.eq_ignore_ascii_case("accept")),
            Some(_) => {}
        }
        Request { url, headers, host_header }
    }

    pub(crate) fn url(&self) -> String {
        self.url.to_string()
    }
}

/// The kubelet's User-Agent for a purpose ("probe", "lifecycle"): `kube-probe/1.33`.
pub(crate) fn user_agent(purpose: &str) -> String {
    format!("kube-{purpose}/{}", kube_minor_version())
}

/// "1.33" from the Kubernetes version Skiff serves, for the User-Agent.
fn kube_minor_version() -> String {
    let version = skiff_api::KUBERNETES_VERSION.trim_start_matches('v');
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        _ => version.to_string(),
    }
}

/// The final response of a GET (after same-host redirects).
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    /// At most 10 KiB of it.
    pub body: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// No response: connecting, TLS, sending, redirects, or the timeout.
    Request,
    /// An HTTPS request answered in plain HTTP (hooks retry those over HTTP).
    PlainHttp,
    /// The response came but its body could not be read.
    Body,
}

/// Why a GET failed, in Go's `url.Error` form: `Get "<url>": <reason>`.
#[derive(Debug, Clone)]
pub(crate) struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    fn new(kind: ErrorKind, url: &Url, reason: impl fmt::Display) -> Error {
        Error { kind, message: format!("Get \"{url}\": {reason}") }
    }
}

/// A probe: 200 <= status < 400 passes (3xx, i.e. a redirect not followed, with a
/// warning), anything else fails with the status code only (never the body,
/// which may hold secrets; kubernetes#99425).
pub(crate) async fn probe(request: &Request, timeout: Duration) -> Outcome {
    match get(request, Some(timeout)).await {
        Ok(response) if (200..400).contains(&response.status) => {
            if response.status >= 300 {
                Outcome::Warning(format!("Probe terminated redirects, Response body: {}", response.body))
            } else {
                Outcome::Success(response.body)
            }
        }
        Ok(response) => Outcome::Failure(format!("HTTP probe failed with statuscode: {}", response.status)),
        // Upstream reports a body that cannot be read as a prober error.
        Err(err) if err.kind == ErrorKind::Body => Outcome::Error(err.message),
        Err(err) => Outcome::Failure(err.message),
    }
}

/// A lifecycle hook: any response is fine (the status is not checked, as
/// upstream); an HTTPS hook answered in plain HTTP is retried over HTTP without
/// its Authorization header.
pub(crate) async fn hook(request: &Request) -> Result<(), String> {
    match get(request, None).await {
        Ok(_) => Ok(()),
        Err(err) if err.kind == ErrorKind::Body => Ok(()),
        Err(err) if err.kind == ErrorKind::PlainHttp => {
            tracing::info!(host = %request.url.authority(), "HTTPS request to lifecycle hook got an HTTP response, retrying with HTTP");
            let mut plain = request.clone();
            plain.url.scheme = Scheme::Http;
            plain.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
            match get(&plain, None).await {
                Ok(_) => Ok(()),
                Err(retry) if retry.kind == ErrorKind::Body => Ok(()),
                Err(_) => Err(err.message),
            }
        }
        Err(err) => Err(err.message),
    }
}

/// Sends the GET and follows redirects to the same host name, all within
/// `timeout` (connecting, redirects and reading the body, like Go's
/// `http.Client.Timeout`).
pub(crate) async fn get(request: &Request, timeout: Option<Duration>) -> Result<Response, Error> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut url = request.url.clone();
    let mut host_header = request.host_header.clone();
    let mut requests = 0;
    loop {
        requests += 1;
        let (response, connection) = send(&url, host_header.as_deref(), &request.headers, deadline).await?;
        let status = response.status().as_u16();
        let location = response.headers().get(http::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
        let next = match (status, location) {
            (301 | 302 | 303 | 307 | 308, Some(location)) if !location.is_empty() => {
                let next = url.join(&location).map_err(|err| Error::new(ErrorKind::Request, &url, format!("failed to parse Location header {location:?}: {err}")))?;
                Some((next, split_scheme(&location).is_some()))
            }
            _ => None,
        };
        let Some((next, absolute)) = next.filter(|(next, _)| next.host == request.url.host) else {
            // No redirect, or one to another host, which is not followed: this
            // response is the answer (a redirect is a warning for probes).
            let body = read_body(response, deadline).await.map_err(|reason| Error::new(ErrorKind::Body, &url, reason));
            drop(connection);
            return Ok(Response { status, body: body? });
        };
        if requests >= MAX_REQUESTS {
            return Err(Error::new(ErrorKind::Request, &next, format!("stopped after {MAX_REQUESTS} redirects")));
        }
        // A pod-set Host header survives only a relative redirect, as in Go.
        if absolute {
            host_header = None;
        }
        drop((response, connection));
        url = next;
    }
}

/// Runs `future` until the deadline, if there is one.
async fn until<T>(deadline: Option<Instant>, future: impl std::future::Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, future).await.ok(),
        None => Some(future.await),
    }
}

const AWAITING_HEADERS: &str = "(Client.Timeout exceeded while awaiting headers)";

/// One request on a fresh connection.
async fn send(url: &Url, host_header: Option<&str>, headers: &[(String, String)], deadline: Option<Instant>) -> Result<(hyper::Response<hyper::body::Incoming>, AbortOnDrop), Error> {
    let request_error = |reason: String| Error::new(ErrorKind::Request, url, reason);
    let stream = match until(deadline, dial(&url.host, url.port)).await {
        Some(Ok(stream)) => stream,
        Some(Err(reason)) => return Err(request_error(reason)),
        None => return Err(request_error(format!("dial tcp {}: i/o timeout {AWAITING_HEADERS}", url.authority()))),
    };
    let host = host_header.map_or_else(|| url.authority(), str::to_string);
    let mut builder = http::Request::get(url.path.as_str()).header(http::header::HOST, host);
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    // Keep-alives are off upstream: every probe is a connection of its own.
    let request = builder
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|err| request_error(format!("net/http: invalid header: {err}")))?;

    match url.scheme {
        Scheme::Http => exchange(TokioIo::new(stream), request, url, deadline).await,
        Scheme::Https => {
            let name = rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|err| request_error(format!("tls: {err}")))?;
            let connector = tokio_rustls::TlsConnector::from(insecure_tls());
            let tls = match until(deadline, connector.connect(name, stream)).await {
                Some(Ok(tls)) => tls,
                Some(Err(err)) => {
                    let plain = err
                        .get_ref()
                        .and_then(|e| e.downcast_ref::<rustls::Error>())
                        .is_some_and(|e| matches!(e, rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)));
                    if plain {
                        return Err(Error::new(ErrorKind::PlainHttp, url, "http: server gave HTTP response to HTTPS client"));
                    }
                    return Err(request_error(tls_error_text(&err)));
                }
                None => return Err(request_error(format!("context deadline exceeded {AWAITING_HEADERS}"))),
            };
            exchange(TokioIo::new(tls), request, url, deadline).await
        }
    }
}

fn tls_error_text(err: &std::io::Error) -> String {
    match err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(tls) => format!("tls: {tls}"),
        None if err.kind() == std::io::ErrorKind::UnexpectedEof => "EOF".into(),
        None => errno_text(err),
    }
}

/// HTTP/1.1 over an established connection; the connection task runs until the
/// returned guard is dropped (keep it while reading the body).
async fn exchange<IO>(io: TokioIo<IO>, request: http::Request<Empty<Bytes>>, url: &Url, deadline: Option<Instant>) -> Result<(hyper::Response<hyper::body::Incoming>, AbortOnDrop), Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request_error = |reason: String| Error::new(ErrorKind::Request, url, reason);
    let handshake = hyper::client::conn::http1::Builder::new().title_case_headers(true).handshake::<_, Empty<Bytes>>(io);
    let (mut sender, connection) = match until(deadline, handshake).await {
        Some(Ok(pair)) => pair,
        Some(Err(err)) => return Err(request_error(hyper_error_text(&err))),
        None => return Err(request_error(format!("context deadline exceeded {AWAITING_HEADERS}"))),
    };
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let guard = AbortOnDrop(driver.abort_handle());
    let response = match until(deadline, sender.send_request(request)).await {
        Some(Ok(response)) => response,
        Some(Err(err)) => return Err(request_error(hyper_error_text(&err))),
        None => return Err(request_error(format!("context deadline exceeded {AWAITING_HEADERS}"))),
    };
    Ok((response, guard))
}

/// hyper's error in Go's words where Go has them.
fn hyper_error_text(err: &hyper::Error) -> String {
    if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        return "EOF".into();
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        match cause.downcast_ref::<std::io::Error>() {
            Some(io) => text.push_str(&format!(": {}", errno_text(io))),
            None => text.push_str(&format!(": {cause}")),
        }
        source = cause.source();
    }
    text
}

/// Reads up to 10 KiB of the body; a longer body is cut there, not an error.
async fn read_body(response: hyper::Response<hyper::body::Incoming>, deadline: Option<Instant>) -> Result<String, String> {
    let mut body = response.into_body();
    let mut data = Vec::new();
    while data.len() < MAX_BODY {
        match until(deadline, body.frame()).await {
            None => return Err("context deadline exceeded (Client.Timeout or context cancellation while reading body)".into()),
            Some(None) => break,
            Some(Some(Ok(frame))) => {
                if let Ok(chunk) = frame.into_data() {
                    data.extend_from_slice(&chunk);
                }
            }
            Some(Some(Err(err))) => return Err(hyper_error_text(&err)),
        }
    }
    data.truncate(MAX_BODY);
    Ok(String::from_utf8_lossy(&data).into_owned())
}

// === TLS without verification ===

/// The kubelet probes with `InsecureSkipVerify`: pods serve self-signed
/// certificates and the probe only asks whether the server answers. The
/// handshake signature is still checked against the presented certificate.
fn insecure_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SkipVerification(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

#[derive(Debug)]
struct SkipVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipVerification {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use k8s_openapi::api::core::v1::HTTPHeader;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The request heads a test server received, lowercased.
    type Seen = Arc<Mutex<Vec<String>>>;

    /// An HTTP/1.1 server on 127.0.0.1 answering by path:
    /// `/ok` 200, `/fail` 500, `/same` 302 to `/ok`, `/other` 302 to another
    /// host, `/loop` 302 to itself, `/slow` never, `/big` 200 with 20 000 bytes.
    async fn server() -> (u16, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Seen = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, record.clone()));
            }
        });
        (port, seen)
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, seen: Seen) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            // A TLS ClientHello: answer as plain HTTP servers do.
            if head.first() == Some(&0x16) {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n").await;
                return;
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        seen.lock().unwrap().push(head);
        let (status, headers, body) = match path.as_str() {
            "/ok" => ("200 OK", String::new(), "fine".to_string()),
            "/fail" => ("500 Internal Server Error", String::new(), "secret details".to_string()),
            "/same" => ("302 Found", "Location: /ok\r\n".to_string(), String::new()),
            "/other" => ("302 Found", "Location: http://elsewhere.example:8080/x\r\n".to_string(), "moved".to_string()),
            "/loop" => ("302 Found", "Location: /loop\r\n".to_string(), String::new()),
            "/big" => ("200 OK", String::new(), "x".repeat(20_000)),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                return;
            }
            _ => ("404 Not Found", String::new(), String::new()),
        };
        let response = format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn action(port: u16, path: &str) -> HTTPGetAction {
        HTTPGetAction { path: Some(path.into()), port: IntOrString::Int(i32::from(port)), ..Default::default() }
    }

    async fn probe_path(port: u16, path: &str) -> Outcome {
        let request = Request::for_action(&action(port, path), &Container::default(), None, "probe").unwrap();
        probe(&request, Duration::from_secs(2)).await
    }

    #[tokio::test]
    async fn a_200_passes_and_a_500_fails_with_the_status_code_only() {
        let (port, _) = server().await;
        assert_eq!(probe_path(port, "/ok").await, Outcome::Success("fine".into()));
        assert_eq!(probe_path(port, "/fail").await, Outcome::Failure("HTTP probe failed with statuscode: 500".into()));
    }

    #[tokio::test]
    async fn requests_carry_the_kubelet_headers_and_the_pods_own() {
        let (port, seen) = server().await;
        let mut get = action(port, "ok");
        get.http_headers = Some(vec![HTTPHeader { name: "X-Custom".into(), value: "yes".into() }]);
        let request = Request::for_action(&get, &Container::default(), None, "probe").unwrap();
        assert!(matches!(probe(&request, Duration::from_secs(2)).await, Outcome::Success(_)));
        let head = seen.lock().unwrap()[0].clone();
        assert!(head.starts_with("GET /ok HTTP/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("Host: 127.0.0.1:{port}\r\n")), "{head}");
        assert!(head.contains("User-Agent: kube-probe/1.33\r\n"), "{head}");
        assert!(head.contains("Accept: */*\r\n"), "{head}");
        assert!(head.contains("X-Custom: yes\r\n"), "{head}");
    }

    #[tokio::test]
    async fn pod_headers_replace_the_defaults_and_an_empty_accept_removes_it() {
        let (port, seen) = server().await;
        let mut get = action(port, "/ok");
        get.http_headers = Some(vec![
            HTTPHeader { name: "user-agent".into(), value: "mine".into() },
            HTTPHeader { name: "Accept".into(), value: String::new() },
            HTTPHeader { name: "Host".into(), value: "app.example".into() },
        ]);
        let request = Request::for_action(&get, &Container::default(), None, "probe").unwrap();
        assert!(matches!(probe(&request, Duration::from_secs(2)).await, Outcome::Success(_)));
        let head = seen.lock().unwrap()[0].to_ascii_lowercase();
        assert!(head.contains("user-agent: mine\r\n"), "{head}");
        assert!(!head.contains("accept:"), "{head}");
        assert!(head.contains("host: app.example\r\n"), "{head}");
        assert_eq!(head.matches("host:").count(), 1, "{head}");
    }

    #[tokio::test]
    async fn redirects_to_the_same_host_are_followed() {
        let (port, seen) = server().await;
        assert_eq!(probe_path(port, "/same").await, Outcome::Success("fine".into()));
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_passes_with_a_warning() {
        let (port, seen) = server().await;
        assert_eq!(probe_path(port, "/other").await, Outcome::Warning("Probe terminated redirects, Response body: moved".into()));
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn endless_redirects_stop_after_ten_requests() {
        let (port, seen) = server().await;
        assert_eq!(probe_path(port, "/loop").await, Outcome::Failure(format!("Get \"http://127.0.0.1:{port}/loop\": stopped after 10 redirects")));
        assert_eq!(seen.lock().unwrap().len(), 10);
    }

    #[tokio::test]
    async fn a_closed_port_fails_with_gos_dial_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert_eq!(
            probe_path(port, "/healthz").await,
            Outcome::Failure(format!("Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"))
        );
    }

    #[tokio::test]
    async fn a_server_slower_than_the_timeout_fails() {
        let (port, _) = server().await;
        let request = Request::for_action(&action(port, "/slow"), &Container::default(), None, "probe").unwrap();
        assert_eq!(
            probe(&request, Duration::from_millis(200)).await,
            Outcome::Failure(format!("Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))
        );
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_ten_kibibytes() {
        let (port, _) = server().await;
        match probe_path(port, "/big").await {
            Outcome::Success(body) => assert_eq!(body.len(), MAX_BODY),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn https_probes_skip_certificate_verification() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rcgen::generate_simple_self_signed(vec!["pod.invalid".to_string()]).unwrap();
        let cert = key.cert.der().clone();
        let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], private)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Seen = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if let Ok(tls) = acceptor.accept(stream).await {
                    tokio::spawn(serve(tls, record.clone()));
                }
            }
        });
        let get = HTTPGetAction { scheme: Some("HTTPS".into()), ..action(port, "/ok") };
        let request = Request::for_action(&get, &Container::default(), None, "probe").unwrap();
        assert_eq!(probe(&request, Duration::from_secs(2)).await, Outcome::Success("fine".into()));
    }

    #[tokio::test]
    async fn an_https_hook_answered_in_plain_http_is_retried_over_http() {
        let (port, seen) = server().await;
        let get = HTTPGetAction { scheme: Some("HTTPS".into()), ..action(port, "/ok") };
        let probe_request = Request::for_action(&get, &Container::default(), None, "probe").unwrap();
        assert_eq!(
            probe(&probe_request, Duration::from_secs(2)).await,
            Outcome::Failure(format!("Get \"https://127.0.0.1:{port}/ok\": http: server gave HTTP response to HTTPS client"))
        );
        let hook_request = Request::for_action(&get, &Container::default(), None, "lifecycle").unwrap();
        assert_eq!(hook(&hook_request).await, Ok(()));
        assert!(seen.lock().unwrap().last().unwrap().contains("User-Agent: kube-lifecycle/1.33"));
    }

    #[test]
    fn locations_resolve_against_the_current_url() {
        let base = Url { scheme: Scheme::Http, host: "10.0.0.1".into(), port: 8080, path: "/a/b?q=1".into() };
        assert_eq!(base.join("/c").unwrap().to_string(), "http://10.0.0.1:8080/c");
        assert_eq!(base.join("c d").unwrap().to_string(), "http://10.0.0.1:8080/a/c%20d");
        assert_eq!(base.join("?x=2").unwrap().to_string(), "http://10.0.0.1:8080/a/b?x=2");
        assert_eq!(base.join("https://Other:9443").unwrap().to_string(), "https://Other:9443/");
        assert_eq!(base.join("//10.0.0.1/z#frag").unwrap().to_string(), "http://10.0.0.1:80/z");
        assert_eq!(base.join("http://[::1]:81/v6").unwrap().host, "::1");
        assert!(base.join("ftp://10.0.0.1/").is_err());
    }
}
