//! The endpoint end to end over real TLS: who may call it, and exec sessions served
//! from a fake runtime's `sh` processes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::*;
use crate::runtime::{
    ContainerConfig, ContainerStatus, ExecOutput, ImageInfo, LocalStream, RegistryAuth, Result as RuntimeResult, RuntimeError,
    SandboxConfig, SandboxStatus,
};

fn pairs(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

#[test]
fn the_exec_query_keeps_every_command_word_in_order() {
    let r = stream_request(&pairs("command=sh&command=-c&command=echo+hi%3B+exit+3&stdin=1&stdout=true&stderr=1"));
    assert_eq!(r.command, ["sh", "-c", "echo hi; exit 3"]);
    assert!(r.stdin && r.stdout && r.stderr && !r.tty);
    let r = stream_request(&pairs("command=sh&stdout=1&stderr=1&tty=1"));
    assert!(r.tty && !r.stderr, "a terminal has no separate stderr");
}

#[test]
fn upgrades_are_told_apart_by_their_header() {
    let mut h = HeaderMap::new();
    assert_eq!(upgrade_of(&h), None);
    h.insert(header::UPGRADE, "WebSocket".parse().unwrap());
    assert_eq!(upgrade_of(&h), Some(Upgrade::WebSocket));
    h.insert(header::UPGRADE, "SPDY/3.1".parse().unwrap());
    assert_eq!(upgrade_of(&h), Some(Upgrade::Spdy));
}

// === a fake runtime whose execs are host processes ===

/// Runs execs as host processes; every other call fails. Its one container is
/// running until `stopped` is set.
struct ShRuntime {
    stopped: AtomicBool,
    /// When set, sessions are the CRI kind: served at this URL.
    remote: Option<String>,
}

fn unsupported<T>() -> RuntimeResult<T> {
    Err(RuntimeError::Failed("not supported by the test runtime".into()))
}

#[async_trait::async_trait]
impl Runtime for ShRuntime {
    fn handler(&self) -> &str {
        if self.remote.is_some() {
            crate::runtime::cri::HANDLER
        } else {
            crate::runtime::process::HANDLER
        }
    }
    async fn version(&self) -> RuntimeResult<String> {
        Ok("test://0".into())
    }
    async fn image_status(&self, _: &str) -> RuntimeResult<Option<ImageInfo>> {
        unsupported()
    }
    async fn pull_image(&self, _: &str, _: Option<&RegistryAuth>) -> RuntimeResult<String> {
        unsupported()
    }
    async fn run_sandbox(&self, _: &SandboxConfig) -> RuntimeResult<String> {
        unsupported()
    }
    async fn stop_sandbox(&self, _: &str) -> RuntimeResult<()> {
        unsupported()
    }
    async fn remove_sandbox(&self, _: &str) -> RuntimeResult<()> {
        unsupported()
    }
    async fn sandbox_status(&self, _: &str) -> RuntimeResult<SandboxStatus> {
        unsupported()
    }
    async fn list_sandboxes(&self) -> RuntimeResult<Vec<SandboxStatus>> {
        unsupported()
    }
    async fn create_container(&self, _: &str, _: &ContainerConfig, _: &SandboxConfig) -> RuntimeResult<String> {
        unsupported()
    }
    async fn start_container(&self, _: &str) -> RuntimeResult<()> {
        unsupported()
    }
    async fn stop_container(&self, _: &str, _: Duration) -> RuntimeResult<()> {
        unsupported()
    }
    async fn remove_container(&self, _: &str) -> RuntimeResult<()> {
        unsupported()
    }
    async fn container_status(&self, id: &str) -> RuntimeResult<ContainerStatus> {
        let state = if self.stopped.load(Ordering::SeqCst) { ContainerState::Exited } else { ContainerState::Running };
        Ok(ContainerStatus {
            id: id.into(),
            sandbox_id: "sandbox".into(),
            name: "c".into(),
            attempt: 0,
            state,
            created_at: None,
            started_at: None,
            finished_at: None,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image: String::new(),
            image_ref: String::new(),
            log_path: PathBuf::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        })
    }
    async fn list_containers(&self, _: Option<&str>) -> RuntimeResult<Vec<ContainerStatus>> {
        unsupported()
    }
    async fn exec_sync(&self, _: &str, _: &[String], _: Duration) -> RuntimeResult<ExecOutput> {
        unsupported()
    }
    async fn exec(&self, _: &str, request: &StreamRequest) -> RuntimeResult<Stream> {
        if let Some(url) = &self.remote {
            return Ok(Stream::Remote(format!("{url}/exec/token")));
        }
        let piped = |on: bool| if on { std::process::Stdio::piped() } else { std::process::Stdio::null() };
        let mut child = tokio::process::Command::new(&request.command[0])
            .args(&request.command[1..])
            .stdin(piped(request.stdin))
            .stdout(piped(request.stdout))
            .stderr(piped(request.stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RuntimeError::Failed(e.to_string()))?;
        let stdin = child.stdin.take().map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>);
        let stdout = child.stdout.take().map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>);
        let stderr = child.stderr.take().map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>);
        let (tx, exit) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(255);
            let _ = tx.send(code);
        });
        Ok(Stream::Local(LocalStream { stdin, stdout, stderr, resize: None, exit }))
    }
    async fn attach(&self, _: &str, _: &StreamRequest) -> RuntimeResult<Stream> {
        unsupported()
    }
    async fn port_forward(&self, _: &str) -> RuntimeResult<Stream> {
        match &self.remote {
            Some(url) => Ok(Stream::Remote(format!("{url}/portforward/token"))),
            None => Ok(Stream::Direct("127.0.0.1".parse().unwrap())),
        }
    }
}

