//! Ingress status: the Ingresses that Skiff's gateway serves list, in
//! `status.loadBalancer.ingress`, the addresses they can be reached at, as
//! ingress-nginx publishes its own. Written through `ingresses/status`.
//!
//! - Which Ingresses are the gateway's is decided by the gateway's own rule
//!   ([`skiff_gateway::class::is_ours`]): an IngressClass whose controller is
//!   [`INGRESS_CONTROLLER`] (or the class name [`INGRESS_CLASS_NAME`] before its
//!   object exists), or, for an Ingress that names no class, our class marked as
//!   the cluster default.
//! - The addresses are the InternalIPs of the Ready nodes that run the gateway:
//!   their agents label them [`GATEWAY_LABEL`]` = "true"`. Sorted; kept up to date
//!   as such nodes come, go, or change readiness.
//!
//! Ingresses of other classes are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressLoadBalancerIngress};
use serde_json::{json, Value};
use skiff_client::{Api, InformerEvent, PatchType, WorkQueue};

use crate::podutil::{key_of, run_workers, split_key};
use crate::servicelb::{node_ips, node_ready};
use crate::Context;

pub const COMPONENT: &str = "ingress-status-controller";
/// The IngressClass name the gateway answers to.
pub const INGRESS_CLASS_NAME: &str = "skiff";
/// The `IngressClass.spec.controller` of Skiff's gateway.
pub const INGRESS_CONTROLLER: &str = "skiff.io/ingress";
/// The label the agents that run the gateway put on their Node.
pub const GATEWAY_LABEL: &str = "ingress.skiff.io/gateway";
const WORKERS: usize = 2;

/// Whether the node runs the gateway and can take traffic.
pub fn gateway_node(node: &Node) -> bool {
    let labelled = node.metadata.labels.as_ref().and_then(|l| l.get(GATEWAY_LABEL)).is_some_and(|v| v == "true");
    labelled && node_ready(node) && node.metadata.deletion_timestamp.is_none()
}

/// The InternalIPs of the gateway nodes, sorted, without repeats.
pub fn gateway_addresses<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Vec<Ipv4Addr> {
    let ips: BTreeSet<Ipv4Addr> = nodes.into_iter().filter(|n| gateway_node(n)).flat_map(|n| node_ips(n, "InternalIP")).collect();
    ips.into_iter().collect()
}

/// Whether the gateway serves the Ingress.
pub fn is_ours(ingress: &Ingress, classes: &BTreeMap<String, IngressClass>) -> bool {
    skiff_gateway::class::is_ours(ingress, classes, INGRESS_CLASS_NAME, INGRESS_CONTROLLER)
}

/// The ingress points an Ingress's status lists.
pub fn status_ingress(ingress: &Ingress) -> Vec<IngressLoadBalancerIngress> {
    ingress.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.clone()).unwrap_or_default()
}

/// Ingress points for addresses, as this controller writes them.
pub fn ingress_points(ips: &[Ipv4Addr]) -> Vec<IngressLoadBalancerIngress> {
    ips.iter().map(|ip| IngressLoadBalancerIngress { ip: Some(ip.to_string()), ..Default::default() }).collect()
}

/// Runs the controller until the future is dropped.
pub async fn run(ctx: Context) {
    let queue: WorkQueue<String> = WorkQueue::new();
    let enqueue_all = {
        let q = queue.clone();
        let ingresses = ctx.ingresses.store();
        move || {
            for ing in ingresses.list() {
                q.add(key_of(&ing.metadata));
            }
        }
    };
    let q = queue.clone();
    ctx.ingresses.on_event(Arc::new(move |ev: &InformerEvent<Ingress>| {
        if let InformerEvent::Applied { new, .. } = ev {
            q.add(key_of(&new.metadata));
        }
    }));
    let all = enqueue_all.clone();
    ctx.ingress_classes.on_event(Arc::new(move |_: &InformerEvent<IngressClass>| all()));
    let all = enqueue_all.clone();
    ctx.nodes.on_event(Arc::new(move |ev: &InformerEvent<Node>| {
        let relevant = |n: &Node| (gateway_node(n), node_ips(n, "InternalIP"));
        match ev {
            InformerEvent::Applied { old: Some(old), new } if relevant(old) == relevant(new) => {}
            InformerEvent::Applied { old: None, new } if !gateway_node(new) => {}
            InformerEvent::Deleted(old) if !gateway_node(old) => {}
            _ => all(),
        }
    }));
    ctx.ingresses.wait_synced().await;
    ctx.ingress_classes.wait_synced().await;
    ctx.nodes.wait_synced().await;
    run_workers(COMPONENT, queue, WORKERS, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    })
    .await;
}

