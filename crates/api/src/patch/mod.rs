//! Patching: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge
//! patch, and server-side apply with `managedFields`.
//!
//! CONTRACT (implemented by the patch work item):
//! - [`meta`]: patch metadata of every list in the built-in kinds: strategy (`merge`,
//!   `retainKeys`, `replace`), merge key, list type (`atomic`, `set`, `map`) and map keys,
//!   keyed by (definition name, field). The OpenAPI documents publish it as
//!   `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
//!   `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`.
//! - [`strategic_merge_patch`]: upstream semantics, walking the schema from the
//!   kind's definition: merge keys, `$patch: replace|delete|merge`, `$retainKeys`,
//!   `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`, null deletes.
//! - [`server_side_apply`] and [`record_update`]: field ownership in
//!   `metadata.managedFields` (fieldsV1), conflicts naming the other manager, `force`.

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

/// Applies an RFC 6902 JSON patch document.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Malformed(format!("invalid JSON patch: {e}")))?;
    let mut doc = target.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| PatchError::Failed(e.to_string()))?;
    Ok(doc)
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
        (_, Value::Object(p)) => {
            let mut out = Map::new();
            merge_objects(&mut out, p);
            Ok(Value::Object(out))
        }
        (_, Value::Array(items)) => Ok(Value::Array(items.iter().filter(|v| !v.is_null()).cloned().map(prune_nulls).collect())),
        _ => Err(PatchError::Malformed("Invalid JSON Patch".into())),
    }
}

fn merge_objects(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(p) => match target.get_mut(k) {
                Some(Value::Object(t)) => merge_objects(t, p),
                _ => {
                    let mut fresh = Map::new();
                    merge_objects(&mut fresh, p);
                    target.insert(k.clone(), Value::Object(fresh));
                }
            },
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

/// Drops null members of objects, as a merge patch does for values it adds.
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
