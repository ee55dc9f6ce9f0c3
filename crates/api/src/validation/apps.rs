//! apps/v1: Deployment, ReplicaSet, StatefulSet, DaemonSet and ControllerRevision
//! (`pkg/apis/apps/validation`).

use serde_json::Value;

use super::field::{
    go_int_or_string, go_label_selector, go_string_map, invalid_go, nonnegative, not_supported_go, Errs, Obj, Path, IMMUTABLE, NEGATIVE,
    NULL,
};
use super::meta::{self, Selector, SELECTOR_MISMATCH};
use super::names::{self, NameRule};
use super::pod::{self, SpecOpts};
use crate::Cause;

fn metadata(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
    }
    meta::object_meta(obj, true, NameRule::Subdomain, errs);
}

/// The workload's `spec.selector`: required, well formed and not empty. Returns what
/// it converts to, for matching the template.
fn workload_selector(spec: &Value, empty_msg: &str, errs: &mut Errs) -> Selector {
    let path = Path::new("spec").child("selector");
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => errs.push(Cause::required(&path)),
        Some(sel) => {
            meta::label_selector(sel, &path, errs);
            if sel.get_obj("matchLabels").map(|m| m.len()).unwrap_or(0) + sel.get_arr("matchExpressions").len() == 0 {
                errs.push(invalid_go(&path, &go_label_selector(sel), empty_msg));
            }
        }
    }
    Selector::from_json(spec.get("selector"))
}

/// The template must carry the labels the selector selects.
pub(crate) fn template_matches(sel: &Selector, template: &Value, path: &Path, check_empty: bool, errs: &mut Errs) {
    if *sel == Selector::Invalid || (check_empty && sel.is_empty()) {
        return;
    }
    let labels = template.pointer("/metadata/labels");
    if !sel.matches(labels) {
        errs.push(invalid_go(&path.child("metadata").child("labels"), &go_string_map(labels), SELECTOR_MISMATCH));
    }
}

