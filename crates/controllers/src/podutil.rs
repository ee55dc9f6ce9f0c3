//! Pod helpers shared by the controllers: readiness, activity, owner references,
//! and pods from templates (upstream's controller_utils).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

// === pod state ===

/// Whether the pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod_ready_condition(pod).is_some_and(|c| c.status == "True")
}

fn pod_ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// Since when the pod has been ready, if it is.
pub fn pod_ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    let c = pod_ready_condition(pod).filter(|c| c.status == "True")?;
    Some(c.last_transition_time.as_ref().map(|t| t.0).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// Whether the pod has been ready for at least `min_ready_seconds` at `now`
/// (upstream `IsPodAvailable`). With `min_ready_seconds == 0` a ready pod is
/// available at once.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    let Some(since) = pod_ready_since(pod) else { return false };
    if min_ready_seconds <= 0 {
        return true;
    }
    // A ready condition without a transition time counts as ready long ago, as
    // upstream's zero time does.
    since.as_second().saturating_add(i64::from(min_ready_seconds)) <= now.as_second()
}

/// How long until a ready pod becomes available, if it is ready but not yet
/// available; controllers requeue after this to see it flip.
pub fn time_until_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> Option<Duration> {
    let since = pod_ready_since(pod)?;
    if min_ready_seconds <= 0 {
        return None;
    }
    let at = since.as_second().saturating_add(i64::from(min_ready_seconds));
    let left = at - now.as_second();
    (left > 0).then(|| Duration::from_secs(left as u64))
}

/// The pod's phase, `""` when unset.
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// A pod that counts toward a controller's replicas: neither finished
/// (`Succeeded`/`Failed`) nor being deleted (upstream `IsPodActive`).
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod_phase(pod);
    phase != "Succeeded" && phase != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

/// A pod being deleted that has not finished running yet (upstream
/// `IsPodTerminating`).
pub fn is_pod_terminating(pod: &Pod) -> bool {
    let phase = pod_phase(pod);
    pod.metadata.deletion_timestamp.is_some() && phase != "Succeeded" && phase != "Failed"
}

// === owner references ===

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

/// A controller owner reference, as controllers put on what they create:
/// `controller` and `blockOwnerDeletion` set, so foreground deletion waits.
pub fn new_controller_ref(kind: &str, api_version: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod made from `template` in `namespace`, named by the server from
/// `generate_name` (upstream `GetPodFromTemplate`): the template's labels,
/// annotations, finalizers and spec, plus the controller reference.
pub fn pod_from_template(template: &PodTemplateSpec, namespace: &str, generate_name: &str, owner_ref: Option<OwnerReference>) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    let metadata = ObjectMeta {
        namespace: Some(namespace.to_string()),
        generate_name: Some(generate_name.to_string()),
        labels: tmeta.labels,
        annotations: tmeta.annotations,
        finalizers: tmeta.finalizers,
        owner_references: owner_ref.map(|r| vec![r]),
        ..ObjectMeta::default()
    };
    Pod { metadata, spec: template.spec.clone(), status: None }
}

// === label selectors ===

/// Whether `labels` satisfy `selector` (matchLabels and matchExpressions; an empty
/// selector matches everything, as upstream's `LabelSelectorAsSelector`). An
/// unknown operator matches nothing.
pub fn label_selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &selector.match_labels {
        if !ml.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    for req in selector.match_expressions.iter().flatten() {
        let value = labels.get(&req.key);
        let values = req.values.as_deref().unwrap_or_default();
        let ok = match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether the selector selects nothing useful: no matchLabels and no
/// matchExpressions. Controllers ignore such selectors rather than adopt every
/// pod in the namespace (upstream treats an empty workload selector as invalid).
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty) && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// The selector in its string form (`a=b,c in (d,e)`), for list queries.
pub fn selector_string(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for req in selector.match_expressions.iter().flatten() {
        let mut values = req.values.clone().unwrap_or_default();
        values.sort();
        parts.push(match req.operator.as_str() {
            "In" => format!("{} in ({})", req.key, values.join(",")),
            "NotIn" => format!("{} notin ({})", req.key, values.join(",")),
            "Exists" => req.key.clone(),
            "DoesNotExist" => format!("!{}", req.key),
            other => format!("{} {} ({})", req.key, other, values.join(",")),
        });
    }
    parts.join(",")
}

// === template hashes ===

/// Upstream's alphabet for names that must not spell words or look like numbers.
const SAFE_ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Maps every byte of `s` into [`SAFE_ALPHANUMS`] (upstream `rand.SafeEncodeString`).
pub fn safe_encode_string(s: &str) -> String {
    s.bytes().map(|b| SAFE_ALPHANUMS[usize::from(b) % SAFE_ALPHANUMS.len()] as char).collect()
}

/// 32-bit FNV-1a.
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The `pod-template-hash` of a template (upstream `controller.ComputeHash`):
/// FNV-32a over a canonical dump of the template, then the collision count as four
/// little-endian bytes when set, printed in decimal and safe-encoded. Equal
/// templates hash equally; a bumped collision count gives a new hash.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // The typed struct serializes its fields in declaration order and maps sorted,
    // so the dump is stable for equal templates.
    let mut data = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        data.extend_from_slice(&(c as u32).to_le_bytes());
    }
    safe_encode_string(&fnv32a(&data).to_string())
}

