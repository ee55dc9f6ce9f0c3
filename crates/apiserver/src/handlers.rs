//! The verbs: get, list, create, update, patch, delete and deletecollection, plus the
//! status, scale and binding subresources, and (in [`eviction`]) `pods/eviction`.
//! Watch lives in [`crate::watch`].

use axum::body::Body;
use axum::http::{header, HeaderMap, Response, StatusCode};
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::{meta, openapi, patch, ResourceInfo, StatusError, Subresource};
use skiff_store::ListOptions;

use crate::alloc;
use crate::app::{store_error, App, Decision, Written};
use crate::object::{decode_stored, CachedObject};
use crate::output::{self, Format};
use crate::request::{Query, ResourceRequest};
use crate::write::{self, Part};

mod eviction;
pub mod proxy;
mod token;

/// Request bodies larger than this are refused with 413, as upstream.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

type Resp = Result<Response<Body>, StatusError>;

/// The field manager of a write: `fieldManager`, else the user agent's first word.
pub fn field_manager(q: &Query, headers: &HeaderMap) -> Result<String, StatusError> {
    if let Some(m) = q.get("fieldManager") {
        if m.len() > 128 {
            return Err(StatusError::bad_request("fieldManager: Too long: may not be more than 128 bytes"));
        }
        return Ok(m.to_string());
    }
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
    Ok(ua.split('/').next().unwrap_or("unknown").chars().take(128).collect())
}

fn now() -> String {
    meta::now_rfc3339()
}

fn cannot_handle(res: &ResourceInfo, detail: impl std::fmt::Display) -> StatusError {
    StatusError::bad_request(format!(
        "{} in version \"{}\" cannot be handled as a {}: {}",
        res.kind, res.version, res.kind, detail
    ))
}

/// The raw body to scan for duplicate keys: none for protobuf (it cannot repeat keys).
fn text_body<'a>(headers: &HeaderMap, body: &'a [u8]) -> &'a [u8] {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        b""
    } else {
        body
    }
}

/// Strict-field check result: warnings to send back.
fn field_validation(res: &ResourceInfo, definition: &str, raw: &[u8], obj: &Value, q: &Query) -> Result<Vec<String>, StatusError> {
    let mode = q.get("fieldValidation").unwrap_or("Warn");
    let mode = match mode {
        "Strict" | "Warn" | "Ignore" => mode,
        other => {
            return Err(StatusError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}; supported values are Ignore, Warn, Strict"
            )))
        }
    };
    if mode == "Ignore" {
        return Ok(vec![]);
    }
    let mut problems: Vec<String> = Vec::new();
    let dups = match raw.iter().find(|c| !c.is_ascii_whitespace()) {
        None => vec![],
        Some(b'{') => openapi::duplicate_fields(raw),
        Some(_) => openapi::duplicate_fields_yaml(raw),
    };
    problems.extend(dups.into_iter().map(|f| format!("duplicate field \"{f}\"")));
    problems.extend(openapi::unknown_fields(definition, obj).into_iter().map(|f| format!("unknown field \"{f}\"")));
    if problems.is_empty() {
        return Ok(vec![]);
    }
    if mode == "Strict" {
        return Err(cannot_handle(res, format!("strict decoding error: {}", problems.join(", "))));
    }
    Ok(problems)
}

/// Parses a JSON or YAML body into an object.
pub fn parse_body(res: &ResourceInfo, headers: &HeaderMap, body: &[u8]) -> Result<Value, StatusError> {
    if body.len() > MAX_BODY {
        return Err(StatusError::too_large(format!("Request entity too large: limit is {MAX_BODY}")));
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim();
    let v: Value = match media {
        "application/json" | "" | "*/*" => serde_json::from_slice(body).map_err(|e| cannot_handle(res, e))?,
        "application/vnd.kubernetes.protobuf" => skiff_api::protobuf::decode(body).map_err(|e| cannot_handle(res, e))?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            skiff_api::yaml::from_slice(body).map_err(|e| cannot_handle(res, format!("yaml: {e}")))?
        }
        other => {
            return Err(StatusError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other:?})"
            )))
        }
    };
    if !v.is_object() {
        return Err(cannot_handle(res, "the body must be a JSON object"));
    }
    Ok(v)
}

/// Checks the body's apiVersion and kind against the URL (missing ones are filled in).
fn check_type(res: &ResourceInfo, obj: &mut Value, kind: &str, api_version: &str) -> Result<(), StatusError> {
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(api_version),
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(StatusError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )))
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(kind),
        Some(k) if k == kind => {}
        Some(k) => {
            return Err(StatusError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: the kind in the data ({k}) does not match the expected kind ({kind})",
                res.kind, res.version, kind
            )))
        }
    }
    Ok(())
}

/// Sets the object's namespace from the URL, refusing a mismatch.
fn check_namespace_field(rr: &ResourceRequest, obj: &mut Value) -> Result<(), StatusError> {
    let body_ns = meta::namespace(obj).map(String::from);
    match (&rr.namespace, body_ns) {
        (Some(url), Some(body)) if *url != body => Err(StatusError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        (Some(url), _) => {
            meta::metadata_mut(obj).insert("namespace".into(), json!(url));
            Ok(())
        }
        (None, _) => {
            if !rr.res.namespaced {
                meta::metadata_mut(obj).remove("namespace");
            }
            Ok(())
        }
    }
}

fn object_response(code: StatusCode, obj: &Value, format: Format, res: &ResourceInfo, warnings: &[String]) -> Response<Body> {
    let mut r = match format {
        Format::Table { include_object } => {
            let lm = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))});
            output::value_response(code, &output::table(res, std::slice::from_ref(obj), include_object, lm, true))
        }
        Format::Json => output::value_response(code, obj),
    };
    output::add_warnings(&mut r, warnings);
    r
}

