//! The disruption-budget check of the `pods/eviction` subresource
//! (`pkg/registry/core/pod/storage/eviction.go`).
//!
//! An eviction is a delete that asks first. Pods that are not running (pending or
//! finished) or already being deleted cause no new disruption and go at once.
//! Otherwise the pod's one PodDisruptionBudget decides: its controller must have
//! seen the budget's current generation, and it must allow a disruption; the
//! eviction then takes one (`disruptionsAllowed - 1`) and records the pod in
//! `disruptedPods`, so the controller does not count it as healthy while it goes.
//! A pod that is not ready may go without taking a disruption when the budget has
//! enough healthy pods anyway, or always under `unhealthyPodEvictionPolicy:
//! AlwaysAllow`.

use serde_json::{json, Value};

use crate::selector::LabelSelector;
use crate::{Cause, StatusError};

/// The refusal when two budgets cover one pod (a 500, as upstream).
pub const MULTIPLE_BUDGETS: &str = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";

/// The message of every refusal that a retry may overcome (429).
pub const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// How many approved evictions a budget may hold before its controller catches up.
pub const MAX_DISRUPTED_PODS: usize = 2000;

/// `canIgnorePDB`: pending, finished and deleting pods disrupt nothing new.
pub fn ignores_budgets(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed" | "Pending"))
        || crate::meta::is_deleting(pod)
}

/// `getPodDisruptionBudgets`: the budgets (of the pod's namespace) whose selector
/// selects the pod. A missing or empty selector selects nothing here, and a pod
/// without labels has no budget.
pub fn covering<'a>(pod: &Value, budgets: &'a [Value]) -> Vec<&'a Value> {
    let has_labels = pod.pointer("/metadata/labels").and_then(Value::as_object).is_some_and(|l| !l.is_empty());
    if !has_labels {
        return Vec::new();
    }
    let namespace = crate::meta::namespace(pod);
    budgets
        .iter()
        .filter(|b| crate::meta::namespace(b) == namespace)
        .filter(|b| match LabelSelector::from_json(b.pointer("/spec/selector").unwrap_or(&Value::Null)) {
            Ok(sel) => !sel.is_empty() && sel.matches_object(pod),
            Err(_) => false,
        })
        .collect()
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c.get("type").and_then(Value::as_str) == Some("Ready") && c.get("status").and_then(Value::as_str) == Some("True"))
}

fn status_int(pdb: &Value, field: &str) -> i64 {
    pdb.pointer(&format!("/status/{field}")).and_then(Value::as_i64).unwrap_or(0)
}

/// What a budget says about evicting a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The pod may go and the budget took a disruption: write this budget's status
    /// back (conflict-checked) before deleting the pod.
    Take(Value),
    /// The pod is unready and may go without taking a disruption, as long as it is
    /// still the pod that was judged (delete with its resourceVersion as a precondition).
    Unhealthy,
}

/// The 429 every blocked eviction answers, with its `DisruptionBudget` cause.
pub fn too_many_requests(cause: String) -> StatusError {
    let mut e = StatusError::new(429, "TooManyRequests", VIOLATION);
    e.causes = vec![Cause { reason: "DisruptionBudget".into(), field: String::new(), message: cause }];
    e
}

/// Judges one eviction against the pod's budget (the unready shortcut, then
/// `checkAndDecrement`). `now` stamps the pod's entry in `disruptedPods`.
#[allow(clippy::result_large_err)] // StatusError is what the API edge answers with.
pub fn decide(pdb: &Value, pod: &Value, now: jiff::Timestamp) -> Result<Verdict, StatusError> {
    let name = pdb.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if !is_ready(pod) {
        if pdb.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str) == Some("AlwaysAllow") {
            return Ok(Verdict::Unhealthy);
        }
        let (current, desired) = (status_int(pdb, "currentHealthy"), status_int(pdb, "desiredHealthy"));
        if current >= desired && desired > 0 {
            return Ok(Verdict::Unhealthy);
        }
    }
    let generation = pdb.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    if status_int(pdb, "observedGeneration") < generation {
        return Err(too_many_requests(format!("The disruption budget {name} is still being processed by the server.")));
    }
    let allowed = status_int(pdb, "disruptionsAllowed");
    let forbidden = |why: &str| {
        let mut e = StatusError::forbidden(format!("poddisruptionbudget.policy \"{name}\" is forbidden: {why}"));
        e.name = Some(name.to_string());
        e.group = Some("policy".into());
        e.kind = Some("poddisruptionbudget".into());
        e
    };
    if allowed < 0 {
        return Err(forbidden("pdb disruptions allowed is negative"));
    }
    let disrupted = pdb.pointer("/status/disruptedPods").and_then(Value::as_object).map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden("DisruptedPods map too big - too many evictions not confirmed by PDB controller"));
    }
    if allowed == 0 {
        return Err(too_many_requests(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            status_int(pdb, "desiredHealthy"),
            status_int(pdb, "currentHealthy")
        )));
    }
    let mut new = pdb.clone();
    new["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        set_insufficient_pods(&mut new, now);
    }
    let pod_name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let disrupted = new["status"].as_object_mut().expect("status is an object").entry("disruptedPods").or_insert_with(|| json!({}));
    if !disrupted.is_object() {
        *disrupted = json!({});
    }
    disrupted[pod_name] = json!(crate::meta::format_time(now));
    Ok(Verdict::Take(new))
}