// === expectations ===

/// How long expectations may stay unmet before a controller stops waiting for them
/// (a watch event lost, say): upstream's `ExpectationsTimeout`.
pub const EXPECTATIONS_TTL: Duration = Duration::from_secs(5 * 60);

/// What a controller expects to see in its informer after its own creates and
/// deletes, per controller key (`namespace/name`). While expectations are pending
/// the controller does not act on counts again, so it never creates or deletes
/// twice for the same gap. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct Expectations {
    inner: Arc<Mutex<HashMap<String, Expectation>>>,
}

#[derive(Debug, Clone)]
struct Expectation {
    adds: i64,
    dels: i64,
    /// Pods whose deletion is awaited, when deletes are tracked by uid: a pod seen
    /// both terminating and then gone counts once.
    deleting: HashSet<String>,
    set_at: tokio::time::Instant,
}

impl Expectations {
    pub fn new() -> Expectations {
        Expectations::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expectation>> {
        // std Mutex: nothing async happens while it is held.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the controller may sync `key`: nothing recorded, everything
    /// observed, or the record is older than [`EXPECTATIONS_TTL`].
    pub fn satisfied(&self, key: &str) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(e) => (e.adds <= 0 && e.dels <= 0) || e.set_at.elapsed() > EXPECTATIONS_TTL,
        }
    }

    /// Replaces the record for `key`: `adds` creations and `dels` deletions awaited.
    pub fn set(&self, key: &str, adds: i64, dels: i64) {
        let e = Expectation { adds, dels, deleting: HashSet::new(), set_at: tokio::time::Instant::now() };
        self.lock().insert(key.to_string(), e);
    }

    pub fn expect_creations(&self, key: &str, adds: i64) {
        self.set(key, adds, 0);
    }

    pub fn expect_deletions(&self, key: &str, dels: i64) {
        self.set(key, 0, dels);
    }

    /// Expects the deletion of these pods (by uid); see [`Expectations::pod_deletion_observed`].
    pub fn expect_pod_deletions(&self, key: &str, uids: &[String]) {
        let e = Expectation {
            adds: 0,
            dels: uids.len() as i64,
            deleting: uids.iter().cloned().collect(),
            set_at: tokio::time::Instant::now(),
        };
        self.lock().insert(key.to_string(), e);
    }

    /// One awaited creation showed up (or will never happen: the create failed).
    pub fn creation_observed(&self, key: &str) {
        self.lower(key, 1, 0);
    }

    /// One awaited deletion showed up (or failed).
    pub fn deletion_observed(&self, key: &str) {
        self.lower(key, 0, 1);
    }

    /// The pod with `uid` was seen deleted or terminating; counts only if its
    /// deletion was awaited, and only once.
    pub fn pod_deletion_observed(&self, key: &str, uid: &str) {
        let mut map = self.lock();
        if let Some(e) = map.get_mut(key) {
            if e.deleting.remove(uid) {
                e.dels -= 1;
            }
        }
    }

    /// Lowers the awaited counts (creates or deletes that were skipped or failed).
    pub fn lower(&self, key: &str, adds: i64, dels: i64) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds -= adds;
            e.dels -= dels;
        }
    }

    /// Raises the awaited counts.
    pub fn raise(&self, key: &str, adds: i64, dels: i64) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds += adds;
            e.dels += dels;
        }
    }

    /// Forgets `key` (its controller object was deleted).
    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }

    /// The awaited (creations, deletions) for `key`, if recorded.
    pub fn pending(&self, key: &str) -> Option<(i64, i64)> {
        self.lock().get(key).map(|e| (e.adds, e.dels))
    }
}

