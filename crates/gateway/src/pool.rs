//! Keep-alive HTTP/1.1 connections to endpoints.
//!
//! A connection goes back to the pool once its response has been read to the
//! end, and is taken again most-recently-used first (the least likely to have
//! been closed by the pod meanwhile). Sending reports whether the endpoint may
//! have seen the request: a refused connection, or a pooled one found closed
//! before the request went out, hands the request back untouched, so that it
//! can go elsewhere whatever its method or body.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the gateway sends, to clients and to endpoints.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// How long to wait for an endpoint to accept a connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections older than this are not reused (pods commonly close at 60–75 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(55);
/// Idle connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 64;
/// Every this many returns, the whole pool drops connections that closed, so
/// that endpoints which went away leave nothing behind.
const SWEEP_EVERY: usize = 256;

/// Why an exchange with an endpoint failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {addr}: no answer within {:?}", CONNECT_TIMEOUT)]
    ConnectTimeout { addr: SocketAddr },
    #[error("exchanging with {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
}

/// A failed send, saying whether the request may have reached the endpoint.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The endpoint never saw the request; here it is back, body untouched.
    NotSent { request: Box<Request<Body>>, error: UpstreamError },
    /// The request went out (at least partly) and the exchange failed.
    /// `reused`: on a pooled connection, which the endpoint may have been
    /// closing as the request went out.
    Sent { error: UpstreamError, reused: bool },
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// Idle connections by endpoint; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Pool {
    idle: Arc<Mutex<HashMap<SocketAddr, Vec<Idle>>>>,
    returns: Arc<AtomicUsize>,
}

impl Pool {
    /// Sends `req` to `addr` on an idle connection, or a new one.
    pub(crate) async fn send(&self, addr: SocketAddr, mut req: Request<Body>) -> Result<Response<Incoming>, SendError> {
        while let Some(mut sender) = self.checkout(addr) {
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.recycle(addr, sender, &resp);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // Closed under us before the request went out: try the next one.
                    Some(back) => req = back,
                    None => {
                        let error = UpstreamError::Http { addr, source: e.into_error() };
                        return Err(SendError::Sent { error, reused: true });
                    }
                },
            }
        }
        let mut sender = match connect(addr).await {
            Ok(s) => s,
            Err(error) => return Err(SendError::NotSent { request: Box::new(req), error }),
        };
        match sender.try_send_request(req).await {
            Ok(resp) => {
                self.recycle(addr, sender, &resp);
                Ok(resp)
            }
            Err(mut e) => match e.take_message() {
                Some(request) => Err(SendError::NotSent { request: Box::new(request), error: UpstreamError::Http { addr, source: e.into_error() } }),
                None => Err(SendError::Sent { error: UpstreamError::Http { addr, source: e.into_error() }, reused: false }),
            },
        }
    }

    /// Idle connections to `addr` (for tests).
    #[cfg(test)]
    pub(crate) fn idle(&self, addr: SocketAddr) -> usize {
        self.idle.lock().unwrap().get(&addr).map_or(0, Vec::len)
    }

    fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        let mut found = None;
        while let Some(c) = list.pop() {
            if usable(&c) && c.sender.is_ready() {
                found = Some(c.sender);
                break;
            }
        }
        if list.is_empty() {
            idle.remove(&addr);
        }
        found
    }

    /// Puts the connection back once the response has been read to the end; an
    /// upgraded connection belongs to its tunnel and never comes back.
    fn recycle(&self, addr: SocketAddr, mut sender: SendRequest<Body>, resp: &Response<Incoming>) {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                pool.put(addr, sender);
            }
        });
    }

    fn put(&self, addr: SocketAddr, sender: SendRequest<Body>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if self.returns.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            idle.retain(|_, list| {
                list.retain(usable);
                !list.is_empty()
            });
        }
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(Idle { sender, since: Instant::now() });
        }
    }
}

fn usable(c: &Idle) -> bool {
    !c.sender.is_closed() && c.since.elapsed() < IDLE_TIMEOUT
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Body>, UpstreamError> {
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => return Err(UpstreamError::Connect { addr, source }),
        Err(_) => return Err(UpstreamError::ConnectTimeout { addr }),
    };
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|source| UpstreamError::Http { addr, source })?;
    tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            tracing::debug!(%addr, %error, "endpoint connection ended");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty, Full};
    use std::sync::atomic::AtomicUsize;

    /// A server answering "ok" that counts the connections it accepted.
    async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                    TokioIo::new(tcp),
                    hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }),
                ));
            }
        });
        (addr, accepted)
    }

    fn get() -> Request<Body> {
        Request::builder().uri("/").header("host", "test").body(Empty::new().map_err(|n| match n {}).boxed_unsync()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_read_to_the_end_is_reused() {
        let (addr, accepted) = server().await;
        let pool = Pool::default();
        for _ in 0..3 {
            let resp = pool.send(addr, get()).await.unwrap();
            assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
            // The connection returns once hyper has seen the end of the response.
            for _ in 0..100 {
                if pool.idle(addr) == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(pool.idle(addr), 1);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_connection_hands_the_request_back() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        match Pool::default().send(addr, get()).await {
            Err(SendError::NotSent { request, error: UpstreamError::Connect { .. } }) => assert_eq!(request.uri(), "/"),
            other => panic!("expected the request back, got {other:?}"),
        }
    }
}