/// Brings one Ingress's status in line with the gateway nodes.
async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, skiff_client::Error> {
    let (ns, name) = split_key(key);
    let Some(ingress) = ctx.ingresses.store().get(ns, name) else { return Ok(None) };
    if ingress.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let classes: BTreeMap<String, IngressClass> =
        ctx.ingress_classes.store().list().into_iter().map(|c| (c.metadata.name.clone().unwrap_or_default(), c.as_ref().clone())).collect();
    if !is_ours(&ingress, &classes) {
        return Ok(None);
    }
    let nodes = ctx.nodes.store().list();
    let desired = ingress_points(&gateway_addresses(nodes.iter().map(|n| n.as_ref())));
    if status_ingress(&ingress) == desired {
        return Ok(None);
    }
    let value = if desired.is_empty() { Value::Null } else { serde_json::to_value(&desired).expect("ingress points serialize") };
    let api: Api<Ingress> = Api::namespaced(&ctx.client, ns);
    match api.patch_status(name, PatchType::Merge, &json!({"status": {"loadBalancer": {"ingress": value}}})).await {
        Ok(_) => {
            let ips: Vec<&str> = desired.iter().filter_map(|i| i.ip.as_deref()).collect();
            tracing::info!(ingress = %key, addresses = %ips.join(","), "updated ingress status");
            Ok(None)
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeCondition, NodeStatus};
    use k8s_openapi::api::networking::v1::{IngressClassSpec, IngressSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, gateway: bool, ready: bool, ip: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: gateway.then(|| BTreeMap::from([(GATEWAY_LABEL.to_string(), "true".to_string())])),
                ..Default::default()
            },
            spec: None,
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition { type_: "Ready".into(), status: if ready { "True" } else { "Unknown" }.into(), ..Default::default() }]),
                addresses: Some(vec![NodeAddress { type_: "InternalIP".into(), address: ip.into() }]),
                ..Default::default()
            }),
        }
    }

    fn class(name: &str, controller: &str, default: bool) -> (String, IngressClass) {
        let annotations = default.then(|| BTreeMap::from([(skiff_gateway::class::DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())]));
        let class = IngressClass {
            metadata: ObjectMeta { name: Some(name.into()), annotations, ..Default::default() },
            spec: Some(IngressClassSpec { controller: Some(controller.into()), ..Default::default() }),
        };
        (name.to_string(), class)
    }

    fn ingress(class_name: Option<&str>) -> Ingress {
        Ingress {
            metadata: ObjectMeta { name: Some("web".into()), namespace: Some("default".into()), ..Default::default() },
            spec: Some(IngressSpec { ingress_class_name: class_name.map(String::from), ..Default::default() }),
            status: None,
        }
    }

    #[test]
    fn the_addresses_are_the_ready_gateway_nodes_sorted() {
        let mut labelled_false = node("x", false, true, "10.0.0.7");
        labelled_false.metadata.labels = Some(BTreeMap::from([(GATEWAY_LABEL.to_string(), "false".to_string())]));
        let nodes = [node("b", true, true, "10.0.0.10"), node("a", true, true, "10.0.0.9"), node("c", true, false, "10.0.0.2"), node("d", false, true, "10.0.0.1"), labelled_false];
        assert_eq!(gateway_addresses(&nodes), [Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(10, 0, 0, 10)]);
        assert_eq!(ingress_points(&[Ipv4Addr::new(10, 0, 0, 9)])[0].ip.as_deref(), Some("10.0.0.9"));
    }

    #[test]
    fn ingresses_are_ours_by_class_controller_or_the_default_class() {
        let ours = BTreeMap::from([class("edge", INGRESS_CONTROLLER, false), class("nginx", "k8s.io/ingress-nginx", true)]);
        assert!(is_ours(&ingress(Some("edge")), &ours));
        assert!(!is_ours(&ingress(Some("nginx")), &ours));
        assert!(!is_ours(&ingress(None), &ours), "the default class is someone else's");
        assert!(is_ours(&ingress(Some(INGRESS_CLASS_NAME)), &BTreeMap::new()), "our class name before its object exists");
        let default_ours = BTreeMap::from([class("edge", INGRESS_CONTROLLER, true)]);
        assert!(is_ours(&ingress(None), &default_ours));
    }
}
