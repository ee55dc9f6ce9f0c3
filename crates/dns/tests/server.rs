//! The DNS server over real sockets on loopback: cluster records over UDP and TCP, truncation,
//! live updates, and forwarding to a fake upstream the test runs itself.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_dns::{DnsConfig, DnsServer, Records};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(5);

// === fixtures ===

fn service(ns: &str, name: &str, cluster_ip: &str, ports: &[(&str, &str, i32)]) -> Service {
    Service {
        metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, proto, port)| ServicePort {
                        name: Some(name.to_string()),
                        protocol: Some(proto.to_string()),
                        port: *port,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn external(ns: &str, name: &str, target: &str) -> Service {
    Service {
        metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() },
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An EndpointSlice of `service` with endpoints (address, hostname, ready).
fn slice(ns: &str, name: &str, service: &str, port: (&str, i32), endpoints: &[(&str, Option<&str>, bool)]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            labels: Some([("kubernetes.io/service-name".to_string(), service.to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: endpoints
            .iter()
            .map(|(addr, hostname, ready)| Endpoint {
                addresses: vec![addr.to_string()],
                hostname: hostname.map(str::to_string),
                conditions: Some(EndpointConditions { ready: Some(*ready), ..Default::default() }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some(port.0.into()),
            protocol: Some("TCP".into()),
            port: Some(port.1),
            ..Default::default()
        }]),
    }
}

async fn start(upstreams: Vec<SocketAddr>) -> (DnsServer, Records, SocketAddr) {
    let records = Records::new("cluster.local");
    let cfg = DnsConfig { upstreams, ..DnsConfig::default() };
    let server = DnsServer::bind(&["127.0.0.1:0".parse().unwrap()], records.clone(), cfg).await.unwrap();
    let addr = server.local_addrs()[0];
    assert_ne!(addr.port(), 0, "the real port is reported");
    (server, records, addr)
}

// === a small client ===

fn query(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message
}

async fn udp(server: SocketAddr, message: &Message) -> (Message, usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&message.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (len, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buf)).await.expect("a UDP answer").unwrap();
    let answer = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(answer.metadata.id, message.metadata.id);
    (answer, len)
}

async fn tcp(server: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let bytes = message.to_vec().unwrap();
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let answer = tokio::time::timeout(WAIT, async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut answer).await.unwrap();
        answer
    })
    .await
    .expect("a TCP answer");
    let answer = Message::from_vec(&answer).unwrap();
    assert_eq!(answer.metadata.id, message.metadata.id);
    answer
}

async fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    udp(server, &query(name, qtype)).await.0
}

/// The answer section as "name data" lines.
fn answers(message: &Message) -> Vec<String> {
    message.answers.iter().map(|r| format!("{} {}", r.name, r.data)).collect()
}

fn data(message: &Message) -> Vec<String> {
    message.answers.iter().map(|r| r.data.to_string()).collect()
}

// === a fake upstream ===

/// An upstream resolver on loopback, UDP and TCP on one port, that answers every question with
/// `192.0.2.53` and records the names it was asked.
struct FakeUpstream {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<(String, &'static str)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FakeUpstream {
    async fn start() -> FakeUpstream {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let udp_asked = asked.clone();
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((len, from)) = udp.recv_from(&mut buf).await else { return };
                let answer = answer_for(&buf[..len], &udp_asked, "udp");
                let _ = udp.send_to(&answer, from).await;
            }
        });
        let tcp_asked = asked.clone();
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else { return };
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).await.is_err() {
                    continue;
                }
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if stream.read_exact(&mut q).await.is_err() {
                    continue;
                }
                let answer = answer_for(&q, &tcp_asked, "tcp");
                let _ = stream.write_all(&(answer.len() as u16).to_be_bytes()).await;
                let _ = stream.write_all(&answer).await;
            }
        });
        FakeUpstream { addr, asked, tasks: vec![udp_task, tcp_task] }
    }

    fn asked(&self) -> Vec<(String, &'static str)> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn answer_for(query: &[u8], asked: &Mutex<Vec<(String, &'static str)>>, transport: &'static str) -> Vec<u8> {
    let query = Message::from_vec(query).unwrap();
    let q = query.queries[0].clone();
    asked.lock().unwrap().push((q.name().to_ascii(), transport));
    let mut answer = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    answer.metadata.recursion_desired = query.metadata.recursion_desired;
    answer.metadata.recursion_available = true;
    answer.add_query(q.clone());
    if q.query_type() == RecordType::A {
        answer.add_answer(Record::from_rdata(q.name().clone(), 300, RData::A(A([192, 0, 2, 53].into()))));
    }
    answer.to_vec().unwrap()
}

// === tests ===

