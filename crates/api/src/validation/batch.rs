//! batch/v1: Job and CronJob (`pkg/apis/batch/validation`).

use serde_json::Value;

use super::cron;
use super::field::{
    go_label_selector, go_string_map, immutable, invalid_go, nonnegative, required_detail, semantic_eq, Errs, Obj, Path, IMMUTABLE, NULL,
};
use super::meta::{self, Selector};
use super::names::{self, NameRule};
use super::pod::{self, SpecOpts};
use crate::Cause;

/// Upstream's cap on parallelism of Indexed Jobs.
const MAX_PARALLELISM_FOR_INDEXED_JOB: i64 = 100_000;

pub(crate) const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub(crate) const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
pub(crate) const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub(crate) const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// `validateJobSpec`: what Jobs and CronJob job templates share.
fn job_spec(spec: &Value, path: &Path, errs: &mut Errs) {
    for key in ["parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"] {
        nonnegative(spec.get(key), &path.child(key), errs);
    }
    if let Some(mode) = spec.get_str("completionMode") {
        match mode {
            "NonIndexed" => {}
            "Indexed" => {
                if !spec.has("completions") {
                    errs.push(required_detail(&path.child("completions"), "when completion mode is Indexed"));
                }
                if let Some(p) = spec.get_i64("parallelism").filter(|p| *p > MAX_PARALLELISM_FOR_INDEXED_JOB) {
                    errs.push(Cause::invalid(
                        &path.child("parallelism"),
                        &Value::from(p),
                        format!("must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED_JOB} when completion mode is Indexed"),
                    ));
                }
            }
            other => errs.push(Cause::not_supported(&path.child("completionMode"), &Value::from(other), &["NonIndexed", "Indexed"])),
        }
    }
    if spec.has("backoffLimitPerIndex") && spec.str_or_empty("completionMode") != "Indexed" {
        errs.push(required_detail(
            &path.child("completionMode"),
            "when backoffLimitPerIndex is specified, the completionMode must be Indexed",
        ));
    }
    let has_failure_policy = spec.has("podFailurePolicy");
    if let Some(rp) = spec.get_str("podReplacementPolicy") {
        match rp {
            "TerminatingOrFailed" if has_failure_policy => {
                errs.push(Cause::not_supported(&path.child("podReplacementPolicy"), &Value::from(rp), &["Failed"]))
            }
            "TerminatingOrFailed" | "Failed" => {}
            other => errs.push(Cause::not_supported(
                &path.child("podReplacementPolicy"),
                &Value::from(other),
                &["TerminatingOrFailed", "Failed"],
            )),
        }
    }
    let tp = path.child("template");
    let template = spec.get("template").unwrap_or(&NULL);
    pod::pod_template(template, &tp, SpecOpts::default(), errs);
    let restart = template.pointer("/spec/restartPolicy").and_then(Value::as_str).unwrap_or("");
    if restart != "OnFailure" && restart != "Never" {
        errs.push(Cause::not_supported(&tp.child("spec").child("restartPolicy"), &Value::from(restart), &["OnFailure", "Never"]));
    } else if restart == "OnFailure" && has_failure_policy {
        errs.push(Cause::invalid(
            &tp.child("spec").child("restartPolicy"),
            &Value::from(restart),
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
}

// === Job ===

pub(crate) fn validate_job(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
    }
    meta::object_meta(obj, true, NameRule::Subdomain, errs);
    let sp = Path::new("spec");
    let spec = obj.get("spec").unwrap_or(&NULL);
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    if old.is_none() && !uid.is_empty() {
        generated_selector(obj, spec, uid, errs);
    }
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => errs.push(Cause::required(&sp.child("selector"))),
        Some(sel) => meta::label_selector(sel, &sp.child("selector"), errs),
    }
    let sel = Selector::from_json(spec.get("selector"));
    if sel != Selector::Invalid && !sel.is_nothing() {
        let labels = spec.pointer("/template/metadata/labels");
        if !sel.matches(labels) {
            errs.push(invalid_go(&sp.child("template").child("metadata").child("labels"), &go_string_map(labels), meta::SELECTOR_MISMATCH));
        }
    }
    job_spec(spec, &sp, errs);
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if spec.str_or_empty("completionMode") == "Indexed" {
        if let Some(c) = spec.get_i64("completions").filter(|c| *c > 0) {
            let hostname = format!("{name}-{}", c - 1);
            if !names::dns1123_label(&hostname).is_empty() {
                errs.push(Cause::invalid(
                    &Path::new("metadata").child("name"),
                    &Value::from(name),
                    format!("will not able to create pod with invalid DNS label: {hostname}"),
                ));
            }
        }
    }
    if let Some(old) = old {
        job_update(spec, old, errs);
    }
}

/// `validateGeneratedSelector`: unless `manualSelector` is set, the selector and the
/// template labels must be the ones the server generated from the Job's uid.
fn generated_selector(obj: &Value, spec: &Value, uid: &str, errs: &mut Errs) {
    if spec.get_bool("manualSelector") == Some(true) || !spec.has("selector") {
        return;
    }
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let tm = Path::new("spec").child("template").child("metadata");
    let labels = spec.pointer("/template/metadata/labels");
    for (key, expected) in
        [(LEGACY_CONTROLLER_UID_LABEL, uid), (LEGACY_JOB_NAME_LABEL, name), (CONTROLLER_UID_LABEL, uid), (JOB_NAME_LABEL, name)]
    {
        match labels.and_then(|l| l.get(key)).and_then(Value::as_str) {
            None => errs.push(required_detail(&tm.child("labels").key(key), &format!("must be '{expected}'"))),
            Some(v) if v != expected => {
                errs.push(invalid_go(&tm.child("labels").key(key), &go_string_map(labels), &format!("must be '{expected}'")))
            }
            Some(_) => {}
        }
    }
    let expected = serde_json::json!({ CONTROLLER_UID_LABEL: uid });
    let sel = Selector::from_json(spec.get("selector"));
    if sel != Selector::Invalid && !sel.matches(Some(&expected)) {
        errs.push(invalid_go(
            &Path::new("spec").child("selector"),
            &go_label_selector(spec.get("selector").unwrap_or(&NULL)),
            "`selector` not auto-generated",
        ));
    }
}

/// `ValidateJobSpecUpdate`: the selector, completion mode and failure policies are
/// fixed; the pod template is fixed too, except scheduling directives of a Job that is
/// suspended and has not started.
fn job_update(spec: &Value, old: &Value, errs: &mut Errs) {
    let sp = Path::new("spec");
    let old_spec = old.get("spec").unwrap_or(&NULL);
    let fixed = ["selector", "completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy"];
    for key in fixed {
        let (n, o) = (spec.get(key).unwrap_or(&NULL), old_spec.get(key).unwrap_or(&NULL));
        if !semantic_eq(n, o) {
            let c =
                if key == "selector" { invalid_go(&sp.child(key), &go_label_selector(n), IMMUTABLE) } else { immutable(&sp.child(key), n) };
            errs.push(c);
        }
    }
    // Indexed Jobs may scale completions together with parallelism.
    if spec.str_or_empty("completionMode") != "Indexed" && spec.get("completions") != old_spec.get("completions") {
        errs.push(immutable(&sp.child("completions"), spec.get("completions").unwrap_or(&NULL)));
    }
    let mut new_tpl = spec.get("template").cloned().unwrap_or(Value::Null);
    let mut old_tpl = old_spec.get("template").cloned().unwrap_or(Value::Null);
    let suspended_unstarted = spec.get_bool("suspend") == Some(true) && old.pointer("/status/startTime").is_none_or(Value::is_null);
    if suspended_unstarted {
        for t in [&mut new_tpl, &mut old_tpl] {
            if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("labels");
                m.remove("annotations");
            }
            if let Some(s) = t.get_mut("spec").and_then(Value::as_object_mut) {
                for key in ["nodeSelector", "tolerations", "schedulingGates"] {
                    s.remove(key);
                }
                if let Some(a) = s.get_mut("affinity").and_then(Value::as_object_mut) {
                    a.remove("nodeAffinity");
                }
            }
        }
    }
    if !semantic_eq(&new_tpl, &old_tpl) {
        errs.push(immutable(&sp.child("template"), spec.get("template").unwrap_or(&NULL)));
    }
}

