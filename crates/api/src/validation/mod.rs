//! What the API server checks on writes.
//!
//! CONTRACT (implemented by the validation work item): `validate(res, obj, old)` returns
//! every problem as a `Cause` with the upstream field path and message, for create
//! (`old = None`) and update. Name rules (DNS-1123 subdomain / label, per kind as
//! upstream), required fields, enum values, and immutable fields on update.

use serde_json::Value;

use crate::{Cause, ResourceInfo};

/// Validates `obj` (already defaulted) for create or update.
pub fn validate(_res: &ResourceInfo, _obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    todo!()
}
