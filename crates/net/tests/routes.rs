//! Host-gw routes, the pod bridge and the forwarding sysctls against the real kernel.
//!
//! [`RouteManager`], [`ensure_bridge`] and [`enable_forwarding`] act on the network namespace
//! of the calling process, and a test process cannot switch its own namespace without unsafe
//! code. So each test creates a fresh namespace, prepares it with `ip -n`, and runs the test
//! binary again inside it (`ip netns exec NS <this binary> --exact inner_… --ignored`) with
//! the namespace's name in [`NETNS_ENV`]; the inner test does the work and checks the kernel
//! with `ip -j`, and its exit status is the outer test's verdict.
//!
//! The inner tests are `#[ignore]`d, so a plain `cargo test` runs them only through their
//! outer tests (which check that they passed), and they fail unless the process really sits
//! in the namespace the variable names, so running ignored tests by hand can never change
//! the host.
//! A guard deletes the namespace however the outer test ends.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};
use skiff_net::routes::{enable_forwarding, ensure_bridge, RouteError, RouteManager};

const NETNS_ENV: &str = "SKIFF_NET_ROUTES_NETNS";

// === running inside a namespace ===

fn tools_missing() -> bool {
    let found = Command::new("ip").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        eprintln!("skipping: `ip` is not installed");
    }
    !found
}

/// A network namespace of the test's own; deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("skr{}-{tag}", std::process::id());
        run_ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        run_ip(&all);
    }

    /// Runs the ignored test `inner` inside the namespace and fails if it fails.
    fn run_inner(&self, inner: &str) {
        let exe = std::env::current_exe().expect("test binary");
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .arg(exe)
            .args(["--exact", inner, "--ignored", "--nocapture", "--test-threads=1"])
            .env(NETNS_ENV, &self.0)
            .output()
            .expect("run the inner test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{inner} failed inside {}:\n{stdout}\n{}",
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 passed"), "{inner} did not run:\n{stdout}");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run_ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Checks that this process runs inside the namespace [`NETNS_ENV`] names. An inner test
/// started by hand (the variable unset) fails rather than pass doing nothing.
fn assert_inside_test_netns() {
    let name = std::env::var(NETNS_ENV).unwrap_or_else(|_| panic!("inner tests run only when their outer test starts them ({NETNS_ENV} is unset)"));
    assert!(name.starts_with("skr"), "not a test namespace: {name}");
    let ours = std::fs::metadata("/proc/self/ns/net").expect("own netns");
    let theirs = std::fs::metadata(format!("/run/netns/{name}")).expect("test netns");
    assert_eq!((ours.dev(), ours.ino()), (theirs.dev(), theirs.ino()), "not inside {name}; refusing to touch this namespace");
}

/// `ip -j ARGS` in the current namespace.
fn ip_json(args: &[&str]) -> Vec<Value> {
    let out = Command::new("ip").arg("-j").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip -j {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str(&text).expect("ip -j prints JSON")
}

/// `dst via gateway` of the routes with Skiff's protocol number.
fn skiff_routes() -> BTreeSet<String> {
    route_set(&["route", "show", "proto", "90"])
}

fn route_set(args: &[&str]) -> BTreeSet<String> {
    ip_json(args)
        .iter()
        .map(|r| format!("{} via {}", r["dst"].as_str().unwrap_or("?"), r["gateway"].as_str().unwrap_or("-")))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn node(name: &str, cidrs: Value, internal_ip: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"podCIDRs": cidrs},
        "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": internal_ip}]}
    }))
    .unwrap()
}

// === host-gw routes ===

#[test]
fn host_gw_routes_follow_the_nodes() {
    if tools_missing() {
        return;
    }
    let ns = Netns::new("routes");
    // The node network, a network behind a router, a stale route of an earlier run and a
    // route of somebody else's.
    ns.ip(&["link", "add", "skv0", "type", "veth", "peer", "name", "skv0p"]);
    ns.ip(&["addr", "add", "192.168.77.1/24", "dev", "skv0"]);
    ns.ip(&["link", "set", "skv0p", "up"]);
    ns.ip(&["link", "set", "skv0", "up"]);
    ns.ip(&["route", "add", "10.99.0.0/16", "via", "192.168.77.254"]);
    ns.ip(&["route", "add", "10.244.9.0/24", "via", "192.168.77.9", "proto", "90"]);
    ns.ip(&["route", "add", "10.50.0.0/16", "via", "192.168.77.50"]);
    ns.run_inner("inner_host_gw_routes");
}

