//! The resourcequota controller (upstream pkg/controller/resourcequota): keeps each
//! ResourceQuota's `status.hard` equal to `spec.hard` and `status.used` equal to
//! what the namespace's objects use, so `kubectl describe quota` tells the truth.
//!
//! Usage is computed with the same evaluators the API server's quota admission uses
//! (`skiff_api::admission::quota`): pods count their requests and limits, Services
//! their node ports and load balancers, claims their storage, and every object its
//! `count/<resource>`. A quota is recomputed when it changes, shortly after pods,
//! Services or claims of its namespace change, and every [`RESYNC`] for what no
//! informer watches (config maps, secrets, other counted kinds).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;
use skiff_api::admission::quota;
use skiff_api::validation::quantity::{canonical, Amount};
use skiff_api::{ResourceInfo, RESOURCES};
use skiff_client::{Api, InformerEvent, WorkQueue};

use crate::podutil::{key_of, run_workers, split_key};
use crate::Context;

pub const COMPONENT: &str = "resourcequota-controller";
/// How often every quota is recomputed regardless of events.
pub const RESYNC: Duration = Duration::from_secs(10);
/// Changes of pods and the like are batched this long before a quota is recomputed.
const BATCH: Duration = Duration::from_millis(500);
const WORKERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] skiff_client::Error),
    #[error("encoding a resource quota: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Runs the controller until the future is dropped.
pub async fn run(ctx: Context) {
    let queue: WorkQueue<String> = WorkQueue::new();
    let q = queue.clone();
    ctx.resource_quotas.on_event(Arc::new(move |ev: &InformerEvent<ResourceQuota>| {
        if let InformerEvent::Applied { old, new } = ev {
            // Our own status writes come back as updates; only spec changes matter.
            if old.as_ref().is_none_or(|o| o.spec != new.spec) {
                q.add(key_of(&new.metadata));
            }
        }
    }));
    let touched = |queue: &WorkQueue<String>, ctx: &Context, ns: &str| {
        for rq in ctx.resource_quotas.store().list_namespace(ns) {
            queue.add_after(key_of(&rq.metadata), BATCH);
        }
    };
    let (q, c) = (queue.clone(), ctx.clone());
    ctx.pods.on_event(Arc::new(move |ev: &InformerEvent<Pod>| {
        let pod = match ev {
            InformerEvent::Applied { new, .. } => new,
            InformerEvent::Deleted(p) => p,
        };
        touched(&q, &c, pod.metadata.namespace.as_deref().unwrap_or(""));
    }));
    let (q, c) = (queue.clone(), ctx.clone());
    ctx.services.on_event(Arc::new(move |ev: &InformerEvent<Service>| {
        let svc = match ev {
            InformerEvent::Applied { new, .. } => new,
            InformerEvent::Deleted(s) => s,
        };
        touched(&q, &c, svc.metadata.namespace.as_deref().unwrap_or(""));
    }));
    let (q, c) = (queue.clone(), ctx.clone());
    ctx.pvcs.on_event(Arc::new(move |ev: &InformerEvent<PersistentVolumeClaim>| {
        let pvc = match ev {
            InformerEvent::Applied { new, .. } => new,
            InformerEvent::Deleted(p) => p,
        };
        touched(&q, &c, pvc.metadata.namespace.as_deref().unwrap_or(""));
    }));
    ctx.resource_quotas.wait_synced().await;
    let c = ctx.clone();
    run_workers(COMPONENT, queue, WORKERS, move |key| {
        let c = c.clone();
        async move { sync(&c, &key).await }
    })
    .await;
}

async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, Error> {
    let (ns, name) = split_key(key);
    let Some(rq) = ctx.resource_quotas.store().get(ns, name) else { return Ok(None) };
    let rq_json = serde_json::to_value(&*rq)?;
    let now = jiff::Timestamp::now();
    let mut used = BTreeMap::new();
    for res in evaluated_resources(&quota::hard_names(&rq_json)) {
        let objects = list(ctx, res, ns).await?;
        used.extend(usage_of(&rq_json, res, &objects, now));
    }
    let status = desired_status(&rq, &used);
    if !same_amounts(rq.status.as_ref(), &status) {
        let mut updated = (*rq).clone();
        updated.status = Some(status);
        let api: Api<ResourceQuota> = Api::namespaced(&ctx.client, ns);
        api.replace_status(name, &updated).await?;
    }
    Ok(Some(RESYNC))
}

/// The namespaced resources whose objects count toward some name in `hard`.
pub fn evaluated_resources(hard: &[String]) -> Vec<&'static ResourceInfo> {
    let mut seen: Vec<&'static ResourceInfo> = Vec::new();
    for res in RESOURCES.iter().filter(|r| r.namespaced) {
        // One version per kind is enough to count it.
        if seen.iter().any(|s| s.group == res.group && s.plural == res.plural) {
            continue;
        }
        if !quota::matching_resources(res, hard).is_empty() {
            seen.push(res);
        }
    }
    seen
}

/// What the objects of `res` that the quota selects use, for the quota's names
/// that `res` counts.
pub fn usage_of(rq: &Value, res: &ResourceInfo, objects: &[Value], now: jiff::Timestamp) -> BTreeMap<String, Amount> {
    let names = quota::matching_resources(res, &quota::hard_names(rq));
    let selected = objects.iter().filter(|o| quota::matches(rq, res, o));
    let mut total = quota::used(rq, res, selected, now);
    total.retain(|k, _| names.contains(k));
    total
}

