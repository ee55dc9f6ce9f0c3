//! NetworkPolicy enforcement against the real kernel.
//!
//! Each test builds a node of its own: a network namespace with a pod bridge (gateway
//! 10.244.1.1/24) and, per pod, a namespace joined to the bridge by a veth pair — the layout
//! the CNI bridge plugin gives real pods. The policy engine programs the node namespace's
//! nftables (`ip netns exec`), and pods make real TCP connections to each other.
//!
//! A test process cannot move itself into another namespace without unsafe code, so the
//! pods' programs are this test binary run again through `ip netns exec`, selecting the
//! ignored test [`netns_helper`] and telling it what to do in an environment variable: serve
//! some TCP ports, or connect once and report through the exit status.
//!
//! Nothing here touches the root namespace: every interface lives in a namespace the test
//! created, and a guard deletes those namespaces (and stops the helpers) however the test ends.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{json, Value};
use skiff_net::nft::{self, NftCli};
use skiff_net::policy::{PolicyConfig, PolicyEngine};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const HELPER_ENV: &str = "SKIFF_NET_POLICY_HELPER";
const NODE: &str = "n1";
/// How long a connection attempt may take before it counts as refused: drops are silent.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// The pod side of the tests: `serve:80,8080` listens on those ports and answers `ok` to
/// every connection; `connect:10.244.1.10:80` exits 0 if it got `ok` from there, else 1.
#[test]
#[ignore = "a helper the tests run inside their network namespaces"]
fn netns_helper() {
    // Not a test of its own: started by the tests below, inside a pod namespace, with
    // its role in the environment. Run by hand it fails rather than pass doing nothing.
    let role = std::env::var(HELPER_ENV).unwrap_or_else(|_| panic!("netns_helper runs only when a policy test starts it ({HELPER_ENV} is unset)"));
    if let Some(ports) = role.strip_prefix("serve:") {
        for port in ports.split(',') {
            let listener = TcpListener::bind(("0.0.0.0", port.parse::<u16>().unwrap())).unwrap();
            std::thread::spawn(move || {
                for mut conn in listener.incoming().flatten() {
                    let _ = conn.write_all(b"ok");
                }
            });
        }
        println!("\nhelper ready");
        std::io::stdout().flush().unwrap();
        loop {
            std::thread::park();
        }
    }
    if let Some(addr) = role.strip_prefix("connect:") {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut got = String::new();
        let ok = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .and_then(|mut s| {
                s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
                s.read_to_string(&mut got)
            })
            .is_ok()
            && got == "ok";
        std::process::exit(if ok { 0 } else { 1 });
    }
    panic!("unknown helper role {role:?}");
}

fn tools_missing() -> bool {
    for tool in ["ip", "nft"] {
        let found = std::process::Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            eprintln!("skipping: `{tool}` is not installed");
            return true;
        }
    }
    false
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

// === a node with pods ===

/// A test node: the namespaces, and the helpers serving inside them. Dropping it stops the
/// helpers and deletes the namespaces, which takes their interfaces along.
struct Node {
    ns: String,
    pods: BTreeMap<String, TestPod>,
    servers: Vec<Child>,
}

struct TestPod {
    netns: String,
    ip: String,
}

