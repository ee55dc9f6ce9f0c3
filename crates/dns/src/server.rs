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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use hickory_proto::op::MessageType;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::RData;
    use hickory_proto::serialize::binary::BinEncoder;
    use hickory_server::net::runtime::TokioTime;
    use hickory_server::net::NetError;
    use hickory_server::zone_handler::MessageResponse;

    use super::*;
    use crate::forward::testing::FakeUpstream;
    use crate::records::testing::*;

    /// Collects what the handler sends, encoded without a size limit.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Message>>>);

    #[async_trait::async_trait]
    impl ResponseHandler for Capture {
        async fn send_response<'a>(
            &mut self,
            response: MessageResponse<
                '_,
                'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
            >,
        ) -> Result<ResponseInfo, NetError> {
            let mut bytes = Vec::new();
            let info = response.destructive_emit(&mut BinEncoder::new(&mut bytes))?;
            self.0.lock().unwrap().push(Message::from_vec(&bytes)?);
            Ok(info)
        }
    }

    struct Harness {
        handler: Handler,
        records: Records,
        upstream: Arc<FakeUpstream>,
    }

    impl Harness {
        fn new(upstream: FakeUpstream) -> Harness {
            let records = Records::new("cluster.local");
            let upstream = Arc::new(upstream);
            let handler = Handler { records: records.clone(), ttl: 5, upstream: upstream.clone() };
            Harness { handler, records, upstream }
        }

        async fn ask(&self, message: &Message, protocol: Protocol) -> Message {
            let bytes = message.to_vec().unwrap();
            let request = Request::from_bytes(bytes, "127.0.0.1:5300".parse().unwrap(), protocol).unwrap();
            let capture = Capture::default();
            self.handler.handle_request::<_, TokioTime>(&request, capture.clone()).await;
            let mut sent = capture.0.lock().unwrap();
            assert_eq!(sent.len(), 1, "exactly one answer per question");
            sent.pop().unwrap()
        }

        fn forwarded(&self) -> Vec<(Message, Transport)> {
            let queries = self.upstream.queries.lock().unwrap();
            queries.iter().map(|(bytes, t)| (Message::from_vec(bytes).unwrap(), *t)).collect()
        }
    }

    fn query(name: &str, qtype: RecordType) -> Message {
        let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        message
    }

    /// An upstream answer to `query` with one A record, truncated if asked.
    fn upstream_answer(query: &[u8], addr: [u8; 4], truncated: bool) -> Result<Vec<u8>, ForwardError> {
        let query = Message::from_vec(query).unwrap();
        let mut answer = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        answer.metadata.recursion_available = true;
        answer.metadata.recursion_desired = true;
        answer.metadata.truncation = truncated;
        answer.add_queries(query.queries.clone());
        let name = query.queries[0].name().clone();
        answer.add_answer(Record::from_rdata(name, 300, RData::A(A(addr.into()))));
        Ok(answer.to_vec().unwrap())
    }

    fn no_upstream() -> FakeUpstream {
        FakeUpstream::new(|_| Err(ForwardError::NoUpstreams))
    }

    #[tokio::test]
    async fn cluster_answers_are_authoritative_and_recursion_available() {
        let h = Harness::new(no_upstream());
        h.records.apply_service(&service("default", "web", "10.96.0.20", &[]));
        let answer = h.ask(&query("web.default.svc.cluster.local.", RecordType::A), Protocol::Udp).await;
        assert_eq!(answer.metadata.id, 0x4242);
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.authoritative);
        assert!(answer.metadata.recursion_available);
        assert!(answer.metadata.recursion_desired);
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].data.to_string(), "10.96.0.20");
        assert!(answer.authorities.is_empty());
        assert!(h.forwarded().is_empty());
    }

    #[tokio::test]
    async fn nxdomain_and_nodata_carry_the_zone_soa() {
        let h = Harness::new(no_upstream());
        h.records.apply_service(&service("default", "web", "10.96.0.20", &[]));
        let nx = h.ask(&query("nope.default.svc.cluster.local.", RecordType::A), Protocol::Udp).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(nx.metadata.authoritative);
        assert_eq!(nx.authorities.len(), 1);
        assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(nx.authorities[0].name.to_ascii(), "cluster.local.");
        let nodata = h.ask(&query("web.default.svc.cluster.local.", RecordType::AAAA), Protocol::Udp).await;
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
    }

    #[tokio::test]
    async fn other_names_are_forwarded_as_asked_and_relayed_with_the_clients_id() {
        let h = Harness::new(FakeUpstream::new(|q| upstream_answer(q, [192, 0, 2, 7], false)));
        let mut asked = query("www.example.com.", RecordType::A);
        asked.metadata.checking_disabled = true;
        let answer = h.ask(&asked, Protocol::Tcp).await;
        assert_eq!(answer.metadata.id, 0x4242);
        assert!(!answer.metadata.authoritative);
        assert_eq!(answer.answers[0].data.to_string(), "192.0.2.7");
        assert_eq!(answer.answers[0].ttl, 300, "the upstream's TTL is kept");

        let sent = h.upstream.queries.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        let (bytes, transport) = &sent[0];
        assert_eq!(*transport, Transport::Tcp, "forwarded over the client's transport");
        assert_eq!(bytes[2..], asked.to_vec().unwrap()[2..], "everything but the ID goes upstream unchanged");
    }

    #[tokio::test]
    async fn a_truncated_upstream_answer_reaches_the_client_truncated() {
        let h = Harness::new(FakeUpstream::new(|q| upstream_answer(q, [192, 0, 2, 7], true)));
        let answer = h.ask(&query("big.example.com.", RecordType::A), Protocol::Udp).await;
        assert!(answer.metadata.truncation);
    }

    #[tokio::test]
    async fn without_upstreams_other_names_are_refused() {
        let h = Harness::new(no_upstream());
        let answer = h.ask(&query("www.example.com.", RecordType::A), Protocol::Udp).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    }

    #[tokio::test]
    async fn failing_upstreams_mean_servfail() {
        let h = Harness::new(FakeUpstream::new(|_| {
            Err(ForwardError::Timeout { upstream: "127.0.0.1:53".parse().unwrap(), timeout: UPSTREAM_TIMEOUT })
        }));
        let answer = h.ask(&query("www.example.com.", RecordType::A), Protocol::Udp).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn unknown_reverse_names_are_forwarded() {
        let h = Harness::new(FakeUpstream::new(|q| upstream_answer(q, [192, 0, 2, 7], false)));
        h.ask(&query("9.9.244.10.in-addr.arpa.", RecordType::PTR), Protocol::Udp).await;
        let forwarded = h.forwarded();
        assert_eq!(forwarded.len(), 1);
        assert_eq!(forwarded[0].0.queries[0].name().to_ascii(), "9.9.244.10.in-addr.arpa.");
    }

    #[tokio::test]
    async fn an_external_name_answer_includes_the_targets_records_from_upstream() {
        let h = Harness::new(FakeUpstream::new(|q| upstream_answer(q, [192, 0, 2, 53], false)));
        h.records.apply_service(&external("default", "ext", "www.example.com"));
        let answer = h.ask(&query("ext.default.svc.cluster.local.", RecordType::A), Protocol::Udp).await;
        let answers: Vec<String> = answer.answers.iter().map(|r| format!("{} {}", r.name, r.data)).collect();
        assert_eq!(answers, vec!["ext.default.svc.cluster.local. www.example.com.", "www.example.com. 192.0.2.53"]);
        let forwarded = h.forwarded();
        assert_eq!(forwarded[0].0.queries[0].name().to_ascii(), "www.example.com.");
        assert_eq!(forwarded[0].0.queries[0].query_type(), RecordType::A);
    }

    #[tokio::test]
    async fn a_truncated_chase_is_retried_over_tcp() {
        let h = Harness::new(FakeUpstream::new(|q| upstream_answer(q, [192, 0, 2, 53], true)));
        h.records.apply_service(&external("default", "ext", "www.example.com"));
        h.ask(&query("ext.default.svc.cluster.local.", RecordType::A), Protocol::Udp).await;
        let transports: Vec<Transport> = h.forwarded().into_iter().map(|(_, t)| t).collect();
        assert_eq!(transports, vec![Transport::Udp, Transport::Tcp]);
    }

    #[tokio::test]
    async fn an_external_name_answer_is_the_cname_alone_when_upstreams_fail() {
        let h = Harness::new(no_upstream());
        h.records.apply_service(&external("default", "ext", "www.example.com"));
        let answer = h.ask(&query("ext.default.svc.cluster.local.", RecordType::A), Protocol::Udp).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].record_type(), RecordType::CNAME);
    }

    #[tokio::test]
    async fn edns_is_answered_with_edns_and_unknown_versions_get_badvers() {
        let h = Harness::new(no_upstream());
        h.records.apply_service(&service("default", "web", "10.96.0.20", &[]));
        let mut asked = query("web.default.svc.cluster.local.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        asked.set_edns(edns.clone());
        let answer = h.ask(&asked, Protocol::Udp).await;
        assert_eq!(answer.edns.as_ref().map(Edns::max_payload), Some(4096));

        edns.set_version(1);
        asked.set_edns(edns);
        let answer = h.ask(&asked, Protocol::Udp).await;
        // BADVERS and BADSIG share code 16; the decoder names it BADSIG.
        assert_eq!(u16::from(answer.metadata.response_code), u16::from(ResponseCode::BADVERS));
    }

    #[tokio::test]
    async fn other_opcodes_are_not_implemented() {
        let h = Harness::new(no_upstream());
        let mut asked = query("web.default.svc.cluster.local.", RecordType::A);
        asked.metadata.op_code = OpCode::Status;
        let answer = h.ask(&asked, Protocol::Udp).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NotImp);
    }

    #[tokio::test]
    async fn binding_refuses_a_cluster_domain_other_than_the_records_one() {
        let cfg = DnsConfig { cluster_domain: "example.internal".into(), ..DnsConfig::default() };
        let error = DnsServer::bind(&["127.0.0.1:0".parse().unwrap()], Records::new("cluster.local"), cfg).await.unwrap_err();
        assert!(matches!(error, DnsError::ClusterDomainMismatch { .. }), "{error}");
        let same = DnsConfig { cluster_domain: "Cluster.Local.".into(), ..DnsConfig::default() };
        DnsServer::bind(&["127.0.0.1:0".parse().unwrap()], Records::new("cluster.local"), same).await.unwrap();
    }
}