/// `ValidatePodTemplateSpecForReplicaSet` (also used by Deployments and DaemonSets):
/// selector match, the pod template itself, `restartPolicy: Always` and no deadline.
fn replicated_template(sel: &Selector, spec: &Value, kind: &str, errs: &mut Errs) {
    let tp = Path::new("spec").child("template");
    let template = spec.get("template").unwrap_or(&NULL);
    template_matches(sel, template, &tp, true, errs);
    pod::pod_template(template, &tp, SpecOpts::default(), errs);
    restart_always(template, &tp, errs);
    if template.pointer("/spec/activeDeadlineSeconds").is_some_and(|v| !v.is_null()) {
        errs.push(Cause::forbidden(
            &tp.child("spec").child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

fn restart_always(template: &Value, tp: &Path, errs: &mut Errs) {
    let policy = template.pointer("/spec/restartPolicy").and_then(Value::as_str).unwrap_or("");
    if policy != "Always" {
        errs.push(Cause::not_supported(&tp.child("spec").child("restartPolicy"), &Value::from(policy), &["Always"]));
    }
}

/// apps/v1 selectors are fixed at creation.
fn selector_immutable(spec: &Value, old: Option<&Value>, errs: &mut Errs) {
    let Some(old) = old else { return };
    let (new_sel, old_sel) = (spec.get("selector").unwrap_or(&NULL), old.pointer("/spec/selector").unwrap_or(&NULL));
    if !super::field::semantic_eq(new_sel, old_sel) {
        errs.push(invalid_go(&Path::new("spec").child("selector"), &go_label_selector(new_sel), IMMUTABLE));
    }
}

/// Status counters are never negative.
fn status_counters(obj: &Value, keys: &[&str], errs: &mut Errs) {
    let sp = Path::new("status");
    let status = obj.get("status").unwrap_or(&NULL);
    for key in keys {
        nonnegative(status.get(*key), &sp.child(key), errs);
    }
}

// === Deployment ===

pub(crate) fn validate_deployment(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    metadata(obj, old, errs);
    let sp = Path::new("spec");
    let spec = obj.get("spec").unwrap_or(&NULL);
    nonnegative(spec.get("replicas"), &sp.child("replicas"), errs);
    let sel = workload_selector(spec, "empty selector is invalid for deployment", errs);
    if sel == Selector::Invalid {
        errs.push(invalid_go(&sp.child("selector"), &go_label_selector(spec.get("selector").unwrap_or(&NULL)), "invalid label selector"));
    } else {
        replicated_template(&sel, spec, "ReplicaSet", errs);
    }
    strategy(spec.get("strategy").unwrap_or(&NULL), &sp.child("strategy"), errs);
    nonnegative(spec.get("minReadySeconds"), &sp.child("minReadySeconds"), errs);
    nonnegative(spec.get("revisionHistoryLimit"), &sp.child("revisionHistoryLimit"), errs);
    if let Some(pds) = spec.get_i64("progressDeadlineSeconds") {
        nonnegative(spec.get("progressDeadlineSeconds"), &sp.child("progressDeadlineSeconds"), errs);
        if pds <= spec.get_i64("minReadySeconds").unwrap_or(0) {
            errs.push(Cause::invalid(&sp.child("progressDeadlineSeconds"), &Value::from(pds), "must be greater than minReadySeconds"));
        }
    }
    selector_immutable(spec, old, errs);
    status_counters(
        obj,
        &["replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas", "observedGeneration"],
        errs,
    );
}

fn strategy(s: &Value, path: &Path, errs: &mut Errs) {
    let typ = s.str_or_empty("type");
    match typ {
        "Recreate" => {
            if s.has("rollingUpdate") {
                errs.push(Cause::forbidden(&path.child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"));
            }
        }
        "RollingUpdate" => match s.get("rollingUpdate").filter(|v| !v.is_null()) {
            None => errs.push(super::field::required_detail(&path.child("rollingUpdate"), "this should be defaulted and never be nil")),
            Some(ru) => {
                let rp = path.child("rollingUpdate");
                int_or_percent(ru.get("maxUnavailable"), &rp.child("maxUnavailable"), errs);
                int_or_percent(ru.get("maxSurge"), &rp.child("maxSurge"), errs);
                if int_or_percent_value(ru.get("maxUnavailable")) == 0 && int_or_percent_value(ru.get("maxSurge")) == 0 {
                    errs.push(invalid_go(
                        &rp.child("maxUnavailable"),
                        &go_int_or_string(ru.get("maxUnavailable")),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                not_more_than_100(ru.get("maxUnavailable"), &rp.child("maxUnavailable"), errs);
            }
        },
        _ => {
            let rendered = format!(
                "apps.DeploymentStrategy{{Type:{typ:?}, RollingUpdate:(*apps.RollingUpdateDeployment)({})}}",
                if s.has("rollingUpdate") { "0xc000000000" } else { "nil" }
            );
            errs.push(not_supported_go(path, &rendered, &["Recreate", "RollingUpdate"]));
        }
    }
}

/// `ValidatePositiveIntOrPercent`.
pub(crate) fn int_or_percent(v: Option<&Value>, path: &Path, errs: &mut Errs) {
    match v {
        Some(Value::String(s)) => {
            for msg in names::percent(s) {
                errs.push(invalid_go(path, &go_int_or_string(v), &msg));
            }
        }
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n < 0) => {
            errs.push(Cause::invalid(path, &Value::Number(n.clone()), NEGATIVE));
        }
        _ => {}
    }
}

/// The number or percentage, ignoring the `%`; 0 when absent or malformed.
fn int_or_percent_value(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.trim_end_matches('%').parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// `IsNotMoreThan100Percent`.
pub(crate) fn not_more_than_100(v: Option<&Value>, path: &Path, errs: &mut Errs) {
    if let Some(Value::String(s)) = v {
        if s.ends_with('%') && int_or_percent_value(v) > 100 {
            errs.push(invalid_go(path, &go_int_or_string(v), "must not be greater than 100%"));
        }
    }
}

// === ReplicaSet ===

pub(crate) fn validate_replica_set(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    metadata(obj, old, errs);
    let sp = Path::new("spec");
    let spec = obj.get("spec").unwrap_or(&NULL);
    nonnegative(spec.get("replicas"), &sp.child("replicas"), errs);
    nonnegative(spec.get("minReadySeconds"), &sp.child("minReadySeconds"), errs);
    // Upstream's message says "deployment" here too.
    let sel = workload_selector(spec, "empty selector is invalid for deployment", errs);
    if sel == Selector::Invalid {
        errs.push(invalid_go(&sp.child("selector"), &go_label_selector(spec.get("selector").unwrap_or(&NULL)), "invalid label selector"));
    } else {
        replicated_template(&sel, spec, "ReplicaSet", errs);
    }
    selector_immutable(spec, old, errs);
    status_counters(obj, &["replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration"], errs);
}

// === StatefulSet ===

pub(crate) fn validate_stateful_set(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    // Pods are named `<set>-<ordinal>`, so new sets need DNS label names; updates do
    // not re-check the name, as older sets were admitted with subdomain names.
    match old {
        None => meta::object_meta(obj, true, NameRule::Label, errs),
        Some(old) => {
            meta::object_meta_update(obj, old, errs);
            meta::object_meta(obj, true, NameRule::Subdomain, errs);
        }
    }
    let sp = Path::new("spec");
    let spec = obj.get("spec").unwrap_or(&NULL);
    match spec.str_or_empty("podManagementPolicy") {
        "" => errs.push(Cause::required(&sp.child("podManagementPolicy"))),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(Cause::invalid(&sp.child("podManagementPolicy"), &Value::from(other), "must be 'OrderedReady' or 'Parallel'")),
    }
    let us = spec.get("updateStrategy").unwrap_or(&NULL);
    let usp = sp.child("updateStrategy");
    match us.str_or_empty("type") {
        "" => errs.push(Cause::required(&usp)),
        "OnDelete" => {
            if let Some(ru) = us.get("rollingUpdate").filter(|v| !v.is_null()) {
                errs.push(Cause::invalid(&usp.child("rollingUpdate"), ru, "only allowed for updateStrategy 'RollingUpdate'"));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = us.get("rollingUpdate").filter(|v| !v.is_null()) {
                nonnegative(ru.get("partition"), &usp.child("rollingUpdate").child("partition"), errs);
            }
        }
        _ => errs.push(Cause::invalid(&usp, us, "must be 'RollingUpdate' or 'OnDelete'")),
    }
    if let Some(policy) = spec.get("persistentVolumeClaimRetentionPolicy").filter(|v| !v.is_null()) {
        let pp = sp.child("persistentVolumeClaimRetentionPolicy");
        for key in ["whenDeleted", "whenScaled"] {
            let v = policy.str_or_empty(key);
            if !matches!(v, "Retain" | "Delete") {
                errs.push(Cause::not_supported(&pp.child(key), &Value::from(v), &["Retain", "Delete"]));
            }
        }
    }
    nonnegative(spec.get("replicas"), &sp.child("replicas"), errs);
    nonnegative(spec.get("minReadySeconds"), &sp.child("minReadySeconds"), errs);
    if let Some(start) = spec.pointer("/ordinals/start") {
        nonnegative(Some(start), &sp.child("ordinals.start"), errs);
    }
    let sel = workload_selector(spec, "empty selector is invalid for statefulset", errs);
    let tp = sp.child("template");
    let template = spec.get("template").unwrap_or(&NULL);
    if sel == Selector::Invalid {
        errs.push(invalid_go(&sp.child("selector"), &go_label_selector(spec.get("selector").unwrap_or(&NULL)), ""));
    } else {
        template_matches(&sel, template, &tp, true, errs);
        // Upstream leaves the pod spec of a StatefulSet unvalidated (its volumes would
        // not account for the claim templates); the pods it creates are validated.
        let md = template.get("metadata").unwrap_or(&NULL);
        meta::labels(md.get("labels"), &tp.child("labels"), errs);
        meta::annotations(md.get("annotations"), &tp.child("annotations"), errs);
    }
    restart_always(template, &tp, errs);
    if template.pointer("/spec/activeDeadlineSeconds").is_some_and(|v| !v.is_null()) {
        errs.push(Cause::forbidden(
            &tp.child("spec").child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    if let Some(old) = old {
        // Only these may change; everything else in the spec is fixed.
        let mut a = spec.clone();
        let mut b = old.get("spec").cloned().unwrap_or(Value::Null);
        for key in ["replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds"] {
            for v in [&mut a, &mut b] {
                if let Some(m) = v.as_object_mut() {
                    m.remove(key);
                }
            }
        }
        if !super::field::semantic_eq(&a, &b) {
            errs.push(Cause::forbidden(
                &sp,
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
    status_counters(
        obj,
        &["replicas", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas", "observedGeneration", "collisionCount"],
        errs,
    );
}

// === DaemonSet ===

pub(crate) fn validate_daemon_set(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    metadata(obj, old, errs);
    let sp = Path::new("spec");
    let spec = obj.get("spec").unwrap_or(&NULL);
    // Unlike the other workloads, a missing selector is only reported as a mismatch.
    let sel_path = sp.child("selector");
    if let Some(s) = spec.get("selector").filter(|s| !s.is_null()) {
        meta::label_selector(s, &sel_path, errs);
    }
    let sel = Selector::from_json(spec.get("selector"));
    let tp = sp.child("template");
    let template = spec.get("template").unwrap_or(&NULL);
    template_matches(&sel, template, &tp, false, errs);
    if let Some(s) = spec.get("selector").filter(|s| !s.is_null()) {
        if s.get_obj("matchLabels").map(|m| m.len()).unwrap_or(0) + s.get_arr("matchExpressions").len() == 0 {
            errs.push(invalid_go(&sel_path, &go_label_selector(s), "empty selector is invalid for daemonset"));
        }
    }
    pod::pod_template(template, &tp, SpecOpts::default(), errs);
    restart_always(template, &tp, errs);
    if template.pointer("/spec/activeDeadlineSeconds").is_some_and(|v| !v.is_null()) {
        errs.push(Cause::forbidden(
            &tp.child("spec").child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    nonnegative(spec.get("minReadySeconds"), &sp.child("minReadySeconds"), errs);
    nonnegative(spec.get("templateGeneration"), &sp.child("templateGeneration"), errs);
    let us = spec.get("updateStrategy").unwrap_or(&NULL);
    let usp = sp.child("updateStrategy");
    match us.str_or_empty("type") {
        "OnDelete" => {}
        "RollingUpdate" => match us.get("rollingUpdate").filter(|v| !v.is_null()) {
            None => errs.push(Cause::required(&usp.child("rollingUpdate"))),
            Some(ru) => {
                let rp = usp.child("rollingUpdate");
                let (mu, ms) = (ru.get("maxUnavailable"), ru.get("maxSurge"));
                int_or_percent(mu, &rp.child("maxUnavailable"), errs);
                int_or_percent(ms, &rp.child("maxSurge"), errs);
                not_more_than_100(mu, &rp.child("maxUnavailable"), errs);
                not_more_than_100(ms, &rp.child("maxSurge"), errs);
                match (int_or_percent_value(mu) != 0, int_or_percent_value(ms) != 0) {
                    (true, true) => errs.push(invalid_go(
                        &rp.child("maxSurge"),
                        &go_int_or_string(ms),
                        "may not be set when maxUnavailable is non-zero",
                    )),
                    (false, false) => {
                        errs.push(super::field::required_detail(&rp.child("maxUnavailable"), "cannot be 0 when maxSurge is 0"))
                    }
                    _ => {}
                }
            }
        },
        other => {
            let rendered = format!(
                "apps.DaemonSetUpdateStrategy{{Type:{other:?}, RollingUpdate:(*apps.RollingUpdateDaemonSet)({})}}",
                if us.has("rollingUpdate") { "0xc000000000" } else { "nil" }
            );
            errs.push(not_supported_go(&usp, &rendered, &["RollingUpdate", "OnDelete"]));
        }
    }
    nonnegative(spec.get("revisionHistoryLimit"), &sp.child("revisionHistoryLimit"), errs);
    selector_immutable(spec, old, errs);
    status_counters(
        obj,
        &["currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady", "observedGeneration"],
        errs,
    );
}

// === ControllerRevision ===

pub(crate) fn validate_controller_revision(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    metadata(obj, old, errs);
    if !obj.has("data") {
        errs.push(super::field::required_detail(&Path::new("data"), "data is mandatory"));
    }
    nonnegative(obj.get("revision"), &Path::new("revision"), errs);
    if let Some(old) = old {
        let (n, o) = (obj.get("data").unwrap_or(&NULL), old.get("data").unwrap_or(&NULL));
        if n != o {
            errs.push(Cause::invalid(&Path::new("data"), n, IMMUTABLE));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::resources::lookup;
    use serde_json::json;

    fn defaulted(plural: &str, mut v: Value) -> Value {
        apply_defaults(lookup("apps", "v1", plural).unwrap(), &mut v);
        v
    }

    fn deployment(selector: Value, labels: Value) -> Value {
        defaulted(
            "deployments",
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"selector": selector, "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        )
    }

    fn check(f: fn(&Value, Option<&Value>, &mut Errs), obj: &Value, old: Option<&Value>) -> Errs {
        let mut e = Vec::new();
        f(obj, old, &mut e);
        e
    }

    #[test]
    fn selectors_must_match_template_labels() {
        let d = deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "api"}));
        let e = check(validate_deployment, &d, None);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].line(),
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"api\"}: `selector` does not match template `labels`"
        );
    }

    #[test]
    fn a_missing_selector_is_required_and_mismatches() {
        let mut d = deployment(json!({}), json!({"app": "web"}));
        d["spec"].as_object_mut().unwrap().remove("selector");
        let e = check(validate_deployment, &d, None);
        let lines: Vec<String> = e.iter().map(|c| c.line()).collect();
        assert_eq!(
            lines,
            [
                "spec.selector: Required value".to_string(),
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`".to_string()
            ]
        );
    }

    #[test]
    fn selectors_are_immutable_in_apps_v1() {
        let mut old = deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "web", "v": "2"}));
        old["metadata"]["uid"] = json!("u");
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "v": "2"}});
        let e = check(validate_deployment, &new, Some(&old));
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].line(),
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        );
    }

    #[test]
    fn surge_and_unavailable_may_not_both_be_zero() {
        let mut d = deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
        d["spec"]["strategy"]["rollingUpdate"] = json!({"maxSurge": 0, "maxUnavailable": 0});
        let e = check(validate_deployment, &d, None);
        assert_eq!(e[0].line(), "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0");
        d["spec"]["strategy"] = json!({"type": "Sideways"});
        let e = check(validate_deployment, &d, None);
        assert_eq!(e[0].field, "spec.strategy");
        assert!(e[0].message.ends_with("supported values: \"Recreate\", \"RollingUpdate\""));
    }

    #[test]
    fn replicas_may_not_be_negative() {
        let mut d = deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
        d["spec"]["replicas"] = json!(-1);
        let e = check(validate_deployment, &d, None);
        assert_eq!(e[0].line(), "spec.replicas: Invalid value: -1: must be greater than or equal to 0");
    }

    #[test]
    fn workload_pods_must_restart_always() {
        let mut d = deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let e = check(validate_deployment, &d, None);
        assert_eq!(e[0].line(), "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"");
    }

    #[test]
    fn template_pod_specs_are_validated() {
        let mut d = deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
        d["spec"]["template"]["spec"]["containers"][0]["name"] = json!("Bad_Name");
        let e = check(validate_deployment, &d, None);
        assert_eq!(e[0].field, "spec.template.spec.containers[0].name");
    }

    #[test]
    fn stateful_set_names_are_dns_labels_on_create() {
        let mut s = defaulted(
            "statefulsets",
            json!({"metadata": {"name": "db.v1", "namespace": "default"}, "spec": {"selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "pg"}]}}}}),
        );
        let e = check(validate_stateful_set, &s, None);
        assert_eq!(e[0].line(), "metadata.name: Invalid value: \"db.v1\": must not contain dots");
        assert!(check(validate_stateful_set, &s, Some(&s)).is_empty());
        s["metadata"]["name"] = json!("db");
        assert!(check(validate_stateful_set, &s, None).is_empty());
    }

    #[test]
    fn stateful_sets_may_mount_claim_templates() {
        let s = defaulted(
            "statefulsets",
            json!({"metadata": {"name": "db", "namespace": "default"}, "spec": {"selector": {"matchLabels": {"app": "db"}}, "serviceName": "db",
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "pg", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        );
        assert!(check(validate_stateful_set, &s, None).is_empty());
        let mut new = s.clone();
        new["spec"]["serviceName"] = json!("other");
        let e = check(validate_stateful_set, &new, Some(&s));
        assert_eq!(e[0].field, "spec");
        assert!(e[0]
            .message
            .starts_with("Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template'"));
    }

    #[test]
    fn daemon_sets_take_one_of_surge_or_unavailable() {
        let mut ds = defaulted(
            "daemonsets",
            json!({"metadata": {"name": "d", "namespace": "default"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        );
        assert!(check(validate_daemon_set, &ds, None).is_empty());
        ds["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"] = json!(1);
        let e = check(validate_daemon_set, &ds, None);
        assert_eq!(e[0].field, "spec.updateStrategy.rollingUpdate.maxSurge");
        assert!(e[0].message.ends_with("may not be set when maxUnavailable is non-zero"));
    }

    #[test]
    fn daemon_sets_without_selector_only_mismatch() {
        let mut ds = defaulted(
            "daemonsets",
            json!({"metadata": {"name": "d", "namespace": "default"}, "spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        );
        let e = check(validate_daemon_set, &ds, None);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "spec.template.metadata.labels");
        ds["spec"]["selector"] = json!({});
        let e = check(validate_daemon_set, &ds, None);
        assert_eq!(e.len(), 1);
        assert!(e[0].message.ends_with("empty selector is invalid for daemonset"));
    }

    #[test]
    fn controller_revision_data_is_fixed() {
        let old = json!({"metadata": {"name": "r", "namespace": "d"}, "data": {"a": 1}, "revision": 1});
        let mut new = old.clone();
        new["data"] = json!({"a": 2});
        let e = check(validate_controller_revision, &new, Some(&old));
        assert_eq!(e[0].field, "data");
        assert!(e[0].message.ends_with("field is immutable"));
        let e = check(validate_controller_revision, &json!({"metadata": {"name": "r", "namespace": "d"}, "revision": -1}), None);
        assert_eq!(e.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(), ["data", "revision"]);
    }
}