struct OnePod {
    target: PodTarget,
}

impl PodLookup for OnePod {
    fn lookup(&self, namespace: &str, name: &str) -> Option<PodTarget> {
        (namespace == "default" && name == "p").then(|| self.target.clone())
    }
}

// === a cluster CA, an agent, and callers ===

struct Harness {
    addr: SocketAddr,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    runtime: Arc<ShRuntime>,
    logs: tempfile::TempDir,
    _state: tempfile::TempDir,
}

fn ca_params() -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "test-ca");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    params
}

async fn start() -> Harness {
    start_with(None).await
}

async fn start_with(remote: Option<String>) -> Harness {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_pem = ca_params().self_signed(&ca_key).unwrap().pem();
    let ca = rcgen::Issuer::new(ca_params(), ca_key);
    let state = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let runtime = Arc::new(ShRuntime { stopped: AtomicBool::new(false), remote });
    let target = PodTarget {
        uid: "uid".into(),
        runtime: runtime.clone(),
        sandbox_id: Some("sandbox".into()),
        log_dir: logs.path().to_path_buf(),
        containers: BTreeMap::from([("c".to_string(), "c-id".to_string())]),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = StreamConfig { listen: addr, ca_pem, data_dir: state.path().to_path_buf() };
    tokio::spawn(serve_on(listener, config, Arc::new(OnePod { target })));
    Harness { addr, ca, runtime, logs, _state: state }
}

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Harness {
    /// A TLS connection presenting a CA-signed certificate for `cn`, or none.
    async fn connect(&self, cn: Option<&str>) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)));
        let config = match cn {
            None => builder.with_no_client_auth(),
            Some(cn) => {
                let key = rcgen::KeyPair::generate().unwrap();
                let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
                params.distinguished_name.push(rcgen::DnType::CommonName, cn);
                let cert = params.signed_by(&key, &self.ca).unwrap();
                let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
                builder.with_client_auth_cert(vec![cert.der().clone()], key).unwrap()
            }
        };
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap()
    }

    /// `GET path` as `cn`: the status and body.
    async fn get(&self, cn: Option<&str>, path: &str) -> (StatusCode, String) {
        let tls = self.connect(cn).await;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get(path).header(header::HOST, "localhost").body(Empty::<Bytes>::new()).unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Opens an exec WebSocket offering `protocols`.
    async fn exec(&self, query: &str, protocols: &str) -> WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let (ws, negotiated) = self.websocket(&format!("/exec/default/p/c?{query}"), protocols).await.unwrap();
        assert_eq!(negotiated, protocols.split(',').next().unwrap().trim());
        ws
    }

    /// A WebSocket to `path` offering `protocols`, and the protocol chosen.
    async fn websocket(
        &self,
        path: &str,
        protocols: &str,
    ) -> std::result::Result<(WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>, String), tokio_tungstenite::tungstenite::Error> {
        let tls = self.connect(Some("skiff-apiserver")).await;
        let mut req = format!("wss://localhost{path}").into_client_request().unwrap();
        req.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, protocols.parse().unwrap());
        let (ws, resp) = tokio_tungstenite::client_async(req, tls).await?;
        let negotiated = resp.headers().get(header::SEC_WEBSOCKET_PROTOCOL).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        Ok((ws, negotiated))
    }

    /// A raw upgrade of `path` to SPDY/3.1 (as client-go's SPDY executor sends it),
    /// and the upgraded connection.
    async fn spdy(&self, path: &str, protocol: &str) -> hyper::upgrade::Upgraded {
        let tls = self.connect(Some("skiff-apiserver")).await;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn.with_upgrades());
        let req = Request::post(path)
            .header(header::HOST, "localhost")
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "SPDY/3.1")
            .header("X-Stream-Protocol-Version", protocol)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        hyper::upgrade::on(resp).await.unwrap()
    }
}

