//! The engine against a recording nftables: which objects a cluster state compiles to, and
//! that changes travel as small updates.

use std::sync::Arc;

use serde_json::{json, Value};

use super::compile::policy_id;
use super::*;
use crate::nft::RecordingNft;

const NODE: &str = "n1";

fn pod(ns: &str, name: &str, node: &str, ip: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i",
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    }))
    .unwrap()
}

fn policy(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec})).unwrap()
}

fn namespace(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

fn engine() -> (PolicyEngine, RecordingNft) {
    let rec = RecordingNft::default();
    let engine = PolicyEngine::new(PolicyConfig { node_name: NODE.into() }, Arc::new(rec.clone()));
    (engine, rec)
}

/// Syncs and returns the script of that sync ("" when none was sent).
async fn sync(engine: &mut PolicyEngine, rec: &RecordingNft) -> String {
    let before = rec.taken().len();
    engine.sync().await.unwrap();
    let scripts = rec.taken();
    assert!(scripts.len() <= before + 2, "at most init and one update per sync");
    scripts.last().filter(|_| scripts.len() > before).cloned().unwrap_or_default()
}

fn lines(script: &str) -> Vec<&str> {
    script.lines().collect()
}

#[tokio::test]
async fn init_creates_one_forward_chain_and_map_per_direction() {
    let (mut engine, rec) = engine();
    engine.init().await.unwrap();
    let script = rec.last().unwrap();
    for line in [
        "add map ip skiff policy-ingress-pods { type ipv4_addr : verdict; }",
        "add map ip skiff policy-egress-pods { type ipv4_addr : verdict; }",
        "add rule ip skiff policy-ingress ct state established,related accept",
        "add rule ip skiff policy-ingress ip daddr vmap @policy-ingress-pods",
        "add rule ip skiff policy-egress ip saddr vmap @policy-egress-pods",
    ] {
        assert!(lines(&script).contains(&line), "missing {line:?} in\n{script}");
    }
    assert!(script.contains("type filter hook forward priority filter; policy accept;"));
    assert!(!script.contains("delete table") && !script.contains("flush table"), "never touches the table as a whole");
}

#[tokio::test]
async fn pods_no_policy_selects_are_not_isolated() {
    let (mut engine, rec) = engine();
    engine.apply_pod(&pod("default", "a", NODE, "10.244.1.5", json!({"app": "a"})));
    engine.apply_policy(&policy("default", "deny", json!({"podSelector": {"matchLabels": {"app": "other"}}})));
    sync(&mut engine, &rec).await;
    assert_eq!(rec.taken().len(), 1, "only the base objects were written");
    assert!(!engine.dirty());
}

#[tokio::test]
async fn a_default_deny_isolates_the_local_pods_of_its_namespace_only() {
    let (mut engine, rec) = engine();
    engine.apply_pod(&pod("default", "a", NODE, "10.244.1.5", json!({})));
    engine.apply_pod(&pod("default", "remote", "n2", "10.244.2.5", json!({})));
    engine.apply_pod(&pod("other", "b", NODE, "10.244.1.6", json!({})));
    engine.apply_policy(&policy("default", "deny", json!({"podSelector": {}})));
    let script = sync(&mut engine, &rec).await;
    let id = policy_id("default", "deny");
    assert_eq!(
        script,
        format!(
            "add chain ip skiff policy-in-10.244.1.5\n\
             add chain ip skiff policy-np-{id}-in {{ comment \"default/deny ingress\"; }}\n\
             add rule ip skiff policy-in-10.244.1.5 ip saddr 10.244.1.5 accept\n\
             add rule ip skiff policy-in-10.244.1.5 jump policy-np-{id}-in\n\
             add rule ip skiff policy-in-10.244.1.5 drop\n\
             add element ip skiff policy-ingress-pods {{ 10.244.1.5 : jump policy-in-10.244.1.5 }}\n"
        )
    );
}

#[tokio::test]
async fn a_pod_selector_peer_is_a_set_of_pod_addresses_across_nodes() {
    let (mut engine, rec) = engine();
    engine.apply_pod(&pod("default", "web", NODE, "10.244.1.5", json!({"app": "web"})));
    engine.apply_pod(&pod("default", "client", "n2", "10.244.2.7", json!({"app": "client"})));
    engine.apply_pod(&pod("other", "client", NODE, "10.244.1.9", json!({"app": "client"})));
    engine.apply_policy(&policy(
        "default",
        "allow-client",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}),
    ));
    let script = sync(&mut engine, &rec).await;
    let id = policy_id("default", "allow-client");
    assert!(
        lines(&script).contains(&format!("add element ip skiff policy-np-{id}-in0-peers {{ 10.244.2.7 }}").as_str()),
        "only the client of the policy's namespace is a peer:\n{script}"
    );
    assert!(lines(&script).contains(&format!("add rule ip skiff policy-np-{id}-in ip saddr @policy-np-{id}-in0-peers accept").as_str()));

    // A new client and a label change are element updates, nothing else.
    engine.apply_pod(&pod("default", "client2", NODE, "10.244.1.8", json!({"app": "client"})));
    engine.apply_pod(&pod("default", "client", "n2", "10.244.2.7", json!({"app": "gone"})));
    assert!(engine.dirty());
    let script = sync(&mut engine, &rec).await;
    assert_eq!(
        script,
        format!(
            "delete element ip skiff policy-np-{id}-in0-peers {{ 10.244.2.7 }}\n\
             add element ip skiff policy-np-{id}-in0-peers {{ 10.244.1.8 }}\n"
        )
    );
}

