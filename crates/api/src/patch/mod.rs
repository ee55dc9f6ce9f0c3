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

use serde_json::Value;

pub mod meta;

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
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Patch(#[from] PatchError),
    /// 409 Conflict; upstream message: `Apply failed with N conflict(s): conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas`.
    #[error("apply conflicts")]
    Conflicts(Vec<Conflict>),
}

/// Applies an RFC 6902 JSON patch document.
pub fn json_patch(_target: &Value, _patch: &Value) -> Result<Value, PatchError> {
    todo!()
}

/// Applies an RFC 7386 JSON merge patch.
pub fn merge_patch(_target: &Value, _patch: &Value) -> Result<Value, PatchError> {
    todo!()
}

/// Applies a strategic merge patch to an object whose schema is `definition`.
pub fn strategic_merge_patch(_definition: &str, _target: &Value, _patch: &Value) -> Result<Value, PatchError> {
    todo!()
}

/// Server-side apply of `applied` (the user's intent) by `manager` onto `live`
/// (`None` when the object does not exist yet). Returns the new object, with
/// `metadata.managedFields` updated (operation `Apply`). `api_version` is the
/// object's apiVersion, recorded in the managed-fields entry.
pub fn server_side_apply(
    _definition: &str,
    _live: Option<&Value>,
    _applied: &Value,
    _manager: &str,
    _force: bool,
    _now: &str,
) -> Result<Value, ApplyError> {
    todo!()
}

/// Records an ordinary write (create, update, patch) by `manager` in
/// `new.metadata.managedFields` (operation `Update`), taking ownership of the fields
/// it changed from other managers. `subresource` is `""` or `"status"`, etc.
pub fn record_update(_definition: &str, _old: Option<&Value>, _new: &mut Value, _manager: &str, _subresource: &str, _now: &str) {
    todo!()
}