// === get ===

pub async fn get(app: &App, rr: &ResourceRequest, q: &Query, headers: &HeaderMap) -> Resp {
    let name = rr.name.as_deref().unwrap_or_default();
    let format = Format::negotiate(headers, q.get("includeObject"))?;
    let rv = q.get("resourceVersion").unwrap_or("");
    let obj = if rv == "0" {
        match app.cache(rr.res).get(&rr.res.key(rr.namespace.as_deref(), name)) {
            Some(e) => e.object.value(),
            None => return Err(StatusError::not_found(rr.res.group, rr.res.plural, name)),
        }
    } else {
        app.read_existing(rr.res, rr.namespace.as_deref(), name).await?.0
    };
    match rr.subresource {
        None | Some(Subresource::Status) => Ok(object_response(StatusCode::OK, &obj, format, rr.res, &[])),
        Some(Subresource::Scale) => Ok(output::value_response(StatusCode::OK, &scale_of(rr.res, &obj))),
        Some(other) => Err(StatusError::method_not_allowed(format!("GET is not supported on {}/{}", rr.res.plural, other.name()))),
    }
}

// === list ===

/// Label and field selectors of a list or watch, parsed once.
pub struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn parse(res: &ResourceInfo, q: &Query) -> Result<Filter, StatusError> {
        let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or("")).map_err(|e| StatusError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or("")).map_err(|e| StatusError::bad_request(e.to_string()))?;
        fields.check_supported(res).map_err(|e| StatusError::bad_request(e.to_string()))?;
        Ok(Filter { labels, fields })
    }

    pub fn matches(&self, o: &CachedObject) -> bool {
        (self.labels.is_empty() || self.labels.matches(&|k| o.label(k)))
            && (self.fields.is_empty() || self.fields.matches(&|k| o.field(k)))
    }
}

/// The prefix of a collection request: one namespace, or all of them.
pub fn collection_prefix(rr: &ResourceRequest) -> String {
    match (&rr.namespace, rr.res.namespaced) {
        (Some(ns), true) => format!("{}{}/", rr.res.key_prefix(), ns),
        _ => rr.res.key_prefix(),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let t = ContinueToken { v: "meta.k8s.io/v1".into(), rv, start: start.to_string() };
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(s: &str) -> Result<ContinueToken, StatusError> {
    let bad = || StatusError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)");
    let raw = base64::engine::general_purpose::URL_SAFE.decode(s).map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" || t.rv <= 0 {
        return Err(bad());
    }
    Ok(t)
}

fn parse_rv(s: &str) -> Result<i64, StatusError> {
    s.parse::<i64>().map_err(|_| StatusError::bad_request(format!("invalid resource version: {s:?}")).with_reason("BadRequest"))
}

trait WithReason {
    fn with_reason(self, r: &str) -> Self;
}
impl WithReason for StatusError {
    fn with_reason(mut self, r: &str) -> Self {
        self.reason = r.into();
        self
    }
}

/// Lists from the store at a revision (for continue tokens and exact reads).
async fn list_from_store(app: &App, rr: &ResourceRequest, filter: &Filter, rv: i64, start_after: Option<String>, limit: usize) -> Result<(Vec<(String, Bytes)>, bool), StatusError> {
    let prefix = collection_prefix(rr);
    let mut out = Vec::new();
    let mut start = start_after;
    let chunk = if limit == 0 { 0 } else { limit.max(500) };
    loop {
        let res = app
            .store
            .list(&prefix, ListOptions { revision: Some(rv), start_after: start.clone(), limit: if chunk == 0 { None } else { Some(chunk) } })
            .await
            .map_err(|e| match e {
                skiff_store::StoreError::Compacted { .. } => StatusError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                e => store_error(rr.res, "", e),
            })?;
        let more_in_store = res.more;
        let last_key = res.items.last().map(|kv| kv.key.clone());
        for kv in res.items {
            let Some(v) = decode_stored(rr.res, &kv) else { continue };
            let c = crate::object::cached(rr.res, &v);
            if filter.matches(&c) {
                out.push((kv.key.clone(), c.json));
                if limit > 0 && out.len() >= limit {
                    // More follow if the store had more, or this chunk had more after this key.
                    let more = more_in_store || last_key.as_deref() != Some(kv.key.as_str());
                    return Ok((out, more));
                }
            }
        }
        if !more_in_store {
            return Ok((out, false));
        }
        start = last_key;
    }
}

