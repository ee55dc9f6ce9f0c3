//! Patching: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge
//! patch, and server-side apply with `managedFields`.
//!
//! A short tour:
//! - [`meta`]: patch metadata of every list in the built-in kinds: strategy (`merge`,
//!   `retainKeys`, `replace`), merge key, list type (`atomic`, `set`, `map`) and map keys,
//!   keyed by (definition name, field). The OpenAPI documents publish it as
//!   `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
//!   `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`.
//! - `typed`: the walk from a kind's definition down to any nested field, shared by
//!   the strategic merge patch and server-side apply.
//! - `strategic`: [`strategic_merge_patch`] with upstream semantics: merge keys,
//!   `$patch: replace|delete`, `$retainKeys`, `$setElementOrder/<field>`,
//!   `$deleteFromPrimitiveList/<field>`, null deletes.
//! - `fieldpath` and `apply`: field sets in the `fieldsV1` format, and
//!   [`server_side_apply`] / [`record_update`], which keep `metadata.managedFields`
//!   the way kube-apiserver does (structured-merge-diff semantics).
//!
//! Everything here is pure: objects in, objects out.

use serde_json::{Map, Value};

mod apply;
mod fieldpath;
pub mod meta;
mod strategic;
mod typed;

/// Why a patch could not be applied. The API server turns these into 400/422/409.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is not valid for its type (400 BadRequest).
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch `test` failed or a path does not exist (422 Invalid upstream).
    #[error("{0}")]
    Failed(String),
}

/// One field owned by another manager that an apply wanted to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// Field path as upstream prints it: `.spec.replicas`, `.spec.containers[name="nginx"].image`.
    pub field: String,
    /// The manager as upstream names it in the message: `"kubectl"` for an applier,
    /// `"kubectl-scale" using apps/v1 at 2024-01-02T03:04:05Z` for an updater,
    /// with ` with subresource "status"` when it wrote through one.
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Patch(#[from] PatchError),
    /// 409 Conflict; upstream message: `Apply failed with N conflict(s): conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas`.
    #[error("apply conflicts")]
    Conflicts(Vec<Conflict>),
}

/// The message of a 409 for these conflicts, worded as upstream words it:
/// `Apply failed with 1 conflict: conflict with "kubectl" ...: .spec.replicas`, or one
/// line per manager and field when there are several.
pub fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {}: {}", c.description, c.field);
    }
    let mut by_manager: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for c in conflicts {
        by_manager.entry(&c.description).or_default().push(&c.field);
    }
    let mut lines = Vec::new();
    for (manager, fields) in by_manager {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(fields.into_iter().map(|f| format!("- {f}")));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

/// The most operations one JSON patch may hold, as kube-apiserver allows
/// (`maxJSONPatchOperations`). Each operation is only a few bytes, so the body size limit
/// alone would let through hundreds of thousands of them.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// How many bytes (as JSON) the `copy` operations of one JSON patch may add in all, as
/// kube-apiserver allows (`JSONPatchMaxCopyBytes`): each copy can double the document,
/// so thirty of them in a few hundred bytes would otherwise ask for gigabytes.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// The deepest nesting of arrays and objects that the JSON decoder (`serde_json`,
/// which the store reads objects back with) accepts: its recursion limit of 128 is
/// exhausted by the 128th level. A JSON patch is the one request
/// that can build deeper documents than its body holds (each `add` may nest its value
/// under a path as long as it likes), so its result is held to the same limit; a
/// deeper object could be neither stored nor read back.
pub const MAX_NESTING: usize = 127;

/// Applies an RFC 6902 JSON patch document.
///
/// Refuses patches with more than [`MAX_JSON_PATCH_OPERATIONS`] operations, copies
/// beyond [`MAX_JSON_PATCH_COPY_BYTES`], and operations that would nest the document
/// deeper than [`MAX_NESTING`].
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    use json_patch::PatchOperation;

    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Malformed(format!("invalid JSON patch: {e}")))?;
    if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::Malformed(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            ops.0.len()
        )));
    }
    let mut doc = target.clone();
    let mut copied = 0usize;
    for (i, op) in ops.0.iter().enumerate() {
        // The value the operation puts at its path, to meter before it is cloned.
        let placed = match op {
            PatchOperation::Add(o) => Some(&o.value),
            PatchOperation::Replace(o) => Some(&o.value),
            PatchOperation::Move(o) => doc.pointer(o.from.as_str()),
            PatchOperation::Copy(o) => doc.pointer(o.from.as_str()),
            PatchOperation::Remove(_) | PatchOperation::Test(_) => None,
        };
        if let Some(value) = placed {
            if let PatchOperation::Copy(_) = op {
                copied = copied.saturating_add(json_len(value));
                if copied > MAX_JSON_PATCH_COPY_BYTES {
                    return Err(PatchError::Failed(format!(
                        "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_JSON_PATCH_COPY_BYTES}"
                    )));
                }
            }
            if op.path().count().saturating_add(nesting(value)) > MAX_NESTING {
                return Err(PatchError::Failed(format!(
                    "operation '/{i}' failed at path '{}': the result would nest deeper than {MAX_NESTING} levels",
                    op.path()
                )));
            }
        }
        // One operation at a time, so the checks above see the document it applies to;
        // the copy is thrown away on failure, so nothing needs undoing.
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op)).map_err(|mut e| {
            e.operation = i;
            PatchError::Failed(e.to_string())
        })?;
    }
    Ok(doc)
}

