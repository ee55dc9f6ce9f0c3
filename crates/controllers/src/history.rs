//! ControllerRevision history shared by StatefulSet and DaemonSet: revisions of a
//! pod template, their hashes, and history limits.
//!
//! A revision stores a patch that restores the owner's pod template
//! (`{"spec":{"template":{..., "$patch":"replace"}}}`), the same data upstream's
//! controllers write, so `kubectl rollout history` and `kubectl rollout undo` read
//! and apply it unchanged. Revisions are owned by their set through a controller
//! reference, numbered by `revision`, and named `{owner}-{hash}` where the hash
//! covers the data and a collision count.
//!
//! The pure helpers (hashing, equality, ordering, truncation) sit beside
//! the few API calls that create, renumber, adopt, release and delete revisions.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{json, Map, Value};
use skiff_client::{Api, DeleteParams, PatchType, Store};

use crate::podutil::{adopt_patch, controller_ref, release_patch, safe_encode_string};

/// The label holding the hash of a revision's data.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// How many old revisions a set keeps when `revisionHistoryLimit` is unset.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// How many names a create tries before giving up on hash collisions. Each
/// collision bumps the count and so the name; a real cluster sees one at most.
const MAX_CREATE_ATTEMPTS: usize = 32;

/// What managing history can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API failed.
    #[error(transparent)]
    Api(#[from] skiff_client::Error),
    /// Every name tried for a new revision was taken by different data.
    #[error("no free name for a revision of {owner} after {attempts} hash collisions")]
    Collisions { owner: String, attempts: usize },
    /// The revision's owner or the revision itself is not what it should be.
    #[error("{0}")]
    Invalid(String),
}

// === hashing ===

/// 32-bit FNV-1 (upstream hashes revision data with `fnv.New32`).
pub fn fnv32(data: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in data {
        hash = hash.wrapping_mul(0x0100_0193);
        hash ^= u32::from(*b);
    }
    hash
}

/// `value` with every object's keys sorted, recursively: the stable form that is
/// hashed and compared, whatever order the keys arrived in.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Compact JSON with sorted keys, as Go's encoder writes maps.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(&canonical(value)).unwrap_or_default()
}

/// The hash of revision data and a collision count (upstream's
/// `HashControllerRevision`): FNV-1 over the data, then the count in decimal.
pub fn hash_revision(data: &Value, collision_count: Option<i32>) -> String {
    let mut bytes = canonical_bytes(data);
    if let Some(count) = collision_count {
        bytes.extend_from_slice(count.to_string().as_bytes());
    }
    safe_encode_string(&fnv32(&bytes).to_string())
}

/// `{prefix}-{hash}`, the prefix cut so the name stays within 253 bytes.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let mut cut = prefix.len().min(223);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hash}", &prefix[..cut])
}

// === revision data ===

/// The patch that restores `template` on its set: only `spec.template`, marked to
/// replace what is there.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({ "spec": { "template": template } })
}

/// The pod template a revision restores, if its data holds one.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(map) = template.as_object_mut() {
        map.remove("$patch");
    }
    serde_json::from_value(template).ok()
}

/// A new revision of `owner` (not yet created): owned through `owner_ref`,
/// labelled with `template_labels` and the hash, named `{owner}-{hash}`.
pub fn new_revision(
    owner: &ObjectMeta,
    owner_ref: OwnerReference,
    template_labels: Option<&BTreeMap<String, String>>,
    data: Value,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let hash = hash_revision(&data, collision_count);
    let mut labels = template_labels.cloned().unwrap_or_default();
    labels.insert(HASH_LABEL.to_string(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(owner.name.as_deref().unwrap_or_default(), &hash)),
            namespace: owner.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner_ref]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// Whether two revisions restore the same state: their data is equal, whatever the
/// key order it was stored with.
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    let data = |r: &ControllerRevision| r.data.as_ref().map(|d| canonical(&d.0)).unwrap_or(Value::Null);
    data(a) == data(b)
}

/// The revisions equal to `needle`, in the order given.
pub fn find_equal_revisions(revisions: &[Arc<ControllerRevision>], needle: &ControllerRevision) -> Vec<Arc<ControllerRevision>> {
    revisions.iter().filter(|r| equal_revision(r, needle)).cloned().collect()
}