#[tokio::test]
async fn a_service_resolves_to_its_cluster_ip_over_udp_and_tcp() {
    let (_server, records, addr) = start(Vec::new()).await;
    records.apply_service(&service("default", "web", "10.96.0.20", &[("http", "TCP", 80)]));

    let (over_udp, _) = udp(addr, &query("web.default.svc.cluster.local.", RecordType::A)).await;
    assert_eq!(over_udp.metadata.response_code, ResponseCode::NoError);
    assert!(over_udp.metadata.authoritative);
    assert_eq!(answers(&over_udp), vec!["web.default.svc.cluster.local. 10.96.0.20"]);
    assert_eq!(over_udp.answers[0].ttl, DnsConfig::DEFAULT_TTL);

    let over_tcp = tcp(addr, &query("web.default.svc.cluster.local.", RecordType::A)).await;
    assert_eq!(answers(&over_tcp), vec!["web.default.svc.cluster.local. 10.96.0.20"]);
}

#[tokio::test]
async fn aaaa_for_an_ipv4_service_is_nodata_and_unknown_names_are_nxdomain_with_an_soa() {
    let (_server, records, addr) = start(Vec::new()).await;
    records.apply_service(&service("default", "web", "10.96.0.20", &[]));

    let nodata = ask(addr, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);

    let nx = ask(addr, "missing.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities.len(), 1);
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(nx.authorities[0].name.to_ascii(), "cluster.local.");
}

#[tokio::test]
async fn srv_names_a_services_named_port() {
    let (_server, records, addr) = start(Vec::new()).await;
    records.apply_service(&service("default", "web", "10.96.0.20", &[("http", "TCP", 80)]));
    let srv = ask(addr, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(data(&srv), vec!["0 100 80 web.default.svc.cluster.local."]);
    assert_eq!(srv.additionals.iter().map(|r| r.data.to_string()).collect::<Vec<_>>(), vec!["10.96.0.20"]);
}

#[tokio::test]
async fn a_headless_service_resolves_to_its_ready_endpoints_and_their_hostnames() {
    let (_server, records, addr) = start(Vec::new()).await;
    records.apply_service(&service("default", "nginx", "None", &[("web", "TCP", 80)]));
    records.apply_slice(&slice(
        "default",
        "nginx-x1",
        "nginx",
        ("web", 80),
        &[("10.244.1.5", Some("web-0"), true), ("10.244.2.6", Some("web-1"), true), ("10.244.3.7", Some("web-2"), false)],
    ));

    let all = ask(addr, "nginx.default.svc.cluster.local.", RecordType::A).await;
    let mut ips = data(&all);
    ips.sort();
    assert_eq!(ips, vec!["10.244.1.5", "10.244.2.6"]);

    let pet = ask(addr, "web-0.nginx.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&pet), vec!["10.244.1.5"]);
    let dashed = ask(addr, "10-244-2-6.nginx.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&dashed), vec!["10.244.2.6"]);

    let srv = ask(addr, "_web._tcp.nginx.default.svc.cluster.local.", RecordType::SRV).await;
    let mut targets = data(&srv);
    targets.sort();
    assert_eq!(
        targets,
        vec!["0 50 80 web-0.nginx.default.svc.cluster.local.", "0 50 80 web-1.nginx.default.svc.cluster.local."]
    );

    let ptr = ask(addr, "5.1.244.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(data(&ptr), vec!["web-0.nginx.default.svc.cluster.local."]);
}

#[tokio::test]
async fn ptr_names_the_service_of_a_cluster_ip() {
    let (_server, records, addr) = start(Vec::new()).await;
    records.apply_service(&service("kube-system", "kube-dns", "10.96.0.10", &[("dns", "UDP", 53)]));
    let ptr = ask(addr, "10.0.96.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(answers(&ptr), vec!["10.0.96.10.in-addr.arpa. kube-dns.kube-system.svc.cluster.local."]);
}

#[tokio::test]
async fn pod_names_resolve_to_the_address_they_spell() {
    let (_server, _records, addr) = start(Vec::new()).await;
    let pod = ask(addr, "10-244-1-5.default.pod.cluster.local.", RecordType::A).await;
    assert_eq!(data(&pod), vec!["10.244.1.5"]);
}

#[tokio::test]
async fn updates_and_deletions_are_visible_to_the_next_query() {
    let (_server, records, addr) = start(Vec::new()).await;
    records.apply_service(&service("default", "web", "10.96.0.20", &[]));
    assert_eq!(data(&ask(addr, "web.default.svc.cluster.local.", RecordType::A).await), vec!["10.96.0.20"]);

    records.apply_service(&service("default", "web", "10.96.0.99", &[]));
    assert_eq!(data(&ask(addr, "web.default.svc.cluster.local.", RecordType::A).await), vec!["10.96.0.99"]);

    records.delete_service("default", "web");
    let gone = ask(addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);

    records.apply_service(&service("default", "db", "None", &[]));
    records.apply_slice(&slice("default", "db-1", "db", ("pg", 5432), &[("10.244.1.9", None, true)]));
    assert_eq!(data(&ask(addr, "db.default.svc.cluster.local.", RecordType::A).await), vec!["10.244.1.9"]);
    records.delete_slice("default", "db-1");
    let empty = ask(addr, "db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(empty.metadata.response_code, ResponseCode::NXDomain, "a headless Service without endpoints");
}

#[tokio::test]
async fn names_match_whatever_their_case() {
    let (_server, records, addr) = start(Vec::new()).await;
    records.apply_service(&service("default", "web", "10.96.0.20", &[]));
    let answer = ask(addr, "Web.DEFAULT.svc.Cluster.Local.", RecordType::A).await;
    assert_eq!(answers(&answer), vec!["Web.DEFAULT.svc.Cluster.Local. 10.96.0.20"]);
}

#[tokio::test]
async fn large_udp_answers_are_truncated_and_complete_over_tcp() {
    let (_server, records, addr) = start(Vec::new()).await;
    records.apply_service(&service("default", "many", "None", &[("web", "TCP", 80)]));
    let endpoints: Vec<String> = (1..=100).map(|i| format!("10.244.{}.{}", i / 50, i % 50 + 2)).collect();
    let endpoints: Vec<(&str, Option<&str>, bool)> = endpoints.iter().map(|a| (a.as_str(), None, true)).collect();
    records.apply_slice(&slice("default", "many-1", "many", ("web", 80), &endpoints));

    let asked = query("many.default.svc.cluster.local.", RecordType::A);
    let (truncated, len) = udp(addr, &asked).await;
    assert!(truncated.metadata.truncation, "100 A records do not fit 512 bytes");
    assert!(len <= 512, "a UDP answer without EDNS stays within 512 bytes, got {len}");

    let full = tcp(addr, &asked).await;
    assert!(!full.metadata.truncation);
    assert_eq!(full.answers.len(), 100);

    let mut with_edns = query("many.default.svc.cluster.local.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    with_edns.set_edns(edns);
    let (big, _) = udp(addr, &with_edns).await;
    assert!(!big.metadata.truncation, "EDNS lets the client take a larger UDP answer");
    assert_eq!(big.answers.len(), 100);
    assert_eq!(big.edns.as_ref().map(Edns::max_payload), Some(4096));
}

#[tokio::test]
async fn other_names_are_forwarded_to_the_upstream_over_the_clients_transport() {
    let upstream = FakeUpstream::start().await;
    let (_server, _records, addr) = start(vec![upstream.addr]).await;

    let answer = ask(addr, "www.example.com.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(!answer.metadata.authoritative, "a relayed answer is the upstream's");
    assert_eq!(answers(&answer), vec!["www.example.com. 192.0.2.53"]);
    assert_eq!(answer.answers[0].ttl, 300);

    let answer = tcp(addr, &query("mirror.example.org.", RecordType::A)).await;
    assert_eq!(data(&answer), vec!["192.0.2.53"]);
    assert_eq!(
        upstream.asked(),
        vec![("www.example.com.".to_string(), "udp"), ("mirror.example.org.".to_string(), "tcp")]
    );
}

#[tokio::test]
async fn upstreams_are_tried_in_order() {
    // Nothing listens on the first one (bound and dropped), so the second answers.
    let dead = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let upstream = FakeUpstream::start().await;
    let (_server, _records, addr) = start(vec![dead, upstream.addr]).await;
    let answer = ask(addr, "www.example.com.", RecordType::A).await;
    assert_eq!(data(&answer), vec!["192.0.2.53"]);
}

#[tokio::test]
async fn without_reachable_upstreams_other_names_fail() {
    let (_server, _records, addr) = start(Vec::new()).await;
    let refused = ask(addr, "www.example.com.", RecordType::A).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);

    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (_server, _records, addr) = start(vec![dead]).await;
    let failed = tcp(addr, &query("www.example.com.", RecordType::A)).await;
    assert_eq!(failed.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn an_external_name_service_is_a_cname_followed_by_the_targets_addresses() {
    let upstream = FakeUpstream::start().await;
    let (_server, records, addr) = start(vec![upstream.addr]).await;
    records.apply_service(&external("default", "search", "www.example.com"));

    let answer = ask(addr, "search.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(
        answers(&answer),
        vec!["search.default.svc.cluster.local. www.example.com.", "www.example.com. 192.0.2.53"]
    );
    let cname = ask(addr, "search.default.svc.cluster.local.", RecordType::CNAME).await;
    assert_eq!(answers(&cname), vec!["search.default.svc.cluster.local. www.example.com."]);
    assert_eq!(upstream.asked(), vec![("www.example.com.".to_string(), "udp")]);
}

#[tokio::test]
async fn dropping_the_server_stops_serving() {
    let (server, _records, addr) = start(Vec::new()).await;
    drop(server);
    // The listener tasks end asynchronously; give them a moment.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if TcpStream::connect(addr).await.is_err() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still accepting TCP after drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn busybox_nslookup_resolves_a_service() {
    let Some(busybox) = ["/usr/bin/busybox", "/bin/busybox"].into_iter().find(|p| std::path::Path::new(p).exists()) else {
        eprintln!("skipping: busybox is not installed");
        return;
    };
    let (_server, records, addr) = start(Vec::new()).await;
    records.apply_service(&service("default", "web", "10.96.0.20", &[("http", "TCP", 80)]));
    // busybox's nslookup takes SERVER:PORT.
    let output = tokio::process::Command::new(busybox)
        .args(["nslookup", "web.default.svc.cluster.local", &addr.to_string()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("10.96.0.20"), "nslookup output:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
}
