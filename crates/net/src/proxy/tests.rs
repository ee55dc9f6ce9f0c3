//! Unit tests of the proxier against a recording nft: what each sync writes.

use std::sync::Mutex;

use super::conntrack::RecordingConntrack;
use super::render::{cluster_chain, endpoint_chain, affinity_set};
use super::testing::{ServiceBuilder, SliceBuilder};
use super::*;
use crate::nft::RecordingNft;

fn config() -> ProxyConfig {
    ProxyConfig {
        node_name: "node-a".into(),
        node_ips: vec![Ipv4Addr::new(192, 168, 1, 10)],
        cluster_cidr: Some((Ipv4Addr::new(10, 244, 0, 0), 16)),
        masquerade_outside: true,
        pod_bridge: Some("skiff0".into()),
    }
}

struct Harness {
    proxier: Proxier,
    nft: RecordingNft,
    conntrack: RecordingConntrack,
}

async fn harness() -> Harness {
    let nft = RecordingNft::default();
    let conntrack = RecordingConntrack::default();
    let mut proxier =
        Proxier::new(config(), Arc::new(nft.clone())).with_conntrack(Arc::new(conntrack.clone()));
    proxier.init().await.unwrap();
    nft.scripts.lock().unwrap().clear();
    Harness { proxier, nft, conntrack }
}

impl Harness {
    /// Syncs and returns the one script written (empty when none was).
    async fn sync(&mut self) -> String {
        let before = self.nft.taken().len();
        self.proxier.sync().await.unwrap();
        let scripts = self.nft.taken();
        assert!(scripts.len() <= before + 1, "one transaction per sync");
        if scripts.len() == before { String::new() } else { scripts.last().unwrap().clone() }
    }
}

fn port(ns: &str, name: &str, port: &str) -> ServicePortName {
    ServicePortName { service: ServiceKey::new(ns, name), port: port.into(), protocol: Protocol::Tcp }
}

fn ep(ip: &str, port: u16) -> model::Endpoint {
    model::Endpoint { ip: ip.parse().unwrap(), port, local: false, ready: true, serving: true, terminating: false }
}

fn web() -> Service {
    ServiceBuilder::new("default", "web").cluster_ip("10.96.0.20").build()
}

fn web_slice(ips: &[&str]) -> EndpointSlice {
    let mut b = SliceBuilder::new("default", "web-1", "web").port("http", 8080, "TCP");
    for ip in ips {
        b = b.endpoint(ip, Some("node-b"));
    }
    b.build()
}

fn db() -> Service {
    ServiceBuilder::new("default", "db").cluster_ip("10.96.0.30").port("pg", 5432, "TCP").build()
}

fn db_slice() -> EndpointSlice {
    SliceBuilder::new("default", "db-1", "db").port("pg", 5432, "TCP").endpoint("10.244.2.9", None).build()
}

#[tokio::test]
async fn init_writes_the_skeleton_in_one_transaction() {
    let nft = RecordingNft::default();
    let mut proxier = Proxier::new(config(), Arc::new(nft.clone()));
    proxier.init().await.unwrap();
    let scripts = nft.taken();
    assert_eq!(scripts.len(), 1);
    for needle in [
        "add chain ip skiff nat-prerouting { type nat hook prerouting priority -100; policy accept; }",
        "add chain ip skiff nat-postrouting { type nat hook postrouting priority 100; policy accept; }",
        "add map ip skiff service-ips { type ipv4_addr . inet_proto . inet_service : verdict;",
        "add rule ip skiff nat-output jump services",
        "add rule ip skiff filter-forward ct state new jump endpoints-check",
    ] {
        assert!(scripts[0].contains(needle), "missing {needle:?} in\n{}", scripts[0]);
    }
}