pub async fn list(app: &App, rr: &ResourceRequest, q: &Query, headers: &HeaderMap) -> Resp {
    let format = Format::negotiate(headers, q.get("includeObject"))?;
    let filter = Filter::parse(rr.res, q)?;
    let limit = q.int("limit")?.unwrap_or(0).max(0) as usize;
    let rv_param = q.get("resourceVersion").unwrap_or("");
    let rv_match = q.get("resourceVersionMatch").unwrap_or("");
    let prefix = collection_prefix(rr);

    let (items, revision, next): (Vec<(String, Bytes)>, i64, Option<String>) = if let Some(c) = q.get("continue").filter(|c| !c.is_empty()) {
        if !rv_param.is_empty() && rv_param != "0" {
            return Err(StatusError::bad_request("specifying resource version is not allowed when using continue"));
        }
        let t = decode_continue(c)?;
        let (items, more) = list_from_store(app, rr, &filter, t.rv, Some(t.start), limit).await?;
        let next = if more { items.last().map(|(k, _)| encode_continue(t.rv, k)) } else { None };
        (items, t.rv, next)
    } else if rv_match == "Exact" {
        if rv_param.is_empty() || rv_param == "0" {
            return Err(StatusError::bad_request("resourceVersionMatch: Exact requires a resourceVersion other than 0"));
        }
        let rv = parse_rv(rv_param)?;
        let (items, more) = list_from_store(app, rr, &filter, rv, None, limit).await?;
        let next = if more { items.last().map(|(k, _)| encode_continue(rv, k)) } else { None };
        (items, rv, next)
    } else {
        if !rv_match.is_empty() && rv_match != "NotOlderThan" {
            return Err(StatusError::bad_request(format!("resourceVersionMatch: Unsupported value: {rv_match:?}: supported values: \"Exact\", \"NotOlderThan\"")));
        }
        match rv_param {
            "" => {
                app.sync_cache(rr.res).await?;
            }
            "0" => {}
            other => {
                let rv = parse_rv(other)?;
                app.cache(rr.res)
                    .wait_for(rv, std::time::Duration::from_secs(3))
                    .await
                    .map_err(|_| {
                        let mut e = StatusError::timeout(format!("Too large resource version: {rv}, current: {}", app.cache(rr.res).revision()));
                        e.retry_after = Some(1);
                        e
                    })?;
            }
        }
        let listed = app.cache(rr.res).list(&prefix, None, limit, &|e| filter.matches(&e.object));
        let next = if listed.more { listed.items.last().map(|e| encode_continue(listed.revision, &e.key)) } else { None };
        let items = listed.items.iter().map(|e| (e.key.clone(), e.object.json.clone())).collect();
        (items, listed.revision, next)
    };

    match format {
        Format::Json => {
            let bytes: Vec<Bytes> = items.into_iter().map(|(_, b)| b).collect();
            Ok(output::json_response(StatusCode::OK, output::list_bytes(rr.res, &bytes, revision, next.as_deref(), None)))
        }
        Format::Table { include_object } => {
            let objs: Vec<Value> = items.iter().filter_map(|(_, b)| serde_json::from_slice(b).ok()).collect();
            let mut lm = json!({"resourceVersion": revision.to_string()});
            if let Some(n) = next {
                lm["continue"] = json!(n);
            }
            Ok(output::value_response(StatusCode::OK, &output::table(rr.res, &objs, include_object, lm, true)))
        }
    }
}

// === create ===

pub async fn create(app: &App, rr: &ResourceRequest, q: &Query, headers: &HeaderMap, body: &[u8]) -> Resp {
    if rr.name.is_some() {
        return match rr.subresource {
            Some(Subresource::Binding) => bind(app, rr, q, headers, body).await,
            Some(Subresource::Eviction) => eviction::evict(app, rr, q, headers, body).await,
            Some(Subresource::Token) => token::create_token(app, rr, q, headers, body).await,
            _ => Err(StatusError::method_not_allowed(format!("the server does not allow this method on the requested resource ({})", rr.res.plural))),
        };
    }
    let format = Format::negotiate(headers, q.get("includeObject"))?;
    let mut obj = parse_body(rr.res, headers, body)?;
    check_type(rr.res, &mut obj, rr.res.kind, &rr.res.api_version())?;
    let warnings = field_validation(rr.res, rr.res.definition, text_body(headers, body), &obj, q)?;
    check_namespace_field(rr, &mut obj)?;
    let manager = field_manager(q, headers)?;
    let created = create_object(app, rr.res, obj, &manager, q.dry_run()).await?;
    Ok(object_response(StatusCode::CREATED, &created, format, rr.res, &warnings))
}