impl Node {
    /// A node namespace `<prefix>-node` with bridge `skbr0` (10.244.1.1/24).
    fn new(prefix: &str) -> Node {
        let ns = format!("{prefix}-node");
        let node = Node { ns: ns.clone(), pods: BTreeMap::new(), servers: Vec::new() };
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "link", "add", "skbr0", "type", "bridge"]);
        ip(&["-n", &ns, "addr", "add", "10.244.1.1/24", "dev", "skbr0"]);
        ip(&["-n", &ns, "link", "set", "skbr0", "up"]);
        node
    }

    /// A pod namespace on the bridge with address `10.244.1.<host>`.
    fn add_pod(&mut self, name: &str, host: u8) {
        let netns = format!("{}-{name}", self.ns.trim_end_matches("-node"));
        let addr = format!("10.244.1.{host}");
        let veth = format!("skv{host}");
        ip(&["netns", "add", &netns]);
        self.pods.insert(name.to_string(), TestPod { netns: netns.clone(), ip: addr.clone() });
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        ip(&["-n", &self.ns, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns]);
        ip(&["-n", &self.ns, "link", "set", &veth, "master", "skbr0", "up"]);
        ip(&["-n", &netns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        ip(&["-n", &netns, "route", "add", "default", "via", "10.244.1.1"]);
    }

    fn helper(netns: &str, role: &str) -> Command {
        let exe = std::env::current_exe().expect("test binary");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(exe)
            .args(["--exact", "netns_helper", "--ignored", "--nocapture", "--test-threads=1"])
            .env(HELPER_ENV, role)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Starts a server in `pod` on `ports` and waits until it listens.
    async fn serve(&mut self, pod: &str, ports: &[u16]) {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let mut child = Node::helper(&self.pods[pod].netns, &format!("serve:{}", ports.join(",")))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await {
                Ok(Ok(Some(line))) if line.trim() == "helper ready" => break,
                Ok(Ok(Some(_))) => continue,
                other => panic!("server in {pod} did not start: {other:?}"),
            }
        }
        self.servers.push(child);
    }

    /// Whether `from` (a pod name, or `node` for the node itself) gets an answer from `to:port`.
    async fn connects(&self, from: &str, to: &str, port: u16) -> bool {
        let netns = if from == "node" { &self.ns } else { &self.pods[from].netns };
        let role = format!("connect:{}:{port}", self.pods[to].ip);
        let status = Node::helper(netns, &role)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("run client");
        status.success()
    }

    /// Checks every `(from, to, port, allowed)` at once and reports all mismatches together.
    async fn expect(&self, what: &str, cases: &[(&str, &str, u16, bool)]) {
        let results = futures::future::join_all(cases.iter().map(|(from, to, port, _)| self.connects(from, to, *port))).await;
        let wrong: Vec<String> = cases
            .iter()
            .zip(results)
            .filter(|((_, _, _, want), got)| want != got)
            .map(|((from, to, port, want), _)| {
                format!("{from} -> {to}:{port} should be {}", if *want { "allowed" } else { "refused" })
            })
            .collect();
        assert!(wrong.is_empty(), "{what}:\n  {}", wrong.join("\n  "));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.start_kill();
        }
        for pod in self.pods.values() {
            let _ = std::process::Command::new("ip").args(["netns", "del", &pod.netns]).status();
        }
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

// === API objects ===

fn pod(ns: &str, name: &str, ip: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "i",
            "ports": [{"name": "http", "containerPort": 80}, {"name": "alt", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    }))
    .unwrap()
}

fn policy(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec})).unwrap()
}

