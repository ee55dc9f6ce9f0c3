//! Response encoding: JSON objects, lists, `Table`s, and `Status` errors.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use skiff_api::{meta, table, ResourceInfo, StatusError};

/// How the client asked to see objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    /// `application/json;as=Table;v=v1;g=meta.k8s.io`.
    Table { include_object: IncludeObject },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl Format {
    /// Chooses the format from the `Accept` header and `includeObject` parameter.
    pub fn negotiate(headers: &HeaderMap, include_object: Option<&str>) -> Result<Format, StatusError> {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mut json_ok = accept.is_empty();
        for part in accept.split(',') {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            let media = params.first().copied().unwrap_or("");
            let as_ = params.iter().find_map(|p| p.strip_prefix("as="));
            let group = params.iter().find_map(|p| p.strip_prefix("g="));
            if matches!(media, "application/json" | "*/*" | "application/*") {
                match (as_, group) {
                    (Some("Table"), Some("meta.k8s.io")) => {
                        let include_object = match include_object {
                            Some("None") => IncludeObject::None,
                            Some("Object") => IncludeObject::Object,
                            _ => IncludeObject::Metadata,
                        };
                        return Ok(Format::Table { include_object });
                    }
                    (None, _) => json_ok = true,
                    _ => {}
                }
            } else if matches!(media, "application/yaml" | "application/vnd.kubernetes.protobuf" | "") {
                json_ok = true;
            }
        }
        if json_ok {
            Ok(Format::Json)
        } else {
            Err(StatusError::not_acceptable(format!(
                "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io (asked for {accept:?})"
            )))
        }
    }
}

/// A JSON response with the given status code.
pub fn json_response(code: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn value_response(code: StatusCode, v: &Value) -> Response<Body> {
    json_response(code, Bytes::from(serde_json::to_vec(v).unwrap_or_default()))
}

/// The `Status` response of an error.
pub fn error_response(e: &StatusError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = value_response(code, &e.to_status());
    if let Some(s) = e.retry_after {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// Adds `Warning: 299 - "..."` headers, as upstream does for `fieldValidation=Warn`.
pub fn add_warnings(r: &mut Response<Body>, warnings: &[String]) {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
}

/// The `meta.k8s.io/v1` column definitions of a resource.
pub fn column_definitions(res: &ResourceInfo) -> Value {
    Value::Array(
        table::columns(res)
            .into_iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// One Table row for an object.
pub fn table_row(res: &ResourceInfo, obj: &Value, include: IncludeObject, now: jiff::Timestamp) -> Value {
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(table::cells(res, obj, now)));
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => {
            row.insert("object".into(), obj.clone());
        }
        IncludeObject::Metadata => {
            row.insert(
                "object".into(),
                json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
                }),
            );
        }
    }
    Value::Object(row)
}

/// A Table of objects.
pub fn table(res: &ResourceInfo, objs: &[Value], include: IncludeObject, list_meta: Value, with_columns: bool) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objs.iter().map(|o| table_row(res, o, include, now)).collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": rows,
    });
    t["columnDefinitions"] = if with_columns { column_definitions(res) } else { Value::Array(vec![]) };
    t
}

/// Encodes a list body from already-serialized items, without re-parsing them.
pub fn list_bytes(res: &ResourceInfo, items: &[Bytes], resource_version: i64, cont: Option<&str>, remaining: Option<i64>) -> Bytes {
    let mut out = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 256);
    out.extend_from_slice(b"{\"kind\":");
    out.extend_from_slice(serde_json::to_string(&res.list_kind()).unwrap_or_default().as_bytes());
    out.extend_from_slice(b",\"apiVersion\":");
    out.extend_from_slice(serde_json::to_string(&res.api_version()).unwrap_or_default().as_bytes());
    out.extend_from_slice(b",\"metadata\":");
    let mut lm = json!({"resourceVersion": resource_version.to_string()});
    if let Some(c) = cont {
        lm["continue"] = json!(c);
    }
    if let Some(r) = remaining {
        lm["remainingItemCount"] = json!(r);
    }
    out.extend_from_slice(serde_json::to_string(&lm).unwrap_or_default().as_bytes());
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// The `Status` of a successful delete.
pub fn delete_success(res: &ResourceInfo, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": meta::name(obj),
            "group": res.group,
            "kind": res.plural,
            "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        }
    })
}