/// Creates an object (name or generateName resolved here), allocating what the kind
/// needs (Service cluster IPs and node ports).
pub async fn create_object(app: &App, res: &ResourceInfo, obj: Value, manager: &str, dry_run: bool) -> Result<Value, StatusError> {
    let generate = obj.pointer("/metadata/generateName").and_then(Value::as_str).map(String::from);
    let given = meta::name(&obj).to_string();
    if given.is_empty() && generate.as_deref().unwrap_or("").is_empty() {
        return Err(StatusError::invalid(res.group, res.kind, "", vec![skiff_api::Cause::required("metadata.name").with_message("name or generateName is required")]));
    }
    let namespace = meta::namespace(&obj).map(String::from);
    if res.namespaced {
        let ns = namespace.clone().unwrap_or_default();
        if ns.is_empty() {
            return Err(StatusError::bad_request("the namespace of the object is required for a namespaced resource"));
        }
        app.check_namespace(&ns, res, if given.is_empty() { generate.as_deref().unwrap_or("") } else { &given }).await?;
    }
    // Refusals name the object as given: its generateName until a name is chosen.
    let called = if given.is_empty() { generate.clone().unwrap_or_default() } else { given.clone() };
    let mut obj = obj;
    write::admission::mutate_create(app, res, &mut obj, &called)?;
    for attempt in 0..8 {
        let mut o = obj.clone();
        let name = if given.is_empty() { write::generate_name(generate.as_deref().unwrap_or("")) } else { given.clone() };
        meta::metadata_mut(&mut o).insert("name".into(), json!(name));
        let o = write::prepare_create(res, o, Some(manager), &now())?;
        write::admission::validate_create(app, res, &o, &called, jiff::Timestamp::now()).await?;
        let _guard = if res.kind == "Service" { Some(app.alloc_lock.lock().await) } else { None };
        // Held until the create is written or has failed (dropping it settles the reservations).
        let (o, _reservations) = if res.kind == "Service" { alloc::allocate_service(app, o, dry_run).await? } else { (o, alloc::Reservations::none()) };
        if dry_run {
            return Ok(o);
        }
        let key = res.key(namespace.as_deref(), &name);
        match app.store.create(&key, crate::app::encode_for_store(res, &o)).await {
            Ok(kv) => {
                let mut o = o;
                meta::set_resource_version(&mut o, kv.mod_revision);
                if res.kind == "Service" {
                    // Make the allocation visible before the next allocation runs.
                    let _ = app.cache(res).wait_for(kv.mod_revision, std::time::Duration::from_secs(5)).await;
                }
                return Ok(o);
            }
            Err(skiff_store::StoreError::AlreadyExists { .. }) if given.is_empty() && attempt < 7 => continue,
            Err(e) => return Err(store_error(res, &name, e)),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

trait CauseExt {
    fn with_message(self, m: &str) -> Self;
}
impl CauseExt for skiff_api::Cause {
    fn with_message(mut self, m: &str) -> Self {
        self.message = format!("{}: {m}", self.message);
        self
    }
}

// === update ===

pub async fn update(app: &App, rr: &ResourceRequest, q: &Query, headers: &HeaderMap, body: &[u8]) -> Resp {
    let name = rr.name.clone().ok_or_else(|| StatusError::method_not_allowed("PUT requires a resource name"))?;
    let format = Format::negotiate(headers, q.get("includeObject"))?;
    let manager = field_manager(q, headers)?;
    if rr.subresource == Some(Subresource::Scale) {
        let mut scale = parse_body(rr.res, headers, body)?;
        check_type(rr.res, &mut scale, "Scale", "autoscaling/v1")?;
        return update_scale(app, rr, &name, &manager, q.dry_run(), scale).await;
    }
    if !matches!(rr.subresource, None | Some(Subresource::Status) | Some(Subresource::Finalize)) {
        return Err(StatusError::method_not_allowed("PUT is not supported on this subresource"));
    }
    let mut obj = parse_body(rr.res, headers, body)?;
    check_type(rr.res, &mut obj, rr.res.kind, &rr.res.api_version())?;
    let warnings = field_validation(rr.res, rr.res.definition, text_body(headers, body), &obj, q)?;
    check_namespace_field(rr, &mut obj)?;
    if meta::name(&obj) != name {
        if meta::name(&obj).is_empty() {
            meta::metadata_mut(&mut obj).insert("name".into(), json!(name));
        } else {
            return Err(StatusError::bad_request(format!("the name of the object ({}) does not match the name on the URL ({})", meta::name(&obj), name)));
        }
    }
    let part = if rr.subresource == Some(Subresource::Status) { Part::Status } else { Part::Main };
    let finalize = rr.subresource == Some(Subresource::Finalize);
    let wanted_rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from);
    let res = rr.res;
    // Services allocate and release addresses on update: see `alloc::update_service`.
    let written = alloc::guaranteed_update(app, res, rr.namespace.as_deref(), &name, q.dry_run(), |current| {
        let Some(current) = current else { return Err(StatusError::not_found(res.group, res.plural, &name)) };
        if let Some(rv) = &wanted_rv {
            if current.pointer("/metadata/resourceVersion").and_then(Value::as_str) != Some(rv.as_str()) {
                return Err(StatusError::conflict(res.group, res.plural, &name, "the object has been modified; please apply your changes to the latest version and try again"));
            }
        }
        let new = if finalize {
            // namespaces/finalize changes only spec.finalizers.
            let mut n = current.clone();
            n["spec"]["finalizers"] = obj.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
            write::prepare_update(res, current, n, Part::Main, Some(&manager), &now())?
        } else {
            write::prepare_update(res, current, obj.clone(), part, Some(&manager), &now())?
        };
        if part == Part::Main {
            write::admission::validate_update(app, res, &new, current)?;
        }
        Ok(decide_after_update(res, current, new))
    })
    .await?;
    written_response(res, written, format, &warnings)
}

/// After an update: an object being deleted whose last finalizer went away is deleted.
pub fn decide_after_update(res: &ResourceInfo, current: &Value, new: Value) -> Decision {
    if meta::is_deleting(&new) && meta::finalizers(&new).is_empty() && !namespace_still_finalizing(res, &new) && !pod_still_terminating(res, &new) {
        return Decision::Delete;
    }
    if write::meaningfully_equal(current, &new) {
        return Decision::Keep(current.clone());
    }
    Decision::Write(new)
}

fn namespace_still_finalizing(res: &ResourceInfo, obj: &Value) -> bool {
    res.kind == "Namespace" && obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

/// A scheduled pod under graceful deletion waits for its node to confirm (grace 0).
fn pod_still_terminating(res: &ResourceInfo, obj: &Value) -> bool {
    res.kind == "Pod"
        && obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty())
        && obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) > 0
}

fn written_response(res: &ResourceInfo, w: Written, format: Format, warnings: &[String]) -> Resp {
    Ok(match w {
        Written::Created(v) => object_response(StatusCode::CREATED, &v, format, res, warnings),
        Written::Updated(v) | Written::Unchanged(v) | Written::Deleted(v) => object_response(StatusCode::OK, &v, format, res, warnings),
    })
}

// === scale ===

/// The `autoscaling/v1` `Scale` view of an object.
pub fn scale_of(res: &ResourceInfo, obj: &Value) -> Value {
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| s.get("matchLabels"))
        .and_then(Value::as_object)
        .map(|l| l.iter().map(|(k, v)| format!("{}={}", k, v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(if res.kind == "Deployment" || res.kind == "ReplicaSet" || res.kind == "StatefulSet" { 1 } else { 0 }))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        }
    })
}

