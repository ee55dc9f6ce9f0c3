//! gRPC probes: one unary call of the gRPC health checking protocol
//! (`grpc.health.v1.Health/Check`) over plaintext HTTP/2, passing only on
//! `SERVING`, with the messages of the kubelet's `pkg/probe/grpc`.
//!
//! The two messages involved have one field each, so they are encoded by hand
//! rather than pulling in generated code: `HealthCheckRequest { string service = 1; }`
//! and `HealthCheckResponse { ServingStatus status = 1; }`.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

use super::handlers::{dial, go_duration, join_host_port, AbortOnDrop, Outcome};

const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// gRPC status codes by number, as grpc-go names them in error strings.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const DEADLINE_EXCEEDED: u32 = 4;
const UNIMPLEMENTED: u32 = 12;
const INTERNAL: u32 = 13;
const UNAVAILABLE: u32 = 14;
const UNKNOWN: u32 = 2;

/// A non-OK gRPC status.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Status {
    code: u32,
    message: String,
}

impl Status {
    fn new(code: u32, message: impl Into<String>) -> Status {
        Status { code, message: message.into() }
    }

    fn code_name(&self) -> String {
        CODE_NAMES.get(self.code as usize).map_or_else(|| format!("Code({})", self.code), |name| name.to_string())
    }
}

/// Checks `service` ("" for the whole server) at `host:port` within `timeout`,
/// which covers connecting (retried until then, as grpc-go's blocking dial
/// does) and the call.
pub(crate) async fn probe(host: IpAddr, port: u16, service: &str, timeout: Duration) -> Outcome {
    let addr = join_host_port(&host.to_string(), port);
    let deadline = Instant::now() + timeout;
    let Some((mut sender, _connection)) = connect(&host.to_string(), port, deadline).await else {
        return Outcome::Failure(format!("timeout: failed to connect service {addr:?} within {}: context deadline exceeded", go_duration(timeout)));
    };
    let call = check(&mut sender, &addr, service, deadline);
    match tokio::time::timeout_at(deadline, call).await {
        Err(_) => Outcome::Failure(format!("timeout: health rpc did not complete within {}", go_duration(timeout))),
        Ok(Err(status)) if status.code == UNIMPLEMENTED => {
            Outcome::Failure(format!("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}", status.message))
        }
        Ok(Err(status)) if status.code == DEADLINE_EXCEEDED => Outcome::Failure(format!("timeout: health rpc did not complete within {}", go_duration(timeout))),
        Ok(Err(status)) => Outcome::Failure(format!("error: health rpc probe failed: rpc error: code = {} desc = {}", status.code_name(), status.message)),
        Ok(Ok(SERVING)) => Outcome::Success("service healthy".into()),
        Ok(Ok(other)) => Outcome::Failure(format!("service unhealthy (responded with {:?})", serving_status_name(other))),
    }
}

fn serving_status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        other => other.to_string(),
    }
}

/// An HTTP/2 connection, retried with back-off until the deadline.
async fn connect(host: &str, port: u16, deadline: Instant) -> Option<(hyper::client::conn::http2::SendRequest<Full<Bytes>>, AbortOnDrop)> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let attempt = async {
            let stream = dial(host, port).await.ok()?;
            let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(stream)).await.ok()?;
            let task = tokio::spawn(async move {
                let _ = connection.await;
            });
            Some((sender, AbortOnDrop(task.abort_handle())))
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Some(pair)) => return Some(pair),
            Ok(None) => {}
            Err(_) => return None,
        }
        let wake = Instant::now() + backoff;
        if wake >= deadline {
            tokio::time::sleep_until(deadline).await;
            return None;
        }
        tokio::time::sleep_until(wake).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// The unary call; Ok is the response's serving status.