/// Levels of arrays and objects in `v`: 0 for a scalar, 1 for `[]` or `{"a": 1}`.
/// Only called on values already within [`MAX_NESTING`], so the recursion is bounded.
fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// The length of `v` written as compact JSON, without writing it anywhere.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, v).expect("a JSON value always serializes");
    count.0
}

/// Applies an RFC 7386 JSON merge patch.
///
/// As upstream (evanphx/json-patch `MergePatch`): an object patch merges into an
/// object target (and replaces any other target, minus its nulls); an array patch
/// replaces the target, minus nulls; `null` and scalars are not valid merge patches.
pub fn merge_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            let mut out = t.clone();
            merge_objects(&mut out, p);
            Ok(Value::Object(out))
        }
        (_, Value::Object(_) | Value::Array(_)) => Ok(prune_nulls(patch.clone())),
        _ => Err(PatchError::Malformed("Invalid JSON Patch".into())),
    }
}

fn merge_objects(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match (v, target.get_mut(k)) {
            (Value::Null, _) => {
                target.remove(k);
            }
            (Value::Object(p), Some(Value::Object(t))) => merge_objects(t, p),
            (v, _) => {
                target.insert(k.clone(), prune_nulls(v.clone()));
            }
        }
    }
}

/// Drops null members of objects (at any depth), as a merge patch does for the
/// values it adds; null elements of arrays stay.
fn prune_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, prune_nulls(v))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(prune_nulls).collect()),
        other => other,
    }
}

/// Applies a strategic merge patch to an object whose schema is `definition`.
pub fn strategic_merge_patch(definition: &str, target: &Value, patch: &Value) -> Result<Value, PatchError> {
    strategic::apply(typed::Ty::root(definition), target, patch)
}

/// Server-side apply of `applied` (the user's intent) by `manager` onto `live`
/// (`None` when the object does not exist yet). Returns the new object, with
/// `metadata.managedFields` updated (operation `Apply`). `api_version` is the
/// object's apiVersion, recorded in the managed-fields entry.
pub fn server_side_apply(
    definition: &str,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    apply::server_side_apply(definition, live, applied, manager, force, now)
}