async fn update_scale(app: &App, rr: &ResourceRequest, name: &str, manager: &str, dry_run: bool, scale: Value) -> Resp {
    let res = rr.res;
    let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64);
    let Some(replicas) = replicas else {
        return Err(StatusError::invalid("autoscaling", "Scale", name, vec![skiff_api::Cause::required("spec.replicas")]));
    };
    if replicas < 0 {
        return Err(StatusError::invalid("autoscaling", "Scale", name, vec![skiff_api::Cause::invalid("spec.replicas", &json!(replicas), "must be greater than or equal to 0")]));
    }
    let wanted_rv = scale.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from);
    let written = app
        .guaranteed_update(res, rr.namespace.as_deref(), name, dry_run, |current| {
            let Some(current) = current else { return Err(StatusError::not_found(res.group, res.plural, name)) };
            if let Some(rv) = &wanted_rv {
                if current.pointer("/metadata/resourceVersion").and_then(Value::as_str) != Some(rv.as_str()) {
                    return Err(StatusError::conflict(res.group, res.plural, name, "the object has been modified; please apply your changes to the latest version and try again"));
                }
            }
            let mut new = current.clone();
            new["spec"]["replicas"] = json!(replicas);
            let new = write::prepare_update(res, current, new, Part::Main, Some(manager), &now())?;
            Ok(decide_after_update(res, current, new))
        })
        .await?;
    let obj = match written {
        Written::Created(v) | Written::Updated(v) | Written::Unchanged(v) | Written::Deleted(v) => v,
    };
    Ok(output::value_response(StatusCode::OK, &scale_of(res, &obj)))
}