async fn check(sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>, addr: &str, service: &str, deadline: Instant) -> Result<u64, Status> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let request = http::Request::post(format!("http://{addr}{CHECK_PATH}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, super::http::user_agent("probe"))
        .header("grpc-timeout", format!("{}m", remaining.as_millis().max(1)))
        .body(Full::new(frame(&encode_request(service))))
        .map_err(|err| Status::new(INTERNAL, err.to_string()))?;
    sender.ready().await.map_err(|err| Status::new(UNAVAILABLE, err.to_string()))?;
    let response = sender.send_request(request).await.map_err(|err| Status::new(UNAVAILABLE, err.to_string()))?;
    let (parts, body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        let code = match parts.status.as_u16() {
            400 => INTERNAL,
            401 => 16,
            403 => 7,
            404 => UNIMPLEMENTED,
            429 | 502 | 503 | 504 => UNAVAILABLE,
            _ => UNKNOWN,
        };
        let reason = parts.status.canonical_reason().unwrap_or("");
        return Err(Status::new(code, format!("unexpected HTTP status code received from server: {} ({reason})", parts.status.as_u16())));
    }
    // A "trailers-only" answer carries its status in the headers.
    if let Some(status) = grpc_status(&parts.headers) {
        status?;
    }
    let collected = body.collect().await.map_err(|err| Status::new(UNAVAILABLE, err.to_string()))?;
    let status = collected.trailers().and_then(grpc_status);
    match status {
        Some(Err(status)) => return Err(status),
        Some(Ok(())) => {}
        None => return Err(Status::new(INTERNAL, "server closed the stream without sending trailers")),
    }
    let data = collected.to_bytes();
    let message = unframe(&data)?;
    Ok(decode_status(message))
}

/// `grpc-status` (and `grpc-message`) of headers or trailers, if present.
fn grpc_status(headers: &http::HeaderMap) -> Option<Result<(), Status>> {
    let code = headers.get("grpc-status")?.to_str().ok()?.trim().parse::<u32>().ok()?;
    if code == 0 {
        return Some(Ok(()));
    }
    let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).map(percent_decode).unwrap_or_default();
    Some(Err(Status::new(code, message)))
}

