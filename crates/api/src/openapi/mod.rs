//! OpenAPI v3 documents and the strict field check.
//!
//! - [`v3_index`]: the `/openapi/v3` discovery document, one entry per group version
//!   (`api/v1`, `apis/apps/v1`, ...) with its `serverRelativeURL` (with a `?hash=`).
//! - [`v3_document`]: the document of one group version: paths for every resource
//!   and verb (with the `fieldValidation`, `dryRun`, `fieldManager` query parameters on
//!   POST/PUT/PATCH, which kubectl looks for), `components.schemas` from
//!   [`crate::schema`], `x-kubernetes-group-version-kind` on kinds, and the patch
//!   metadata extensions of [`crate::patch::meta`]. `kubectl explain` reads it, and
//!   client-side `kubectl apply` computes strategic merge patches from it.
//! - [`unknown_fields`] and [`duplicate_fields`]: what `fieldValidation=Strict|Warn`
//!   reports, with upstream paths (`spec.containers[0].foo`);
//!   [`strict_decoding_error`] and [`field_warnings`] word them as upstream does.
//!
//! Inside: [`components`] builds `components.schemas`, [`paths`] the operations,
//! [`strict`] the two field checks.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::patch::meta::{field_meta, ListMeta};
use crate::resources;

mod components;
mod paths;
mod strict;

/// `/openapi/v3`.
///
/// Lists exactly the group versions that [`v3_document`] serves. Each URL carries a
/// hash of its document's bytes, so clients (kubectl caches these on disk) can keep
/// a copy for as long as the hash does not change.
pub fn v3_index() -> Value {
    static INDEX: OnceLock<Value> = OnceLock::new();
    INDEX
        .get_or_init(|| {
            let mut paths = Map::new();
            for (group, version) in group_versions() {
                let path = document_path(group, version);
                let bytes = v3_document(group, version).expect("every served group version has a document");
                paths.insert(
                    path.clone(),
                    json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={}", content_hash(bytes)) }),
                );
            }
            json!({ "paths": paths })
        })
        .clone()
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`; `None` if unknown.
///
/// Each document is built on first use and kept, as JSON bytes, for the life of the
/// process: the API surface is static.
pub fn v3_document(group: &str, version: &str) -> Option<&'static [u8]> {
    type Cache = BTreeMap<(&'static str, &'static str), OnceLock<Vec<u8>>>;
    static DOCS: OnceLock<Cache> = OnceLock::new();
    let docs = DOCS.get_or_init(|| group_versions().into_iter().map(|gv| (gv, OnceLock::new())).collect());
    let ((group, version), cell) = docs.iter().find(|((g, v), _)| *g == group && *v == version)?;
    let bytes = cell.get_or_init(|| {
        let doc = build_document(group, version, &field_meta).expect("group version is served");
        serde_json::to_vec(&doc).expect("a JSON value always serializes")
    });
    Some(bytes.as_slice())
}

/// Fields in `obj` that the schema `definition` does not know, as upstream paths.
///
/// Maps (`additionalProperties`) accept any key and check their values; free-form
/// objects (`RawExtension`, `FieldsV1`) and `x-kubernetes-preserve-unknown-fields`
/// accept anything; `apiVersion` and `kind` are always known at the top. Values of the
/// wrong type are not reported here: decoding reports those. The `List` kinds
/// (`io.k8s.api.core.v1.PodList`) are known too. An unknown `definition` yields nothing.
/// At most 100 fields are reported, as upstream stops there.
pub fn unknown_fields(definition: &str, obj: &Value) -> Vec<String> {
    strict::unknown_fields(definition, obj)
}

/// Keys repeated within one JSON object anywhere in `raw`, as upstream paths.
///
/// Each repeated key is reported once however often it repeats, in document order,
/// and at most 100 keys in all, as upstream reports them. Input that is not exactly
/// one JSON value yields nothing: parsing reports that error separately.
pub fn duplicate_fields(raw: &[u8]) -> Vec<String> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    match strict::duplicate_fields(&mut de) {
        Ok(found) if de.end().is_ok() => found,
        _ => Vec::new(),
    }
}

/// Keys repeated within one mapping of the first YAML document in `raw`, as upstream
/// paths; nothing if the YAML does not parse.
///
/// `serde_yaml` decoding into `serde_json::Value` keeps the last of duplicate keys
/// without complaint (only its own `Mapping` type rejects them), so a YAML body needs
/// this scan just like a JSON one does. A document whose aliases expand it too far,
/// or that nests too deep (see [`crate::yaml`]), yields nothing: it does not decode
/// either.
pub fn duplicate_fields_yaml(raw: &[u8]) -> Vec<String> {
    if crate::yaml::check_expansion(raw).is_err() {
        return Vec::new();
    }
    let Some(doc) = serde_yaml::Deserializer::from_slice(raw).next() else { return Vec::new() };
    strict::duplicate_fields(doc).unwrap_or_default()
}

/// The problems a `Warn` request reports, one warning each, as upstream words them:
/// `duplicate field "metadata.name"`, `unknown field "spec.foo"`.
pub fn field_warnings(duplicates: &[String], unknown: &[String]) -> Vec<String> {
    duplicates
        .iter()
        .map(|f| format!("duplicate field \"{f}\""))
        .chain(unknown.iter().map(|f| format!("unknown field \"{f}\"")))
        .collect()
}

/// The message of a `Strict` request's failure, `None` if there is nothing to report:
/// `strict decoding error: unknown field "spec.foo", unknown field "spec.bar"`.
///
/// Upstream wraps it as `Deployment in version "v1" cannot be handled as a Deployment:
/// <message>` in a 400 BadRequest.
pub fn strict_decoding_error(duplicates: &[String], unknown: &[String]) -> Option<String> {
    let problems = field_warnings(duplicates, unknown);
    (!problems.is_empty()).then(|| format!("strict decoding error: {}", problems.join(", ")))
}

/// Every served group version, core first, in discovery order.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for res in resources::RESOURCES {
        if !out.contains(&(res.group, res.version)) {
            out.push((res.group, res.version));
        }
    }
    out
}

/// `api/v1` or `apis/apps/v1`.
fn document_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A 128-bit FNV-1a of the document, in upper-case hex. Not cryptographic: it only
/// has to change when the document does.
fn content_hash(bytes: &[u8]) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    let hash = bytes.iter().fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME));
    format!("{hash:032X}")
}

/// The document of one group version, with patch metadata from `field_meta`;
/// `None` if no resource is served in it.
fn build_document(group: &str, version: &str, field_meta: &dyn Fn(&str, &str) -> Option<ListMeta>) -> Option<Value> {
    resources::in_group_version(group, version).next()?;
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": crate::KUBERNETES_VERSION },
        "paths": paths::document_paths(group, version),
        "components": { "schemas": components::document_schemas(group, version, field_meta) },
    }))
}

#[cfg(test)]
mod tests;