// === patch ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub async fn patch(app: &App, rr: &ResourceRequest, q: &Query, headers: &HeaderMap, body: &[u8]) -> Resp {
    let name = rr.name.clone().ok_or_else(|| StatusError::method_not_allowed("PATCH requires a resource name"))?;
    if body.len() > MAX_BODY {
        return Err(StatusError::too_large(format!("Request entity too large: limit is {MAX_BODY}")));
    }
    let format = Format::negotiate(headers, q.get("includeObject"))?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ptype = match ct.split(';').next().unwrap_or("").trim() {
        "application/json-patch+json" => PatchType::Json,
        "application/merge-patch+json" => PatchType::Merge,
        "application/strategic-merge-patch+json" => PatchType::Strategic,
        "application/apply-patch+yaml" | "application/apply-patch+json" => PatchType::Apply,
        other => {
            return Err(StatusError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
            )))
        }
    };
    let res = rr.res;
    let patch_doc: Value = if ptype == PatchType::Apply {
        skiff_api::yaml::from_slice(body).map_err(|e| StatusError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(body).map_err(|e| StatusError::bad_request(format!("error decoding patch: {e}")))?
    };
    let manager = match (ptype, q.get("fieldManager")) {
        (PatchType::Apply, None) => {
            return Err(StatusError::bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set"));
        }
        _ => field_manager(q, headers)?,
    };
    if q.get("force").is_some() && ptype != PatchType::Apply {
        return Err(StatusError::bad_request("force: Invalid value: force flag must only be set for apply patches"));
    }
    let force = q.flag("force");
    let scale = rr.subresource == Some(Subresource::Scale);
    let part = if rr.subresource == Some(Subresource::Status) { Part::Status } else { Part::Main };
    if !matches!(rr.subresource, None | Some(Subresource::Status) | Some(Subresource::Scale)) {
        return Err(StatusError::method_not_allowed("PATCH is not supported on this subresource"));
    }

    // Server-side apply may create the object.
    if ptype == PatchType::Apply && !scale {
        let mut applied = patch_doc.clone();
        if !applied.is_object() {
            return Err(StatusError::bad_request("the apply configuration must be an object"));
        }
        check_type(res, &mut applied, res.kind, &res.api_version())?;
        check_namespace_field(rr, &mut applied)?;
        if meta::name(&applied) != name {
            return Err(StatusError::bad_request(format!("the name of the object ({}) does not match the name on the URL ({})", meta::name(&applied), name)));
        }
        let warnings = apply_field_check(res, &applied, q)?;
        if app.read(res, rr.namespace.as_deref(), &name).await?.is_none() {
            let created = patch::server_side_apply(res.definition, None, &applied, &manager, force, &now()).map_err(|e| apply_error(res, &name, e))?;
            match create_object_apply(app, res, created, q.dry_run()).await {
                Ok(v) => return Ok(object_response(StatusCode::CREATED, &v, format, res, &warnings)),
                Err(e) if e.code == 409 && e.reason == "AlreadyExists" => {} // raced with a create; apply as an update
                Err(e) => return Err(e),
            }
        }
        let written = alloc::guaranteed_update(app, res, rr.namespace.as_deref(), &name, q.dry_run(), |current| {
            let Some(current) = current else { return Err(StatusError::not_found(res.group, res.plural, &name)) };
            let merged = patch::server_side_apply(res.definition, Some(current), &applied, &manager, force, &now()).map_err(|e| apply_error(res, &name, e))?;
            let new = write::prepare_update(res, current, merged, part, None, &now())?;
            if part == Part::Main {
                write::admission::validate_update(app, res, &new, current)?;
            }
            Ok(decide_after_update(res, current, new))
        })
        .await?;
        return written_response(res, written, format, &warnings);
    }

    let written = alloc::guaranteed_update(app, res, rr.namespace.as_deref(), &name, q.dry_run(), |current| {
        let Some(current) = current else { return Err(StatusError::not_found(res.group, res.plural, &name)) };
        let (base, definition) = if scale { (scale_of(res, current), "io.k8s.api.autoscaling.v1.Scale") } else { (current.clone(), res.definition) };
        let patched = match ptype {
            PatchType::Json => patch::json_patch(&base, &patch_doc),
            PatchType::Merge => patch::merge_patch(&base, &patch_doc),
            PatchType::Strategic => patch::strategic_merge_patch(definition, &base, &patch_doc),
            PatchType::Apply => {
                return Err(StatusError::bad_request("apply patches are not supported on the scale subresource; use a merge patch"));
            }
        }
        .map_err(|e| match e {
            patch::PatchError::Malformed(m) => StatusError::bad_request(m),
            patch::PatchError::Failed(m) => StatusError::invalid(res.group, res.kind, &name, vec![skiff_api::Cause { reason: "FieldValueInvalid".into(), field: "".into(), message: m }]),
        })?;
        if !patched.is_object() {
            return Err(StatusError::bad_request("the patch must result in an object"));
        }
        // A resourceVersion in the patch is a precondition.
        let base_rv = base.pointer("/metadata/resourceVersion");
        let new_rv = patched.pointer("/metadata/resourceVersion");
        if new_rv.is_some() && new_rv != base_rv && !new_rv.is_some_and(Value::is_null) {
            return Err(StatusError::conflict(res.group, res.plural, &name, "the object has been modified; please apply your changes to the latest version and try again"));
        }
        if scale {
            let replicas = patched.pointer("/spec/replicas").cloned().unwrap_or(Value::Null);
            if !replicas.as_i64().is_some_and(|r| r >= 0) {
                return Err(StatusError::invalid("autoscaling", "Scale", &name, vec![skiff_api::Cause::invalid("spec.replicas", &replicas, "must be greater than or equal to 0")]));
            }
            let mut new = current.clone();
            new["spec"]["replicas"] = replicas;
            let new = write::prepare_update(res, current, new, Part::Main, Some(&manager), &now())?;
            return Ok(decide_after_update(res, current, new));
        }
        let mut patched = patched;
        check_type(res, &mut patched, res.kind, &res.api_version())?;
        if meta::name(&patched) != name || meta::namespace(&patched) != meta::namespace(current) {
            return Err(StatusError::invalid(res.group, res.kind, &name, vec![skiff_api::Cause::invalid("metadata.name", &json!(meta::name(&patched)), "field is immutable")]));
        }
        let new = write::prepare_update(res, current, patched, part, Some(&manager), &now())?;
        if part == Part::Main {
            write::admission::validate_update(app, res, &new, current)?;
        }
        Ok(decide_after_update(res, current, new))
    })
    .await?;
    if scale {
        let obj = match written {
            Written::Created(v) | Written::Updated(v) | Written::Unchanged(v) | Written::Deleted(v) => v,
        };
        return Ok(output::value_response(StatusCode::OK, &scale_of(res, &obj)));
    }
    written_response(res, written, format, &[])
}

fn apply_field_check(res: &ResourceInfo, applied: &Value, q: &Query) -> Result<Vec<String>, StatusError> {
    // Apply configurations are checked like full objects (strict by default for apply upstream).
    let mut q2 = q.clone();
    if q2.get("fieldValidation").is_none() {
        q2.0.insert("fieldValidation".into(), "Strict".into());
    }
    field_validation(res, res.definition, b"", applied, &q2)
}

fn apply_error(res: &ResourceInfo, name: &str, e: patch::ApplyError) -> StatusError {
    match e {
        patch::ApplyError::Patch(p) => StatusError::bad_request(p.to_string()),
        patch::ApplyError::Conflicts(cs) => {
            let mut e = StatusError::new(409, "Conflict", patch::conflicts_message(&cs));
            e.name = Some(name.to_string());
            e.group = Some(res.group.to_string());
            e.kind = Some(res.plural.to_string());
            e.causes = cs
                .iter()
                .map(|c| skiff_api::Cause { reason: "FieldManagerConflict".into(), field: c.field.clone(), message: format!("conflict with \"{}\"", c.manager) })
                .collect();
            e
        }
    }
}

/// Creates the object a server-side apply produced, keeping its Apply managedFields.
async fn create_object_apply(app: &App, res: &ResourceInfo, obj: Value, dry_run: bool) -> Result<Value, StatusError> {
    let namespace = meta::namespace(&obj).map(String::from);
    let name = meta::name(&obj).to_string();
    if res.namespaced {
        app.check_namespace(namespace.as_deref().unwrap_or(""), res, &name).await?;
    }
    let mut obj = obj;
    write::admission::mutate_create(app, res, &mut obj, &name)?;
    let o = write::prepare_create(res, obj, None, &now())?;
    write::admission::validate_create(app, res, &o, &name, jiff::Timestamp::now()).await?;
    let _guard = if res.kind == "Service" { Some(app.alloc_lock.lock().await) } else { None };
    let (mut o, _reservations) = if res.kind == "Service" { alloc::allocate_service(app, o, dry_run).await? } else { (o, alloc::Reservations::none()) };
    if dry_run {
        return Ok(o);
    }
    let kv = app.store.create(&res.key(namespace.as_deref(), &name), crate::app::encode_for_store(res, &o)).await.map_err(|e| store_error(res, &name, e))?;
    meta::set_resource_version(&mut o, kv.mod_revision);
    if res.kind == "Service" {
        let _ = app.cache(res).wait_for(kv.mod_revision, std::time::Duration::from_secs(5)).await;
    }
    Ok(o)
}

// === delete ===

/// DeleteOptions from the body, with query parameters as fallbacks.
#[derive(Debug, Default, Clone)]
pub struct DeleteOpts {
    pub grace: Option<i64>,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub rv: Option<String>,
    pub dry_run: bool,
}

pub fn delete_options(q: &Query, body: &[u8]) -> Result<DeleteOpts, StatusError> {
    let mut o = DeleteOpts { grace: q.int("gracePeriodSeconds")?, propagation: q.get("propagationPolicy").map(String::from), dry_run: q.dry_run(), ..Default::default() };
    if let Some(orphan) = q.get("orphanDependents") {
        o.propagation.get_or_insert_with(|| if orphan == "true" { "Orphan".into() } else { "Background".into() });
    }
    let trimmed = body.iter().skip_while(|c| c.is_ascii_whitespace()).count();
    if trimmed > 0 {
        let v: Value = serde_json::from_slice(body).map_err(|e| StatusError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            o.grace = Some(g);
        }
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            o.propagation = Some(p.to_string());
        }
        if let Some(orphan) = v.get("orphanDependents").and_then(Value::as_bool) {
            if o.propagation.is_none() {
                o.propagation = Some(if orphan { "Orphan".into() } else { "Background".into() });
            }
        }
        o.uid = v.pointer("/preconditions/uid").and_then(Value::as_str).map(String::from);
        o.rv = v.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(String::from);
        if let Some(d) = v.get("dryRun").and_then(Value::as_array) {
            o.dry_run |= d.iter().any(|x| x == "All");
        }
    }
    if let Some(p) = &o.propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(StatusError::invalid("", "DeleteOptions", "", vec![skiff_api::Cause::not_supported("propagationPolicy", &json!(p), &["Foreground", "Background", "Orphan"])]));
        }
    }
    if o.grace.is_some_and(|g| g < 0) {
        o.grace = Some(1);
    }
    Ok(o)
}