// === small shared helpers ===

/// `metadata.name`, empty when unset (objects from the informers always have one).
pub fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// `metadata.namespace`, empty for cluster-scoped objects.
pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or_default()
}

/// `metadata.uid`, empty when unset.
pub fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or_default()
}

/// `namespace/name` of an object, the work-queue key of namespaced controllers.
pub fn key_of(meta: &ObjectMeta) -> String {
    format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

/// `Some(v)` unless `v` is zero: counts in status are `omitempty` upstream.
pub fn non_zero(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

/// Splits a `namespace/name` key.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

// === adoption (upstream ControllerRefManager) ===

/// What a controller should do with an object its selector may select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimAction {
    /// Ours, and still selected.
    Keep,
    /// An orphan that the selector selects: take it (patch in our controller ref).
    Adopt,
    /// Ours, but no longer selected: let go (patch our ref out).
    Release,
    /// Someone else's, or not for us.
    Ignore,
}

/// Upstream `ClaimObject`'s decision for one object. `owner_deleting`: the
/// controller object has a deletionTimestamp (it then neither adopts nor releases).
pub fn claim_action(meta: &ObjectMeta, owner_uid: &str, owner_deleting: bool, selected: bool) -> ClaimAction {
    match controller_ref(meta) {
        Some(r) if r.uid != owner_uid => ClaimAction::Ignore,
        Some(_) if selected => ClaimAction::Keep,
        Some(_) if owner_deleting => ClaimAction::Ignore,
        Some(_) => ClaimAction::Release,
        None if owner_deleting || !selected || meta.deletion_timestamp.is_some() => ClaimAction::Ignore,
        None => ClaimAction::Adopt,
    }
}

/// Strategic-merge patch that adds `owner` to an object's ownerReferences; the
/// object's uid in the patch makes it fail on a recreated namesake.
pub fn adopt_patch(owner: &OwnerReference, object_uid: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {"ownerReferences": [owner], "uid": object_uid}})
}

/// Strategic-merge patch that removes the owner reference with `owner_uid`.
pub fn release_patch(owner_uid: &str, object_uid: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": object_uid}})
}

