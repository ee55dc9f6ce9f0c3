//! How fast the framework decides, without any API: 5,000 nodes in 10 zones, pods
//! scheduled and assumed one after the other. Ignored by default (it is a
//! measurement); run it in release mode:
//!
//! `cargo test --release -p skiff-scheduler --test throughput -- --ignored --nocapture`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Container, Node, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use rand::SeedableRng;
use skiff_scheduler::cache::Cache;
use skiff_scheduler::framework::Framework;
use skiff_scheduler::types::PodInfo;

fn node(i: usize) -> Node {
    let name = format!("node-{i:05}");
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname".to_string(), name.clone()),
        ("topology.kubernetes.io/zone".to_string(), format!("zone-{}", i % 10)),
    ]
    .into_iter()
    .collect();
    let alloc: BTreeMap<String, Quantity> =
        [("cpu", "32"), ("memory", "128Gi"), ("pods", "110")].into_iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect();
    Node {
        metadata: ObjectMeta { name: Some(name), labels: Some(labels), ..Default::default() },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus { allocatable: Some(alloc), ..Default::default() }),
    }
}

fn pod(i: usize, spread: bool) -> Pod {
    let requests: BTreeMap<String, Quantity> = [("cpu", "100m"), ("memory", "128Mi")].into_iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect();
    let labels: BTreeMap<String, String> = [("app".to_string(), "bench".to_string())].into_iter().collect();
    Pod {
        metadata: ObjectMeta { name: Some(format!("pod-{i}")), namespace: Some("default".into()), uid: Some(format!("uid-{i}")), labels: Some(labels.clone()), ..Default::default() },
        spec: Some(PodSpec {
            containers: vec![Container { name: "app".into(), resources: Some(ResourceRequirements { requests: Some(requests), ..Default::default() }), ..Default::default() }],
            topology_spread_constraints: spread.then(|| {
                vec![TopologySpreadConstraint {
                    max_skew: 1,
                    topology_key: "topology.kubernetes.io/zone".into(),
                    when_unsatisfiable: "ScheduleAnyway".into(),
                    label_selector: Some(LabelSelector { match_labels: Some(labels), ..Default::default() }),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn run(nodes: usize, pods: usize, spread: bool) -> f64 {
    let mut cache = Cache::new();
    for i in 0..nodes {
        cache.add_or_update_node(Arc::new(node(i)));
    }
    let fw = Framework::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut start = 0;
    let infos: Vec<Arc<PodInfo>> = (0..pods).map(|i| Arc::new(PodInfo::new(Arc::new(pod(i, spread))))).collect();
    let t = Instant::now();
    for info in infos {
        let node = {
            let snapshot = cache.snapshot();
            fw.schedule(&info, &snapshot, &mut start, &mut rng).expect("fits").node
        };
        cache.assume(info, &node);
    }
    pods as f64 / t.elapsed().as_secs_f64()
}

#[test]
#[ignore]
fn decisions_per_second_on_5000_nodes() {
    let plain = run(5000, 20_000, false);
    println!("5000 nodes, plain pods: {plain:.0} decisions/s");
    assert!(plain > 0.0);
}

#[test]
#[ignore]
fn decisions_per_second_on_5000_nodes_with_zone_spread() {
    let spread = run(5000, 5_000, true);
    println!("5000 nodes, zone-spread pods: {spread:.0} decisions/s");
    assert!(spread > 0.0);
}