#[tokio::test]
#[ignore = "runs inside a namespace made by host_gw_routes_follow_the_nodes"]
async fn inner_host_gw_routes() {
    assert_inside_test_netns();
    let me = node("n1", json!(["10.244.1.0/24"]), "192.168.77.1");
    let mut routes = RouteManager::new("n1").await.unwrap();
    routes
        .sync(&[
            me.clone(),
            node("n2", json!(["10.244.2.0/24"]), "192.168.77.2"),
            node("n3", json!(["10.244.3.0/24", "fd00:3::/64"]), "192.168.77.3"),
            node("behind-router", json!(["10.244.4.0/24"]), "10.99.0.5"),
            node("unreachable", json!(["10.244.5.0/24"]), "172.31.0.5"),
            node("no-cidr", json!([]), "192.168.77.6"),
        ])
        .await
        .unwrap();
    assert_eq!(skiff_routes(), set(&["10.244.2.0/24 via 192.168.77.2", "10.244.3.0/24 via 192.168.77.3"]));
    assert!(route_set(&["route", "show"]).contains("10.50.0.0/16 via 192.168.77.50"), "foreign routes stay");

    // n2 leaves, n3 moves: one route goes, one is replaced.
    routes.sync(&[me.clone(), node("n3", json!(["10.244.3.0/24"]), "192.168.77.4")]).await.unwrap();
    assert_eq!(skiff_routes(), set(&["10.244.3.0/24 via 192.168.77.4"]));

    // A restarted agent adopts what is there.
    let mut again = RouteManager::new("n1").await.unwrap();
    again.sync(&[me.clone(), node("n3", json!(["10.244.3.0/24"]), "192.168.77.4")]).await.unwrap();
    assert_eq!(skiff_routes(), set(&["10.244.3.0/24 via 192.168.77.4"]));

    again.sync(&[me]).await.unwrap();
    assert_eq!(skiff_routes(), set(&[]));
    assert!(route_set(&["route", "show"]).contains("10.50.0.0/16 via 192.168.77.50"), "foreign routes stay");
}

// === the pod bridge ===

#[test]
fn the_pod_bridge_is_created_or_adopted_with_the_gateway_address() {
    if tools_missing() {
        return;
    }
    let ns = Netns::new("bridge");
    ns.ip(&["link", "add", "skbr1", "type", "bridge"]);
    ns.ip(&["link", "add", "skv1", "type", "veth", "peer", "name", "skv1p"]);
    ns.run_inner("inner_pod_bridge");
}

/// The bridge's IPv4 addresses as `a.b.c.d/len`, and whether it is administratively up.
fn bridge_state(name: &str) -> (Vec<String>, bool) {
    let links = ip_json(&["addr", "show", "dev", name]);
    let link = &links[0];
    let up = link["flags"].as_array().unwrap().iter().any(|f| f == "UP");
    let addrs = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    (addrs, up)
}

#[tokio::test]
#[ignore = "runs inside a namespace made by the_pod_bridge_is_created_or_adopted_with_the_gateway_address"]
async fn inner_pod_bridge() {
    assert_inside_test_netns();
    let gw: Ipv4Addr = "10.244.1.1".parse().unwrap();
    ensure_bridge("skbr0", gw, 24).await.unwrap();
    assert_eq!(bridge_state("skbr0"), (vec!["10.244.1.1/24".to_string()], true));
    // The gateway address can be served on before any pod is attached.
    let listener = TcpListener::bind((gw, 0)).expect("bind the gateway address");
    drop(listener);

    ensure_bridge("skbr0", gw, 24).await.unwrap();
    assert_eq!(bridge_state("skbr0"), (vec!["10.244.1.1/24".to_string()], true), "idempotent");

    // A new pod CIDR replaces the old gateway address.
    ensure_bridge("skbr0", "10.244.7.1".parse().unwrap(), 24).await.unwrap();
    assert_eq!(bridge_state("skbr0").0, vec!["10.244.7.1/24".to_string()]);

    // A bridge made by someone else (the CNI plugin) is adopted.
    ensure_bridge("skbr1", "10.244.8.1".parse().unwrap(), 24).await.unwrap();
    assert_eq!(bridge_state("skbr1"), (vec!["10.244.8.1/24".to_string()], true));

    match ensure_bridge("skv1", gw, 24).await {
        Err(RouteError::NotABridge { name }) => assert_eq!(name, "skv1"),
        other => panic!("a veth is not a bridge: {other:?}"),
    }
    assert!(matches!(ensure_bridge("skbr0", gw, 33).await, Err(RouteError::InvalidPrefix { prefix: 33 })));
}

// === sysctls ===

#[test]
fn forwarding_sysctls_are_switched_on() {
    if tools_missing() {
        return;
    }
    let ns = Netns::new("sysctl");
    ns.run_inner("inner_forwarding_sysctls");
}

#[test]
#[ignore = "runs inside a namespace made by forwarding_sysctls_are_switched_on"]
fn inner_forwarding_sysctls() {
    assert_inside_test_netns();
    let paths = ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/bridge/bridge-nf-call-iptables"];
    for path in paths {
        std::fs::write(path, "0").unwrap();
    }
    enable_forwarding().unwrap();
    for path in paths {
        assert_eq!(std::fs::read_to_string(path).unwrap().trim(), "1", "{path}");
    }
}