#[tokio::test]
async fn a_sync_without_changes_writes_nothing() {
    let mut h = harness().await;
    assert!(!h.proxier.dirty());
    let stats = h.proxier.sync().await.unwrap();
    assert_eq!(stats.script_bytes, 0);
    assert_eq!(stats.services_changed, 0);
    assert!(h.nft.taken().is_empty());
    // Applying the same objects again is not a change either.
    h.proxier.apply_service(&web());
    h.proxier.apply_slice(&web_slice(&["10.244.1.5"]));
    h.sync().await;
    h.proxier.apply_service(&web());
    h.proxier.apply_slice(&web_slice(&["10.244.1.5"]));
    assert!(!h.proxier.dirty());
}

#[tokio::test]
async fn the_first_sync_writes_chains_before_the_elements_pointing_at_them() {
    let mut h = harness().await;
    h.proxier.apply_service(&web());
    h.proxier.apply_slice(&web_slice(&["10.244.1.5", "10.244.1.6"]));
    assert!(h.proxier.dirty());
    let s = h.sync().await;
    let svc_chain = cluster_chain(&port("default", "web", "http"));
    let ep_chain = endpoint_chain(&port("default", "web", "http"), &ep("10.244.1.5", 8080));
    let add_chain = s.find(&format!("add chain ip skiff {svc_chain}\n")).expect("service chain");
    let add_ep = s.find(&format!("add chain ip skiff {ep_chain}\n")).expect("endpoint chain");
    let vmap = s.find("numgen random mod 2 vmap").expect("load balancing");
    let elem = s
        .find(&format!("add element ip skiff service-ips {{ 10.96.0.20 . tcp . 80 : goto {svc_chain} }}"))
        .expect("dispatch element");
    assert!(add_chain < vmap && add_ep < vmap && vmap < elem, "{s}");
    assert!(s.contains("dnat to 10.244.1.6:8080"));
    assert!(!h.proxier.dirty());
}

#[tokio::test]
async fn an_endpoint_change_rewrites_only_that_service() {
    let mut h = harness().await;
    h.proxier.apply_service(&web());
    h.proxier.apply_slice(&web_slice(&["10.244.1.5", "10.244.1.6"]));
    h.proxier.apply_service(&db());
    h.proxier.apply_slice(&db_slice());
    h.sync().await;

    h.proxier.apply_slice(&web_slice(&["10.244.1.5", "10.244.1.7"]));
    let stats_script = h.sync().await;
    let s = &stats_script;
    assert!(!s.contains("default/db"), "db is untouched:\n{s}");
    assert!(!s.contains("service-ips"), "the dispatch element still points at the same chain:\n{s}");
    let p = port("default", "web", "http");
    let svc_chain = cluster_chain(&p);
    let gone = endpoint_chain(&p, &ep("10.244.1.6", 8080));
    let kept = endpoint_chain(&p, &ep("10.244.1.5", 8080));
    let added = endpoint_chain(&p, &ep("10.244.1.7", 8080));
    assert!(s.contains(&format!("flush chain ip skiff {svc_chain}\n")));
    assert!(s.contains(&format!("delete chain ip skiff {gone}\n")));
    assert!(s.contains(&format!("add chain ip skiff {added}\n")));
    assert!(!s.contains(&format!("chain ip skiff {kept}")), "the unchanged endpoint chain is left alone:\n{s}");
    // The service chain is flushed before the stale endpoint chain it jumped to is deleted.
    assert!(s.find(&format!("flush chain ip skiff {svc_chain}")) < s.find(&format!("delete chain ip skiff {gone}")));
}

#[tokio::test]
async fn losing_all_endpoints_moves_the_service_to_the_reject_map() {
    let mut h = harness().await;
    h.proxier.apply_service(&web());
    h.proxier.apply_slice(&web_slice(&["10.244.1.5"]));
    h.sync().await;
    h.proxier.delete_slice("default", "web-1");
    let s = h.sync().await;
    let p = port("default", "web", "http");
    assert!(s.contains("delete element ip skiff service-ips { 10.96.0.20 . tcp . 80 }"), "{s}");
    assert!(s.contains("add element ip skiff no-endpoint-services { 10.96.0.20 . tcp . 80 : goto reject-chain }"), "{s}");
    assert!(s.contains(&format!("delete chain ip skiff {}", cluster_chain(&p))));
    assert!(s.contains(&format!("delete chain ip skiff {}", endpoint_chain(&p, &ep("10.244.1.5", 8080)))));
    assert!(s.find("delete element") < s.find("delete chain"), "elements go before their chains");
}

