//! The service proxy against the real kernel.
//!
//! Each test builds a small node in network namespaces of its own (`skp-<pid>-<n>-*`):
//!
//! ```text
//!   ext (192.168.77.2) ── skx1 ═ skx0 ── node (192.168.77.1, bridge skbr0 10.244.0.1/24)
//!                                          ├── skv1 ═ pod1 (10.244.0.11)
//!                                          ├── skv2 ═ pod2 (10.244.0.12)
//!                                          └── …
//! ```
//!
//! The proxier programs `table ip skiff` inside the node namespace (`nft` under
//! `ip netns exec`), and real TCP/UDP traffic between the namespaces checks the result. The
//! servers and clients are this test binary run again inside a namespace (see
//! [`helper_runs_servers_and_clients_inside_test_namespaces`]). Everything is torn down by a
//! drop guard. Tests skip, saying why, when `ip` or `nft` is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_net::nft::{self, NftCli};
use skiff_net::proxy::conntrack::ConntrackCli;
use skiff_net::proxy::testing::{ServiceBuilder, SliceBuilder};
use skiff_net::proxy::{Proxier, ProxyConfig};

const HELPER_ENV: &str = "SKIFF_NET_PROXY_TEST_HELPER";
const NODE_IP: &str = "192.168.77.1";
const EXT_IP: &str = "192.168.77.2";
const NODE: &str = "node-a";

// === helper processes ===

/// Not a test of its own: when the environment names a role, this process is a server or a
/// client inside a test's namespace. Servers answer `<name> <peer ip>` and stop by themselves
/// after two minutes; clients print one `REPLY <text>` or `ERROR <kind> <ms>` line per try.
#[test]
fn helper_runs_servers_and_clients_inside_test_namespaces() {
    let Ok(role) = std::env::var(HELPER_ENV) else { return };
    let args: Vec<&str> = role.split_whitespace().collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    match args.as_slice() {
        ["tcp-server", name, port] => {
            let listener = TcpListener::bind(("0.0.0.0", port.parse::<u16>().unwrap())).unwrap();
            listener.set_nonblocking(true).unwrap();
            println!("READY");
            std::io::stdout().flush().unwrap();
            while Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = writeln!(s, "{name} {}", peer.ip());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        }
        ["udp-server", name, port] => {
            let sock = UdpSocket::bind(("0.0.0.0", port.parse::<u16>().unwrap())).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            println!("READY");
            std::io::stdout().flush().unwrap();
            let mut buf = [0u8; 512];
            while Instant::now() < deadline {
                if let Ok((_, peer)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(format!("{name} {}", peer.ip()).as_bytes(), peer);
                }
            }
        }
        ["tcp-client", addr, count] => {
            let addr: SocketAddr = addr.parse().unwrap();
            for _ in 0..count.parse::<usize>().unwrap() {
                let start = Instant::now();
                let res = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    let mut out = String::new();
                    s.read_to_string(&mut out)?;
                    Ok(out)
                });
                match res {
                    Ok(text) => println!("REPLY {}", text.trim()),
                    Err(e) => println!("ERROR {:?} {}", e.kind(), start.elapsed().as_millis()),
                }
            }
            std::io::stdout().flush().unwrap();
            std::process::exit(0);
        }
        ["udp-client", addr, source_port, count] => {
            let addr: SocketAddr = addr.parse().unwrap();
            // A fixed source port keeps the flow (and its conntrack entry) across runs.
            let sock = UdpSocket::bind(("0.0.0.0", source_port.parse::<u16>().unwrap())).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut buf = [0u8; 512];
            for _ in 0..count.parse::<usize>().unwrap() {
                let start = Instant::now();
                let _ = sock.send_to(b"hello", addr);
                match sock.recv_from(&mut buf) {
                    Ok((n, _)) => println!("REPLY {}", String::from_utf8_lossy(&buf[..n])),
                    Err(e) => println!("ERROR {:?} {}", e.kind(), start.elapsed().as_millis()),
                }
            }
            std::io::stdout().flush().unwrap();
            std::process::exit(0);
        }
        other => panic!("unknown helper role {other:?}"),
    }
}

fn helper(ns: &str, role: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(std::env::current_exe().unwrap())
        .args(["helper_runs_servers_and_clients_inside_test_namespaces", "--exact", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, role);
    cmd
}

/// One client try: what came back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The server's name and the client address it saw.
    Reply { server: String, peer: String },
    Error { kind: String, millis: u64 },
}