/// `UpdateDisruptionAllowedCondition` once no disruption is left: the
/// `DisruptionAllowed` condition turns `False` (`InsufficientPods`), moving its
/// transition time only when the status changes (`meta.SetStatusCondition`).
fn set_insufficient_pods(pdb: &mut Value, now: jiff::Timestamp) {
    let observed = status_int(pdb, "observedGeneration");
    let conditions = pdb["status"].as_object_mut().expect("status is an object").entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("just made a list");
    let fresh = json!({
        "type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": "",
        "observedGeneration": observed, "lastTransitionTime": crate::meta::format_time(now),
    });
    match list.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some("DisruptionAllowed")) {
        None => list.push(fresh),
        Some(c) => {
            if c.get("status").and_then(Value::as_str) != Some("False") {
                c["status"] = json!("False");
                c["lastTransitionTime"] = fresh["lastTransitionTime"].clone();
            }
            c["reason"] = json!("InsufficientPods");
            c["message"] = json!("");
            c["observedGeneration"] = json!(observed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn pod(phase: &str, ready: bool) -> Value {
        json!({"metadata": {"name": "web-1", "namespace": "d", "labels": {"app": "web"}},
               "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn budget(name: &str, allowed: i64) -> Value {
        json!({"metadata": {"name": name, "namespace": "d", "generation": 1},
               "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
               "status": {"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": 2, "desiredHealthy": 2, "expectedPods": 2}})
    }

    #[test]
    fn pods_not_running_skip_the_budget() {
        assert!(ignores_budgets(&pod("Pending", false)));
        assert!(ignores_budgets(&pod("Succeeded", false)));
        assert!(!ignores_budgets(&pod("Running", true)));
        let mut deleting = pod("Running", true);
        deleting["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:00:00Z");
        assert!(ignores_budgets(&deleting));
    }

    #[test]
    fn budgets_cover_pods_their_selector_selects() {
        let mut other_ns = budget("b", 1);
        other_ns["metadata"]["namespace"] = json!("e");
        let mut empty = budget("c", 1);
        empty["spec"]["selector"] = json!({});
        let mut other_app = budget("d", 1);
        other_app["spec"]["selector"] = json!({"matchLabels": {"app": "db"}});
        let budgets = [budget("a", 1), other_ns, empty, other_app];
        let names: Vec<&str> = covering(&pod("Running", true), &budgets).iter().map(|b| crate::meta::name(b)).collect();
        assert_eq!(names, ["a"]);
        let mut unlabelled = pod("Running", true);
        unlabelled["metadata"].as_object_mut().unwrap().remove("labels");
        assert!(covering(&unlabelled, &budgets).is_empty());
    }

    #[test]
    fn a_budget_without_room_refuses_with_the_numbers() {
        let e = decide(&budget("web", 0), &pod("Running", true), now()).unwrap_err();
        assert_eq!((e.code, e.reason.as_str(), e.message.as_str()), (429, "TooManyRequests", VIOLATION));
        assert_eq!(e.causes[0].reason, "DisruptionBudget");
        assert_eq!(e.causes[0].message, "The disruption budget web needs 2 healthy pods and has 2 currently");
    }

    #[test]
    fn a_budget_the_controller_has_not_seen_refuses() {
        let mut b = budget("web", 1);
        b["metadata"]["generation"] = json!(2);
        let e = decide(&b, &pod("Running", true), now()).unwrap_err();
        assert_eq!(e.causes[0].message, "The disruption budget web is still being processed by the server.");
    }

    #[test]
    fn an_allowed_eviction_takes_one_disruption_and_records_the_pod() {
        let Verdict::Take(b) = decide(&budget("web", 1), &pod("Running", true), now()).unwrap() else { panic!("expected a decrement") };
        assert_eq!(b["status"]["disruptionsAllowed"], 0);
        assert_eq!(b["status"]["disruptedPods"], json!({"web-1": "2024-05-01T12:00:00Z"}));
        let c = &b["status"]["conditions"][0];
        assert_eq!((c["type"].clone(), c["status"].clone(), c["reason"].clone()), (json!("DisruptionAllowed"), json!("False"), json!("InsufficientPods")));
        let Verdict::Take(b) = decide(&budget("web", 3), &pod("Running", true), now()).unwrap() else { panic!("expected a decrement") };
        assert_eq!(b["status"]["disruptionsAllowed"], 2);
        assert!(b["status"].get("conditions").is_none());
    }

    #[test]
    fn unready_pods_go_when_the_budget_is_healthy_or_allows_it() {
        assert_eq!(decide(&budget("web", 0), &pod("Running", false), now()).unwrap(), Verdict::Unhealthy);
        let mut short = budget("web", 0);
        short["status"]["currentHealthy"] = json!(1);
        assert!(decide(&short, &pod("Running", false), now()).is_err());
        short["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
        assert_eq!(decide(&short, &pod("Running", false), now()).unwrap(), Verdict::Unhealthy);
    }

    #[test]
    fn a_negative_allowance_is_forbidden() {
        let e = decide(&budget("web", -1), &pod("Running", true), now()).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (403, "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative"));
    }
}