#[tokio::test]
async fn deleting_a_service_removes_all_its_objects() {
    let mut h = harness().await;
    h.proxier.apply_service(&ServiceBuilder::new("default", "web").cluster_ip("10.96.0.20").session_affinity(Some(60)).build());
    h.proxier.apply_slice(&web_slice(&["10.244.1.5"]));
    h.sync().await;
    h.proxier.delete_service("default", "web");
    let s = h.sync().await;
    let p = port("default", "web", "http");
    assert!(s.contains("delete element ip skiff service-ips { 10.96.0.20 . tcp . 80 }"));
    assert!(s.contains(&format!("delete set ip skiff {}", affinity_set(&p, &ep("10.244.1.5", 8080)))));
    assert!(!s.contains("add "), "nothing is added:\n{s}");
    assert!(h.proxier.applied.is_empty() && h.proxier.owners.is_empty());
    // The slice alone (no service) renders nothing.
    h.proxier.apply_slice(&web_slice(&["10.244.1.9"]));
    assert_eq!(h.sync().await, "");
}

#[tokio::test]
async fn a_slice_arriving_before_its_service_is_used_when_the_service_comes() {
    let mut h = harness().await;
    h.proxier.apply_slice(&web_slice(&["10.244.1.5"]));
    assert_eq!(h.sync().await, "");
    h.proxier.apply_service(&web());
    let s = h.sync().await;
    assert!(s.contains("dnat to 10.244.1.5:8080"), "{s}");
}

#[tokio::test]
async fn headless_services_get_no_rules_and_turning_headless_removes_them() {
    let mut h = harness().await;
    h.proxier.apply_service(&ServiceBuilder::new("default", "web").cluster_ip("None").build());
    h.proxier.apply_slice(&web_slice(&["10.244.1.5"]));
    assert_eq!(h.sync().await, "");
    h.proxier.apply_service(&web());
    assert!(h.sync().await.contains("10.96.0.20"));
    h.proxier.apply_service(&ServiceBuilder::new("default", "web").type_("ExternalName").build());
    assert!(h.sync().await.contains("delete element ip skiff service-ips { 10.96.0.20 . tcp . 80 }"));
}