/// Deletes one object, honouring preconditions, graceful pod deletion, finalizers and
/// the propagation policy. Returns the response object and whether it is gone.
pub async fn delete_object(app: &App, res: &ResourceInfo, namespace: Option<&str>, name: &str, opts: &DeleteOpts) -> Result<Written, StatusError> {
    // The system namespaces are immortal, as upstream's namespace lifecycle admission has it.
    if res.kind == "Namespace" && matches!(name, "default" | "kube-system" | "kube-public") {
        let mut e = StatusError::forbidden(format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"));
        e.name = Some(name.to_string());
        e.kind = Some("namespaces".into());
        return Err(e);
    }
    app.guaranteed_update(res, namespace, name, opts.dry_run, |current| {
        let Some(current) = current else { return Err(StatusError::not_found(res.group, res.plural, name)) };
        if let Some(uid) = &opts.uid {
            if current.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
                return Err(StatusError::conflict(res.group, res.plural, name, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", current.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or(""))));
            }
        }
        if let Some(rv) = &opts.rv {
            if current.pointer("/metadata/resourceVersion").and_then(Value::as_str) != Some(rv) {
                return Err(StatusError::conflict(res.group, res.plural, name, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", current.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or(""))));
            }
        }
        let mut obj = current.clone();
        let mut finalizers = meta::finalizers(&obj);
        match opts.propagation.as_deref() {
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => finalizers.push("foregroundDeletion".into()),
            _ => {}
        }
        if matches!(opts.propagation.as_deref(), Some("Background") | Some("Foreground")) {
            finalizers.retain(|f| f != "orphan");
        }
        if opts.propagation.as_deref() == Some("Orphan") || opts.propagation.as_deref() == Some("Background") {
            finalizers.retain(|f| f != "foregroundDeletion");
        }
        let deleting = meta::is_deleting(&obj);
        let now_ts = jiff::Timestamp::now();

        // Graceful deletion of scheduled pods: the node agent finishes it.
        if res.kind == "Pod" && obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
            let phase = obj.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
            let default_grace = obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
            let grace = if matches!(phase, "Succeeded" | "Failed") { 0 } else { opts.grace.unwrap_or(default_grace) };
            let current_grace = obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
            if grace > 0 && (!deleting || current_grace.is_some_and(|g| grace < g)) {
                let m = meta::metadata_mut(&mut obj);
                let at = now_ts.checked_add(jiff::SignedDuration::from_secs(grace)).unwrap_or(now_ts);
                m.insert("deletionTimestamp".into(), json!(meta::format_time(at)));
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                set_finalizers(&mut obj, &finalizers);
                return Ok(Decision::Write(obj));
            }
            if grace > 0 && deleting {
                return Ok(Decision::Keep(current.clone()));
            }
            meta::metadata_mut(&mut obj).insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        if res.kind == "Namespace" {
            let spec_finalizers = obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
            if spec_finalizers || !finalizers.is_empty() {
                if !deleting {
                    meta::metadata_mut(&mut obj).insert("deletionTimestamp".into(), json!(meta::format_time(now_ts)));
                    meta::metadata_mut(&mut obj).insert("deletionGracePeriodSeconds".into(), json!(0));
                }
                obj["status"]["phase"] = json!("Terminating");
                set_finalizers(&mut obj, &finalizers);
                return Ok(if write::meaningfully_equal(current, &obj) { Decision::Keep(obj) } else { Decision::Write(obj) });
            }
        }
        if finalizers.is_empty() {
            return Ok(Decision::Delete);
        }
        if !deleting {
            let m = meta::metadata_mut(&mut obj);
            m.insert("deletionTimestamp".into(), json!(meta::format_time(now_ts)));
            m.entry("deletionGracePeriodSeconds").or_insert(json!(0));
        }
        set_finalizers(&mut obj, &finalizers);
        Ok(if write::meaningfully_equal(current, &obj) { Decision::Keep(obj) } else { Decision::Write(obj) })
    })
    .await
}

fn set_finalizers(obj: &mut Value, f: &[String]) {
    let m = meta::metadata_mut(obj);
    if f.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(f));
    }
}

pub async fn delete(app: &App, rr: &ResourceRequest, q: &Query, headers: &HeaderMap, body: &[u8]) -> Resp {
    let Some(name) = rr.name.clone() else { return delete_collection(app, rr, q, body).await };
    if rr.subresource.is_some() {
        return Err(StatusError::method_not_allowed("DELETE is not supported on subresources"));
    }
    let format = Format::negotiate(headers, None)?;
    let opts = delete_options(q, body)?;
    let written = delete_object(app, rr.res, rr.namespace.as_deref(), &name, &opts).await?;
    Ok(match written {
        Written::Deleted(v) => object_response(StatusCode::OK, &v, format, rr.res, &[]),
        Written::Updated(v) | Written::Unchanged(v) | Written::Created(v) => {
            let code = if opts.propagation.as_deref() == Some("Foreground") { StatusCode::ACCEPTED } else { StatusCode::OK };
            object_response(code, &v, format, rr.res, &[])
        }
    })
}

async fn delete_collection(app: &App, rr: &ResourceRequest, q: &Query, body: &[u8]) -> Resp {
    if rr.res.plural == "namespaces" {
        return Err(StatusError::method_not_allowed("the server does not allow this method on the requested resource (deletecollection namespaces)"));
    }
    let filter = Filter::parse(rr.res, q)?;
    let opts = delete_options(q, body)?;
    app.sync_cache(rr.res).await?;
    let listed = app.cache(rr.res).list(&collection_prefix(rr), None, 0, &|e| filter.matches(&e.object));
    for e in listed.items {
        match delete_object(app, rr.res, e.object.namespace.as_deref(), &e.object.name, &opts).await {
            Ok(_) => {}
            Err(err) if err.code == 404 => {}
            Err(err) => return Err(err),
        }
    }
    Ok(output::value_response(StatusCode::OK, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})))
}