/// Everything a session sent until it closed: stdout, stderr, and the error channel.
async fn drain<S>(ws: &mut WebSocketStream<S>) -> (String, String, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(Ok(message)) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("the session ended in time") {
        match message {
            Message::Binary(b) if !b.is_empty() => match b[0] {
                1 => out.extend_from_slice(&b[1..]),
                2 => err.extend_from_slice(&b[1..]),
                3 => status.extend_from_slice(&b[1..]),
                _ => {}
            },
            Message::Close(_) => break,
            _ => {}
        }
    }
    let text = |v: Vec<u8>| String::from_utf8(v).unwrap();
    (text(out), text(err), text(status))
}

#[tokio::test]
async fn callers_without_the_api_servers_certificate_are_refused() {
    let h = start().await;
    let (status, body) = h.get(None, "/healthz").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = h.get(Some("someone-else"), "/containerLogs/default/p/c").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(h.get(Some("skiff-apiserver"), "/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_v5_exec_reports_output_and_the_exit_code() {
    let h = start().await;
    let mut ws = h.exec("command=sh&command=-c&command=echo+hi%3B+echo+oops+%3E%262%3B+exit+3&stdout=1&stderr=1", "v5.channel.k8s.io").await;
    let (out, err, status) = drain(&mut ws).await;
    assert_eq!((out.as_str(), err.as_str()), ("hi\n", "oops\n"));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
}

#[tokio::test]
async fn closing_stdin_in_v5_ends_a_command_that_reads_it() {
    let h = start().await;
    let mut ws = h.exec("command=cat&stdin=1&stdout=1&stderr=1", "v5.channel.k8s.io, v4.channel.k8s.io").await;
    ws.send(Message::Binary(Bytes::from_static(b"\x00hello\n"))).await.unwrap();
    ws.send(Message::Binary(Bytes::from_static(&[255, 0]))).await.unwrap();
    let (out, _, status) = drain(&mut ws).await;
    assert_eq!(out, "hello\n");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&status).unwrap()["status"], "Success");
}

#[tokio::test]
async fn v4_sessions_get_a_status_and_older_ones_plain_text() {
    let h = start().await;
    let mut ws = h.exec("command=true&stdout=1", "v4.channel.k8s.io").await;
    let (_, _, status) = drain(&mut ws).await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&status).unwrap()["status"], "Success");
    let mut ws = h.exec("command=false&stdout=1", "v2.channel.k8s.io").await;
    let (_, _, status) = drain(&mut ws).await;
    assert!(status.contains("exit code 1"), "{status}");
}

#[tokio::test]
async fn spdy_is_refused_before_a_local_command_starts() {
    let h = start().await;
    let tls = h.connect(Some("skiff-apiserver")).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::post("/exec/default/p/c?command=touch&command=/nonexistent/marker&stdout=1")
        .header(header::HOST, "localhost")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn logs_are_served_and_followed_until_the_container_stops() {
    let h = start().await;
    let dir = h.logs.path().join("c");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0.log"), "2024-05-01T10:00:00Z stdout F first\n2024-05-01T10:00:01Z stderr F second\n").unwrap();
    assert_eq!(h.get(Some("skiff-apiserver"), "/containerLogs/default/p/c?tailLines=1").await, (StatusCode::OK, "second\n".into()));
    let (status, body) = h.get(Some("skiff-apiserver"), "/containerLogs/default/p/c?previous=true").await;
    assert_eq!((status, body.trim()), (StatusCode::BAD_REQUEST, "previous terminated container \"c\" in pod \"p\" not found"));
    assert_eq!(h.get(Some("skiff-apiserver"), "/containerLogs/default/nope/c").await.0, StatusCode::NOT_FOUND);

    let runtime = h.runtime.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        runtime.stopped.store(true, Ordering::SeqCst);
    });
    let followed = tokio::time::timeout(Duration::from_secs(10), h.get(Some("skiff-apiserver"), "/containerLogs/default/p/c?follow=true&timestamps=true"))
        .await
        .expect("follow ends once the container stops");
    assert_eq!(followed.1, "2024-05-01T10:00:00Z first\n2024-05-01T10:00:01Z second\n");
}

#[tokio::test]
async fn port_forward_to_a_host_network_pod_is_not_implemented() {
    let h = start().await;
    let tls = h.connect(Some("skiff-apiserver")).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::post("/portForward/default/p")
        .header(header::HOST, "localhost")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), StatusCode::NOT_IMPLEMENTED);
}

// === sessions of a CRI runtime, relayed to its streaming server ===

/// What the fake streaming server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    upgrade: String,
    protocols: String,
    stream_protocol: String,
}