/// Records an ordinary write (create, update, patch) by `manager` in
/// `new.metadata.managedFields` (operation `Update`), taking ownership of the fields
/// it changed from other managers. `subresource` is `""` or `"status"`, etc.
pub fn record_update(definition: &str, old: Option<&Value>, new: &mut Value, manager: &str, subresource: &str, now: &str) {
    apply::record_update(definition, old, new, manager, subresource, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_applies_operations_in_order() {
        let target = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
        let patch = json!([
            {"op": "test", "path": "/spec/replicas", "value": 1},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "remove", "path": "/metadata/labels/a"}
        ]);
        assert_eq!(json_patch(&target, &patch).unwrap(), json!({"metadata": {"labels": {"b": "2"}}, "spec": {"replicas": 3}}));
    }

    #[test]
    fn json_patch_failures_are_told_apart_from_malformed_documents() {
        let target = json!({"spec": {"replicas": 1}});
        assert!(matches!(json_patch(&target, &json!([{"op": "test", "path": "/spec/replicas", "value": 2}])), Err(PatchError::Failed(_))));
        assert!(matches!(json_patch(&target, &json!([{"op": "remove", "path": "/spec/missing"}])), Err(PatchError::Failed(_))));
        assert!(matches!(json_patch(&target, &json!({"op": "remove"})), Err(PatchError::Malformed(_))));
        assert!(matches!(json_patch(&target, &json!([{"op": "frobnicate", "path": "/"}])), Err(PatchError::Malformed(_))));
    }

    #[test]
    fn json_patch_errors_name_the_failing_operation() {
        let target = json!({"spec": {"replicas": 1}});
        let patch = json!([{"op": "test", "path": "/spec/replicas", "value": 1}, {"op": "remove", "path": "/spec/missing"}]);
        let Err(PatchError::Failed(msg)) = json_patch(&target, &patch) else { panic!("the remove must fail") };
        assert!(msg.starts_with("operation '/1' failed at path '/spec/missing'"), "{msg}");
    }

    #[test]
    fn json_patch_with_too_many_operations_is_refused() {
        let ops: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS).map(|_| json!({"op": "add", "path": "/a/0", "value": 0})).collect();
        assert_eq!(
            json_patch(&json!({"a": []}), &Value::Array(ops)),
            Err(PatchError::Malformed("The allowed maximum operations in a JSON patch is 10000, got 10001".into()))
        );
    }

    #[test]
    fn doubling_copies_stop_at_the_copy_limit() {
        // Each self-copy doubles the document: thirty in 1.5 kB would ask for 2^30
        // elements. Twenty pass the limit and stay affordable should this regress.
        let ops: Vec<Value> = (0..20).map(|_| json!({"op": "copy", "from": "/a", "path": "/a/0"})).collect();
        let started = std::time::Instant::now();
        let Err(PatchError::Failed(msg)) = json_patch(&json!({"a": [1, 2, 3, 4, 5, 6, 7, 8]}), &Value::Array(ops)) else {
            panic!("the copies must be refused")
        };
        assert!(msg.starts_with("Unable to complete the copy, the accumulated size increase of copy is "), "{msg}");
        assert!(msg.ends_with("exceeding the limit 3145728"), "{msg}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Small copies still work.
        let ok = json_patch(&json!({"a": [1]}), &json!([{"op": "copy", "from": "/a", "path": "/b"}])).unwrap();
        assert_eq!(ok, json!({"a": [1], "b": [1]}));
    }

    #[test]
    fn deeply_nested_results_of_a_json_patch_are_refused() {
        // Each add nests a 100-level value under the previous one: 500 levels from
        // a body whose own nesting is 102.
        let level = |n: usize| (0..n).fold(json!(1), |v, _| json!({ "a": v }));
        let mut ops = Vec::new();
        for i in 0..5 {
            ops.push(json!({"op": "add", "path": format!("/x{}", "/a".repeat(100 * i)), "value": level(100)}));
        }
        let Err(PatchError::Failed(msg)) = json_patch(&json!({}), &Value::Array(ops.clone())) else { panic!("must be refused") };
        assert!(msg.starts_with("operation '/1' failed at path '/x/a/a"), "{msg}");
        assert!(msg.ends_with("the result would nest deeper than 127 levels"), "{msg}");
        // Copies and moves count the nesting of what they place.
        let copy = json!([{"op": "add", "path": "/x", "value": level(100)}, {"op": "copy", "from": "/x", "path": "/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y/y"}]);
        assert!(json_patch(&json!({"y": level(40)}), &copy).is_err());
        // A document right at the limit is still accepted, and round-trips through the decoder.
        let at_limit = json_patch(&json!({}), &json!([{"op": "add", "path": "/x", "value": level(MAX_NESTING - 1)}])).unwrap();
        assert_eq!(nesting(&at_limit), MAX_NESTING);
        let text = serde_json::to_string(&at_limit).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), at_limit);
        let deeper = format!("[{text}]");
        assert!(serde_json::from_str::<Value>(&deeper).is_err(), "MAX_NESTING must match the decoder's limit");
    }

    #[test]
    fn merge_patch_merges_objects_and_null_deletes() {
        let target = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"ports": [1, 2]}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"ports": [3], "new": {"x": null, "y": 1}}});
        assert_eq!(
            merge_patch(&target, &patch).unwrap(),
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"ports": [3], "new": {"y": 1}}})
        );
    }

    #[test]
    fn merge_patch_of_a_non_object_follows_upstream() {
        assert_eq!(merge_patch(&json!([1]), &json!({"a": null, "b": 1})).unwrap(), json!({"b": 1}));
        assert_eq!(merge_patch(&json!({"a": 1}), &json!([1, null])).unwrap(), json!([1, null]));
        assert_eq!(merge_patch(&json!({"a": 1}), &json!(null)), Err(PatchError::Malformed("Invalid JSON Patch".into())));
        assert_eq!(merge_patch(&json!({"a": 1}), &json!("x")), Err(PatchError::Malformed("Invalid JSON Patch".into())));
    }

    #[test]
    fn conflict_messages_group_several_conflicts_by_manager() {
        let c = |m: &str, f: &str| Conflict { manager: m.into(), field: f.into(), description: format!("{m:?}") };
        let msg = conflicts_message(&[c("b", ".spec.replicas"), c("a", ".spec.paused"), c("b", ".spec.minReadySeconds")]);
        assert_eq!(
            msg,
            "Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.paused\nconflicts with \"b\":\n- .spec.replicas\n- .spec.minReadySeconds"
        );
    }
}