#[tokio::test]
async fn namespace_selectors_pick_pods_of_matching_namespaces_and_combine_with_pod_selectors() {
    let (mut engine, rec) = engine();
    engine.apply_namespace(&namespace("prod", json!({"env": "prod"})));
    engine.apply_namespace(&namespace("dev", json!({"env": "dev"})));
    engine.apply_pod(&pod("default", "web", NODE, "10.244.1.5", json!({"app": "web"})));
    engine.apply_pod(&pod("prod", "api", "n2", "10.244.2.1", json!({"app": "api"})));
    engine.apply_pod(&pod("prod", "job", "n2", "10.244.2.2", json!({"app": "job"})));
    engine.apply_pod(&pod("dev", "api", "n2", "10.244.2.3", json!({"app": "api"})));
    engine.apply_policy(&policy(
        "default",
        "ns",
        json!({"podSelector": {}, "ingress": [
            {"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}]},
            {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "api"}}}]},
            {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dev"}}}]}
        ]}),
    ));
    let script = sync(&mut engine, &rec).await;
    let id = policy_id("default", "ns");
    for line in [
        format!("add element ip skiff policy-np-{id}-in0-peers {{ 10.244.2.1, 10.244.2.2 }}"),
        format!("add element ip skiff policy-np-{id}-in1-peers {{ 10.244.2.1, 10.244.2.3 }}"),
        format!("add element ip skiff policy-np-{id}-in2-peers {{ 10.244.2.3 }}"),
    ] {
        assert!(lines(&script).contains(&line.as_str()), "missing {line:?} in\n{script}");
    }

    // Relabelling a namespace moves its pods in and out of the sets.
    engine.apply_namespace(&namespace("dev", json!({"env": "prod"})));
    let script = sync(&mut engine, &rec).await;
    assert_eq!(script, format!("add element ip skiff policy-np-{id}-in0-peers {{ 10.244.2.3 }}\n"));
}

