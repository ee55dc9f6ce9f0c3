//! The DNS server: UDP and TCP listeners (hickory-server) in front of the record store and
//! the upstream resolvers.
//!
//! Each question is answered from [`Records`] when it is inside the cluster domain (or is a
//! reverse name the cluster knows) and forwarded otherwise. Answers made here are
//! authoritative and recursion-available, like CoreDNS's; negative ones carry the zone's SOA.
//! UDP answers larger than the client can take (512 bytes without EDNS, its advertised size
//! with it) are truncated with the TC bit, and the client retries over TCP.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use crate::forward::{ForwardError, Resolvers, Transport, Upstream, UPSTREAM_TIMEOUT};
use crate::lookup::{Found, Lookup};
use crate::records::{zone_name, Records};
use crate::DnsConfig;

/// How long a TCP client may stay idle between queries before its connection is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// The EDNS payload size we advertise when chasing a CNAME upstream (the DNS flag day value).
const CHASE_PAYLOAD: u16 = 1232;
/// How often to retry when port 0 picked a UDP port whose TCP twin is taken.
const BIND_ATTEMPTS: usize = 16;
/// The highest EDNS version we speak.
const EDNS_VERSION: u8 = 0;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("no address to serve DNS on")]
    NoAddresses,
    #[error("binding DNS {protocol} socket on {addr}")]
    Bind {
        addr: SocketAddr,
        protocol: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the server is configured for cluster domain {config:?} but its records are for {records:?}")]
    ClusterDomainMismatch { config: String, records: String },
}

/// A running DNS server; dropping it stops serving.
pub struct DnsServer {
    server: Server<Handler>,
    addrs: Vec<SocketAddr>,
}

// === impl DnsServer ===

impl DnsServer {
    /// Serves UDP and TCP on every address (port 53 in production). A port of 0 picks a free
    /// port, the same one for UDP and TCP; [`DnsServer::local_addrs`] tells which.
    ///
    /// Must be called within a Tokio runtime, which then runs the listeners.
    pub async fn bind(addrs: &[SocketAddr], records: Records, cfg: DnsConfig) -> Result<DnsServer, DnsError> {
        let upstream = Resolvers::new(cfg.upstreams.clone(), UPSTREAM_TIMEOUT);
        Self::bind_with_upstream(addrs, records, cfg, Arc::new(upstream)).await
    }

    pub(crate) async fn bind_with_upstream(
        addrs: &[SocketAddr],
        records: Records,
        cfg: DnsConfig,
        upstream: Arc<dyn Upstream>,
    ) -> Result<DnsServer, DnsError> {
        if addrs.is_empty() {
            return Err(DnsError::NoAddresses);
        }
        if zone_name(&cfg.cluster_domain).as_ref() != Some(records.cluster_domain()) {
            return Err(DnsError::ClusterDomainMismatch {
                config: cfg.cluster_domain.clone(),
                records: records.cluster_domain().to_ascii(),
            });
        }
        let mut sockets = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            sockets.push(bind_pair(addr).await?);
        }
        let handler = Handler { records, ttl: cfg.ttl, upstream };
        let mut server = Server::new(handler);
        let mut bound = Vec::with_capacity(sockets.len());
        for (udp, tcp, addr) in sockets {
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
            bound.push(addr);
        }
        tracing::info!(addrs = ?bound, "cluster DNS serving");
        Ok(DnsServer { server, addrs: bound })
    }

    /// The addresses served, with real ports: UDP, and TCP on the same ports.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // The listener tasks stop at the token; dropping the server's task set aborts whatever
        // is still in flight.
        self.server.shutdown_token().cancel();
    }
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer").field("addrs", &self.addrs).finish()
    }
}

/// Binds UDP and TCP on the same address and port.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), DnsError> {
    let bind_err = |protocol, source| DnsError::Bind { addr, protocol, source };
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr).await.map_err(|e| bind_err("UDP", e))?;
        let tcp = TcpListener::bind(addr).await.map_err(|e| bind_err("TCP", e))?;
        return Ok((udp, tcp, addr));
    }
    // Port 0: let UDP pick, then take the same port for TCP; if another program holds it for
    // TCP, start over with another UDP port.
    let mut last = None;
    for _ in 0..BIND_ATTEMPTS {
        let udp = UdpSocket::bind(addr).await.map_err(|e| bind_err("UDP", e))?;
        let picked = udp.local_addr().map_err(|e| bind_err("UDP", e))?;
        match TcpListener::bind(picked).await {
            Ok(tcp) => return Ok((udp, tcp, picked)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(bind_err("TCP", e)),
        }
    }
    Err(bind_err("TCP", last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse))))
}

/// A fresh query ID. hickory's query constructor draws it from the thread's RNG.
fn fresh_id() -> u16 {
    Message::query().metadata.id
}

// === impl Handler ===

