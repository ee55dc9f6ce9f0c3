//! OpenAPI v3 documents and the strict field check.
//!
//! CONTRACT (implemented by the OpenAPI work item):
//! - [`v3_index`]: the `/openapi/v3` discovery document, one entry per group version
//!   (`api/v1`, `apis/apps/v1`, ...) with its `serverRelativeURL` (with a `?hash=`).
//! - [`v3_document`]: the document of one group version: paths for every resource
//!   and verb (with the `fieldValidation`, `dryRun`, `fieldManager` query parameters on
//!   POST/PUT/PATCH, which kubectl looks for), `components.schemas` from
//!   [`crate::schema`], `x-kubernetes-group-version-kind` on kinds, and the patch
//!   metadata extensions of [`crate::patch::meta`]. `kubectl explain` reads it.
//! - [`unknown_fields`] and [`duplicate_fields`]: what `fieldValidation=Strict|Warn`
//!   reports, with upstream paths (`spec.containers[0].foo`).

use serde_json::Value;

/// `/openapi/v3`.
pub fn v3_index() -> Value {
    todo!()
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`; `None` if unknown.
pub fn v3_document(_group: &str, _version: &str) -> Option<&'static [u8]> {
    todo!()
}

/// Fields in `obj` that the schema `definition` does not know, as upstream paths.
pub fn unknown_fields(_definition: &str, _obj: &Value) -> Vec<String> {
    todo!()
}

/// Keys repeated within one JSON object anywhere in `raw`, as upstream paths.
pub fn duplicate_fields(_raw: &[u8]) -> Vec<String> {
    todo!()
}