/// An nft that refuses every script while `fail` is set.
#[derive(Default)]
struct FailingNft {
    fail: Mutex<bool>,
    applied: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Nft for FailingNft {
    async fn apply(&self, script: &str) -> Result<(), NftError> {
        if *self.fail.lock().unwrap() {
            return Err(NftError::Rejected { stderr: "injected".into(), script: script.into() });
        }
        self.applied.lock().unwrap().push(script.into());
        Ok(())
    }
}

#[tokio::test]
async fn a_rejected_transaction_keeps_the_changes_for_the_next_sync() {
    let nft = Arc::new(FailingNft::default());
    let mut proxier =
        Proxier::new(config(), nft.clone()).with_conntrack(Arc::new(RecordingConntrack::default()));
    proxier.init().await.unwrap();
    proxier.apply_service(&web());
    proxier.apply_slice(&web_slice(&["10.244.1.5"]));
    *nft.fail.lock().unwrap() = true;
    assert!(matches!(proxier.sync().await, Err(NftError::Rejected { .. })));
    assert!(proxier.dirty(), "still pending");
    assert!(proxier.applied.is_empty(), "nothing recorded as applied");
    *nft.fail.lock().unwrap() = false;
    let stats = proxier.sync().await.unwrap();
    assert_eq!(stats.services_changed, 1);
    assert!(nft.applied.lock().unwrap().last().unwrap().contains("dnat to 10.244.1.5:8080"));
    assert!(!proxier.dirty());
}

#[tokio::test]
async fn sync_without_init_creates_the_skeleton_in_the_same_transaction() {
    let nft = RecordingNft::default();
    let mut proxier = Proxier::new(config(), Arc::new(nft.clone()))
        .with_conntrack(Arc::new(RecordingConntrack::default()));
    assert!(proxier.dirty());
    proxier.apply_service(&web());
    proxier.apply_slice(&web_slice(&["10.244.1.5"]));
    proxier.sync().await.unwrap();
    let scripts = nft.taken();
    assert_eq!(scripts.len(), 1);
    assert!(scripts[0].starts_with("add table ip skiff\n"));
    assert!(scripts[0].contains("dnat to 10.244.1.5:8080"));
}

#[tokio::test]
async fn init_again_rewrites_every_service_flushing_chains_it_creates() {
    let mut h = harness().await;
    h.proxier.apply_service(&web());
    h.proxier.apply_slice(&web_slice(&["10.244.1.5"]));
    h.sync().await;
    h.proxier.init().await.unwrap();
    assert!(h.proxier.dirty());
    let s = h.sync().await;
    let chain = cluster_chain(&port("default", "web", "http"));
    assert!(s.contains(&format!("add chain ip skiff {chain}\nflush chain ip skiff {chain}\n")), "{s}");
    // Later syncs create chains without flushing them.
    h.proxier.apply_slice(&web_slice(&["10.244.1.5", "10.244.1.6"]));
    let s = h.sync().await;
    let new_ep = endpoint_chain(&port("default", "web", "http"), &ep("10.244.1.6", 8080));
    assert!(!s.contains(&format!("flush chain ip skiff {new_ep}")), "{s}");
}

#[tokio::test]
async fn a_shared_external_ip_stays_with_the_first_service() {
    let mut h = harness().await;
    let a = ServiceBuilder::new("default", "a").cluster_ip("10.96.0.41").external_ip("198.51.100.9").build();
    let b = ServiceBuilder::new("default", "b").cluster_ip("10.96.0.42").external_ip("198.51.100.9").build();
    h.proxier.apply_service(&a);
    h.proxier.apply_slice(&SliceBuilder::new("default", "a-1", "a").port("http", 80, "TCP").endpoint("10.244.1.1", None).build());
    h.sync().await;
    h.proxier.apply_service(&b);
    h.proxier.apply_slice(&SliceBuilder::new("default", "b-1", "b").port("http", 80, "TCP").endpoint("10.244.1.2", None).build());
    let s = h.sync().await;
    assert!(s.contains("10.96.0.42 . tcp . 80"), "b's own cluster IP is programmed:\n{s}");
    assert!(!s.contains("198.51.100.9"), "a keeps the external IP:\n{s}");
    // Both changing in one sync: still only one claim.
    h.proxier.apply_slice(&SliceBuilder::new("default", "a-1", "a").port("http", 80, "TCP").endpoint("10.244.1.3", None).build());
    h.proxier.apply_slice(&SliceBuilder::new("default", "b-1", "b").port("http", 80, "TCP").endpoint("10.244.1.4", None).build());
    let s = h.sync().await;
    assert_eq!(s.matches("198.51.100.9").count(), 0, "the element did not change:\n{s}");
}

#[tokio::test]
async fn changing_the_affinity_timeout_recreates_sets_around_rewritten_chains() {
    let mut h = harness().await;
    let svc = |t| ServiceBuilder::new("default", "web").cluster_ip("10.96.0.20").session_affinity(Some(t)).build();
    h.proxier.apply_service(&svc(60));
    h.proxier.apply_slice(&web_slice(&["10.244.1.5"]));
    let s = h.sync().await;
    let p = port("default", "web", "http");
    let set = affinity_set(&p, &ep("10.244.1.5", 8080));
    assert!(s.contains(&format!("add set ip skiff {set} {{ type ipv4_addr; flags dynamic,timeout; timeout 60s; }}")));
    h.proxier.apply_service(&svc(120));
    let s = h.sync().await;
    let flush = s.find(&format!("flush chain ip skiff {}", endpoint_chain(&p, &ep("10.244.1.5", 8080)))).expect("flush");
    let del = s.find(&format!("delete set ip skiff {set}")).expect("delete set");
    let add = s.find("timeout 120s").expect("add set");
    let rule = s.find(&format!("update @{set}")).expect("rule");
    assert!(flush < del && del < add && add < rule, "{s}");
}

#[tokio::test]
async fn udp_endpoint_changes_clear_stale_conntrack_entries() {
    let mut h = harness().await;
    let dns = ServiceBuilder::new("kube-system", "kube-dns")
        .cluster_ip("10.96.0.10")
        .port("dns", 53, "UDP")
        .build();
    let slice = |ips: &[&str]| {
        let mut b = SliceBuilder::new("kube-system", "kube-dns-a", "kube-dns").port("dns", 53, "UDP");
        for ip in ips {
            b = b.endpoint(ip, None);
        }
        b.build()
    };
    h.proxier.apply_service(&dns);
    h.sync().await;
    assert!(h.conntrack.take_sorted().is_empty(), "no endpoints, nothing to clear");
    h.proxier.apply_slice(&slice(&["10.244.0.1", "10.244.1.1"]));
    h.sync().await;
    let vip = Ipv4Addr::new(10, 96, 0, 10);
    assert_eq!(
        h.conntrack.take_sorted(),
        vec![ConntrackDelete::ServiceIp { ip: vip, port: 53 }],
        "flows that found no endpoint are cleared once there is one"
    );
    h.proxier.apply_slice(&slice(&["10.244.0.1"]));
    h.sync().await;
    assert_eq!(
        h.conntrack.take_sorted(),
        vec![ConntrackDelete::ServiceIpEndpoint { ip: vip, port: 53, endpoint: Ipv4Addr::new(10, 244, 1, 1) }]
    );
    // TCP services never clear conntrack.
    h.proxier.apply_service(&web());
    h.proxier.apply_slice(&web_slice(&["10.244.1.5"]));
    h.sync().await;
    h.proxier.apply_slice(&web_slice(&["10.244.1.6"]));
    h.sync().await;
    assert!(h.conntrack.take_sorted().is_empty());
}

#[tokio::test]
async fn stats_count_changed_services_and_script_size() {
    let mut h = harness().await;
    let (services, slices) = testing::synthetic_cluster(20, 3);
    services.iter().for_each(|s| h.proxier.apply_service(s));
    slices.iter().for_each(|s| h.proxier.apply_slice(s));
    let stats = h.proxier.sync().await.unwrap();
    assert_eq!(stats.services_changed, 20);
    assert_eq!(stats.script_bytes, h.nft.last().unwrap().len());
    let mut changed = slices[3].clone();
    changed.endpoints.pop();
    h.proxier.apply_slice(&changed);
    let stats = h.proxier.sync().await.unwrap();
    assert_eq!(stats.services_changed, 1);
    assert!(h.nft.last().unwrap().contains("bench/svc-3/"));
    assert!(!h.nft.last().unwrap().contains("bench/svc-4/"));
}

#[tokio::test]
async fn a_slice_moving_to_another_service_updates_both() {
    let mut h = harness().await;
    h.proxier.apply_service(&web());
    h.proxier.apply_service(&ServiceBuilder::new("default", "web2").cluster_ip("10.96.0.21").build());
    h.proxier.apply_slice(&web_slice(&["10.244.1.5"]));
    h.sync().await;
    let mut moved = web_slice(&["10.244.1.5"]);
    moved.metadata.labels.as_mut().unwrap().insert(model::SERVICE_NAME_LABEL.into(), "web2".into());
    h.proxier.apply_slice(&moved);
    let s = h.sync().await;
    assert!(s.contains("add element ip skiff no-endpoint-services { 10.96.0.20 . tcp . 80 : goto reject-chain }"), "{s}");
    assert!(s.contains("add element ip skiff service-ips { 10.96.0.21 . tcp . 80"), "{s}");
}