struct Handler {
    records: Records,
    ttl: u32,
    upstream: Arc<dyn Upstream>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response_handle: R) -> ResponseInfo {
        // EDNS (RFC 6891): answer with our own OPT when the client sent one, at the payload
        // size the client can take; refuse versions we do not speak.
        let response_edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().max(512));
            edns.set_version(EDNS_VERSION);
            edns.set_dnssec_ok(req.flags().dnssec_ok);
            edns
        });
        if request.edns.as_ref().is_some_and(|e| e.version() > EDNS_VERSION) {
            return send_error(request, response_edns.as_ref(), ResponseCode::BADVERS, response_handle).await;
        }
        if request.metadata.op_code != OpCode::Query {
            return send_error(request, response_edns.as_ref(), ResponseCode::NotImp, response_handle).await;
        }
        let Ok(info) = request.request_info() else {
            // Not exactly one question.
            return send_error(request, response_edns.as_ref(), ResponseCode::FormErr, response_handle).await;
        };
        let query = info.query.original();
        let lookup = if query.query_class() == DNSClass::IN {
            self.records.lookup(query.name(), query.query_type(), self.ttl)
        } else {
            Lookup::NotOurs
        };
        match lookup {
            Lookup::NotOurs => self.forward(request, response_edns.as_ref(), response_handle).await,
            Lookup::NxDomain => {
                self.send_local(request, response_edns.as_ref(), ResponseCode::NXDomain, Found::default(), response_handle)
                    .await
            }
            Lookup::Found(mut found) => {
                if let Some(target) = found.chase.take() {
                    let transport = transport_of(request);
                    found.answers.extend(self.chase(&target, query.query_type(), transport).await);
                }
                self.send_local(request, response_edns.as_ref(), ResponseCode::NoError, found, response_handle).await
            }
        }
    }
}

impl Handler {
    /// Sends an answer made here: authoritative, with the SOA in the authority section of a
    /// negative answer so resolvers can cache it.
    async fn send_local<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        code: ResponseCode,
        found: Found,
        mut handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = true;
        metadata.response_code = code;
        let soa: Vec<Record> = if found.answers.is_empty() { vec![self.records.soa(self.ttl)] } else { Vec::new() };
        let response = MessageResponseBuilder::new(&request.queries, edns).build(
            metadata,
            &found.answers,
            &soa,
            std::iter::empty(),
            &found.additionals,
        );
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "sending a DNS answer failed");
                serve_failed(request)
            }
        }
    }

    /// Forwards the client's query unchanged (under a fresh ID) and relays the answer.
    async fn forward<R: ResponseHandler>(&self, request: &Request, edns: Option<&Edns>, mut handle: R) -> ResponseInfo {
        let mut query = request.as_slice().to_vec();
        if query.len() < 12 {
            return send_error(request, edns, ResponseCode::FormErr, handle).await;
        }
        query[..2].copy_from_slice(&fresh_id().to_be_bytes());
        let answer = match self.upstream.exchange(&query, transport_of(request)).await {
            Ok(bytes) => bytes,
            Err(ForwardError::NoUpstreams) => return send_error(request, edns, ResponseCode::Refused, handle).await,
            Err(error) => {
                tracing::debug!(%error, "forwarding failed");
                return send_error(request, edns, ResponseCode::ServFail, handle).await;
            }
        };
        let mut answer = match Message::from_vec(&answer) {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(%error, "upstream answer does not parse");
                return send_error(request, edns, ResponseCode::ServFail, handle).await;
            }
        };
        let mut metadata = answer.metadata;
        metadata.id = request.metadata.id;
        // The upstream's OPT speaks of the upstream's buffer; the client must hear of ours,
        // and only if it asked for EDNS at all.
        let relayed_edns = match (answer.edns.take(), edns) {
            (Some(mut upstream_edns), Some(ours)) => {
                upstream_edns.set_max_payload(ours.max_payload());
                Some(upstream_edns)
            }
            _ => None,
        };
        let response = MessageResponseBuilder::new(&request.queries, relayed_edns.as_ref()).build(
            metadata,
            &answer.answers,
            &answer.authorities,
            std::iter::empty(),
            &answer.additionals,
        );
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "relaying an upstream answer failed");
                serve_failed(request)
            }
        }
    }

    /// Looks up an ExternalName target upstream; its answers follow our CNAME. Nothing when the
    /// upstreams fail: the CNAME alone still tells the client where to look.
    async fn chase(&self, target: &Name, qtype: RecordType, transport: Transport) -> Vec<Record> {
        let mut query = Message::query();
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(target.clone(), qtype));
        let mut edns = Edns::new();
        edns.set_max_payload(CHASE_PAYLOAD);
        query.set_edns(edns);
        let Ok(bytes) = query.to_vec() else {
            return Vec::new();
        };
        let mut answer = self.upstream.exchange(&bytes, transport).await.ok().and_then(|b| Message::from_vec(&b).ok());
        if transport == Transport::Udp && answer.as_ref().is_some_and(|a| a.metadata.truncation) {
            answer = self.upstream.exchange(&bytes, Transport::Tcp).await.ok().and_then(|b| Message::from_vec(&b).ok());
        }
        match answer {
            Some(answer) if answer.metadata.response_code == ResponseCode::NoError => answer.answers,
            _ => Vec::new(),
        }
    }
}

fn transport_of(request: &Request) -> Transport {
    match request.protocol() {
        Protocol::Udp => Transport::Udp,
        _ => Transport::Tcp,
    }
}

async fn send_error<R: ResponseHandler>(request: &Request, edns: Option<&Edns>, code: ResponseCode, mut handle: R) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.recursion_available = true;
    metadata.response_code = code;
    let response = MessageResponseBuilder::new(&request.queries, edns).build_no_records(metadata);
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "sending a DNS error failed");
            serve_failed(request)
        }
    }
}

fn serve_failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
}