// === pods/binding and pods/eviction ===

/// `pods/binding`: assigns a pending pod to a node, once. Refusals are 409s on
/// `pods/binding`, as upstream words them (`Operation cannot be fulfilled on
/// pods/binding "web": pod web is already assigned to node "n1"`).
async fn bind(app: &App, rr: &ResourceRequest, q: &Query, headers: &HeaderMap, body: &[u8]) -> Resp {
    let name = rr.name.clone().unwrap_or_default();
    let mut binding = parse_body(rr.res, headers, body)?;
    check_type(rr.res, &mut binding, "Binding", "v1")?;
    let given = meta::name(&binding);
    if !given.is_empty() && given != name {
        return Err(StatusError::bad_request("name in URL does not match name in Binding object"));
    }
    let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
    if node.is_empty() {
        return Err(StatusError::invalid("", "Binding", &name, vec![skiff_api::Cause::required("target.name")]));
    }
    let uid = binding.pointer("/metadata/uid").and_then(Value::as_str).filter(|u| !u.is_empty()).map(String::from);
    let annotations = binding.pointer("/metadata/annotations").and_then(Value::as_object).cloned().unwrap_or_default();
    let manager = field_manager(q, headers)?;
    let res = rr.res;
    let refuse = |why: String| StatusError::conflict("", "pods/binding", &name, &why);
    app.guaranteed_update(res, rr.namespace.as_deref(), &name, q.dry_run(), |current| {
        let Some(current) = current else { return Err(StatusError::not_found(res.group, res.plural, &name)) };
        let current_uid = current.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
        if let Some(uid) = uid.as_deref().filter(|u| *u != current_uid) {
            return Err(refuse(format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {current_uid}")));
        }
        if meta::is_deleting(current) {
            return Err(refuse(format!("pod {name} is being deleted, cannot be assigned to a host")));
        }
        if let Some(n) = current.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            return Err(refuse(format!("pod {name} is already assigned to node \"{n}\"")));
        }
        if current.pointer("/spec/schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty()) {
            return Err(refuse(format!("pod {name} has non-empty .spec.schedulingGates")));
        }
        let mut new = current.clone();
        new["spec"]["nodeName"] = json!(node);
        if !annotations.is_empty() {
            let m = meta::metadata_mut(&mut new);
            let a = m.entry("annotations").or_insert_with(|| json!({}));
            if !a.is_object() {
                *a = json!({});
            }
            for (k, v) in &annotations {
                a[k] = v.clone();
            }
        }
        let mut conds: Vec<Value> = new.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        match conds.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled")) {
            Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => {}
            Some(c) => {
                c["status"] = json!("True");
                c["lastTransitionTime"] = json!(now());
                if let Some(o) = c.as_object_mut() {
                    o.remove("reason");
                    o.remove("message");
                }
            }
            None => conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()})),
        }
        new["status"]["conditions"] = json!(conds);
        // Binding changes spec and status at once; upstream bypasses the update rules.
        skiff_api::patch::record_update(res.definition, Some(current), &mut new, &manager, "binding", &now());
        Ok(Decision::Write(new))
    })
    .await?;
    Ok(output::value_response(StatusCode::CREATED, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})))
}