fn run_client(ns: &str, role: &str) -> Vec<Outcome> {
    let out = helper(ns, role).stderr(Stdio::inherit()).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // The test harness prints its own words before the first line.
            let l = ["REPLY ", "ERROR "].iter().filter_map(|m| l.find(m)).min().map(|i| &l[i..])?;
            if let Some(r) = l.strip_prefix("REPLY ") {
                let (server, peer) = r.split_once(' ').unwrap_or((r, ""));
                Some(Outcome::Reply { server: server.into(), peer: peer.into() })
            } else {
                l.strip_prefix("ERROR ").map(|e| {
                    let (kind, ms) = e.rsplit_once(' ').unwrap();
                    Outcome::Error { kind: kind.into(), millis: ms.parse().unwrap() }
                })
            }
        })
        .collect()
}

fn servers(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Reply { server, .. } => server.clone(),
            Outcome::Error { kind, .. } => format!("error:{kind}"),
        })
        .collect()
}

fn distinct(v: &[String]) -> Vec<String> {
    let mut d = v.to_vec();
    d.sort();
    d.dedup();
    d
}

// === topology ===

fn tools_missing() -> Option<&'static str> {
    for tool in ["ip", "nft"] {
        let found = Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !found {
            return Some(tool);
        }
    }
    None
}

macro_rules! skip_without_tools {
    () => {
        if let Some(tool) = tools_missing() {
            eprintln!("skipping: the `{tool}` binary is missing");
            return;
        }
    };
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A node namespace with a pod bridge, pod namespaces and an outside namespace. Dropping it
/// stops the helper processes it started and deletes the namespaces (and so every link and
/// ruleset inside them).
struct Topology {
    node: String,
    ext: String,
    pods: Vec<String>,
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
    }
}