/// Sorts by revision number, then creation time, then name (upstream's order).
pub fn sort_revisions(revisions: &mut [Arc<ControllerRevision>]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| created(a).cmp(&created(b)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

fn created(r: &ControllerRevision) -> Option<jiff::Timestamp> {
    r.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// The number after the highest revision of sorted `revisions` (1 for none).
pub fn next_revision(sorted: &[Arc<ControllerRevision>]) -> i64 {
    sorted.last().map_or(1, |r| r.revision + 1)
}

/// The highest revision number (0 for none).
pub fn max_revision(revisions: &[Arc<ControllerRevision>]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0)
}

/// The revisions to delete so that at most `limit` revisions that are not `live`
/// remain, oldest first. `sorted` is in revision order; a negative limit keeps all.
pub fn revisions_to_truncate(sorted: &[Arc<ControllerRevision>], live: &HashSet<String>, limit: i32) -> Vec<Arc<ControllerRevision>> {
    let history: Vec<&Arc<ControllerRevision>> = sorted.iter().filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or_default())).collect();
    if limit < 0 || history.len() <= limit as usize {
        return Vec::new();
    }
    history[..history.len() - limit as usize].iter().map(|r| Arc::clone(r)).collect()
}

// === listing ===

/// The revisions of `namespace` that belong to the owner or to no one and match
/// (upstream's `ListControllerRevisions`).
pub fn list_revisions(
    store: &Store<ControllerRevision>,
    namespace: &str,
    owner_uid: &str,
    selects: impl Fn(Option<&BTreeMap<String, String>>) -> bool,
) -> Vec<Arc<ControllerRevision>> {
    store
        .list_namespace(namespace)
        .into_iter()
        .filter(|r| selects(r.metadata.labels.as_ref()))
        .filter(|r| controller_ref(&r.metadata).is_none_or(|c| c.uid == owner_uid))
        .collect()
}

// === API calls ===