fn namespace(name: &str, labels: Value) -> Namespace {
    let mut labels = labels;
    labels["kubernetes.io/metadata.name"] = json!(name);
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

async fn engine(node: &Node) -> PolicyEngine {
    let nft = Arc::new(NftCli::in_netns(&node.ns));
    nft::reset_table(nft.as_ref()).await.expect("reset table");
    let mut engine = PolicyEngine::new(PolicyConfig { node_name: NODE.into() }, nft);
    engine.init().await.expect("init");
    engine
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_policies_admit_only_the_peers_and_ports_they_name() {
    if tools_missing() {
        return;
    }
    let mut node = Node::new(&format!("skp{}i", std::process::id()));
    for (name, host) in [("web", 10), ("client", 11), ("other", 12), ("prod", 13), ("dev", 14)] {
        node.add_pod(name, host);
    }
    node.serve("web", &[80, 8080]).await;

    let mut engine = engine(&node).await;
    engine.apply_namespace(&namespace("default", json!({})));
    engine.apply_namespace(&namespace("prod", json!({"env": "prod"})));
    engine.apply_namespace(&namespace("dev", json!({"env": "dev"})));
    engine.apply_pod(&pod("default", "web", "10.244.1.10", json!({"app": "web"})));
    engine.apply_pod(&pod("default", "client", "10.244.1.11", json!({"app": "client"})));
    engine.apply_pod(&pod("default", "other", "10.244.1.12", json!({"app": "other"})));
    engine.apply_pod(&pod("prod", "prod", "10.244.1.13", json!({"app": "client"})));
    engine.apply_pod(&pod("dev", "dev", "10.244.1.14", json!({"app": "client"})));
    engine.sync().await.unwrap();
    node.expect("without policies", &[("client", "web", 80, true), ("dev", "web", 8080, true)]).await;

    engine.apply_policy(&policy("default", "deny", json!({"podSelector": {}, "policyTypes": ["Ingress"]})));
    engine.sync().await.unwrap();
    node.expect(
        "default deny",
        &[("client", "web", 80, false), ("prod", "web", 80, false), ("node", "web", 80, true), ("web", "web", 80, true)],
    )
    .await;

    engine.apply_policy(&policy(
        "default",
        "from-clients",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}),
    ));
    engine.sync().await.unwrap();
    node.expect(
        "allow by podSelector",
        &[("client", "web", 80, true), ("client", "web", 8080, true), ("other", "web", 80, false), ("prod", "web", 80, false)],
    )
    .await;

    // A label change moves a pod into the peer set and another out of it.
    engine.apply_pod(&pod("default", "other", "10.244.1.12", json!({"app": "client"})));
    engine.apply_pod(&pod("default", "client", "10.244.1.11", json!({"app": "retired"})));
    engine.sync().await.unwrap();
    node.expect("after relabelling", &[("other", "web", 80, true), ("client", "web", 80, false)]).await;

    engine.apply_policy(&policy(
        "default",
        "from-prod",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}], "ports": [{"port": "http"}]}]}),
    ));
    engine.sync().await.unwrap();
    node.expect(
        "allow by namespaceSelector, on the named port only",
        &[("prod", "web", 80, true), ("prod", "web", 8080, false), ("dev", "web", 80, false)],
    )
    .await;

    engine.delete_policy("default", "from-clients");
    engine.delete_policy("default", "from-prod");
    engine.apply_policy(&policy(
        "default",
        "from-block",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.1.0/24", "except": ["10.244.1.12/32", "10.244.1.14/31"]}}],
                            "ports": [{"port": 8000, "endPort": 8100}]}]}),
    ));
    engine.sync().await.unwrap();
    node.expect(
        "allow by ipBlock with except, on a port range",
        &[
            ("client", "web", 8080, true),
            ("prod", "web", 8080, true),
            ("client", "web", 80, false),
            ("other", "web", 8080, false),
            ("dev", "web", 8080, false),
        ],
    )
    .await;

    engine.delete_policy("default", "from-block");
    engine.delete_policy("default", "deny");
    engine.sync().await.unwrap();
    node.expect("after deleting every policy", &[("client", "web", 80, true), ("dev", "web", 8080, true)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_policies_restrict_what_selected_pods_may_reach() {
    if tools_missing() {
        return;
    }
    let mut node = Node::new(&format!("skp{}e", std::process::id()));
    for (name, host) in [("web", 10), ("client", 11), ("db", 12), ("free", 13)] {
        node.add_pod(name, host);
    }
    node.serve("web", &[80, 8080]).await;
    node.serve("db", &[80]).await;
    node.serve("client", &[80]).await;

    let mut engine = engine(&node).await;
    engine.apply_namespace(&namespace("default", json!({})));
    engine.apply_pod(&pod("default", "web", "10.244.1.10", json!({"app": "web"})));
    engine.apply_pod(&pod("default", "client", "10.244.1.11", json!({"app": "client"})));
    engine.apply_pod(&pod("default", "db", "10.244.1.12", json!({"app": "db"})));
    engine.apply_pod(&pod("default", "free", "10.244.1.13", json!({"app": "free"})));

    engine.apply_policy(&policy(
        "default",
        "client-egress",
        json!({"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"]}),
    ));
    engine.sync().await.unwrap();
    node.expect(
        "egress deny",
        &[
            ("client", "web", 80, false),
            ("client", "db", 80, false),
            ("free", "web", 80, true),
            // Ingress is not isolated: others still reach the client, and it can answer.
            ("free", "client", 80, true),
            ("node", "client", 80, true),
        ],
    )
    .await;

    engine.apply_policy(&policy(
        "default",
        "client-egress",
        json!({"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "alt"}]}]}),
    ));
    engine.sync().await.unwrap();
    node.expect(
        "egress to a podSelector on a named port",
        &[("client", "web", 8080, true), ("client", "web", 80, false), ("client", "db", 80, false)],
    )
    .await;

    // Both ends isolated: the connection needs the sender's egress and the receiver's ingress.
    engine.apply_policy(&policy(
        "default",
        "web-ingress",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "free"}}}]}]}),
    ));
    engine.sync().await.unwrap();
    node.expect("egress allowed, ingress not", &[("client", "web", 8080, false), ("free", "web", 8080, true)]).await;

    engine.apply_pod(&pod("default", "client", "10.244.1.11", json!({"app": "client", "role": "x"})));
    engine.apply_policy(&policy(
        "default",
        "web-ingress",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "x"}}}]}]}),
    ));
    engine.sync().await.unwrap();
    node.expect("both allowed", &[("client", "web", 8080, true), ("free", "web", 8080, false)]).await;
}