#[tokio::test]
async fn ip_blocks_become_interval_sets_without_their_excepts() {
    let (mut engine, rec) = engine();
    engine.apply_pod(&pod("default", "web", NODE, "10.244.1.5", json!({})));
    engine.apply_policy(&policy(
        "default",
        "blocks",
        json!({"podSelector": {}, "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.128.0.0/9", "10.1.0.0/16"]}},
            {"ipBlock": {"cidr": "192.168.1.0/24"}},
            {"ipBlock": {"cidr": "fd00::/8"}}
        ]}]}),
    ));
    let script = sync(&mut engine, &rec).await;
    let id = policy_id("default", "blocks");
    assert!(
        lines(&script).contains(
            &format!(
                "add rule ip skiff policy-np-{id}-in ip saddr {{ 10.0.0.0/16, 10.2.0.0-10.127.255.255, 192.168.1.0/24 }} accept"
            )
            .as_str()
        ),
        "{script}"
    );
    assert!(!script.contains("-peers"), "no pod peers, no peer set");
}

#[tokio::test]
async fn ports_compile_to_protocol_and_port_matches() {
    let (mut engine, rec) = engine();
    engine.apply_pod(&pod("default", "web", NODE, "10.244.1.5", json!({})));
    engine.apply_pod(&pod("default", "peer", "n2", "10.244.2.5", json!({"role": "peer"})));
    engine.apply_policy(&policy(
        "default",
        "ports",
        json!({"podSelector": {}, "ingress": [{
            "from": [{"podSelector": {"matchLabels": {"role": "peer"}}}, {"ipBlock": {"cidr": "172.16.0.0/12"}}],
            "ports": [
                {"port": 80},
                {"protocol": "UDP", "port": 1000, "endPort": 2000},
                {"protocol": "SCTP"},
                {"port": "http"},
                {"protocol": "UDP", "port": "dns"},
                {"port": "nope"}
            ]
        }]}),
    ));
    let script = sync(&mut engine, &rec).await;
    let id = policy_id("default", "ports");
    let chain = format!("policy-np-{id}-in");
    let peers = format!("ip saddr @policy-np-{id}-in0-peers");
    let block = "ip saddr { 172.16.0.0/12 }";
    let mut expected = Vec::new();
    for peer in [peers.as_str(), block] {
        for port in [
            "tcp dport 80".to_string(),
            "udp dport 1000-2000".to_string(),
            "meta l4proto sctp".to_string(),
            format!("ip daddr . meta l4proto . th dport @policy-np-{id}-in0-ports"),
        ] {
            expected.push(format!("add rule ip skiff {chain} {peer} {port} accept"));
        }
    }
    let got: Vec<&str> = lines(&script).into_iter().filter(|l| l.starts_with(&format!("add rule ip skiff {chain} "))).collect();
    assert_eq!(got, expected);
    // Named ports resolve against the local pod being protected.
    assert!(lines(&script).contains(
        &format!("add element ip skiff policy-np-{id}-in0-ports {{ 10.244.1.5 . tcp . 8080, 10.244.1.5 . udp . 5353 }}").as_str()
    ));
    assert!(script.contains("type ipv4_addr . inet_proto . inet_service;"));
}

#[tokio::test]
async fn egress_named_ports_resolve_against_the_destination_pods() {
    let (mut engine, rec) = engine();
    engine.apply_pod(&pod("default", "client", NODE, "10.244.1.5", json!({"app": "client"})));
    engine.apply_pod(&pod("default", "server", "n2", "10.244.2.5", json!({"app": "server"})));
    engine.apply_policy(&policy(
        "default",
        "egress",
        json!({"podSelector": {"matchLabels": {"app": "client"}}, "egress": [{"ports": [{"port": "http"}]}]}),
    ));
    let script = sync(&mut engine, &rec).await;
    let id = policy_id("default", "egress");
    for line in [
        format!("add element ip skiff policy-np-{id}-out0-ports {{ 10.244.1.5 . tcp . 8080, 10.244.2.5 . tcp . 8080 }}"),
        format!("add rule ip skiff policy-np-{id}-out ip daddr . meta l4proto . th dport @policy-np-{id}-out0-ports accept"),
        "add rule ip skiff policy-out-10.244.1.5 ip daddr 10.244.1.5 accept".to_string(),
        format!("add rule ip skiff policy-out-10.244.1.5 jump policy-np-{id}-out"),
        "add element ip skiff policy-egress-pods { 10.244.1.5 : jump policy-out-10.244.1.5 }".to_string(),
    ] {
        assert!(lines(&script).contains(&line.as_str()), "missing {line:?} in\n{script}");
    }
    // policyTypes was left out and there are egress rules: Egress and Ingress both isolate.
    assert!(script.contains("policy-ingress-pods { 10.244.1.5 : jump policy-in-10.244.1.5 }"));
}

