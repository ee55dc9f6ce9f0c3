//! The listeners: plain HTTP and HTTPS, each HTTP/1.1 or HTTP/2 per connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;
use crate::proxy::{Peer, Proxy};
use crate::routes::Routes;
use crate::tls::{self, CertResolver};
use crate::{GatewayConfig, GatewayError};

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that has not sent a whole HTTP/1 request head by then is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A serving gateway. Dropping it stops the listeners and ends every
/// connection, tunnels included.
pub struct Gateway {
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    metrics: Metrics,
    tasks: Vec<JoinHandle<()>>,
    /// Dropping the sender tells upgraded tunnels to end.
    _shutdown: watch::Sender<()>,
}

impl Gateway {
    /// Binds the configured listeners and serves `routes` on them; the routes
    /// stay live (later updates apply to the next request).
    pub async fn start(cfg: GatewayConfig, routes: Routes) -> Result<Gateway, GatewayError> {
        let http = match cfg.http {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let https = match cfg.https {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
        let https_addr = https.as_ref().and_then(|l| l.local_addr().ok());

        let acceptor = match &https {
            Some(_) => {
                let resolver = CertResolver::new(routes.clone(), tls::fallback()?);
                Some(TlsAcceptor::from(Arc::new(tls::server_config(resolver)?)))
            }
            None => None,
        };

        let (shutdown, shutdown_rx) = watch::channel(());
        let metrics = Metrics::default();
        let proxy = Arc::new(Proxy::new(routes, metrics.clone(), https_addr.map(|a| a.port()), shutdown_rx));
        let mut tasks = Vec::new();
        if let Some(listener) = http {
            tasks.push(tokio::spawn(accept(listener, None, proxy.clone())));
        }
        if let Some(listener) = https {
            tasks.push(tokio::spawn(accept(listener, acceptor, proxy)));
        }
        tracing::debug!(http = ?http_addr, https = ?https_addr, class = %cfg.class_name, "ingress gateway listening");
        Ok(Gateway { http: http_addr, https: https_addr, metrics, tasks, _shutdown: shutdown })
    }

    /// The bound HTTP address (the real port when configured with port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The bound HTTPS address.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https
    }

    /// The gateway's request counters.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr).await.map_err(|source| GatewayError::Bind { addr, source })
}

/// Accepts connections until aborted; the connections live in the task's
/// JoinSet, so aborting the task ends them too.
async fn accept(listener: TcpListener, tls: Option<TlsAcceptor>, proxy: Arc<Proxy>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let _ = tcp.set_nodelay(true);
                    let local = tcp.local_addr().unwrap_or(remote);
                    let peer = Peer { remote, local, tls: tls.is_some() };
                    let (tls, proxy) = (tls.clone(), proxy.clone());
                    conns.spawn(async move {
                        match tls {
                            None => serve(tcp, proxy, peer).await,
                            Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                                Ok(Ok(stream)) => serve(stream, proxy, peer).await,
                                Ok(Err(error)) => tracing::debug!(%remote, %error, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                            },
                        }
                    });
                }
                // Out of descriptors and the like: back off instead of spinning.
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve<IO>(io: IO, proxy: Arc<Proxy>, peer: Peer)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(req, peer).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    if let Err(error) = builder.serve_connection_with_upgrades(TokioIo::new(io), service).await {
        tracing::debug!(remote = %peer.remote, %error, "client connection ended");
    }
}
