//! Forwarding to upstream resolvers.
//!
//! Every name outside the cluster goes to the node's own resolvers, tried in order with a
//! short timeout each, over the transport the client used (so a truncated UDP answer reaches
//! the client as truncated, and it retries over TCP as it would with any server). No cache:
//! the upstreams usually have one, and answers stay exactly theirs.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream gets to answer before the next one is tried.
pub(crate) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest UDP answer we accept from an upstream (the EDNS maximum anyone uses).
const MAX_UDP_ANSWER: usize = 65535;

/// How a query travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("no upstream resolvers are configured")]
    NoUpstreams,
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    Timeout { upstream: SocketAddr, timeout: Duration },
    #[error("exchanging a query with upstream {upstream}")]
    Io {
        upstream: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("upstream {upstream} sent a message that is not an answer to the query")]
    Malformed { upstream: SocketAddr },
}

/// Where forwarded queries go. The server holds one; tests substitute a fake that records the
/// queries and answers what they are told to.
#[async_trait::async_trait]
pub(crate) trait Upstream: Send + Sync + 'static {
    /// Sends one query (wire format, ID already chosen) and returns the answer with the same
    /// ID (wire format, unchanged).
    async fn exchange(&self, query: &[u8], transport: Transport) -> Result<Vec<u8>, ForwardError>;
}

/// Real resolvers at socket addresses, tried in order.
#[derive(Clone, Debug)]
pub(crate) struct Resolvers {
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

// === impl Resolvers ===

impl Resolvers {
    pub(crate) fn new(servers: Vec<SocketAddr>, timeout: Duration) -> Resolvers {
        Resolvers { servers, timeout }
    }

    async fn exchange_one(&self, server: SocketAddr, query: &[u8], transport: Transport) -> Result<Vec<u8>, ForwardError> {
        let attempt = async {
            match transport {
                Transport::Udp => udp_exchange(server, query).await,
                Transport::Tcp => tcp_exchange(server, query).await,
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(source)) if source.kind() == io::ErrorKind::InvalidData => {
                Err(ForwardError::Malformed { upstream: server })
            }
            Ok(Err(source)) => Err(ForwardError::Io { upstream: server, source }),
            Err(_) => Err(ForwardError::Timeout { upstream: server, timeout: self.timeout }),
        }
    }
}

#[async_trait::async_trait]
impl Upstream for Resolvers {
    async fn exchange(&self, query: &[u8], transport: Transport) -> Result<Vec<u8>, ForwardError> {
        let mut last = ForwardError::NoUpstreams;
        for &server in &self.servers {
            match self.exchange_one(server, query, transport).await {
                Ok(answer) => return Ok(answer),
                Err(error) => {
                    tracing::debug!(%error, "upstream failed; trying the next");
                    last = error;
                }
            }
        }
        Err(last)
    }
}

/// The ID and QR bit of a wire-format message.
fn is_answer_to(answer: &[u8], query: &[u8]) -> bool {
    answer.len() >= 12 && query.len() >= 2 && answer[..2] == query[..2] && answer[2] & 0x80 != 0
}

async fn udp_exchange(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // A fresh socket per query: a random source port on top of the random ID, and a connected
    // socket only hears from the server it asked.
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_UDP_ANSWER];
    loop {
        let len = socket.recv(&mut buf).await?;
        if is_answer_to(&buf[..len], query) {
            buf.truncate(len);
            return Ok(buf);
        }
        // Anything else is a stray or late datagram; keep waiting until the timeout.
    }
}

async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let len = u16::try_from(query.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    let mut stream = TcpStream::connect(server).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await?;
    if !is_answer_to(&answer, query) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "answer does not match the query"));
    }
    Ok(answer)
}

#[cfg(test)]
pub(crate) mod testing {
    //! A recording upstream for handler tests.

    use std::sync::Mutex;

    use super::*;

    /// Answers every query with the function's output and records what it was sent.
    pub(crate) struct FakeUpstream {
        #[allow(clippy::type_complexity)]
        answer: Box<dyn Fn(&[u8]) -> Result<Vec<u8>, ForwardError> + Send + Sync>,
        pub(crate) queries: Mutex<Vec<(Vec<u8>, Transport)>>,
    }

    impl FakeUpstream {
        pub(crate) fn new(answer: impl Fn(&[u8]) -> Result<Vec<u8>, ForwardError> + Send + Sync + 'static) -> Self {
            FakeUpstream { answer: Box::new(answer), queries: Mutex::new(Vec::new()) }
        }
    }

    #[async_trait::async_trait]
    impl Upstream for FakeUpstream {
        async fn exchange(&self, query: &[u8], transport: Transport) -> Result<Vec<u8>, ForwardError> {
            self.queries.lock().unwrap().push((query.to_vec(), transport));
            (self.answer)(query)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot UDP responder on loopback that answers with `reply(query)`.
    async fn udp_responder(reply: impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + 'static) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (len, from) = socket.recv_from(&mut buf).await.unwrap();
            for datagram in reply(&buf[..len]) {
                socket.send_to(&datagram, from).await.unwrap();
            }
        });
        addr
    }

    fn answer_for(query: &[u8], marker: u8) -> Vec<u8> {
        let mut answer = query.to_vec();
        answer[2] |= 0x80;
        answer.push(marker);
        answer
    }

    fn query() -> Vec<u8> {
        vec![0x12, 0x34, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    }

    #[tokio::test]
    async fn a_udp_answer_with_another_id_is_ignored() {
        let addr = udp_responder(|q| {
            let mut stray = answer_for(q, 1);
            stray[0] ^= 0xff;
            vec![stray, answer_for(q, 2)]
        })
        .await;
        let resolvers = Resolvers::new(vec![addr], UPSTREAM_TIMEOUT);
        let answer = resolvers.exchange(&query(), Transport::Udp).await.unwrap();
        assert_eq!(answer.last(), Some(&2));
    }

    #[tokio::test]
    async fn a_silent_upstream_times_out_and_the_next_one_answers() {
        // Bound but never read: the query goes nowhere.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let answering = udp_responder(|q| vec![answer_for(q, 7)]).await;
        let resolvers = Resolvers::new(vec![silent.local_addr().unwrap(), answering], Duration::from_millis(200));
        let answer = resolvers.exchange(&query(), Transport::Udp).await.unwrap();
        assert_eq!(answer.last(), Some(&7));
    }

    #[tokio::test]
    async fn no_upstreams_is_its_own_error() {
        let resolvers = Resolvers::new(Vec::new(), UPSTREAM_TIMEOUT);
        let error = resolvers.exchange(&query(), Transport::Udp).await.unwrap_err();
        assert!(matches!(error, ForwardError::NoUpstreams));
    }

    #[tokio::test]
    async fn tcp_queries_are_length_prefixed_both_ways() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut q).await.unwrap();
            let a = answer_for(&q, 9);
            stream.write_all(&(a.len() as u16).to_be_bytes()).await.unwrap();
            stream.write_all(&a).await.unwrap();
        });
        let resolvers = Resolvers::new(vec![addr], UPSTREAM_TIMEOUT);
        let answer = resolvers.exchange(&query(), Transport::Tcp).await.unwrap();
        assert_eq!(answer.last(), Some(&9));
        assert_eq!(answer[..2], query()[..2]);
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_io_error() {
        // Bind and drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let resolvers = Resolvers::new(vec![SocketAddr::from(([127, 0, 0, 1], port))], UPSTREAM_TIMEOUT);
        let error = resolvers.exchange(&query(), Transport::Tcp).await.unwrap_err();
        assert!(matches!(error, ForwardError::Io { .. }), "{error:?}");
    }
}