/// grpc-message is percent-encoded UTF-8.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(byte) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `HealthCheckRequest { service }`: field 1, length-delimited; empty when the
/// service is "" (proto3 leaves defaults out).
fn encode_request(service: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !service.is_empty() {
        out.push(0x0a);
        put_varint(&mut out, service.len() as u64);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

/// gRPC's length-prefixed message framing (uncompressed).
fn frame(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

fn unframe(data: &[u8]) -> Result<&[u8], Status> {
    if data.len() < 5 {
        return Err(Status::new(INTERNAL, "server sent no response message"));
    }
    if data[0] != 0 {
        return Err(Status::new(INTERNAL, "grpc: compressed response without a negotiated encoding"));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    data.get(5..5 + len).ok_or_else(|| Status::new(INTERNAL, "grpc: truncated response message"))
}

/// `HealthCheckResponse.status` (0, UNKNOWN, when absent); other fields skipped.
fn decode_status(mut message: &[u8]) -> u64 {
    let mut status = 0;
    while let Some(key) = take_varint(&mut message) {
        match (key >> 3, key & 7) {
            (1, 0) => match take_varint(&mut message) {
                Some(value) => status = value,
                None => break,
            },
            (_, 0) => {
                if take_varint(&mut message).is_none() {
                    break;
                }
            }
            (_, 1) => message = message.get(8..).unwrap_or_default(),
            (_, 5) => message = message.get(4..).unwrap_or_default(),
            (_, 2) => match take_varint(&mut message) {
                Some(len) => message = message.get(len as usize..).unwrap_or_default(),
                None => break,
            },
            _ => break,
        }
    }
    status
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, byte) in input.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    use http_body_util::StreamBody;
    use hyper::body::Frame;

    #[test]
    fn requests_encode_the_service_name_as_field_one() {
        assert_eq!(encode_request(""), Vec::<u8>::new());
        assert_eq!(encode_request("db"), vec![0x0a, 2, b'd', b'b']);
        assert_eq!(&frame(b"ab")[..], &[0, 0, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn responses_decode_the_serving_status_and_skip_other_fields() {
        assert_eq!(decode_status(&[0x08, 0x01]), SERVING);
        assert_eq!(decode_status(&[0x12, 0x01, b'x', 0x08, 0x02]), 2);
        assert_eq!(decode_status(&[]), 0);
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode("unknown%20service"), "unknown service");
        assert_eq!(percent_decode("100%"), "100%");
    }

    /// A health server speaking the protocol on raw HTTP/2: "" and "app" are
    /// SERVING, "down" is NOT_SERVING, "legacy" answers Unimplemented in a
    /// trailers-only response, "slow" never answers, other services are NotFound.
    async fn health_server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                        let path = request.uri().path().to_string();
                        let data = request.into_body().collect().await.unwrap().to_bytes();
                        assert_eq!(path, CHECK_PATH);
                        let mut trailers = http::HeaderMap::new();
                        let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = Vec::new();
                        {
                            let mut body = &data[5..];
                            let service = match take_varint(&mut body) {
                                Some(0x0a) => {
                                    let len = take_varint(&mut body).unwrap() as usize;
                                    String::from_utf8(body[..len].to_vec()).unwrap()
                                }
                                _ => String::new(),
                            };
                            match service.as_str() {
                                "" | "app" => {
                                    frames.push(Ok(Frame::data(frame(&[0x08, 0x01]))));
                                    trailers.insert("grpc-status", "0".parse().unwrap());
                                }
                                "down" => {
                                    frames.push(Ok(Frame::data(frame(&[0x08, 0x02]))));
                                    trailers.insert("grpc-status", "0".parse().unwrap());
                                }
                                "slow" => {
                                    tokio::time::sleep(Duration::from_secs(5)).await;
                                }
                                "legacy" => {
                                    let response = http::Response::builder()
                                        .header("content-type", "application/grpc")
                                        .header("grpc-status", "12")
                                        .header("grpc-message", "unknown%20service%20grpc.health.v1.Health")
                                        .body(StreamBody::new(futures::stream::iter(frames)))
                                        .unwrap();
                                    return Ok::<_, Infallible>(response);
                                }
                                _ => {
                                    trailers.insert("grpc-status", "5".parse().unwrap());
                                    trailers.insert("grpc-message", "unknown service".parse().unwrap());
                                }
                            }
                        }
                        frames.push(Ok(Frame::trailers(trailers)));
                        let body = StreamBody::new(futures::stream::iter(frames));
                        let response = http::Response::builder().header("content-type", "application/grpc").body(body).unwrap();
                        Ok::<_, Infallible>(response)
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        port
    }

    const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn a_serving_server_passes_the_probe() {
        let port = health_server().await;
        assert_eq!(probe(LOCALHOST, port, "", Duration::from_secs(2)).await, Outcome::Success("service healthy".into()));
        assert_eq!(probe(LOCALHOST, port, "app", Duration::from_secs(2)).await, Outcome::Success("service healthy".into()));
    }

    #[tokio::test]
    async fn a_service_not_serving_fails_with_its_status() {
        let port = health_server().await;
        assert_eq!(probe(LOCALHOST, port, "down", Duration::from_secs(2)).await, Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into()));
    }

    #[tokio::test]
    async fn an_unknown_service_fails_with_the_rpc_error() {
        let port = health_server().await;
        assert_eq!(
            probe(LOCALHOST, port, "other", Duration::from_secs(2)).await,
            Outcome::Failure("error: health rpc probe failed: rpc error: code = NotFound desc = unknown service".into())
        );
    }

    #[tokio::test]
    async fn a_server_without_the_health_service_fails_as_unimplemented() {
        let port = health_server().await;
        assert_eq!(
            probe(LOCALHOST, port, "legacy", Duration::from_secs(2)).await,
            Outcome::Failure("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): unknown service grpc.health.v1.Health".into())
        );
    }

    #[tokio::test]
    async fn a_call_past_the_timeout_fails_as_a_timeout() {
        let port = health_server().await;
        assert_eq!(
            probe(LOCALHOST, port, "slow", Duration::from_millis(300)).await,
            Outcome::Failure("timeout: health rpc did not complete within 300ms".into())
        );
    }

    #[tokio::test]
    async fn a_closed_port_fails_after_retrying_until_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let started = std::time::Instant::now();
        assert_eq!(
            probe(LOCALHOST, port, "", Duration::from_millis(300)).await,
            Outcome::Failure(format!("timeout: failed to connect service \"127.0.0.1:{port}\" within 300ms: context deadline exceeded"))
        );
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
}
