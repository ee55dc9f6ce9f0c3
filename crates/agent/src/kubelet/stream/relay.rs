//! Sessions a CRI runtime serves itself: the client's upgrade request is replayed
//! against the runtime's streaming URL and, once both sides have switched
//! protocols, the bytes are copied both ways untouched (SPDY/3.1, or a WebSocket
//! channel protocol the runtime speaks).
//!
//! Port-forward has one translation: kubectl 1.30+ tunnels its SPDY session through
//! WebSocket binary messages (subprotocol `SPDY/3.1+portforward.k8s.io`), which CRI
//! streaming servers predate, so the agent ends the WebSocket itself and carries
//! the SPDY bytes to the runtime over a plain SPDY upgrade.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{text_response, websocket_accept, Body};

/// The WebSocket subprotocol kubectl tunnels port-forward's SPDY through.
pub const SPDY_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Request headers that belong to the upgrade and go to the runtime as they came.
const FORWARDED: [&str; 7] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
    "user-agent",
];

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the runtime's streaming URL {0:?} is not a plain http:// URL")]
    BadUrl(String),
    #[error("connecting to the runtime's streaming server at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the runtime's streaming server failed: {0}")]
    Http(#[from] hyper::Error),
}

/// An open HTTP/1.1 connection to a streaming URL, and the request path to use.
async fn connect(url: &str) -> Result<(hyper::client::conn::http1::SendRequest<Empty<Bytes>>, String, String), RelayError> {
    let uri: http::Uri = url.parse().map_err(|_| RelayError::BadUrl(url.to_string()))?;
    if uri.scheme_str() != Some("http") {
        return Err(RelayError::BadUrl(url.to_string()));
    }
    let authority = uri.authority().ok_or_else(|| RelayError::BadUrl(url.to_string()))?.to_string();
    let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_else(|| "/".into());
    let tcp = tokio::net::TcpStream::connect(&authority).await.map_err(|source| RelayError::Connect { addr: authority.clone(), source })?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok((send, authority, path))
}

/// Replays the client's upgrade request at `url` and, if the runtime switches
/// protocols, joins the two connections. `protocols` replaces the client's
/// `Sec-WebSocket-Protocol` offer when set (to hide versions the runtime lacks).
pub async fn relay_upgrade(mut req: Request<Incoming>, url: &str, protocols: Option<String>) -> Response<Body> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut send, authority, path) = match connect(url).await {
        Ok(c) => c,
        Err(e) => return text_response(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let mut upstream = Request::builder().method(req.method().clone()).uri(path);
    let headers = upstream.headers_mut().expect("a fresh request builder");
    headers.insert(header::HOST, HeaderValue::from_str(&authority).unwrap_or(HeaderValue::from_static("localhost")));
    copy_upgrade_headers(req.headers(), headers);
    if let Some(p) = protocols {
        headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
        if let Ok(v) = HeaderValue::from_str(&p) {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    let upstream = upstream.body(Empty::new()).expect("valid upstream request");
    let mut resp = match send.send_request(upstream).await {
        Ok(r) => r,
        Err(e) => return text_response(StatusCode::BAD_GATEWAY, RelayError::from(e).to_string()),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        return Response::from_parts(parts, body.map_err(std::io::Error::other).boxed_unsync());
    }
    let runtime_upgrade = hyper::upgrade::on(&mut resp);
    let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (k, v) in resp.headers() {
        answer = answer.header(k, v);
    }
    tokio::spawn(async move {
        let (client, runtime) = match tokio::join!(client_upgrade, runtime_upgrade) {
            (Ok(c), Ok(r)) => (c, r),
            _ => return,
        };
        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(runtime)).await;
    });
    answer.body(super::empty_body()).expect("valid 101 response")
}

fn copy_upgrade_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in FORWARDED {
        for v in from.get_all(name) {
            to.append(header::HeaderName::from_static(name), v.clone());
        }
    }
}

/// Ends kubectl's WebSocket tunnel here and carries the SPDY bytes inside it to the
/// runtime's port-forward URL over a plain SPDY upgrade.
pub async fn tunnel_port_forward(mut req: Request<Incoming>, url: &str) -> Response<Body> {
    let Some(accept) = websocket_accept(req.headers()) else {
        return text_response(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut send, authority, path) = match connect(url).await {
        Ok(c) => c,
        Err(e) => return text_response(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let upstream = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, authority)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", "portforward.k8s.io")
        .body(Empty::new())
        .expect("valid upstream request");
    let mut resp = match send.send_request(upstream).await {
        Ok(r) => r,
        Err(e) => return text_response(StatusCode::BAD_GATEWAY, RelayError::from(e).to_string()),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return text_response(status, String::from_utf8_lossy(&body).trim().to_string());
    }
    let runtime_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, runtime) = match tokio::join!(client_upgrade, runtime_upgrade) {
            (Ok(c), Ok(r)) => (c, r),
            _ => return,
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, None).await;
        bridge(ws, TokioIo::new(runtime)).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(header::SEC_WEBSOCKET_PROTOCOL, SPDY_TUNNEL_PROTOCOL)
        .body(super::empty_body())
        .expect("valid 101 response")
}

/// Copies WebSocket binary messages into `raw` as bytes, and `raw`'s bytes back as
/// binary messages, until either side ends.
pub async fn bridge<S, R>(ws: WebSocketStream<S>, raw: R)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    R: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut incoming) = ws.split();
    let (mut raw_read, mut raw_write) = tokio::io::split(raw);
    let up = async {
        while let Some(Ok(message)) = incoming.next().await {
            match message {
                Message::Binary(b) if raw_write.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = raw_write.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match raw_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn websocket_messages_and_raw_bytes_cross_the_bridge() {
        let (ws_client, ws_server) = tokio::io::duplex(1024);
        let (raw_near, mut raw_far) = tokio::io::duplex(1024);
        let server = WebSocketStream::from_raw_socket(ws_server, Role::Server, None).await;
        tokio::spawn(bridge(server, raw_near));
        let mut client = WebSocketStream::from_raw_socket(ws_client, Role::Client, None).await;
        client.send(Message::Binary(Bytes::from_static(b"spdy frame"))).await.unwrap();
        let mut buf = [0u8; 10];
        raw_far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"spdy frame");
        raw_far.write_all(b"reply").await.unwrap();
        assert_eq!(client.next().await.unwrap().unwrap(), Message::Binary(Bytes::from_static(b"reply")));
    }
}