/// A stand-in for a CRI streaming server on loopback: it switches to whatever is
/// asked (picking the first WebSocket subprotocol offered) and echoes, WebSocket
/// messages as messages and SPDY bytes as bytes.
async fn fake_streaming_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let tx = tx.clone();
                async move {
                    let h = |n: &str| req.headers().get_all(n).iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>().join(", ");
                    let seen = Seen {
                        method: req.method().clone(),
                        path: req.uri().path().to_string(),
                        upgrade: h("upgrade"),
                        protocols: h("sec-websocket-protocol"),
                        stream_protocol: h("x-stream-protocol-version"),
                    };
                    let _ = tx.send(seen.clone());
                    let websocket = seen.upgrade.eq_ignore_ascii_case("websocket");
                    let mut resp = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS).header(header::CONNECTION, "Upgrade");
                    if websocket {
                        resp = resp.header(header::UPGRADE, "websocket").header(header::SEC_WEBSOCKET_ACCEPT, websocket_accept(req.headers()).unwrap());
                        if let Some(first) = seen.protocols.split(',').next().filter(|p| !p.is_empty()) {
                            resp = resp.header(header::SEC_WEBSOCKET_PROTOCOL, first.trim());
                        }
                    } else {
                        resp = resp.header(header::UPGRADE, "SPDY/3.1").header("X-Stream-Protocol-Version", seen.stream_protocol.split(',').next().unwrap().trim());
                    }
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let io = TokioIo::new(upgrade.await.unwrap());
                        if websocket {
                            let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                            while let Some(Ok(m)) = ws.next().await {
                                if m.is_binary() && ws.send(m).await.is_err() {
                                    break;
                                }
                            }
                        } else {
                            let (mut r, mut w) = tokio::io::split(io);
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                        }
                    });
                    Ok::<_, std::convert::Infallible>(resp.body(Empty::<Bytes>::new()).unwrap())
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).with_upgrades());
        }
    });
    (url, rx)
}

#[tokio::test]
async fn spdy_sessions_are_relayed_to_the_runtime_byte_for_byte() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (url, mut seen) = fake_streaming_server().await;
    let h = start_with(Some(url)).await;
    let mut io = TokioIo::new(h.spdy("/exec/default/p/c?command=sh&stdin=1&stdout=1", "v4.channel.k8s.io").await);
    let seen = seen.recv().await.unwrap();
    assert_eq!((seen.method, seen.path.as_str(), seen.upgrade.as_str()), (Method::POST, "/exec/token", "SPDY/3.1"));
    assert_eq!(seen.stream_protocol, "v4.channel.k8s.io");
    io.write_all(b"\x80\x03\x00\x01 a spdy frame").await.unwrap();
    let mut buf = [0u8; 17];
    io.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"\x80\x03\x00\x01 a spdy frame");
}

#[tokio::test]
async fn websocket_clients_reach_the_runtime_below_v5_or_are_sent_back_to_spdy() {
    let (url, mut seen) = fake_streaming_server().await;
    let h = start_with(Some(url)).await;
    let (mut ws, negotiated) = h.websocket("/exec/default/p/c?command=sh&stdout=1", "v5.channel.k8s.io, v4.channel.k8s.io").await.unwrap();
    assert_eq!(negotiated, "v4.channel.k8s.io");
    assert_eq!(seen.recv().await.unwrap().protocols, "v4.channel.k8s.io", "the runtime is not offered v5");
    ws.send(Message::Binary(Bytes::from_static(b"\x00echo"))).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::Binary(Bytes::from_static(b"\x00echo")));

    // kubectl offers v5 alone; a 400 makes it retry over SPDY.
    match h.websocket("/exec/default/p/c?command=sh&stdout=1", "v5.channel.k8s.io").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), StatusCode::BAD_REQUEST),
        other => panic!("expected a refused handshake, got {:?}", other.map(|(_, p)| p)),
    }
}

#[tokio::test]
async fn port_forward_tunnels_are_unwrapped_into_a_spdy_upgrade() {
    let (url, mut seen) = fake_streaming_server().await;
    let h = start_with(Some(url)).await;
    let (mut ws, negotiated) = h.websocket("/portForward/default/p", "SPDY/3.1+portforward.k8s.io").await.unwrap();
    assert_eq!(negotiated, "SPDY/3.1+portforward.k8s.io");
    let seen = seen.recv().await.unwrap();
    assert_eq!((seen.method, seen.path.as_str(), seen.upgrade.as_str()), (Method::POST, "/portforward/token", "SPDY/3.1"));
    assert_eq!(seen.stream_protocol, "portforward.k8s.io");
    ws.send(Message::Binary(Bytes::from_static(b"syn_stream"))).await.unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < 10 {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => echoed.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(echoed, b"syn_stream");

    // A plain SPDY client is relayed as it is.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut io = TokioIo::new(h.spdy("/portForward/default/p", "portforward.k8s.io").await);
    io.write_all(b"data").await.unwrap();
    let mut buf = [0u8; 4];
    io.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"data");
}
