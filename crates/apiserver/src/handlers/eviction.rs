//! `POST pods/{name}/eviction`: a delete that the pod's PodDisruptionBudget may
//! refuse (upstream's `EvictionREST`; the decisions are in
//! [`skiff_api::admission::eviction`]).
//!
//! The budget is charged first, with a conflict-checked write of its status, and the
//! pod deleted after, honouring the Eviction's `deleteOptions`. An eviction that the
//! budget lets through because the pod is unready deletes only the pod version that
//! was judged (a resourceVersion precondition); if the pod changed meanwhile the
//! client is told to retry, as upstream does.

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use skiff_api::admission::eviction::{self, Verdict};
use skiff_api::{meta, resources, StatusError};

use super::{check_type, delete_object, delete_options, parse_body, DeleteOpts, Resp};
use crate::app::{App, Decision};
use crate::output;
use crate::request::{Query, ResourceRequest};
use crate::write::{self, Part};

/// Who writes the budget's status: the API server itself, as upstream's eviction
/// REST does through its own client.
const MANAGER: &str = "kube-apiserver";

pub(super) async fn evict(app: &App, rr: &ResourceRequest, q: &Query, headers: &HeaderMap, body: &[u8]) -> Resp {
    let name = rr.name.clone().unwrap_or_default();
    let namespace = rr.namespace.clone();
    let mut ev = parse_body(rr.res, headers, body)?;
    if ev.get("apiVersion").and_then(Value::as_str) == Some("policy/v1beta1") {
        ev["apiVersion"] = json!("policy/v1");
    }
    check_type(rr.res, &mut ev, "Eviction", "policy/v1")?;
    let given = meta::name(&ev);
    if !given.is_empty() && given != name {
        return Err(StatusError::bad_request("name in URL does not match name in Eviction object"));
    }
    let mut opts = match ev.get("deleteOptions").filter(|d| !d.is_null()) {
        Some(d) => delete_options(&Query::default(), serde_json::to_vec(d).unwrap_or_default().as_slice())?,
        None => DeleteOpts::default(),
    };
    // `propagateDryRun`: the request's dryRun applies to the delete too.
    opts.dry_run |= q.dry_run();

    let pods = rr.res;
    let (pod, _) = app.read_existing(pods, namespace.as_deref(), &name).await?;
    if eviction::ignores_budgets(&pod) {
        delete_object(app, pods, namespace.as_deref(), &name, &opts).await?;
        return Ok(success());
    }

    let budgets_res = resources::lookup("policy", "v1", "poddisruptionbudgets").expect("registered");
    app.sync_cache(budgets_res).await?;
    let budgets = write::admission::cached(app, budgets_res, namespace.as_deref());
    let covering = eviction::covering(&pod, &budgets);
    if covering.len() > 1 {
        return Err(StatusError::new(500, "", eviction::MULTIPLE_BUDGETS));
    }
    let mut budget_name = None;
    let mut unhealthy = false;
    if let Some(budget) = covering.first() {
        let pdb_name = meta::name(budget).to_string();
        budget_name = Some(pdb_name.clone());
        app.guaranteed_update(budgets_res, namespace.as_deref(), &pdb_name, opts.dry_run, |current| {
            let Some(current) = current else { return Err(StatusError::not_found("policy", "poddisruptionbudgets", &pdb_name)) };
            let at = jiff::Timestamp::now();
            match eviction::decide(current, &pod, at)? {
                Verdict::Unhealthy => {
                    unhealthy = true;
                    Ok(Decision::Keep(current.clone()))
                }
                Verdict::Take(charged) => {
                    unhealthy = false;
                    let new = write::prepare_update(budgets_res, current, charged, Part::Status, Some(MANAGER), &meta::format_time(at))?;
                    Ok(Decision::Write(new))
                }
            }
        })
        .await?;
    }

    let pinned = unhealthy && opts.rv.is_none();
    if pinned {
        opts.rv = pod.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(String::from);
    }
    match delete_object(app, pods, namespace.as_deref(), &name, &opts).await {
        Ok(_) => Ok(success()),
        Err(e) if pinned && e.code == 409 => Err(eviction::too_many_requests(format!(
            "The disruption budget {} is still being processed by the server.",
            budget_name.unwrap_or_default()
        ))),
        Err(e) => Err(e),
    }
}

/// `metav1.Status{Status: Success}` with the create's 201.
fn success() -> axum::http::Response<axum::body::Body> {
    output::value_response(StatusCode::CREATED, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}))
}