/// Adopts an orphan: patches `owner` into its ownerReferences, with its uid as a
/// precondition. `Ok(None)` when the object is already gone (nothing to claim).
pub async fn adopt<K>(api: &skiff_client::Api<K>, meta: &ObjectMeta, owner: &OwnerReference) -> Result<Option<K>, skiff_client::Error>
where
    K: k8s_openapi::Resource + serde::de::DeserializeOwned + serde::Serialize + Clone + Send + Sync + 'static,
{
    let patch = adopt_patch(owner, meta.uid.as_deref().unwrap_or_default());
    match api.patch(meta.name.as_deref().unwrap_or_default(), skiff_client::PatchType::StrategicMerge, &patch).await {
        Ok(adopted) => Ok(Some(adopted)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Releases an object the owner no longer selects: patches the owner's reference
/// out. An object already gone, or no longer ours (422: the uid precondition or
/// the reference no longer holds), needs nothing.
pub async fn release<K>(api: &skiff_client::Api<K>, meta: &ObjectMeta, owner_uid: &str) -> Result<(), skiff_client::Error>
where
    K: k8s_openapi::Resource + serde::de::DeserializeOwned + serde::Serialize + Clone + Send + Sync + 'static,
{
    let patch = release_patch(owner_uid, meta.uid.as_deref().unwrap_or_default());
    match api.patch(meta.name.as_deref().unwrap_or_default(), skiff_client::PatchType::StrategicMerge, &patch).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() || e.code() == Some(422) => Ok(()),
        Err(e) => Err(e),
    }
}

// === work queue workers ===

/// An informer handler that queues the key of the object itself on every add,
/// update and delete: how a controller hears of changes to its own kind.
pub fn enqueue_object_key<K>(queue: skiff_client::WorkQueue<String>) -> std::sync::Arc<dyn Fn(&skiff_client::InformerEvent<K>) + Send + Sync>
where
    K: k8s_openapi::Metadata<Ty = ObjectMeta> + Send + Sync + 'static,
{
    std::sync::Arc::new(move |event: &skiff_client::InformerEvent<K>| {
        let object = match event {
            skiff_client::InformerEvent::Applied { new, .. } => new,
            skiff_client::InformerEvent::Deleted(old) => old,
        };
        queue.add(key_of(object.metadata()));
    })
}

/// Runs `workers` loops that take keys from `queue` and sync them: `Ok(None)` is
/// done, `Ok(Some(d))` asks to look again after `d`, an error re-adds the key with
/// back-off. Returns when the queue shuts down. The workers run inside the
/// returned future (not spawned), so dropping it stops them.
pub async fn run_workers<F, Fut, E>(name: &'static str, queue: skiff_client::WorkQueue<String>, workers: usize, sync: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Duration>, E>>,
    E: std::fmt::Display,
{
    let worker = || async {
        while let Some(key) = queue.next().await {
            match sync(key.clone()).await {
                Ok(after) => {
                    queue.forget(&key);
                    if let Some(after) = after {
                        queue.add_after(key.clone(), after);
                    }
                }
                Err(e) => {
                    tracing::info!(controller = name, key = %key, error = %e, "sync failed, retrying");
                    queue.add_rate_limited(key.clone());
                }
            }
            queue.done(&key);
        }
    };
    futures::future::join_all((0..workers.max(1)).map(|_| worker())).await;
}

/// Runs `f` `count` times in batches that start at `initial` and double (1, 2, 4,
/// ...), each batch concurrently, stopping after the first batch with a failure
/// (upstream `slowStartBatch`): a controller that cannot create pods (quota, a bad
/// template) fails with one request instead of hundreds. `f` gets the call's index.
/// Returns how many calls succeeded and the first error.
pub async fn slow_start_batch<F, Fut, E>(count: usize, initial: usize, f: F) -> (usize, Option<E>)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial.max(1));
    let mut next = 0;
    while batch > 0 {
        let results = futures::future::join_all((next..next + batch).map(&f)).await;
        next += batch;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if first_err.is_some() {
            return (successes, first_err);
        }
        remaining -= batch;
        batch = remaining.min(2 * batch);
    }
    (successes, None)
}

/// Whether an API error says the namespace is being deleted (creates then fail
/// and need no retry: upstream checks the `NamespaceTerminating` cause).
pub fn is_namespace_terminating(err: &skiff_client::Error) -> bool {
    let skiff_client::Error::Api { status, .. } = err else { return false };
    status
        .pointer("/details/causes")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|causes| causes.iter().any(|c| c.get("type").and_then(serde_json::Value::as_str) == Some("NamespaceTerminating")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, Time};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn ready_pod(since: jiff::Timestamp) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(since)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn safe_encoding_uses_the_upstream_alphabet() {
        // Upstream: SafeEncodeString("0123456789") maps digit bytes 48..57 mod 27.
        assert_eq!(safe_encode_string("0123456789"), "456789bcdf");
        assert!(safe_encode_string("abc").chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn fnv32a_matches_the_reference_vectors() {
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn template_hashes_are_stable_and_change_with_the_collision_count() {
        let mut t = PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some(labels(&[("app", "web")])), ..Default::default() }),
            spec: Some(PodSpec::default()),
        };
        let h = compute_hash(&t, None);
        assert_eq!(h, compute_hash(&t.clone(), None));
        assert_ne!(h, compute_hash(&t, Some(1)));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        t.spec.as_mut().unwrap().hostname = Some("x".into());
        assert_ne!(h, compute_hash(&t, None));
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement { key: "tier".into(), operator: "In".into(), values: Some(vec!["a".into(), "b".into()]) },
                LabelSelectorRequirement { key: "canary".into(), operator: "DoesNotExist".into(), values: None },
            ]),
        };
        assert!(label_selector_matches(&sel, &labels(&[("app", "web"), ("tier", "a")])));
        assert!(!label_selector_matches(&sel, &labels(&[("app", "web"), ("tier", "c")])));
        assert!(!label_selector_matches(&sel, &labels(&[("app", "web"), ("tier", "a"), ("canary", "1")])));
        assert!(!label_selector_matches(&sel, &labels(&[("tier", "a")])));
        assert!(label_selector_matches(&LabelSelector::default(), &labels(&[])));
        assert_eq!(selector_string(&sel), "app=web,tier in (a,b),!canary");
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let t0 = jiff::Timestamp::from_second(1_000).unwrap();
        let pod = ready_pod(t0);
        assert!(is_pod_ready(&pod));
        assert!(is_pod_available(&pod, 0, t0));
        assert!(!is_pod_available(&pod, 10, t0));
        assert_eq!(time_until_available(&pod, 10, t0), Some(Duration::from_secs(10)));
        assert!(is_pod_available(&pod, 10, jiff::Timestamp::from_second(1_010).unwrap()));
        assert!(!is_pod_available(&Pod::default(), 0, t0));
    }

    #[test]
    fn finished_and_deleted_pods_are_not_active() {
        let mut pod = ready_pod(jiff::Timestamp::UNIX_EPOCH);
        assert!(is_pod_active(&pod));
        pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert!(!is_pod_active(&pod));
        assert!(is_pod_terminating(&pod));
        pod.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!is_pod_terminating(&pod));
    }

    #[test]
    fn pods_from_templates_carry_metadata_and_the_controller_ref() {
        let t = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(&[("app", "web")])),
                annotations: Some(labels(&[("a", "b")])),
                finalizers: Some(vec!["f".into()]),
                name: Some("ignored".into()),
                ..Default::default()
            }),
            spec: Some(PodSpec { hostname: Some("h".into()), ..Default::default() }),
        };
        let r = new_controller_ref("ReplicaSet", "apps/v1", "web-abc", "u1");
        let pod = pod_from_template(&t, "ns", "web-abc-", Some(r.clone()));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(pod.metadata.name, None);
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(pod.metadata.labels, Some(labels(&[("app", "web")])));
        assert_eq!(pod.metadata.finalizers, Some(vec!["f".to_string()]));
        assert_eq!(controller_ref(&pod.metadata), Some(&r));
        assert_eq!(pod.spec.unwrap().hostname.as_deref(), Some("h"));
    }

    #[test]
    fn claims_follow_the_controller_ref_and_the_selector() {
        let mut meta = ObjectMeta::default();
        assert_eq!(claim_action(&meta, "me", false, true), ClaimAction::Adopt);
        assert_eq!(claim_action(&meta, "me", false, false), ClaimAction::Ignore);
        assert_eq!(claim_action(&meta, "me", true, true), ClaimAction::Ignore);
        meta.owner_references = Some(vec![new_controller_ref("ReplicaSet", "apps/v1", "x", "me")]);
        assert_eq!(claim_action(&meta, "me", false, true), ClaimAction::Keep);
        assert_eq!(claim_action(&meta, "me", false, false), ClaimAction::Release);
        assert_eq!(claim_action(&meta, "me", true, false), ClaimAction::Ignore);
        assert_eq!(claim_action(&meta, "other", false, true), ClaimAction::Ignore);
        meta.owner_references = None;
        meta.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(claim_action(&meta, "me", false, true), ClaimAction::Ignore);
    }

    #[tokio::test]
    async fn slow_start_doubles_batches_and_stops_at_the_first_failing_one() {
        let calls = Mutex::new(Vec::new());
        let (ok, err) = slow_start_batch(10, 1, |i| {
            calls.lock().unwrap().push(i);
            async { Ok::<(), ()>(()) }
        })
        .await;
        assert_eq!((ok, err), (10, None));
        assert_eq!(calls.lock().unwrap().len(), 10);

        let calls = Mutex::new(0);
        // Calls 0 | 1 2 | 3 4 5 6 | ...: the fourth call fails, so the third batch is the last.
        let (ok, err) = slow_start_batch(20, 1, |i| {
            *calls.lock().unwrap() += 1;
            async move { if i == 4 { Err("quota") } else { Ok(()) } }
        })
        .await;
        assert_eq!((ok, err), (6, Some("quota")));
        assert_eq!(*calls.lock().unwrap(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn expectations_are_satisfied_when_observed_or_expired() {
        let e = Expectations::new();
        assert!(e.satisfied("ns/a"));
        e.expect_creations("ns/a", 2);
        assert!(!e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        assert!(!e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        assert!(e.satisfied("ns/a"));

        e.expect_pod_deletions("ns/a", &["u1".into()]);
        e.pod_deletion_observed("ns/a", "other");
        assert!(!e.satisfied("ns/a"));
        e.pod_deletion_observed("ns/a", "u1");
        e.pod_deletion_observed("ns/a", "u1");
        assert_eq!(e.pending("ns/a"), Some((0, 0)));

        e.expect_creations("ns/b", 1);
        tokio::time::advance(EXPECTATIONS_TTL + Duration::from_secs(1)).await;
        assert!(e.satisfied("ns/b"));
    }
}