/// `status.hard` as `spec.hard` in canonical form; `status.used` with what was
/// computed, keeping earlier values of names nothing counts (as upstream).
pub fn desired_status(rq: &ResourceQuota, used: &BTreeMap<String, Amount>) -> ResourceQuotaStatus {
    let hard: BTreeMap<String, Quantity> =
        rq.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default().into_iter().map(|(k, v)| (k, Quantity(canonical(&Value::String(v.0))))).collect();
    let mut out: BTreeMap<String, Quantity> = rq.status.as_ref().and_then(|s| s.used.clone()).unwrap_or_default();
    for (k, v) in used {
        out.insert(k.clone(), Quantity(v.to_string()));
    }
    out.retain(|k, _| hard.contains_key(k));
    ResourceQuotaStatus { hard: (!hard.is_empty()).then_some(hard), used: (!out.is_empty()).then_some(out) }
}

/// Whether two statuses hold the same amounts, however they are written.
fn same_amounts(cur: Option<&ResourceQuotaStatus>, new: &ResourceQuotaStatus) -> bool {
    let Some(cur) = cur else { return false };
    let norm = |m: &Option<BTreeMap<String, Quantity>>| -> BTreeMap<String, String> {
        m.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect()
    };
    norm(&cur.hard) == norm(&new.hard) && norm(&cur.used) == norm(&new.used)
}

/// The namespace's objects of `res`, as JSON.
async fn list(ctx: &Context, res: &ResourceInfo, ns: &str) -> Result<Vec<Value>, Error> {
    let base = if res.group.is_empty() { format!("/api/{}", res.version) } else { format!("/apis/{}/{}", res.group, res.version) };
    let mut items = Vec::new();
    let mut continue_token: Option<String> = None;
    loop {
        let mut path = format!("{base}/namespaces/{ns}/{}?limit=500", res.plural);
        if let Some(c) = &continue_token {
            path.push_str("&continue=");
            path.push_str(&url_escape(c));
        }
        let mut page = ctx.client.get(&path).await?;
        if let Some(Value::Array(list)) = page.get_mut("items").map(Value::take) {
            items.extend(list);
        }
        continue_token = page.pointer("/metadata/continue").and_then(Value::as_str).filter(|c| !c.is_empty()).map(String::from);
        if continue_token.is_none() {
            return Ok(items);
        }
    }
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceQuotaSpec;
    use serde_json::json;

    fn rq(hard: &[(&str, &str)]) -> ResourceQuota {
        ResourceQuota {
            metadata: Default::default(),
            spec: Some(ResourceQuotaSpec { hard: Some(hard.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()), ..Default::default() }),
            status: None,
        }
    }

    fn pod(name: &str, cpu: &str, memory: &str, phase: &str) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}}]},
            "status": {"phase": phase},
        })
    }

    fn res(plural: &str) -> &'static ResourceInfo {
        RESOURCES.iter().find(|r| r.group.is_empty() && r.plural == plural).unwrap()
    }

    #[test]
    fn only_kinds_that_count_toward_the_hard_names_are_listed() {
        let hard: Vec<String> = ["pods", "requests.cpu", "configmaps", "count/deployments.apps"].iter().map(|s| s.to_string()).collect();
        let mut kinds: Vec<&str> = evaluated_resources(&hard).iter().map(|r| r.plural).collect();
        kinds.sort();
        assert_eq!(kinds, ["configmaps", "deployments", "pods"]);
    }

    #[test]
    fn pod_usage_sums_requests_and_limits_and_skips_finished_pods() {
        let q = rq(&[("pods", "10"), ("requests.cpu", "2"), ("requests.memory", "1Gi"), ("limits.memory", "2Gi"), ("configmaps", "5")]);
        let q_json = serde_json::to_value(&q).unwrap();
        let pods = vec![pod("a", "250m", "64Mi", "Running"), pod("b", "250m", "64Mi", "Pending"), pod("done", "1", "1Gi", "Succeeded")];
        let used = usage_of(&q_json, res("pods"), &pods, jiff::Timestamp::UNIX_EPOCH);
        let shown: BTreeMap<&str, String> = used.iter().map(|(k, v)| (k.as_str(), v.to_string())).collect();
        assert_eq!(shown.get("requests.cpu").map(String::as_str), Some("500m"));
        assert_eq!(shown.get("requests.memory").map(String::as_str), Some("128Mi"));
        assert_eq!(shown.get("limits.memory").map(String::as_str), Some("128Mi"));
        assert!(!shown.contains_key("configmaps"), "pods do not count config maps");

        let status = desired_status(&q, &used);
        let u = status.used.unwrap();
        assert_eq!(u.get("requests.cpu").map(|q| q.0.as_str()), Some("500m"));
        let h = status.hard.unwrap();
        assert_eq!(h.get("requests.memory").map(|q| q.0.as_str()), Some("1Gi"));
        assert_eq!(h.len(), 5);
    }

    #[test]
    fn object_counts_include_zero_and_hard_is_canonical() {
        let q = rq(&[("count/configmaps", "4"), ("requests.cpu", "1000m")]);
        let q_json = serde_json::to_value(&q).unwrap();
        let used = usage_of(&q_json, res("configmaps"), &[], jiff::Timestamp::UNIX_EPOCH);
        let status = desired_status(&q, &used);
        assert_eq!(status.used.unwrap().get("count/configmaps").map(|q| q.0.as_str()), Some("0"));
        assert_eq!(status.hard.unwrap().get("requests.cpu").map(|q| q.0.as_str()), Some("1"));
    }
}