#[tokio::test]
async fn policy_types_decide_which_directions_isolate() {
    let (mut engine, rec) = engine();
    engine.apply_pod(&pod("default", "a", NODE, "10.244.1.5", json!({})));
    engine.apply_policy(&policy(
        "default",
        "egress-only",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]}),
    ));
    let script = sync(&mut engine, &rec).await;
    assert!(script.contains("policy-egress-pods { 10.244.1.5 :"));
    assert!(!script.contains("policy-ingress-pods"), "{script}");
    let id = policy_id("default", "egress-only");
    assert!(!script.contains(&format!("add rule ip skiff policy-np-{id}-out ")), "no egress rule: deny all egress");
}

#[tokio::test]
async fn an_empty_rule_allows_everything_to_the_selected_pods() {
    let (mut engine, rec) = engine();
    engine.apply_pod(&pod("default", "a", NODE, "10.244.1.5", json!({})));
    engine.apply_policy(&policy("default", "all", json!({"podSelector": {}, "ingress": [{"from": [], "ports": []}]})));
    let script = sync(&mut engine, &rec).await;
    let id = policy_id("default", "all");
    assert!(lines(&script).contains(&format!("add rule ip skiff policy-np-{id}-in accept").as_str()), "{script}");
}

#[tokio::test]
async fn finished_host_network_and_addressless_pods_are_neither_enforced_nor_peers() {
    let (mut engine, rec) = engine();
    let mut done = pod("default", "done", NODE, "10.244.1.5", json!({"app": "x"}));
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut host = pod("default", "host", NODE, "192.168.0.1", json!({"app": "x"}));
    host.spec.as_mut().unwrap().host_network = Some(true);
    let mut pending = pod("default", "pending", NODE, "10.244.1.7", json!({"app": "x"}));
    pending.status = None;
    for p in [&done, &host, &pending] {
        engine.apply_pod(p);
    }
    engine.apply_pod(&pod("default", "web", NODE, "10.244.1.6", json!({"app": "web"})));
    engine.apply_policy(&policy(
        "default",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "x"}}}]}]}),
    ));
    let script = sync(&mut engine, &rec).await;
    assert!(script.contains("policy-ingress-pods { 10.244.1.6 : jump policy-in-10.244.1.6 }\n"), "{script}");
    assert!(!script.contains("add element ip skiff policy-np-"), "the peer set stays empty:\n{script}");
}

#[tokio::test]
async fn changing_which_policies_select_a_pod_rewrites_only_its_own_chain() {
    let (mut engine, rec) = engine();
    engine.apply_pod(&pod("default", "a", NODE, "10.244.1.5", json!({"tier": "db"})));
    engine.apply_policy(&policy("default", "all", json!({"podSelector": {}})));
    engine.apply_policy(&policy("default", "db", json!({"podSelector": {"matchLabels": {"tier": "db"}}, "ingress": [{}]})));
    sync(&mut engine, &rec).await;
    engine.apply_pod(&pod("default", "a", NODE, "10.244.1.5", json!({"tier": "web"})));
    let script = sync(&mut engine, &rec).await;
    let all = policy_id("default", "all");
    let db = policy_id("default", "db");
    assert_eq!(
        script,
        format!(
            "flush chain ip skiff policy-in-10.244.1.5\n\
             add rule ip skiff policy-in-10.244.1.5 ip saddr 10.244.1.5 accept\n\
             add rule ip skiff policy-in-10.244.1.5 jump policy-np-{all}-in\n\
             add rule ip skiff policy-in-10.244.1.5 drop\n\
             flush chain ip skiff policy-np-{db}-in\n\
             delete chain ip skiff policy-np-{db}-in\n"
        )
    );
}

