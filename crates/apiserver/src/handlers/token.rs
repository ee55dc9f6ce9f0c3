//! `POST serviceaccounts/{name}/token`: a TokenRequest (authentication.k8s.io/v1)
//! answered with a signed token for the service account (upstream's `TokenREST`).

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use skiff_api::status::Cause;
use skiff_api::{resources, StatusError};

use super::{check_type, parse_body, Resp};
use crate::app::App;
use crate::output;
use crate::request::{Query, ResourceRequest};
use crate::satoken::{Claims, ISSUER};

/// Upstream's bounds: at least 10 minutes, at most (by default) 48 hours; 1 hour
/// when the request does not say.
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 48 * 3600;
const DEFAULT_EXPIRATION: i64 = 3600;

pub(super) async fn create_token(app: &App, rr: &ResourceRequest, _q: &Query, headers: &HeaderMap, body: &[u8]) -> Resp {
    let name = rr.name.clone().unwrap_or_default();
    let namespace = rr.namespace.clone().unwrap_or_default();
    let mut req = parse_body(rr.res, headers, body)?;
    check_type(rr.res, &mut req, "TokenRequest", "authentication.k8s.io/v1")?;
    let (sa, _) = app.read_existing(rr.res, Some(&namespace), &name).await?;
    let spec = req.get("spec").cloned().unwrap_or(Value::Null);
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION,
        Some(v) => v.as_i64().ok_or_else(|| invalid(&name, "spec.expirationSeconds", v, "must be an integer"))?,
    };
    if expiration < MIN_EXPIRATION {
        return Err(invalid(&name, "spec.expirationSeconds", &json!(expiration), "may not specify a duration less than 10 minutes"));
    }
    if expiration > 1 << 32 {
        return Err(invalid(&name, "spec.expirationSeconds", &json!(expiration), "may not specify a duration larger than 2^32 seconds"));
    }
    let expiration = expiration.min(MAX_EXPIRATION);
    let mut audiences: Vec<String> =
        spec.get("audiences").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect()).unwrap_or_default();
    if audiences.is_empty() {
        audiences.push(ISSUER.to_string());
    }

    // A token bound to a pod names it; the pod must exist (and match a given uid).
    let mut pod = None;
    if let Some(bound) = spec.get("boundObjectRef").filter(|b| !b.is_null()) {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or_default();
        let bname = bound.get("name").and_then(Value::as_str).unwrap_or_default();
        let buid = bound.get("uid").and_then(Value::as_str).unwrap_or_default();
        let plural = match kind {
            "Pod" => "pods",
            "Secret" => "secrets",
            _ => {
                return Err(StatusError::invalid(
                    "authentication.k8s.io",
                    "TokenRequest",
                    &name,
                    vec![Cause::not_supported("spec.boundObjectRef.kind", &json!(kind), &["Pod", "Secret"])],
                ))
            }
        };
        let res = resources::lookup("", "v1", plural).expect("registered");
        let (obj, _) = app.read_existing(res, Some(&namespace), bname).await?;
        let uid = uid_of(&obj);
        if !buid.is_empty() && buid != uid {
            return Err(StatusError::conflict(
                "",
                plural,
                bname,
                &format!("the UID in the bound object reference ({buid}) does not match the UID in record. The object might have been deleted and then recreated"),
            ));
        }
        if kind == "Pod" {
            pod = Some((bname.to_string(), uid));
        }
    }

    let now = jiff::Timestamp::now();
    let claims = Claims {
        namespace: namespace.clone(),
        service_account: name.clone(),
        service_account_uid: uid_of(&sa),
        audiences: audiences.clone(),
        issued_at: now.as_second(),
        expires_at: now.as_second() + expiration,
        pod,
    };
    let token = app.sa_tokens.issue(&claims);
    let expires = jiff::Timestamp::from_second(claims.expires_at).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default();
    let mut out = req.clone();
    out["apiVersion"] = json!("authentication.k8s.io/v1");
    out["kind"] = json!("TokenRequest");
    let md = out.get("metadata").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    out["metadata"] = md;
    out["metadata"]["name"] = json!(name);
    out["metadata"]["namespace"] = json!(namespace);
    out["metadata"]["creationTimestamp"] = Value::Null;
    out["spec"] = json!({
        "audiences": audiences,
        "expirationSeconds": expiration,
        "boundObjectRef": spec.get("boundObjectRef").cloned().unwrap_or(Value::Null),
    });
    out["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(output::value_response(StatusCode::CREATED, &out))
}

fn invalid(name: &str, field: &str, value: &Value, message: &str) -> StatusError {
    StatusError::invalid("authentication.k8s.io", "TokenRequest", name, vec![Cause::invalid(field, value, message)])
}

fn uid_of(obj: &Value) -> String {
    obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string()
}