// === CronJob ===

pub(crate) fn validate_cron_job(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
    }
    meta::object_meta(obj, true, NameRule::Subdomain, errs);
    let sp = Path::new("spec");
    let spec = obj.get("spec").unwrap_or(&NULL);
    let old_spec = old.map(|o| o.get("spec").unwrap_or(&NULL));
    let schedule = spec.str_or_empty("schedule");
    if schedule.is_empty() {
        errs.push(Cause::required(&sp.child("schedule")));
    } else {
        let allow_tz = old_spec.is_some_and(|o| o.str_or_empty("schedule").contains("TZ"));
        if let Err(e) = cron::parse_standard(schedule) {
            errs.push(Cause::invalid(&sp.child("schedule"), &Value::from(schedule), e));
        }
        if allow_tz && schedule.contains("TZ") && spec.has("timeZone") {
            errs.push(Cause::invalid(
                &sp.child("schedule"),
                &Value::from(schedule),
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !allow_tz && schedule.contains("TZ") {
            errs.push(Cause::invalid(
                &sp.child("schedule"),
                &Value::from(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    nonnegative(spec.get("startingDeadlineSeconds"), &sp.child("startingDeadlineSeconds"), errs);
    if old_spec.is_none_or(|o| o.get("timeZone") != spec.get("timeZone")) {
        time_zone(spec.get("timeZone"), &sp.child("timeZone"), errs);
    }
    match spec.str_or_empty("concurrencyPolicy") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(Cause::required(&sp.child("concurrencyPolicy"))),
        other => errs.push(Cause::not_supported(&sp.child("concurrencyPolicy"), &Value::from(other), &["Allow", "Forbid", "Replace"])),
    }
    let jp = sp.child("jobTemplate");
    let jt = spec.get("jobTemplate").unwrap_or(&NULL);
    let jspec = jt.get("spec").unwrap_or(&NULL);
    let md = jt.get("metadata").unwrap_or(&NULL);
    meta::labels(md.get("labels"), &jp.child("metadata").child("labels"), errs);
    meta::annotations(md.get("annotations"), &jp.child("metadata").child("annotations"), errs);
    job_spec(jspec, &jp.child("spec"), errs);
    if let Some(sel) = jspec.get("selector").filter(|s| !s.is_null()) {
        errs.push(invalid_go(&jp.child("spec").child("selector"), &go_label_selector(sel), "`selector` will be auto-generated"));
    }
    if jspec.get_bool("manualSelector") == Some(true) {
        errs.push(Cause::not_supported(&jp.child("spec").child("manualSelector"), &Value::Bool(true), &["nil", "false"]));
    }
    for key in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        nonnegative(spec.get(key), &sp.child(key), errs);
    }
    if old.is_none() {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        // The controller appends an 11-character suffix to make Job names (63 max).
        if name.len() > 52 {
            errs.push(Cause::invalid(&Path::new("metadata").child("name"), &Value::from(name), "must be no more than 52 characters"));
        }
    }
}

/// `validateTimeZone`.
fn time_zone(tz: Option<&Value>, path: &Path, errs: &mut Errs) {
    let Some(tz) = tz.and_then(Value::as_str) else { return };
    if tz.is_empty() {
        errs.push(Cause::invalid(path, &Value::from(tz), "timeZone must be nil or non-empty string"));
        return;
    }
    let part_ok = |p: &str| {
        p != "."
            && p != ".."
            && !p.starts_with('-')
            && (1..=14).contains(&p.len())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    };
    if !tz.split('/').all(part_ok) || !cron::time_zone_exists(tz) {
        errs.push(Cause::invalid(path, &Value::from(tz), format!("unknown time zone {tz}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::resources::lookup;
    use serde_json::json;

    fn job(spec: Value) -> Value {
        let mut j = json!({"metadata": {"name": "pi", "namespace": "default", "uid": "1234"}, "spec": spec});
        apply_defaults(lookup("batch", "v1", "jobs").unwrap(), &mut j);
        j
    }

    fn cron_job(spec: Value) -> Value {
        let mut j = json!({"metadata": {"name": "tick", "namespace": "default"}, "spec": spec});
        apply_defaults(lookup("batch", "v1", "cronjobs").unwrap(), &mut j);
        j
    }

    fn check(f: fn(&Value, Option<&Value>, &mut Errs), obj: &Value, old: Option<&Value>) -> Errs {
        let mut e = Vec::new();
        f(obj, old, &mut e);
        e
    }

    const POD: &str = r#"{"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl"}]}}"#;

    fn template() -> Value {
        serde_json::from_str(POD).unwrap()
    }

    #[test]
    fn generated_jobs_are_valid() {
        assert!(check(validate_job, &job(json!({"template": template()})), None).is_empty());
    }

    #[test]
    fn job_pods_may_not_restart_always() {
        let e = check(validate_job, &job(json!({"template": {"spec": {"containers": [{"name": "c", "image": "perl"}]}}})), None);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].line(),
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        );
    }

    #[test]
    fn user_selectors_need_manual_selector() {
        let mut t = template();
        t["metadata"] = json!({"labels": {"app": "pi"}});
        let e = check(validate_job, &job(json!({"selector": {"matchLabels": {"app": "pi"}}, "template": t.clone()})), None);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "spec.selector");
        assert!(e[0].message.ends_with("`selector` not auto-generated"));
        let e = check(validate_job, &job(json!({"manualSelector": true, "selector": {"matchLabels": {"app": "pi"}}, "template": t})), None);
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn job_counts_and_modes_are_checked() {
        let e = check(validate_job, &job(json!({"parallelism": -1, "completionMode": "Sometimes", "template": template()})), None);
        let f: Vec<&str> = e.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(f, ["spec.parallelism", "spec.completionMode"]);
    }

    #[test]
    fn job_templates_are_immutable() {
        let old = job(json!({"template": template()}));
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:2");
        let e = check(validate_job, &new, Some(&old));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "spec.template");
        assert!(e[0].message.ends_with("field is immutable"));
        let mut new = old.clone();
        new["spec"]["completions"] = json!(3);
        let e = check(validate_job, &new, Some(&old));
        assert_eq!(e[0].line(), "spec.completions: Invalid value: 3: field is immutable");
    }

    #[test]
    fn cron_schedules_must_parse() {
        let e =
            check(validate_cron_job, &cron_job(json!({"schedule": "61 * * * *", "jobTemplate": {"spec": {"template": template()}}})), None);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line(), "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61");
        let e = check(validate_cron_job, &cron_job(json!({"jobTemplate": {"spec": {"template": template()}}})), None);
        assert_eq!(e[0].line(), "spec.schedule: Required value");
        assert!(check(
            validate_cron_job,
            &cron_job(json!({"schedule": "@hourly", "jobTemplate": {"spec": {"template": template()}}})),
            None
        )
        .is_empty());
    }

    #[test]
    fn cron_time_zones_must_exist() {
        let e = check(
            validate_cron_job,
            &cron_job(json!({"schedule": "0 * * * *", "timeZone": "Mars/Base", "jobTemplate": {"spec": {"template": template()}}})),
            None,
        );
        assert_eq!(e[0].line(), "spec.timeZone: Invalid value: \"Mars/Base\": unknown time zone Mars/Base");
        let e = check(
            validate_cron_job,
            &cron_job(json!({"schedule": "TZ=UTC 0 * * * *", "jobTemplate": {"spec": {"template": template()}}})),
            None,
        );
        assert_eq!(e[0].message, "Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead");
    }

    #[test]
    fn cron_job_names_leave_room_for_the_suffix() {
        let mut c = cron_job(json!({"schedule": "@daily", "jobTemplate": {"spec": {"template": template()}}}));
        c["metadata"]["name"] = json!("a".repeat(53));
        let e = check(validate_cron_job, &c, None);
        assert_eq!(e[0].message, format!("Invalid value: \"{}\": must be no more than 52 characters", "a".repeat(53)));
    }
}