impl Topology {
    /// A node with `pods` pod namespaces (pod1 = 10.244.0.11, …).
    fn new(pods: usize) -> Topology {
        let prefix = format!("skp-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let mut t = Topology {
            node: format!("{prefix}-node"),
            ext: format!("{prefix}-ext"),
            pods: (1..=pods).map(|i| format!("{prefix}-pod{i}")).collect(),
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        let all: Vec<String> =
            [t.node.clone(), t.ext.clone()].into_iter().chain(t.pods.iter().cloned()).collect();
        for ns in all {
            sh(&["ip", "netns", "add", &ns]);
            t.namespaces.push(ns.clone());
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        let node = t.node.clone();
        let n = node.as_str();
        sh(&["ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        sh(&["ip", "-n", n, "link", "add", "skbr0", "type", "bridge"]);
        sh(&["ip", "-n", n, "addr", "add", "10.244.0.1/24", "dev", "skbr0"]);
        sh(&["ip", "-n", n, "link", "set", "skbr0", "up"]);
        for (i, pod) in t.pods.iter().enumerate() {
            let veth = format!("skv{}", i + 1);
            let ip = format!("10.244.0.{}/24", 11 + i);
            sh(&["ip", "-n", n, "link", "add", &veth, "type", "veth", "peer", "name", "sketh0", "netns", pod]);
            sh(&["ip", "-n", n, "link", "set", &veth, "master", "skbr0"]);
            sh(&["ip", "-n", n, "link", "set", &veth, "type", "bridge_slave", "hairpin", "on"]);
            sh(&["ip", "-n", n, "link", "set", &veth, "up"]);
            sh(&["ip", "-n", pod, "addr", "add", &ip, "dev", "sketh0"]);
            sh(&["ip", "-n", pod, "link", "set", "sketh0", "up"]);
            sh(&["ip", "-n", pod, "route", "add", "default", "via", "10.244.0.1"]);
        }
        sh(&["ip", "-n", n, "link", "add", "skx0", "type", "veth", "peer", "name", "skx1", "netns", &t.ext]);
        sh(&["ip", "-n", n, "addr", "add", &format!("{NODE_IP}/24"), "dev", "skx0"]);
        sh(&["ip", "-n", n, "link", "set", "skx0", "up"]);
        sh(&["ip", "-n", &t.ext, "addr", "add", &format!("{EXT_IP}/24"), "dev", "skx1"]);
        sh(&["ip", "-n", &t.ext, "link", "set", "skx1", "up"]);
        // The node needs a route for service addresses before DNAT picks an endpoint.
        sh(&["ip", "-n", n, "route", "add", "default", "via", EXT_IP]);
        t
    }

    fn pod_ip(&self, i: usize) -> String {
        format!("10.244.0.{}", 10 + i)
    }

    fn pod(&self, i: usize) -> &str {
        &self.pods[i - 1]
    }

    /// Starts a helper server in `ns` and waits until it listens.
    fn serve(&mut self, ns: &str, role: &str) {
        let mut child = helper(ns, role).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        self.children.push(child);
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.trim_end().ends_with("READY") => break,
                Some(Ok(_)) => continue,
                other => panic!("server {role} in {ns} did not start: {other:?}"),
            }
        }
    }

    /// TCP servers on port 8080 in pods 1..=n, answering `podI`.
    fn serve_pods(&mut self, n: usize) {
        for i in 1..=n {
            let ns = self.pod(i).to_string();
            self.serve(&ns, &format!("tcp-server pod{i} 8080"));
        }
    }

    fn proxier(&self, cfg: ProxyConfig) -> Proxier {
        Proxier::new(cfg, Arc::new(NftCli::in_netns(&self.node)))
            .with_conntrack(Arc::new(ConntrackCli::in_netns(&self.node)))
    }

    async fn started_proxier(&self) -> Proxier {
        let nft = NftCli::in_netns(&self.node);
        nft::reset_table(&nft).await.unwrap();
        let mut p = self.proxier(config());
        p.init().await.unwrap();
        p
    }

    fn tcp(&self, ns: &str, addr: &str, count: usize) -> Vec<Outcome> {
        run_client(ns, &format!("tcp-client {addr} {count}"))
    }
}

fn config() -> ProxyConfig {
    ProxyConfig {
        node_name: NODE.into(),
        node_ips: vec![NODE_IP.parse().unwrap()],
        cluster_cidr: Some((Ipv4Addr::new(10, 244, 0, 0), 16)),
        masquerade_outside: true,
        pod_bridge: Some("skbr0".into()),
    }
}

/// A slice of `service` with port `http` 8080 and the given (pod index, node) endpoints.
fn slice(service: &str, eps: &[(usize, &str)]) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let mut b = SliceBuilder::new("default", &format!("{service}-1"), service).port("http", 8080, "TCP");
    for (i, node) in eps {
        b = b.endpoint(&format!("10.244.0.{}", 10 + i), Some(node));
    }
    b.build()
}

// === tests ===

#[tokio::test]
async fn cluster_ip_traffic_is_balanced_and_follows_endpoint_changes() {
    skip_without_tools!();
    let mut t = Topology::new(4);
    t.serve_pods(3);
    let mut p = t.started_proxier().await;
    p.apply_service(&ServiceBuilder::new("default", "web").cluster_ip("10.96.0.50").build());
    p.apply_slice(&slice("web", &[(1, NODE), (2, NODE), (3, "node-b")]));
    p.sync().await.unwrap();

    // From a pod: spread over all three endpoints, and the pod's own address is kept.
    let from_pod = t.tcp(t.pod(4), "10.96.0.50:80", 45);
    let seen = servers(&from_pod);
    assert_eq!(distinct(&seen), vec!["pod1", "pod2", "pod3"], "{seen:?}");
    assert!(from_pod.iter().all(|o| matches!(o, Outcome::Reply { peer, .. } if peer == "10.244.0.14")));
    // From the node itself (nat output), masqueraded to the bridge address.
    let from_node = t.tcp(&t.node, "10.96.0.50:80", 15);
    assert!(
        from_node.iter().all(|o| matches!(o, Outcome::Reply { peer, .. } if peer == "10.244.0.1")),
        "{from_node:?}"
    );

    // Remove pod2: it gets nothing any more; the change is one small, fast transaction.
    p.apply_slice(&slice("web", &[(1, NODE), (3, "node-b")]));
    let stats = p.sync().await.unwrap();
    eprintln!("one endpoint removed: {stats:?}");
    assert_eq!(stats.services_changed, 1);
    assert!(stats.duration < Duration::from_secs(1), "{stats:?}");
    let after = servers(&t.tcp(t.pod(4), "10.96.0.50:80", 30));
    assert_eq!(distinct(&after), vec!["pod1", "pod3"], "{after:?}");
}

#[tokio::test]
async fn a_service_without_endpoints_refuses_connections_at_once() {
    skip_without_tools!();
    let mut t = Topology::new(2);
    t.serve_pods(1);
    let mut p = t.started_proxier().await;
    p.apply_service(&ServiceBuilder::new("default", "web").cluster_ip("10.96.0.51").build());
    p.sync().await.unwrap();
    for ns in [t.pod(2).to_string(), t.node.clone()] {
        let out = t.tcp(&ns, "10.96.0.51:80", 3);
        for o in &out {
            match o {
                Outcome::Error { kind, millis } => {
                    assert_eq!(kind, "ConnectionRefused", "from {ns}: {out:?}");
                    assert!(*millis < 500, "refused quickly, not timed out: {out:?}");
                }
                other => panic!("from {ns}: expected a refusal, got {other:?}"),
            }
        }
    }
    // An endpoint appears: the same address now answers.
    p.apply_slice(&slice("web", &[(1, NODE)]));
    p.sync().await.unwrap();
    assert_eq!(servers(&t.tcp(t.pod(2), "10.96.0.51:80", 2)), vec!["pod1", "pod1"]);
}

#[tokio::test]
async fn node_ports_answer_from_outside_and_local_policy_keeps_the_client_address() {
    skip_without_tools!();
    let mut t = Topology::new(3);
    t.serve_pods(2);
    let mut p = t.started_proxier().await;
    let svc = |policy: &str| {
        ServiceBuilder::new("default", "web")
            .type_("NodePort")
            .cluster_ip("10.96.0.52")
            .node_port(30080)
            .external_traffic_policy(policy)
            .build()
    };
    // pod1 is on this node, pod2 (as far as the slice says) on another one.
    p.apply_service(&svc("Cluster"));
    p.apply_slice(&slice("web", &[(1, NODE), (2, "node-b")]));
    p.sync().await.unwrap();
    let addr = format!("{NODE_IP}:30080");
    let cluster = t.tcp(&t.ext, &addr, 30);
    assert_eq!(distinct(&servers(&cluster)), vec!["pod1", "pod2"], "{cluster:?}");
    assert!(
        cluster.iter().all(|o| matches!(o, Outcome::Reply { peer, .. } if peer == "10.244.0.1")),
        "policy Cluster masquerades: {cluster:?}"
    );

    p.apply_service(&svc("Local"));
    p.sync().await.unwrap();
    let local = t.tcp(&t.ext, &addr, 20);
    assert!(
        local.iter().all(|o| matches!(o, Outcome::Reply { server, peer } if server == "pod1" && peer == EXT_IP)),
        "policy Local: only this node's endpoint, client address kept: {local:?}"
    );
    // A pod on this node reaching the NodePort on the node IP is not external traffic from
    // outside: it short-circuits to every endpoint.
    let from_pod = t.tcp(t.pod(3), &addr, 30);
    assert_eq!(distinct(&servers(&from_pod)), vec!["pod1", "pod2"], "{from_pod:?}");

    // No endpoint on this node: outside traffic is dropped (times out), not refused.
    p.apply_slice(&slice("web", &[(2, "node-b")]));
    p.sync().await.unwrap();
    let dropped = t.tcp(&t.ext, &addr, 1);
    assert!(matches!(&dropped[0], Outcome::Error { kind, .. } if kind == "TimedOut"), "{dropped:?}");
}

#[tokio::test]
async fn client_ip_affinity_sticks_to_one_endpoint() {
    skip_without_tools!();
    let mut t = Topology::new(4);
    t.serve_pods(3);
    let mut p = t.started_proxier().await;
    p.apply_service(&ServiceBuilder::new("default", "web").cluster_ip("10.96.0.53").session_affinity(Some(60)).build());
    p.apply_slice(&slice("web", &[(1, NODE), (2, NODE), (3, NODE)]));
    p.sync().await.unwrap();
    let seen = servers(&t.tcp(t.pod(4), "10.96.0.53:80", 20));
    assert_eq!(distinct(&seen).len(), 1, "one endpoint for one client: {seen:?}");
    // Without affinity the same client spreads again.
    p.apply_service(&ServiceBuilder::new("default", "web").cluster_ip("10.96.0.53").build());
    p.sync().await.unwrap();
    let seen = servers(&t.tcp(t.pod(4), "10.96.0.53:80", 30));
    assert!(distinct(&seen).len() > 1, "{seen:?}");
}

#[tokio::test]
async fn a_pod_reaches_itself_through_its_service_and_the_outside_through_masquerade() {
    skip_without_tools!();
    let mut t = Topology::new(1);
    t.serve_pods(1);
    let ext = t.ext.clone();
    t.serve(&ext, "tcp-server outside 9000");
    let mut p = t.started_proxier().await;
    p.apply_service(&ServiceBuilder::new("default", "web").cluster_ip("10.96.0.54").build());
    p.apply_slice(&slice("web", &[(1, NODE)]));
    p.sync().await.unwrap();
    // Hairpin: pod1 → service → pod1 works because it is masqueraded to the bridge address.
    let hairpin = t.tcp(t.pod(1), "10.96.0.54:80", 2);
    assert!(
        hairpin.iter().all(|o| matches!(o, Outcome::Reply { server, peer } if server == "pod1" && peer == "10.244.0.1")),
        "{hairpin:?}"
    );
    // The outside has no route to pods: replies come back only because of the masquerade.
    let out = t.tcp(t.pod(1), &format!("{EXT_IP}:9000"), 1);
    assert_eq!(out, vec![Outcome::Reply { server: "outside".into(), peer: NODE_IP.into() }]);
}

#[tokio::test]
async fn udp_flows_move_off_a_removed_endpoint() {
    skip_without_tools!();
    let conntrack_present = Command::new("conntrack").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !conntrack_present {
        eprintln!("skipping: the `conntrack` binary is missing (package conntrack)");
        return;
    }
    let mut t = Topology::new(3);
    for i in 1..=2 {
        let ns = t.pod(i).to_string();
        t.serve(&ns, &format!("udp-server pod{i} 5353"));
    }
    let mut p = t.started_proxier().await;
    p.apply_service(&ServiceBuilder::new("default", "dns").cluster_ip("10.96.0.55").port("dns", 53, "UDP").build());
    let udp_slice = |eps: &[usize]| {
        let mut b = SliceBuilder::new("default", "dns-1", "dns").port("dns", 5353, "UDP");
        for i in eps {
            b = b.endpoint(&t.pod_ip(*i), Some(NODE));
        }
        b.build()
    };
    // Before any endpoint: the first datagram is refused (ICMP) and leaves no usable flow.
    p.sync().await.unwrap();
    let before = run_client(t.pod(3), "udp-client 10.96.0.55:53 40000 1");
    assert!(matches!(&before[0], Outcome::Error { .. }), "{before:?}");
    p.apply_slice(&udp_slice(&[1, 2]));
    p.sync().await.unwrap();
    // One flow (fixed source port) sticks to one endpoint through its conntrack entry.
    let first = servers(&run_client(t.pod(3), "udp-client 10.96.0.55:53 40000 5"));
    assert_eq!(distinct(&first).len(), 1, "{first:?}");
    let chosen = first[0].clone();
    let remaining = if chosen == "pod1" { 2 } else { 1 };
    // Remove the chosen endpoint (its server keeps running): the flow must move.
    p.apply_slice(&udp_slice(&[remaining]));
    p.sync().await.unwrap();
    let after = servers(&run_client(t.pod(3), "udp-client 10.96.0.55:53 40000 5"));
    assert_eq!(distinct(&after), vec![format!("pod{remaining}")], "stale flow kept going to {chosen}");
}

#[tokio::test]
async fn every_generated_ruleset_is_accepted_by_the_kernel() {
    skip_without_tools!();
    let t = Topology::new(0);
    let nft = NftCli::in_netns(&t.node);
    nft::reset_table(&nft).await.unwrap();
    let mut p = t.proxier(config());
    p.init().await.unwrap();
    let lb = |ranges: bool, policy: &str, affinity: Option<i32>| {
        let mut b = ServiceBuilder::new("default", "lb")
            .type_("LoadBalancer")
            .cluster_ip("10.96.0.60")
            .port("http", 80, "TCP")
            .node_port(30100)
            .port("dns", 53, "UDP")
            .node_port(30101)
            .port("sctp", 9999, "SCTP")
            .external_ip("198.51.100.7")
            .lb_ingress("203.0.113.9", None)
            .external_traffic_policy(policy);
        if ranges {
            b = b.lb_source_range("192.168.77.0/24").lb_source_range("10.0.0.0/8");
        }
        if let Some(t) = affinity {
            b = b.session_affinity(Some(t));
        }
        b.build()
    };
    let lb_slice = |eps: &[(&str, &str, bool, bool, bool)]| {
        let mut b = SliceBuilder::new("default", "lb-1", "lb")
            .port("http", 8080, "TCP")
            .port("dns", 5353, "UDP")
            .port("sctp", 9999, "SCTP");
        for (ip, node, ready, serving, terminating) in eps {
            b = b.endpoint_with(ip, Some(node), *ready, *serving, *terminating);
        }
        b.build()
    };
    let itp = ServiceBuilder::new("default", "itp").cluster_ip("10.96.0.61").internal_traffic_policy("Local").build();
    let itp_slice = SliceBuilder::new("default", "itp-1", "itp")
        .port("http", 80, "TCP")
        .endpoint("10.244.5.1", Some("node-b"))
        .build();

    // Each step goes through the kernel: creation, then changes that delete map elements,
    // chains and sets in one transaction.
    type Step<'a> = Box<dyn Fn(&mut Proxier) + 'a>;
    let steps: Vec<(&str, Step)> = vec![
        ("everything at once", Box::new(|p: &mut Proxier| {
            p.apply_service(&lb(true, "Local", Some(30)));
            p.apply_slice(&lb_slice(&[("10.244.0.21", NODE, true, true, false), ("10.244.1.21", "node-b", true, true, false)]));
            p.apply_service(&itp);
            p.apply_slice(&itp_slice);
        })),
        ("affinity timeout changes", Box::new(|p: &mut Proxier| p.apply_service(&lb(true, "Local", Some(90))))),
        ("an endpoint goes, one terminates", Box::new(|p: &mut Proxier| {
            p.apply_slice(&lb_slice(&[("10.244.0.21", NODE, false, true, true), ("10.244.1.22", "node-b", true, true, false)]));
        })),
        ("policy Cluster, no affinity, no ranges", Box::new(|p: &mut Proxier| p.apply_service(&lb(false, "Cluster", None)))),
        ("no endpoints", Box::new(|p: &mut Proxier| p.delete_slice("default", "lb-1"))),
        ("endpoints again, with affinity", Box::new(|p: &mut Proxier| {
            p.apply_service(&lb(true, "Local", Some(30)));
            p.apply_slice(&lb_slice(&[("10.244.0.21", NODE, true, true, false)]));
        })),
        ("services deleted", Box::new(|p: &mut Proxier| {
            p.delete_service("default", "lb");
            p.delete_service("default", "itp");
        })),
    ];
    for (what, step) in steps {
        step(&mut p);
        if let Err(e) = p.sync().await {
            panic!("{what}: {e}");
        }
    }
    // Only the skeleton is left, so the table can be listed and checked again as a whole.
    let listing = nft.list_table().await.unwrap();
    for gone in ["default/lb", "default/itp", "10.96.0.60", "10.96.0.61"] {
        assert!(!listing.contains(gone), "{gone} left behind:\n{listing}");
    }
    let script = format!("flush ruleset\n{listing}");
    nft.check(&script).await.expect("the listed table reads back");
}

#[tokio::test]
async fn one_change_is_one_small_transaction_whatever_the_number_of_services() {
    skip_without_tools!();
    for (n, eps) in [(10, 5), (1000, 5)] {
        let t = Topology::new(0);
        let mut p = t.started_proxier().await;
        let (services, slices) = skiff_net::proxy::testing::synthetic_cluster(n, eps);
        services.iter().for_each(|s| p.apply_service(s));
        slices.iter().for_each(|s| p.apply_slice(s));
        let full = p.sync().await.unwrap();
        assert_eq!(full.services_changed, n);
        // Drop one endpoint of a service, then bring it back, a few times.
        let mut times = Vec::new();
        for round in 0..6 {
            let mut changed = slices[round % n].clone();
            changed.endpoints.pop();
            p.apply_slice(&changed);
            let one = p.sync().await.unwrap();
            assert_eq!(one.services_changed, 1);
            assert!(one.script_bytes < 2048, "only the one service is written: {one:?}");
            times.push(one.duration);
            p.apply_slice(&slices[round % n]);
            p.sync().await.unwrap();
        }
        times.sort();
        eprintln!(
            "{n} services x {eps} endpoints: full sync {:?} ({} bytes); one endpoint change: median {:?}, max {:?}",
            full.duration,
            full.script_bytes,
            times[times.len() / 2],
            times.last().unwrap()
        );
    }
}