/// Creates `revision` under `{owner}-{hash}`; on a name taken by different data,
/// bumps `collision_count` and tries the next name. A name taken by equal data is
/// the revision itself (created earlier) and is returned.
pub async fn create_revision(api: &Api<ControllerRevision>, owner: &str, revision: &ControllerRevision, collision_count: &mut i32) -> Result<ControllerRevision, Error> {
    let data = revision.data.as_ref().map(|d| d.0.clone()).unwrap_or(Value::Null);
    let mut clone = revision.clone();
    for _ in 0..MAX_CREATE_ATTEMPTS {
        let hash = hash_revision(&data, Some(*collision_count));
        let name = revision_name(owner, &hash);
        clone.metadata.name = Some(name.clone());
        clone.metadata.labels.get_or_insert_with(BTreeMap::new).insert(HASH_LABEL.into(), hash);
        match api.create(&clone).await {
            Ok(created) => return Ok(created),
            Err(e) if e.reason() == Some("AlreadyExists") => {
                let existing = api.get(&name).await?;
                if equal_revision(&existing, &clone) {
                    return Ok(existing);
                }
                *collision_count += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Collisions { owner: owner.to_string(), attempts: MAX_CREATE_ATTEMPTS })
}

/// Renumbers `revision` to `new_revision` (a rollback makes an old revision the
/// newest), retrying on conflicts with the fresh object.
pub async fn update_revision_number(api: &Api<ControllerRevision>, revision: &ControllerRevision, new_revision: i64) -> Result<ControllerRevision, Error> {
    let name = revision.metadata.name.clone().unwrap_or_default();
    let mut current = revision.clone();
    let mut attempts = 0;
    loop {
        if current.revision == new_revision {
            return Ok(current);
        }
        current.revision = new_revision;
        match api.replace(&name, &current).await {
            Ok(updated) => return Ok(updated),
            Err(e) if e.is_conflict() && attempts < 5 => {
                attempts += 1;
                current = api.get(&name).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Deletes a revision; one already gone is fine.
pub async fn delete_revision(api: &Api<ControllerRevision>, revision: &ControllerRevision) -> Result<(), Error> {
    match api.delete(revision.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await {
        Err(e) if !e.is_not_found() => Err(e.into()),
        _ => Ok(()),
    }
}

/// Adds `owner_ref` (a controller reference) to an orphan revision; the
/// revision's uid is a precondition, so a revision recreated under the same name is
/// left alone.
pub async fn adopt_revision(api: &Api<ControllerRevision>, owner_ref: &OwnerReference, revision: &ControllerRevision) -> Result<ControllerRevision, Error> {
    if let Some(owner) = controller_ref(&revision.metadata) {
        return Err(Error::Invalid(format!("attempt to adopt revision owned by {} {}", owner.kind, owner.name)));
    }
    let patch = adopt_patch(owner_ref, revision.metadata.uid.as_deref().unwrap_or_default());
    Ok(api.patch(revision.metadata.name.as_deref().unwrap_or_default(), PatchType::StrategicMerge, &patch).await?)
}

/// Removes the owner's reference from a revision it no longer selects. A revision
/// already gone, or no longer owned, needs nothing.
pub async fn release_revision(api: &Api<ControllerRevision>, owner_uid: &str, revision: &ControllerRevision) -> Result<Option<ControllerRevision>, Error> {
    let patch = release_patch(owner_uid, revision.metadata.uid.as_deref().unwrap_or_default());
    match api.patch(revision.metadata.name.as_deref().unwrap_or_default(), PatchType::StrategicMerge, &patch).await {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.is_not_found() || e.code() == Some(422) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some([("app".to_string(), "web".to_string())].into()), ..Default::default() }),
            spec: Some(PodSpec { containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }], ..Default::default() }),
        }
    }

    fn owner() -> ObjectMeta {
        ObjectMeta { name: Some("web".into()), namespace: Some("default".into()), uid: Some("u-1".into()), ..Default::default() }
    }

    fn owner_ref() -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: "web".into(),
            uid: "u-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn revision(image: &str, number: i64) -> Arc<ControllerRevision> {
        Arc::new(new_revision(&owner(), owner_ref(), template(image).metadata.unwrap().labels.as_ref(), template_patch(&template(image)), number, Some(0)))
    }

    #[test]
    fn fnv1_matches_the_reference_vectors() {
        assert_eq!(fnv32(b""), 0x811c9dc5);
        assert_eq!(fnv32(b"a"), 0x050c5d7e);
        assert_eq!(fnv32(b"foobar"), 0x31f0b262);
    }

    #[test]
    fn revision_hashes_ignore_key_order_and_follow_the_collision_count() {
        let a = json!({"spec": {"template": {"b": 1, "a": [{"y": 2, "x": 1}]}}});
        let b = json!({"spec": {"template": {"a": [{"x": 1, "y": 2}], "b": 1}}});
        assert_eq!(hash_revision(&a, Some(0)), hash_revision(&b, Some(0)));
        assert_ne!(hash_revision(&a, Some(0)), hash_revision(&a, Some(1)));
        assert_ne!(hash_revision(&a, None), hash_revision(&json!({"spec": {}}), None));
    }

    #[test]
    fn new_revisions_are_named_after_their_owner_and_hash() {
        let rev = revision("nginx:1", 3);
        let hash = rev.metadata.labels.as_ref().unwrap()[HASH_LABEL].clone();
        assert_eq!(rev.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
        assert_eq!(rev.metadata.labels.as_ref().unwrap()["app"], "web");
        assert_eq!(rev.revision, 3);
        assert_eq!(rev.metadata.owner_references.as_ref().unwrap()[0].uid, "u-1");
        assert_eq!(rev.data.as_ref().unwrap().0["spec"]["template"]["$patch"], "replace");
        assert_eq!(template_of(&rev), Some(template("nginx:1")));
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn revisions_are_equal_when_their_data_is() {
        let a = revision("nginx:1", 1);
        let mut b = (*revision("nginx:1", 7)).clone();
        b.metadata.name = Some("other".into());
        assert!(equal_revision(&a, &b));
        assert!(!equal_revision(&a, &revision("nginx:2", 1)));
        let all = vec![a.clone(), revision("nginx:2", 2), Arc::new(b)];
        assert_eq!(find_equal_revisions(&all, &a).len(), 2);
    }

    #[test]
    fn sorting_orders_by_number_then_name() {
        let mut revs = vec![revision("c", 3), revision("a", 1), revision("b", 2)];
        let mut same = (*revision("z", 2)).clone();
        same.metadata.name = Some("web-0".into());
        revs.push(Arc::new(same));
        sort_revisions(&mut revs);
        let numbers: Vec<i64> = revs.iter().map(|r| r.revision).collect();
        assert_eq!(numbers, vec![1, 2, 2, 3]);
        assert_eq!(revs[1].metadata.name.as_deref(), Some("web-0"));
        assert_eq!(next_revision(&revs), 4);
        assert_eq!(next_revision(&[]), 1);
        assert_eq!(max_revision(&revs), 3);
    }

    #[test]
    fn truncation_keeps_live_revisions_and_the_newest_history() {
        let revs: Vec<_> = (1..=6).map(|i| revision(&format!("img:{i}"), i)).collect();
        let name = |i: usize| revs[i].metadata.name.clone().unwrap();
        // Revisions 1 and 6 are live (a pod and the update revision).
        let live: HashSet<String> = [name(0), name(5)].into();
        let doomed = revisions_to_truncate(&revs, &live, 2);
        let doomed: Vec<i64> = doomed.iter().map(|r| r.revision).collect();
        assert_eq!(doomed, vec![2, 3]);
        assert!(revisions_to_truncate(&revs, &live, 10).is_empty());
        assert!(revisions_to_truncate(&revs, &live, -1).is_empty());
        assert_eq!(revisions_to_truncate(&revs, &HashSet::new(), 0).len(), 6);
    }
}