#[tokio::test]
async fn deleting_the_last_policy_removes_every_policy_object() {
    let (mut engine, rec) = engine();
    engine.apply_pod(&pod("default", "a", NODE, "10.244.1.5", json!({})));
    engine.apply_policy(&policy(
        "default",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": "http"}]}]}),
    ));
    sync(&mut engine, &rec).await;
    engine.delete_policy("default", "p");
    let script = sync(&mut engine, &rec).await;
    let id = policy_id("default", "p");
    assert_eq!(
        script,
        format!(
            "delete element ip skiff policy-ingress-pods {{ 10.244.1.5 }}\n\
             flush chain ip skiff policy-in-10.244.1.5\n\
             flush chain ip skiff policy-np-{id}-in\n\
             delete chain ip skiff policy-in-10.244.1.5\n\
             delete chain ip skiff policy-np-{id}-in\n\
             delete set ip skiff policy-np-{id}-in0-peers\n\
             delete set ip skiff policy-np-{id}-in0-ports\n"
        )
    );
    assert!(!engine.dirty());
}

#[tokio::test]
async fn updates_that_change_nothing_enforced_cost_no_transaction() {
    let (mut engine, rec) = engine();
    let mut a = pod("default", "a", NODE, "10.244.1.5", json!({}));
    engine.apply_pod(&a);
    engine.apply_policy(&policy("default", "p", json!({"podSelector": {}})));
    sync(&mut engine, &rec).await;
    let sent = rec.taken().len();
    a.status.as_mut().unwrap().conditions = Some(vec![serde_json::from_value(json!({"type": "Ready", "status": "True"})).unwrap()]);
    engine.apply_pod(&a);
    engine.apply_policy(&policy("default", "p", json!({"podSelector": {}})));
    assert!(!engine.dirty());
    engine.sync().await.unwrap();
    assert_eq!(rec.taken().len(), sent);
}

// === a failing nftables ===

/// Refuses the first `fail` scripts, then records.
struct Flaky {
    fail: std::sync::Mutex<usize>,
    inner: RecordingNft,
}

#[async_trait::async_trait]
impl Nft for Flaky {
    async fn apply(&self, script: &str) -> Result<(), NftError> {
        {
            // std Mutex: released before anything awaits.
            let mut fail = self.fail.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(NftError::Rejected { stderr: "injected".into(), script: script.into() });
            }
        }
        self.inner.apply(script).await
    }
}

#[tokio::test]
async fn after_a_failed_transaction_the_next_sync_rewrites_everything() {
    let rec = RecordingNft::default();
    let flaky = Arc::new(Flaky { fail: std::sync::Mutex::new(0), inner: rec.clone() });
    let mut engine = PolicyEngine::new(PolicyConfig { node_name: NODE.into() }, flaky.clone());
    engine.apply_pod(&pod("default", "a", NODE, "10.244.1.5", json!({})));
    engine.apply_policy(&policy("default", "p", json!({"podSelector": {}})));
    engine.sync().await.unwrap();

    *flaky.fail.lock().unwrap() = 1;
    engine.apply_pod(&pod("default", "b", NODE, "10.244.1.6", json!({})));
    assert!(engine.sync().await.is_err());
    assert!(engine.dirty(), "still to be done");

    engine.sync().await.unwrap();
    let script = rec.last().unwrap();
    let id = policy_id("default", "p");
    for line in [
        format!("add chain ip skiff policy-np-{id}-in {{ comment \"default/p ingress\"; }}"),
        format!("flush chain ip skiff policy-np-{id}-in"),
        "flush map ip skiff policy-ingress-pods".to_string(),
        "add element ip skiff policy-ingress-pods { 10.244.1.5 : jump policy-in-10.244.1.5, 10.244.1.6 : jump policy-in-10.244.1.6 }"
            .to_string(),
    ] {
        assert!(lines(&script).contains(&line.as_str()), "missing {line:?} in\n{script}");
    }
    assert!(!engine.dirty());
}
