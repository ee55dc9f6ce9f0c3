//! Pods, pod templates and the pod spec they share (`ValidatePodSpec` and friends in
//! `pkg/apis/core/validation`), plus the narrow set of changes a pod update may make.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::field::{diff, duplicate_go, invalid_go, nonnegative, normalize, not_found, required_detail, semantic_eq, Errs, Obj, Path, NEGATIVE, NULL};
use super::meta::{self, label_key};
use super::names::{self, inclusive_range, NameRule};
use super::quantity::{Quantity, QUANTITY_FORMAT_ERROR};
use crate::Cause;

const MAX_INT32: i64 = i32::MAX as i64;

/// How a pod spec is being validated.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpecOpts {
    /// The spec belongs to a Pod, not a template (`ResourceIsPod`).
    pub is_pod: bool,
}

/// The upstream list of what a pod update may change, in its message.
const UPDATABLE_POD_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

// === Pod ===

/// `ValidatePodCreate` / `ValidatePodUpdate`.
pub(crate) fn validate_pod(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&NULL);
    let spec_path = Path::new("spec");
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
    }
    meta::object_meta(obj, true, NameRule::Subdomain, errs);
    mirror_pod_annotation(obj, spec, errs);
    pod_spec(spec, &spec_path, SpecOpts { is_pod: true }, errs);
    // What is checked for pods but not for templates.
    if spec.str_or_empty("serviceAccountName").is_empty() {
        for (vi, vol) in spec.get_arr("volumes").iter().enumerate() {
            for (si, src) in vol.get("projected").map(|p| p.get_arr("sources")).unwrap_or(&[]).iter().enumerate() {
                if src.has("serviceAccountToken") {
                    let p = spec_path.child("volumes").index(vi).child("projected").child("sources").index(si).child("serviceAccountToken");
                    errs.push(Cause::forbidden(&p, "must not be specified when serviceAccountName is not set"));
                }
            }
        }
    }
    for list in ["containers", "initContainers"] {
        for (i, c) in spec.get_arr(list).iter().enumerate() {
            let image = c.str_or_empty("image");
            if image.trim() != image {
                errs.push(Cause::invalid(
                    &spec_path.child(list).index(i).child("image"),
                    &Value::from(image),
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    match old {
        None => {
            if !spec.get_arr("ephemeralContainers").is_empty() {
                errs.push(Cause::forbidden(&spec_path.child("ephemeralContainers"), "cannot be set on create"));
            }
        }
        Some(old) => {
            pod_update(spec, old.get("spec").unwrap_or(&NULL), errs);
            pod_status(obj, old, errs);
        }
    }
}

fn mirror_pod_annotation(obj: &Value, spec: &Value, errs: &mut Errs) {
    const MIRROR: &str = "kubernetes.io/config.mirror";
    if let Some(v) = obj.pointer("/metadata/annotations").and_then(|a| a.get(MIRROR)) {
        if spec.str_or_empty("nodeName").is_empty() {
            errs.push(Cause::invalid(
                &Path::new("metadata").child("annotations").key(MIRROR),
                v,
                "must set spec.nodeName if mirror pod annotation is set",
            ));
        }
    }
}

/// `ValidatePodUpdate`: only container images, `activeDeadlineSeconds` (lowered),
/// added tolerations, removed scheduling gates and a negative grace period raised
/// to 1 may change; everything else in the spec is fixed at creation.
fn pod_update(new: &Value, old: &Value, errs: &mut Errs) {
    let spec_path = Path::new("spec");
    for list in ["containers", "initContainers"] {
        let (n, o) = (new.get_arr(list), old.get_arr(list));
        if n.len() != o.len() {
            errs.push(Cause::forbidden(&spec_path.child(list), "pod updates may not add or remove containers"));
            return;
        }
        for (i, c) in n.iter().enumerate() {
            let image = c.str_or_empty("image");
            let p = spec_path.child(list).index(i).child("image");
            if image.is_empty() {
                errs.push(Cause::required(&p));
            }
            if image.trim() != image {
                errs.push(Cause::invalid(&p, &Value::from(image), "must not have leading or trailing whitespace"));
            }
        }
    }
    let ads = spec_path.child("activeDeadlineSeconds");
    match (new.get_i64("activeDeadlineSeconds"), old.get_i64("activeDeadlineSeconds")) {
        (Some(n), _) if !(0..=MAX_INT32).contains(&n) => {
            errs.push(Cause::invalid(&ads, &Value::from(n), inclusive_range(0, MAX_INT32)));
            return;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(Cause::invalid(&ads, &Value::from(n), "must be less than or equal to previous value"));
            return;
        }
        (None, Some(_)) => errs.push(Cause::invalid(&ads, &Value::Null, "must not update from a positive integer to nil value")),
        _ => {}
    }
    only_added_tolerations(new.get_arr("tolerations"), old.get_arr("tolerations"), &spec_path.child("tolerations"), errs);
    only_deleted_scheduling_gates(
        new.get_arr("schedulingGates"),
        old.get_arr("schedulingGates"),
        &spec_path.child("schedulingGates"),
        errs,
    );
    if semantic_eq(new, old) {
        return;
    }
    // Overwrite what may change with the old values, then nothing else may differ.
    let mut munged = new.clone();
    for list in ["containers", "initContainers"] {
        if let Some(cs) = munged.get_mut(list).and_then(Value::as_array_mut) {
            for (i, c) in cs.iter_mut().enumerate() {
                if let Some(img) = old.get_arr(list).get(i).and_then(|o| o.get("image")) {
                    c["image"] = img.clone();
                }
            }
        }
    }
    for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
        set_or_remove(&mut munged, key, old.get(key));
    }
    if old.get_i64("terminationGracePeriodSeconds").is_some_and(|g| g < 0) && new.get_i64("terminationGracePeriodSeconds") == Some(1) {
        set_or_remove(&mut munged, "terminationGracePeriodSeconds", old.get("terminationGracePeriodSeconds"));
    }
    // Gated pods may gain node selector entries.
    if !old.get_arr("schedulingGates").is_empty()
        && !semantic_eq(munged.get("nodeSelector").unwrap_or(&NULL), old.get("nodeSelector").unwrap_or(&NULL))
    {
        let old_sel = old.get_obj("nodeSelector");
        let new_sel = munged.get("nodeSelector").cloned().unwrap_or(Value::Null);
        let kept = old_sel.is_none_or(|m| m.iter().all(|(k, v)| new_sel.get(k) == Some(v)));
        if !kept {
            errs.push(invalid_go(
                &spec_path.child("nodeSelector"),
                &super::field::go_string_map(Some(&new_sel)),
                "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
            ));
        }
        set_or_remove(&mut munged, "nodeSelector", old.get("nodeSelector"));
    }
    if !semantic_eq(&munged, old) {
        errs.push(Cause::forbidden(
            &spec_path,
            format!("pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n{}", diff(old, &munged)),
        ));
    }
}

/// The parts of `ValidatePodStatusUpdate` that hold for every writer: well-formed
/// pod and host IPs, and containers of pods that do not restart stay terminated.
fn pod_status(obj: &Value, old: &Value, errs: &mut Errs) {
    let status = obj.get("status").unwrap_or(&NULL);
    let sp = Path::new("status");
    if let Some(n) = status.get_str("nominatedNodeName").filter(|n| !n.is_empty()) {
        if old.pointer("/status/nominatedNodeName").and_then(Value::as_str) != Some(n) {
            for msg in NameRule::Subdomain.check(n, false) {
                errs.push(Cause::invalid(&sp.child("nominatedNodeName"), &Value::from(n), msg));
            }
        }
    }
    // Upstream backfills an empty class from the old pod before this check.
    let old_qos = old.pointer("/status/qosClass").and_then(Value::as_str).unwrap_or("");
    let qos = status.str_or_empty("qosClass");
    if !qos.is_empty() && qos != old_qos {
        errs.push(super::field::immutable(&sp.child("qosClass"), &Value::from(qos)));
    }
    for (key, item) in [("podIPs", "podIP"), ("hostIPs", "hostIP")] {
        let list = status.get_arr(key);
        let p = sp.child(key);
        if key == "hostIPs" && !list.is_empty() && list[0].get_str("ip") != status.get_str("hostIP") {
            errs.push(Cause::invalid(&p.index(0).child("ip"), list[0].get("ip").unwrap_or(&NULL), "must be equal to `hostIP`"));
        }
        let ips: Vec<&str> = list.iter().map(|e| e.str_or_empty("ip")).collect();
        for (i, a) in ips.iter().enumerate() {
            ip(a, &p.index(i), errs);
        }
        if ips.len() > 1 {
            let v4 = ips.iter().filter(|a| names::parse_ip(a).is_some_and(|ip| ip.is_ipv4())).count();
            if ips.len() > 2 || v4 != 1 {
                errs.push(Cause::invalid(&p, status.get(key).unwrap_or(&NULL), "may specify no more than one IP for each IP family"));
            }
            let mut seen = HashSet::new();
            for (i, a) in ips.iter().enumerate() {
                if !seen.insert(*a) {
                    errs.push(duplicate_go(&p.index(i), &format!("core.{}{{IP:{a:?}}}", if item == "podIP" { "PodIP" } else { "HostIP" })));
                }
            }
        }
    }
    // Containers of pods that never restart (or that exited cleanly under OnFailure)
    // may not come back to life.
    let restart = old.pointer("/spec/restartPolicy").and_then(Value::as_str).unwrap_or("Always");
    let sidecars: HashSet<&str> = old
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get_str("restartPolicy") == Some("Always"))
        .map(|c| c.str_or_empty("name"))
        .collect();
    for (key, policy) in [("containerStatuses", restart), ("initContainerStatuses", restart), ("ephemeralContainerStatuses", "Never")] {
        if policy == "Always" {
            continue;
        }
        let new_list = status.get_arr(key);
        for (i, o) in old.pointer(&format!("/status/{key}")).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let Some(term) = o.pointer("/state/terminated").filter(|t| !t.is_null()) else { continue };
            if term.get_i64("exitCode").unwrap_or(0) != 0 && policy == "OnFailure" {
                continue;
            }
            let name = o.str_or_empty("name");
            if key == "initContainerStatuses" && sidecars.contains(name) {
                continue;
            }
            let revived =
                new_list.iter().any(|n| n.str_or_empty("name") == name && n.pointer("/state/terminated").is_none_or(Value::is_null));
            if revived {
                errs.push(Cause::forbidden(&sp.child(key).index(i).child("state"), "may not be transitioned to non-terminated state"));
            }
        }
    }
}

fn set_or_remove(obj: &mut Value, key: &str, v: Option<&Value>) {
    if let Some(m) = obj.as_object_mut() {
        match v {
            Some(v) => {
                m.insert(key.to_string(), v.clone());
            }
            None => {
                m.remove(key);
            }
        }
    }
}

/// `validateOnlyAddedTolerations`: existing tolerations may only change `tolerationSeconds`.
///
/// Upstream compares each old toleration, given the new one's `tolerationSeconds`,
/// with every new one. That is the same as comparing both without `tolerationSeconds`,
/// which a set of canonical forms does in linear time: the pairwise scan over lists
/// of tens of thousands of tolerations took minutes.
fn only_added_tolerations(new: &[Value], old: &[Value], path: &Path, errs: &mut Errs) {
    let without_seconds = |t: &Value| {
        let mut t = t.clone();
        set_or_remove(&mut t, "tolerationSeconds", None);
        canonical(&normalize(&t))
    };
    let kept: HashSet<String> = new.iter().map(without_seconds).collect();
    if old.iter().any(|o| !kept.contains(&without_seconds(o))) {
        errs.push(Cause::forbidden(path, "existing toleration can not be modified except its tolerationSeconds"));
        return;
    }
    tolerations(new, path, errs);
}

/// `v` as JSON text with every object's keys sorted, so values that compare equal
/// (`serde_json` maps compare regardless of key order) have the same text.
fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

fn only_deleted_scheduling_gates(new: &[Value], old: &[Value], path: &Path, errs: &mut Errs) {
    let old_names: HashSet<&str> = old.iter().map(|g| g.str_or_empty("name")).collect();
    for (i, g) in new.iter().enumerate() {
        let name = g.str_or_empty("name");
        if !old_names.contains(name) {
            errs.push(Cause::forbidden(
                &path.index(i).child("name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
}

// === templates ===

/// `ValidatePodTemplateSpec`: template labels and annotations (reported, as upstream
/// does, at `<template>.labels`), the pod spec, and no ephemeral containers.
pub(crate) fn pod_template(tpl: &Value, path: &Path, opts: SpecOpts, errs: &mut Errs) {
    let md = tpl.get("metadata").unwrap_or(&NULL);
    meta::labels(md.get("labels"), &path.child("labels"), errs);
    meta::annotations(md.get("annotations"), &path.child("annotations"), errs);
    let spec = tpl.get("spec").unwrap_or(&NULL);
    pod_spec(spec, &path.child("spec"), opts, errs);
    if !spec.get_arr("ephemeralContainers").is_empty() {
        errs.push(Cause::forbidden(&path.child("spec").child("ephemeralContainers"), "ephemeral containers not allowed in pod template"));
    }
}

// === the pod spec ===

/// `ValidatePodSpec`.
pub(crate) fn pod_spec(spec: &Value, path: &Path, opts: SpecOpts, errs: &mut Errs) {
    if !spec.has("terminationGracePeriodSeconds") {
        errs.push(Cause::required(&path.child("terminationGracePeriodSeconds")));
    }
    let grace = spec.get_i64("terminationGracePeriodSeconds");
    let restart = spec.str_or_empty("restartPolicy");
    let host_users = spec.get_bool("hostUsers").unwrap_or(true);
    let vols = volumes(spec.get_arr("volumes"), &path.child("volumes"), errs);
    let ctx = Ctx { vols: &vols, restart, host_users };

    // Regular containers.
    let cpath = path.child("containers");
    let containers = spec.get_arr("containers");
    if containers.is_empty() {
        errs.push(Cause::required(&cpath));
    }
    let mut names: HashSet<&str> = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = cpath.index(i);
        container_common(c, &p, &ctx, errs);
        let name = c.str_or_empty("name");
        if !names.insert(name) {
            errs.push(Cause::duplicate(&p.child("name"), &Value::from(name)));
        }
        if let Some(l) = c.get("lifecycle") {
            lifecycle(l, &p.child("lifecycle"), grace, errs);
        }
        probes(c, &p, grace, errs);
        if c.has("restartPolicy") {
            errs.push(Cause::forbidden(&p.child("restartPolicy"), "may not be set for non-init containers"));
        }
    }
    host_port_conflicts(containers, &cpath, errs);

    // Init containers share the name space with regular ones.
    let ipath = path.child("initContainers");
    for (i, c) in spec.get_arr("initContainers").iter().enumerate() {
        let p = ipath.index(i);
        container_common(c, &p, &ctx, errs);
        let restart_always = match c.get_str("restartPolicy") {
            None => false,
            Some("Always") => true,
            Some(other) => {
                errs.push(Cause::not_supported(&p.child("restartPolicy"), &Value::from(other), &["Always"]));
                false
            }
        };
        let name = c.str_or_empty("name");
        if names.contains(name) {
            errs.push(Cause::duplicate(&p.child("name"), &Value::from(name)));
        } else if !name.is_empty() {
            names.insert(name);
        }
        host_port_conflicts(std::slice::from_ref(c), &ipath, errs);
        if restart_always {
            if let Some(l) = c.get("lifecycle") {
                lifecycle(l, &p.child("lifecycle"), grace, errs);
            }
            probes(c, &p, grace, errs);
        } else {
            for key in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
                if c.has(key) {
                    errs.push(Cause::forbidden(&p.child(key), "may not be set for init containers without restartPolicy=Always"));
                }
            }
        }
    }

    // Ephemeral containers: names unique across all kinds, targets must exist.
    let epath = path.child("ephemeralContainers");
    let others: HashSet<&str> = names.clone();
    for (i, c) in spec.get_arr("ephemeralContainers").iter().enumerate() {
        let p = epath.index(i);
        container_common(c, &p, &ctx, errs);
        let name = c.str_or_empty("name");
        if !names.insert(name) {
            errs.push(Cause::duplicate(&p.child("name"), &Value::from(name)));
        }
        let target = c.str_or_empty("targetContainerName");
        if !target.is_empty() && !others.contains(target) {
            errs.push(not_found(&p.child("targetContainerName"), target));
        }
        for key in ["ports", "resources", "lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
            if c.has(key) && !semantic_eq(&c[key], &Value::Null) {
                errs.push(Cause::forbidden(&p.child(key), "cannot be set for an Ephemeral Container"));
            }
        }
    }

    // Host networking pins host ports to container ports.
    if spec.get_bool("hostNetwork") == Some(true) {
        for (i, c) in containers.iter().enumerate() {
            for (j, port) in c.get_arr("ports").iter().enumerate() {
                let hp = port.get_i64("hostPort").unwrap_or(0);
                let cp = port.get_i64("containerPort").unwrap_or(0);
                if (opts.is_pod || hp != 0) && hp != cp {
                    errs.push(Cause::invalid(
                        &cpath.index(i).child("ports").index(j).child("hostPort"),
                        &Value::from(hp),
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }

    enumerated(spec, "restartPolicy", path, &["Always", "OnFailure", "Never"], errs);
    enumerated(spec, "dnsPolicy", path, &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"], errs);
    meta::labels(spec.get("nodeSelector"), &path.child("nodeSelector"), errs);
    if let Some(sc) = spec.get("securityContext").filter(|v| !v.is_null()) {
        pod_security_context(spec, sc, path, errs);
    }
    for (i, s) in spec.get_arr("imagePullSecrets").iter().enumerate() {
        if s.as_object().is_some_and(|m| m.keys().any(|k| k != "name")) {
            errs.push(Cause::invalid(&path.child("imagePullSecrets").index(i), s, "only name may be set"));
        }
    }
    if let Some(a) = spec.get("affinity").filter(|v| !v.is_null()) {
        affinity(a, &path.child("affinity"), errs);
    }
    dns_config(spec, path, errs);
    for (i, g) in spec.get_arr("readinessGates").iter().enumerate() {
        qualified(g.str_or_empty("conditionType"), &path.child("readinessGates").index(i).child("conditionType"), errs);
    }
    let mut gates = HashSet::new();
    for (i, g) in spec.get_arr("schedulingGates").iter().enumerate() {
        let name = g.str_or_empty("name");
        qualified(name, &path.child("schedulingGates").index(i), errs);
        if !gates.insert(name) {
            errs.push(Cause::duplicate(&path.child("schedulingGates").index(i), &Value::from(name)));
        }
    }
    topology_spread(spec.get_arr("topologySpreadConstraints"), &path.child("topologySpreadConstraints"), errs);
    if spec.get_bool("hostUsers") == Some(false) {
        for key in ["hostNetwork", "hostPID", "hostIPC"] {
            if spec.get_bool(key) == Some(true) {
                let shown = match key {
                    "hostPID" => "HostPID",
                    "hostIPC" => "HostIPC",
                    k => k,
                };
                errs.push(Cause::forbidden(&path.child(shown), "when `pod.Spec.HostUsers` is false"));
            }
        }
    }
    for key in ["serviceAccountName", "nodeName", "priorityClassName"] {
        let v = spec.str_or_empty(key);
        if !v.is_empty() {
            for msg in NameRule::Subdomain.check(v, false) {
                errs.push(Cause::invalid(&path.child(key), &Value::from(v), msg));
            }
        }
    }
    if let Some(ads) = spec.get_i64("activeDeadlineSeconds") {
        if !(1..=MAX_INT32).contains(&ads) {
            errs.push(Cause::invalid(&path.child("activeDeadlineSeconds"), &Value::from(ads), inclusive_range(1, MAX_INT32)));
        }
    }
    for key in ["hostname", "subdomain"] {
        let v = spec.str_or_empty(key);
        if !v.is_empty() {
            dns_label(v, &path.child(key), errs);
        }
    }
    tolerations(spec.get_arr("tolerations"), &path.child("tolerations"), errs);
    for (i, ha) in spec.get_arr("hostAliases").iter().enumerate() {
        let p = path.child("hostAliases").index(i);
        ip(ha.str_or_empty("ip"), &p.child("ip"), errs);
        for (j, h) in ha.get_arr("hostnames").iter().enumerate() {
            subdomain(h.as_str().unwrap_or(""), &p.child("hostnames").index(j), errs);
        }
    }
    if let Some(rc) = spec.get_str("runtimeClassName") {
        subdomain(rc, &path.child("runtimeClassName"), errs);
    }
    if let Some(pp) = spec.get_str("preemptionPolicy") {
        one_of(pp, &path.child("preemptionPolicy"), &["PreemptLowerPriority", "Never"], errs);
    }
    if let Some(overhead) = spec.get("overhead").filter(|v| !v.is_null()) {
        resource_list(overhead, &path.child("overhead"), container_resource_name, errs);
    }
    if let Some(os) = spec.get("os").filter(|v| !v.is_null()) {
        let name = os.str_or_empty("name");
        if name.is_empty() {
            errs.push(Cause::required(&path.child("os").child("name")));
        } else if !matches!(name, "linux" | "windows") {
            errs.push(Cause::not_supported(&path.child("os").child("name"), &Value::from(name), &["linux", "windows"]));
        }
    }
}

/// What containers need to know about their pod.
struct Ctx<'a> {
    /// Valid volumes by name, with the kind of their source.
    vols: &'a HashMap<String, &'static str>,
    restart: &'a str,
    host_users: bool,
}

/// A required enum field: `Required value` when empty, `Unsupported value` otherwise.
fn enumerated(obj: &Value, key: &str, path: &Path, allowed: &[&str], errs: &mut Errs) {
    let v = obj.str_or_empty(key);
    let p = path.child(key);
    if v.is_empty() {
        errs.push(Cause::required(&p));
    } else if !allowed.contains(&v) {
        errs.push(Cause::not_supported(&p, &Value::from(v), allowed));
    }
}

fn one_of(v: &str, path: &Path, allowed: &[&str], errs: &mut Errs) {
    if v.is_empty() {
        errs.push(Cause::required(path));
    } else if !allowed.contains(&v) {
        errs.push(Cause::not_supported(path, &Value::from(v), allowed));
    }
}

pub(crate) fn dns_label(v: &str, path: &Path, errs: &mut Errs) {
    for msg in names::dns1123_label(v) {
        errs.push(Cause::invalid(path, &Value::from(v), msg));
    }
}

pub(crate) fn subdomain(v: &str, path: &Path, errs: &mut Errs) {
    for msg in names::dns1123_subdomain(v) {
        errs.push(Cause::invalid(path, &Value::from(v), msg));
    }
}

pub(crate) fn qualified(v: &str, path: &Path, errs: &mut Errs) {
    for msg in names::qualified_name(v) {
        errs.push(Cause::invalid(path, &Value::from(v), msg));
    }
}

pub(crate) fn ip(v: &str, path: &Path, errs: &mut Errs) {
    if names::parse_ip(v).is_none() {
        errs.push(Cause::invalid(path, &Value::from(v), names::IP_MSG));
    }
}

// === volumes ===

/// Every volume source key, in upstream's checking order, with the path segment
/// upstream reports "more than 1 volume type" at (including its `downwarAPI` typo).
const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// `ValidateVolumes`: returns the valid volumes by name with their source kind.
fn volumes(vols: &[Value], path: &Path, errs: &mut Errs) -> HashMap<String, &'static str> {
    let mut out = HashMap::new();
    for (i, vol) in vols.iter().enumerate() {
        let p = path.index(i);
        let mut el = Vec::new();
        let kind = volume_source(vol, &p, &mut el);
        let name = vol.str_or_empty("name");
        if name.is_empty() {
            el.push(Cause::required(&p.child("name")));
        } else {
            dns_label(name, &p.child("name"), &mut el);
        }
        if out.contains_key(name) {
            el.push(Cause::duplicate(&p.child("name"), &Value::from(name)));
        }
        if el.is_empty() {
            out.insert(name.to_string(), kind.unwrap_or("emptyDir"));
        } else {
            errs.extend(el);
        }
    }
    out
}

fn volume_source(src: &Value, path: &Path, errs: &mut Errs) -> Option<&'static str> {
    let mut found: Option<&'static str> = None;
    for (key, shown) in VOLUME_SOURCES {
        let Some(v) = src.get(*key).filter(|v| !v.is_null()) else { continue };
        if found.is_some() {
            errs.push(Cause::forbidden(&path.child(shown), "may not specify more than 1 volume type"));
            continue;
        }
        found = Some(key);
        let p = path.child(key);
        match *key {
            "emptyDir" => {
                if let Some(q) = v.get("sizeLimit") {
                    if Quantity::from_json(q).is_ok_and(|q| q.is_negative()) {
                        errs.push(Cause::forbidden(&p.child("sizeLimit"), "SizeLimit field must be a valid resource quantity"));
                    }
                }
            }
            "hostPath" => host_path(v, &p, errs),
            "secret" => {
                if v.str_or_empty("secretName").is_empty() {
                    errs.push(Cause::required(&p.child("secretName")));
                }
                file_mode(v.get("defaultMode"), &p.child("defaultMode"), errs);
                key_to_paths(v.get_arr("items"), &p.child("items"), errs);
            }
            "configMap" => {
                if v.str_or_empty("name").is_empty() {
                    errs.push(Cause::required(&p.child("name")));
                }
                file_mode(v.get("defaultMode"), &p.child("defaultMode"), errs);
                key_to_paths(v.get_arr("items"), &p.child("items"), errs);
            }
            "persistentVolumeClaim" if v.str_or_empty("claimName").is_empty() => {
                errs.push(Cause::required(&p.child("claimName")));
            }
            "nfs" => nfs(v, &p, errs),
            "downwardAPI" => {
                file_mode(v.get("defaultMode"), &p.child("defaultMode"), errs);
                for item in v.get_arr("items") {
                    downward_api_file(item, &p, errs);
                }
            }
            "projected" => projected(v, &p, errs),
            "csi" => {
                let driver = v.str_or_empty("driver");
                csi_driver(driver, &p.child("driver"), errs);
                if let Some(r) = v.get("nodePublishSecretRef").filter(|r| !r.is_null()) {
                    if r.str_or_empty("name").is_empty() {
                        errs.push(Cause::required(&p.child("nodePublishSecretRef").child("name")));
                    }
                }
            }
            "ephemeral" => match v.get("volumeClaimTemplate").filter(|t| !t.is_null()) {
                None => errs.push(Cause::required(&p.child("volumeClaimTemplate"))),
                Some(t) => {
                    let tp = p.child("volumeClaimTemplate");
                    let md = t.get("metadata").unwrap_or(&NULL);
                    meta::labels(md.get("labels"), &tp.child("metadata").child("labels"), errs);
                    meta::annotations(md.get("annotations"), &tp.child("metadata").child("annotations"), errs);
                    super::core::pvc_spec(t.get("spec").unwrap_or(&NULL), &tp.child("spec"), errs);
                }
            },
            "gitRepo" => {
                if v.str_or_empty("repository").is_empty() {
                    errs.push(Cause::required(&p.child("repository")));
                }
                local_descending_path(v.str_or_empty("directory"), &p.child("directory"), errs);
            }
            _ => {}
        }
    }
    if found.is_none() {
        errs.push(required_detail(path, "must specify a volume type"));
    }
    found
}

pub(crate) fn host_path(v: &Value, p: &Path, errs: &mut Errs) {
    let hp = v.str_or_empty("path");
    if hp.is_empty() {
        errs.push(Cause::required(&p.child("path")));
        return;
    }
    no_backsteps(hp, &p.child("path"), errs);
    if let Some(t) = v.get_str("type") {
        const TYPES: &[&str] = &["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"];
        if !TYPES.contains(&t) {
            errs.push(Cause::not_supported(&p.child("type"), &Value::from(t), TYPES));
        }
    }
}

pub(crate) fn nfs(v: &Value, p: &Path, errs: &mut Errs) {
    if v.str_or_empty("server").is_empty() {
        errs.push(Cause::required(&p.child("server")));
    }
    let path = v.str_or_empty("path");
    if path.is_empty() {
        errs.push(Cause::required(&p.child("path")));
    }
    if !path.starts_with('/') {
        errs.push(Cause::invalid(&p.child("path"), &Value::from(path), "must be an absolute path"));
    }
}

pub(crate) fn csi_driver(driver: &str, p: &Path, errs: &mut Errs) {
    if driver.is_empty() {
        errs.push(Cause::required(p));
    }
    if driver.len() > 63 {
        errs.push(Cause::too_long(p, 63));
    }
    for msg in names::dns1123_subdomain(&driver.to_lowercase()) {
        errs.push(Cause::invalid(p, &Value::from(driver), msg));
    }
}

fn file_mode(mode: Option<&Value>, path: &Path, errs: &mut Errs) {
    if let Some(m) = mode.and_then(Value::as_i64) {
        if !(0..=0o777).contains(&m) {
            errs.push(Cause::invalid(path, &Value::from(m), FILE_MODE_MSG));
        }
    }
}

fn key_to_paths(items: &[Value], path: &Path, errs: &mut Errs) {
    for (i, kp) in items.iter().enumerate() {
        let p = path.index(i);
        if kp.str_or_empty("key").is_empty() {
            errs.push(Cause::required(&p.child("key")));
        }
        let target = kp.str_or_empty("path");
        if target.is_empty() {
            errs.push(Cause::required(&p.child("path")));
        }
        local_non_reserved_path(target, &p.child("path"), errs);
        file_mode(kp.get("mode"), &p.child("mode"), errs);
    }
}

fn downward_api_file(item: &Value, p: &Path, errs: &mut Errs) {
    let target = item.str_or_empty("path");
    if target.is_empty() {
        errs.push(Cause::required(&p.child("path")));
    }
    local_non_reserved_path(target, &p.child("path"), errs);
    match (item.get("fieldRef").filter(|v| !v.is_null()), item.get("resourceFieldRef").filter(|v| !v.is_null())) {
        (Some(fr), other) => {
            object_field_selector(fr, VOLUME_DOWNWARD_PATHS, &p.child("fieldRef"), errs);
            if other.is_some() {
                errs.push(Cause::invalid(p, &Value::from("resource"), "fieldRef and resourceFieldRef can not be specified simultaneously"));
            }
        }
        (None, Some(rf)) => resource_field_selector(rf, &p.child("resourceFieldRef"), true, errs),
        (None, None) => errs.push(required_detail(p, "one of fieldRef and resourceFieldRef is required")),
    }
    file_mode(item.get("mode"), &p.child("mode"), errs);
}

fn projected(v: &Value, p: &Path, errs: &mut Errs) {
    file_mode(v.get("defaultMode"), &p.child("defaultMode"), errs);
    let mut paths = HashSet::new();
    for (i, src) in v.get_arr("sources").iter().enumerate() {
        let sp = p.child("sources").index(i);
        let mut n = 0;
        for kind in ["secret", "configMap"] {
            if let Some(s) = src.get(kind).filter(|s| !s.is_null()) {
                n += 1;
                let kp = sp.child(kind);
                if s.str_or_empty("name").is_empty() {
                    errs.push(Cause::required(&kp.child("name")));
                }
                key_to_paths(s.get_arr("items"), &kp.child("items"), errs);
                for item in s.get_arr("items") {
                    let path = item.str_or_empty("path");
                    if !path.is_empty() && !paths.insert(path.to_string()) {
                        errs.push(Cause::invalid(p, &Value::from(s.str_or_empty("name")), "conflicting duplicate paths"));
                    }
                }
            }
        }
        if let Some(d) = src.get("downwardAPI").filter(|s| !s.is_null()) {
            n += 1;
            for item in d.get_arr("items") {
                downward_api_file(item, &sp.child("downwardAPI"), errs);
            }
        }
        if let Some(t) = src.get("serviceAccountToken").filter(|s| !s.is_null()) {
            n += 1;
            let tp = sp.child("serviceAccountToken");
            if let Some(exp) = t.get_i64("expirationSeconds") {
                if exp < 600 {
                    errs.push(Cause::invalid(
                        &tp.child("expirationSeconds"),
                        &Value::from(exp),
                        "may not specify a duration less than 10 minutes",
                    ));
                }
                if exp > 1 << 32 {
                    errs.push(Cause::invalid(
                        &tp.child("expirationSeconds"),
                        &Value::from(exp),
                        "may not specify a duration larger than 2^32 seconds",
                    ));
                }
            }
            if t.str_or_empty("path").is_empty() {
                errs.push(Cause::required(&tp.child("path")));
            }
        }
        if src.get("clusterTrustBundle").is_some_and(|s| !s.is_null()) {
            n += 1;
        }
        if n > 1 {
            errs.push(Cause::forbidden(&sp, "may not specify more than 1 volume type per source"));
        }
    }
}

fn no_backsteps(target: &str, path: &Path, errs: &mut Errs) {
    if target.split('/').any(|p| p == "..") {
        errs.push(Cause::invalid(path, &Value::from(target), "must not contain '..'"));
    }
}

fn local_descending_path(target: &str, path: &Path, errs: &mut Errs) {
    if target.starts_with('/') {
        errs.push(Cause::invalid(path, &Value::from(target), "must be a relative path"));
    }
    no_backsteps(target, path, errs);
}

fn local_non_reserved_path(target: &str, path: &Path, errs: &mut Errs) {
    local_descending_path(target, path, errs);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(Cause::invalid(path, &Value::from(target), "must not start with '..'"));
    }
}

// === containers ===

/// `validateContainerCommon`: what every kind of container must satisfy.
fn container_common(c: &Value, path: &Path, ctx: &Ctx<'_>, errs: &mut Errs) {
    let name = c.str_or_empty("name");
    if name.is_empty() {
        errs.push(Cause::required(&path.child("name")));
    } else {
        dns_label(name, &path.child("name"), errs);
    }
    if c.str_or_empty("image").is_empty() {
        errs.push(Cause::required(&path.child("image")));
    }
    enumerated(c, "terminationMessagePolicy", path, &["File", "FallbackToLogsOnError"], errs);
    container_ports(c.get_arr("ports"), &path.child("ports"), errs);
    env(c.get_arr("env"), &path.child("env"), errs);
    env_from(c.get_arr("envFrom"), &path.child("envFrom"), errs);
    let device_names: HashMap<&str, &str> =
        c.get_arr("volumeDevices").iter().map(|d| (d.str_or_empty("name"), d.str_or_empty("devicePath"))).collect();
    let mount_names: HashMap<&str, &str> =
        c.get_arr("volumeMounts").iter().map(|m| (m.str_or_empty("name"), m.str_or_empty("mountPath"))).collect();
    volume_mounts(c, &device_names, &path.child("volumeMounts"), ctx, errs);
    volume_devices(c.get_arr("volumeDevices"), &mount_names, &path.child("volumeDevices"), ctx, errs);
    enumerated(c, "imagePullPolicy", path, &["Always", "IfNotPresent", "Never"], errs);
    if let Some(r) = c.get("resources").filter(|v| !v.is_null()) {
        resource_requirements(r, &path.child("resources"), errs);
    }
    resize_policy(c.get_arr("resizePolicy"), &path.child("resizePolicy"), ctx.restart, errs);
    if let Some(sc) = c.get("securityContext").filter(|v| !v.is_null()) {
        security_context(sc, &path.child("securityContext"), ctx.host_users, errs);
    }
}

fn container_ports(ports: &[Value], path: &Path, errs: &mut Errs) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let name = port.str_or_empty("name");
        if !name.is_empty() {
            let msgs = names::port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(Cause::invalid(&p.child("name"), &Value::from(name), msg));
                }
            } else if !names.insert(name) {
                errs.push(Cause::duplicate(&p.child("name"), &Value::from(name)));
            }
        }
        match port.get_i64("containerPort").unwrap_or(0) {
            0 => errs.push(Cause::required(&p.child("containerPort"))),
            n => {
                for msg in names::port_num(n) {
                    errs.push(Cause::invalid(&p.child("containerPort"), &Value::from(n), msg));
                }
            }
        }
        let hp = port.get_i64("hostPort").unwrap_or(0);
        if hp != 0 {
            for msg in names::port_num(hp) {
                errs.push(Cause::invalid(&p.child("hostPort"), &Value::from(hp), msg));
            }
        }
        protocol(port, &p, errs);
    }
}

/// A required `protocol` among TCP, UDP and SCTP.
pub(crate) fn protocol(port: &Value, p: &Path, errs: &mut Errs) {
    one_of(port.str_or_empty("protocol"), &p.child("protocol"), &["SCTP", "TCP", "UDP"], errs);
}

/// `AccumulateUniqueHostPorts`.
fn host_port_conflicts(containers: &[Value], path: &Path, errs: &mut Errs) {
    let mut seen = HashSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in c.get_arr("ports").iter().enumerate() {
            let hp = port.get_i64("hostPort").unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!("{}/{}/{}", port.str_or_empty("protocol"), port.str_or_empty("hostIP"), hp);
            if !seen.insert(key.clone()) {
                errs.push(Cause::duplicate(&path.index(ci).child("ports").index(pi).child("hostPort"), &Value::from(key)));
            }
        }
    }
}

const ENV_DOWNWARD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const VOLUME_DOWNWARD_PATHS: &[&str] = &["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"];
/// What `ConvertDownwardAPIFieldLabel` accepts for v1 pods.
const CONVERTIBLE_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const RESOURCE_FIELD_PATHS: &[&str] =
    &["limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu", "requests.ephemeral-storage", "requests.memory"];

fn env(vars: &[Value], path: &Path, errs: &mut Errs) {
    for (i, ev) in vars.iter().enumerate() {
        let p = path.index(i);
        let name = ev.str_or_empty("name");
        if name.is_empty() {
            errs.push(Cause::required(&p.child("name")));
        } else {
            for msg in names::env_var_name(name) {
                errs.push(Cause::invalid(&p.child("name"), &Value::from(name), msg));
            }
        }
        let Some(from) = ev.get("valueFrom").filter(|v| !v.is_null()) else { continue };
        let vp = p.child("valueFrom");
        let mut n = 0;
        if let Some(fr) = from.get("fieldRef").filter(|v| !v.is_null()) {
            n += 1;
            object_field_selector(fr, ENV_DOWNWARD_PATHS, &vp.child("fieldRef"), errs);
        }
        if let Some(rf) = from.get("resourceFieldRef").filter(|v| !v.is_null()) {
            n += 1;
            resource_field_selector(rf, &vp.child("resourceFieldRef"), false, errs);
        }
        for kind in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = from.get(kind).filter(|v| !v.is_null()) {
                n += 1;
                let kp = vp.child(kind);
                let name = r.str_or_empty("name");
                for msg in NameRule::Subdomain.check(name, false) {
                    errs.push(Cause::invalid(&kp.child("name"), &Value::from(name), msg));
                }
                let key = r.str_or_empty("key");
                if key.is_empty() {
                    errs.push(Cause::required(&kp.child("key")));
                } else {
                    for msg in names::config_map_key(key) {
                        errs.push(Cause::invalid(&kp.child("key"), &Value::from(key), msg));
                    }
                }
            }
        }
        if n == 0 {
            errs.push(Cause::invalid(
                &vp,
                &Value::from(""),
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !ev.str_or_empty("value").is_empty() {
            errs.push(Cause::invalid(&vp, &Value::from(""), "may not be specified when `value` is not empty"));
        } else if n > 1 {
            errs.push(Cause::invalid(&vp, &Value::from(""), "may not have more than one field specified at a time"));
        }
    }
}

fn object_field_selector(fs: &Value, allowed: &[&str], path: &Path, errs: &mut Errs) {
    let api_version = fs.str_or_empty("apiVersion");
    if api_version.is_empty() {
        errs.push(Cause::required(&path.child("apiVersion")));
        return;
    }
    let field_path = fs.str_or_empty("fieldPath");
    if field_path.is_empty() {
        errs.push(Cause::required(&path.child("fieldPath")));
        return;
    }
    let (base, subscript) = match field_path.split_once('[') {
        Some((b, rest)) if rest.ends_with(']') => {
            let inner = &rest[..rest.len() - 1];
            let inner = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).unwrap_or(inner);
            (b, Some(inner))
        }
        _ => (field_path, None),
    };
    let convert_err = if api_version != "v1" {
        Some(format!("unsupported pod version: {api_version}"))
    } else if !CONVERTIBLE_PATHS.contains(&base) || (subscript.is_some() && !matches!(base, "metadata.annotations" | "metadata.labels")) {
        Some(format!("field label not supported: {field_path}"))
    } else {
        None
    };
    if let Some(e) = convert_err {
        errs.push(Cause::invalid(&path.child("fieldPath"), &Value::from(field_path), format!("error converting fieldPath: {e}")));
        return;
    }
    match (base, subscript) {
        ("metadata.annotations", Some(k)) => qualified(&k.to_lowercase(), path, errs),
        ("metadata.labels", Some(k)) => qualified(k, path, errs),
        (_, Some(_)) => errs.push(Cause::invalid(path, &Value::from(base), "does not support subscript")),
        (_, None) if !allowed.contains(&base) => errs.push(Cause::not_supported(&path.child("fieldPath"), &Value::from(base), allowed)),
        _ => {}
    }
}

fn resource_field_selector(rf: &Value, path: &Path, volume: bool, errs: &mut Errs) {
    let resource = rf.str_or_empty("resource");
    if volume && rf.str_or_empty("containerName").is_empty() {
        errs.push(Cause::required(&path.child("containerName")));
    } else if resource.is_empty() {
        errs.push(Cause::required(&path.child("resource")));
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        errs.push(Cause::not_supported(&path.child("resource"), &Value::from(resource), RESOURCE_FIELD_PATHS));
    }
    if let Some(d) = rf.get("divisor") {
        let divisor = Quantity::from_json(d).ok();
        if divisor.is_some_and(|q| q != Quantity::zero()) {
            let shown = d.as_str().map(String::from).unwrap_or_else(|| d.to_string());
            let (ok, what): (&[&str], &str) = match resource {
                "limits.cpu" | "requests.cpu" => (&["1m", "1"], "only divisor's values 1m and 1 are supported with the cpu resource"),
                "limits.memory" | "requests.memory" => (MEMORY_DIVISORS, "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource"),
                "limits.ephemeral-storage" | "requests.ephemeral-storage" => (MEMORY_DIVISORS, "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the local ephemeral storage resource"),
                _ => (&[], ""),
            };
            if !what.is_empty() && !ok.contains(&shown.as_str()) {
                errs.push(Cause::invalid(&path.child("divisor"), &Value::from(resource), what));
            }
        }
    }
}

const MEMORY_DIVISORS: &[&str] = &["1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei"];

fn env_from(sources: &[Value], path: &Path, errs: &mut Errs) {
    for (i, ev) in sources.iter().enumerate() {
        let p = path.index(i);
        let prefix = ev.str_or_empty("prefix");
        if !prefix.is_empty() {
            for msg in names::env_var_name(prefix) {
                errs.push(Cause::invalid(&p.child("prefix"), &Value::from(prefix), msg));
            }
        }
        let mut n = 0;
        for kind in ["configMapRef", "secretRef"] {
            if let Some(r) = ev.get(kind).filter(|v| !v.is_null()) {
                n += 1;
                let name = r.str_or_empty("name");
                if name.is_empty() {
                    errs.push(Cause::required(&p.child(kind).child("name")));
                } else {
                    for msg in NameRule::Subdomain.check(name, true) {
                        errs.push(Cause::invalid(&p.child(kind).child("name"), &Value::from(name), msg));
                    }
                }
            }
        }
        if n == 0 {
            errs.push(Cause::invalid(path, &Value::from(""), "must specify one of: `configMapRef` or `secretRef`"));
        } else if n > 1 {
            errs.push(Cause::invalid(path, &Value::from(""), "may not have more than one field specified at a time"));
        }
    }
}

fn volume_mounts(c: &Value, devices: &HashMap<&str, &str>, path: &Path, ctx: &Ctx<'_>, errs: &mut Errs) {
    let mut mount_points = HashSet::new();
    let privileged = c.pointer("/securityContext/privileged").and_then(Value::as_bool) == Some(true);
    for (i, m) in c.get_arr("volumeMounts").iter().enumerate() {
        let p = path.index(i);
        let name = m.str_or_empty("name");
        let mount_path = m.str_or_empty("mountPath");
        if name.is_empty() {
            errs.push(Cause::required(&p.child("name")));
        }
        if !ctx.vols.contains_key(name) {
            errs.push(not_found(&p.child("name"), name));
        }
        if mount_path.is_empty() {
            errs.push(Cause::required(&p.child("mountPath")));
        }
        if !mount_points.insert(mount_path) {
            errs.push(Cause::invalid(&p.child("mountPath"), &Value::from(mount_path), "must be unique"));
        }
        if devices.contains_key(name) {
            errs.push(Cause::invalid(&p.child("name"), &Value::from(name), "must not already exist in volumeDevices"));
        }
        if devices.values().any(|d| *d == mount_path) {
            errs.push(Cause::invalid(&p.child("mountPath"), &Value::from(mount_path), "must not already exist as a path in volumeDevices"));
        }
        let sub_path = m.str_or_empty("subPath");
        if !sub_path.is_empty() {
            local_descending_path(sub_path, &path.child("subPath"), errs);
        }
        let sub_path_expr = m.str_or_empty("subPathExpr");
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(Cause::invalid(
                    &p.child("subPathExpr"),
                    &Value::from(sub_path_expr),
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(sub_path_expr, &path.child("subPathExpr"), errs);
        }
        if let Some(mp) = m.get_str("mountPropagation") {
            let mpp = path.child("mountPropagation");
            match mp {
                "None" | "HostToContainer" => {}
                "Bidirectional" if !privileged => {
                    errs.push(Cause::forbidden(&mpp, "Bidirectional mount propagation is available only to privileged containers"))
                }
                "Bidirectional" => {}
                other => errs.push(Cause::not_supported(&mpp, &Value::from(other), &["Bidirectional", "HostToContainer", "None"])),
            }
        }
    }
}

fn volume_devices(devices: &[Value], mounts: &HashMap<&str, &str>, path: &Path, ctx: &Ctx<'_>, errs: &mut Errs) {
    let mut paths = HashSet::new();
    let mut names = HashSet::new();
    for (i, d) in devices.iter().enumerate() {
        let p = path.index(i);
        let name = d.str_or_empty("name");
        let dev_path = d.str_or_empty("devicePath");
        if name.is_empty() {
            errs.push(Cause::required(&p.child("name")));
        }
        if names.contains(name) {
            errs.push(Cause::invalid(&p.child("name"), &Value::from(name), "must be unique"));
        }
        match ctx.vols.get(name) {
            Some(kind) if !matches!(*kind, "persistentVolumeClaim" | "ephemeral") => errs.push(Cause::invalid(
                &p.child("name"),
                &Value::from(name),
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            )),
            Some(_) => {}
            None => errs.push(not_found(&p.child("name"), name)),
        }
        if dev_path.is_empty() {
            errs.push(Cause::required(&p.child("devicePath")));
        }
        if paths.contains(dev_path) {
            errs.push(Cause::invalid(&p.child("devicePath"), &Value::from(dev_path), "must be unique"));
        }
        if dev_path.split('/').any(|s| s == "..") {
            errs.push(Cause::invalid(&p.child("devicePath"), &Value::from(dev_path), "can not contain backsteps ('..')"));
        } else {
            paths.insert(dev_path);
        }
        if mounts.contains_key(name) {
            errs.push(Cause::invalid(&p.child("name"), &Value::from(name), "must not already exist in volumeMounts"));
        }
        if mounts.values().any(|m| *m == dev_path) {
            errs.push(Cause::invalid(&p.child("devicePath"), &Value::from(dev_path), "must not already exist as a path in volumeMounts"));
        }
        if !name.is_empty() {
            names.insert(name);
        }
    }
}

// === resources ===

const STANDARD_CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];
/// `standardResources` in `pkg/apis/core/helper`.
const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

pub(crate) fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// `IsNativeResource`: unprefixed or in the `kubernetes.io` domain.
pub(crate) fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// Requests may be below limits (`IsOvercommitAllowed`).
pub(crate) fn overcommit_allowed(name: &str) -> bool {
    is_native(name) && !is_hugepages(name)
}

/// `validateResourceName`.
pub(crate) fn resource_name(name: &str, path: &Path, errs: &mut Errs) -> bool {
    let before = errs.len();
    qualified(name, path, errs);
    if errs.len() != before {
        return false;
    }
    let standard = STANDARD_RESOURCES.contains(&name)
        || is_hugepages(name)
        || name.starts_with("requests.hugepages-")
        || name.starts_with("limits.hugepages-");
    if !name.contains('/') && !standard {
        errs.push(Cause::invalid(path, &Value::from(name), "must be a standard resource type or fully qualified"));
        return false;
    }
    true
}

/// `validateContainerResourceName`.
fn container_resource_name(name: &str, path: &Path, errs: &mut Errs) {
    resource_name(name, path, errs);
    if !name.contains('/') {
        if !(STANDARD_CONTAINER_RESOURCES.contains(&name) || is_hugepages(name)) {
            errs.push(Cause::invalid(path, &Value::from(name), "must be a standard resource for containers"));
        }
    } else if !is_native(name) && (name.starts_with("requests.") || !names::qualified_name(&format!("requests.{name}")).is_empty()) {
        errs.push(Cause::invalid(path, &Value::from(name), "doesn't follow extended resource name standard"));
    }
}

/// Parses a quantity in a resource list, reporting what upstream's decoder and
/// `ValidateResourceQuantityValue` would: bad syntax, negative values, and
/// fractions of whole-unit resources.
pub(crate) fn resource_quantity(name: &str, q: &Value, path: &Path, errs: &mut Errs) -> Option<Quantity> {
    let shown = q.as_str().map(String::from).unwrap_or_else(|| q.to_string());
    let Ok(parsed) = Quantity::from_json(q) else {
        errs.push(Cause::invalid(path, &Value::from(shown), QUANTITY_FORMAT_ERROR));
        return None;
    };
    if parsed.is_negative() {
        errs.push(Cause::invalid(path, &Value::from(shown.as_str()), NEGATIVE));
    }
    let integer_resource = !is_native(name)
        || matches!(
            name,
            "pods"
                | "services"
                | "replicationcontrollers"
                | "resourcequotas"
                | "secrets"
                | "configmaps"
                | "persistentvolumeclaims"
                | "services.nodeports"
                | "services.loadbalancers"
        )
        || name.starts_with("count/");
    if integer_resource && !parsed.is_integer() {
        errs.push(invalid_go(path, &shown, "must be an integer"));
    }
    Some(parsed)
}

fn resource_list(list: &Value, path: &Path, name_fn: fn(&str, &Path, &mut Errs), errs: &mut Errs) {
    for (k, q) in list.as_object().into_iter().flatten() {
        let p = path.key(k);
        name_fn(k, &p, errs);
        resource_quantity(k, q, &p, errs);
    }
}

/// `ValidateContainerResourceRequirements`.
fn resource_requirements(r: &Value, path: &Path, errs: &mut Errs) {
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let mut limits: HashMap<&str, (Quantity, String)> = HashMap::new();
    let mut lim_cpu_mem = false;
    let mut req_cpu_mem = false;
    let mut hugepages = false;
    for (k, q) in r.get_obj("limits").into_iter().flatten() {
        let p = lim_path.key(k);
        container_resource_name(k, &p, errs);
        if let Some(parsed) = resource_quantity(k, q, &p, errs) {
            limits.insert(k, (parsed, q.as_str().map(String::from).unwrap_or_else(|| q.to_string())));
        }
        hugepages |= is_hugepages(k);
        lim_cpu_mem |= matches!(k.as_str(), "cpu" | "memory");
    }
    for (k, q) in r.get_obj("requests").into_iter().flatten() {
        let p = req_path.key(k);
        container_resource_name(k, &p, errs);
        let shown = q.as_str().map(String::from).unwrap_or_else(|| q.to_string());
        if let Some(parsed) = resource_quantity(k, q, &p, errs) {
            match limits.get(k.as_str()) {
                Some((limit, limit_shown)) => {
                    if parsed != *limit && !overcommit_allowed(k) {
                        errs.push(Cause::invalid(
                            &req_path,
                            &Value::from(shown.as_str()),
                            format!("must be equal to {k} limit of {limit_shown}"),
                        ));
                    } else if parsed > *limit {
                        errs.push(Cause::invalid(
                            &req_path,
                            &Value::from(shown.as_str()),
                            format!("must be less than or equal to {k} limit of {limit_shown}"),
                        ));
                    }
                }
                None if !overcommit_allowed(k) => {
                    errs.push(required_detail(&lim_path, "Limit must be set for non overcommitable resources"))
                }
                None => {}
            }
        }
        hugepages |= is_hugepages(k);
        req_cpu_mem |= matches!(k.as_str(), "cpu" | "memory");
    }
    if hugepages && !lim_cpu_mem && !req_cpu_mem {
        errs.push(Cause::forbidden(path, "HugePages require cpu or memory"));
    }
}

fn resize_policy(list: &[Value], path: &Path, restart: &str, errs: &mut Errs) {
    let mut seen = HashSet::new();
    for (i, p) in list.iter().enumerate() {
        let name = p.str_or_empty("resourceName");
        if !seen.insert(name) {
            errs.push(Cause::duplicate(&path.index(i), &Value::from(name)));
        }
        one_of(name, path, &["cpu", "memory"], errs);
        let policy = p.str_or_empty("restartPolicy");
        one_of(policy, path, &["NotRequired", "RestartContainer"], errs);
        if restart == "Never" && policy != "NotRequired" {
            errs.push(Cause::invalid(path, &Value::from(policy), "must be 'NotRequired' when `restartPolicy` is 'Never'"));
        }
    }
}

// === probes and handlers ===

fn probes(c: &Value, path: &Path, grace: Option<i64>, errs: &mut Errs) {
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = c.get(key).filter(|v| !v.is_null()) else { continue };
        let p = path.child(key);
        handler(probe, &p, grace, false, errs);
        for field in ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] {
            nonnegative(probe.get(field), &p.child(field), errs);
        }
        if let Some(g) = probe.get_i64("terminationGracePeriodSeconds") {
            if g <= 0 {
                errs.push(Cause::invalid(&p.child("terminationGracePeriodSeconds"), &Value::from(g), "must be greater than 0"));
            }
        }
        match key {
            "readinessProbe" => {
                if let Some(g) = probe.get("terminationGracePeriodSeconds").filter(|v| !v.is_null()) {
                    errs.push(Cause::invalid(&p.child("terminationGracePeriodSeconds"), g, "must not be set for readinessProbes"));
                }
            }
            _ => {
                let st = probe.get_i64("successThreshold").unwrap_or(0);
                if st != 1 {
                    errs.push(Cause::invalid(&p.child("successThreshold"), &Value::from(st), "must be 1"));
                }
            }
        }
    }
}

fn lifecycle(l: &Value, path: &Path, grace: Option<i64>, errs: &mut Errs) {
    for key in ["postStart", "preStop"] {
        if let Some(h) = l.get(key).filter(|v| !v.is_null()) {
            handler(h, &path.child(key), grace, true, errs);
        }
    }
}

/// `validateHandler`: exactly one action; probes take `grpc`, lifecycle hooks `sleep`.
fn handler(h: &Value, path: &Path, grace: Option<i64>, lifecycle: bool, errs: &mut Errs) {
    let kinds: &[&str] = if lifecycle { &["exec", "httpGet", "tcpSocket", "sleep"] } else { &["exec", "httpGet", "tcpSocket", "grpc"] };
    let mut n = 0;
    for kind in kinds {
        let Some(a) = h.get(*kind).filter(|v| !v.is_null()) else { continue };
        let p = path.child(kind);
        if n > 0 {
            errs.push(Cause::forbidden(&p, "may not specify more than 1 handler type"));
            continue;
        }
        n += 1;
        match *kind {
            "exec" if a.get_arr("command").is_empty() => errs.push(Cause::required(&p.child("command"))),
            "httpGet" => {
                if a.str_or_empty("path").is_empty() {
                    errs.push(Cause::required(&p.child("path")));
                }
                port_num_or_name(a.get("port"), &p.child("port"), errs);
                let scheme = a.str_or_empty("scheme");
                if !matches!(scheme, "HTTP" | "HTTPS") {
                    errs.push(Cause::not_supported(&p.child("scheme"), &Value::from(scheme), &["HTTP", "HTTPS"]));
                }
                for header in a.get_arr("httpHeaders") {
                    let name = header.str_or_empty("name");
                    for msg in names::http_header_name(name) {
                        errs.push(Cause::invalid(&p.child("httpHeaders"), &Value::from(name), msg));
                    }
                }
            }
            "tcpSocket" => port_num_or_name(a.get("port"), &p.child("port"), errs),
            "grpc" => {
                let port = a.get_i64("port").unwrap_or(0);
                for msg in names::port_num(port) {
                    errs.push(Cause::invalid(&p.child("port"), &Value::from(port), msg));
                }
            }
            "sleep" => {
                let secs = a.get_i64("seconds").unwrap_or(0);
                if let Some(g) = grace {
                    if secs < 0 || secs > g {
                        errs.push(Cause::invalid(
                            &p,
                            &Value::from(secs),
                            format!("must be non-negative and less than terminationGracePeriodSeconds ({g})"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if n == 0 {
        errs.push(required_detail(path, "must specify a handler type"));
    }
}

/// `ValidatePortNumOrName` for an `IntOrString` port.
pub(crate) fn port_num_or_name(port: Option<&Value>, path: &Path, errs: &mut Errs) {
    match port {
        Some(Value::String(s)) => {
            for msg in names::port_name(s) {
                errs.push(Cause::invalid(path, &Value::from(s.as_str()), msg));
            }
        }
        other => {
            let n = other.and_then(Value::as_i64).unwrap_or(0);
            for msg in names::port_num(n) {
                errs.push(Cause::invalid(path, &Value::from(n), msg));
            }
        }
    }
}

// === security ===

fn id_range(v: Option<&Value>, path: &Path, errs: &mut Errs) {
    if let Some(n) = v.and_then(Value::as_i64) {
        if !(0..=MAX_INT32).contains(&n) {
            errs.push(Cause::invalid(path, &Value::from(n), inclusive_range(0, MAX_INT32)));
        }
    }
}

fn seccomp_profile(sp: Option<&Value>, path: &Path, errs: &mut Errs) {
    let Some(sp) = sp.filter(|v| !v.is_null()) else { return };
    let t = sp.str_or_empty("type");
    match t {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => errs.push(required_detail(&path.child("type"), "type is required when seccompProfile is set")),
        other => errs.push(Cause::not_supported(&path.child("type"), &Value::from(other), &["Localhost", "RuntimeDefault", "Unconfined"])),
    }
    match (t, sp.get_str("localhostProfile")) {
        ("Localhost", None) => errs.push(required_detail(&path.child("localhostProfile"), "must be set when seccomp type is Localhost")),
        ("Localhost", Some(p)) => local_descending_path(p, &path.child("localhostProfile"), errs),
        (_, Some(_)) => errs.push(Cause::invalid(&path.child("localhostProfile"), sp, "can only be set when seccomp type is Localhost")),
        _ => {}
    }
}

/// `ValidateSecurityContext` for a container.
fn security_context(sc: &Value, path: &Path, host_users: bool, errs: &mut Errs) {
    id_range(sc.get("runAsUser"), &path.child("runAsUser"), errs);
    id_range(sc.get("runAsGroup"), &path.child("runAsGroup"), errs);
    if let Some(pm) = sc.get_str("procMount") {
        if !matches!(pm, "Default" | "Unmasked") {
            errs.push(Cause::not_supported(&path.child("procMount"), &Value::from(pm), &["Default", "Unmasked"]));
        }
        if host_users && pm == "Unmasked" {
            errs.push(Cause::invalid(&path.child("procMount"), &Value::from(pm), "`hostUsers` must be false to use `Unmasked`"));
        }
    }
    seccomp_profile(sc.get("seccompProfile"), &path.child("seccompProfile"), errs);
    if sc.get_bool("allowPrivilegeEscalation") == Some(false) {
        if sc.get_bool("privileged") == Some(true) {
            errs.push(Cause::invalid(path, sc, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"));
        }
        let adds = sc.get("capabilities").map(|c| c.get_arr("add")).unwrap_or(&[]);
        if adds.iter().any(|c| c.as_str() == Some("CAP_SYS_ADMIN")) {
            errs.push(Cause::invalid(path, sc, "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"));
        }
    }
}

/// `validatePodSpecSecurityContext`.
fn pod_security_context(spec: &Value, sc: &Value, spec_path: &Path, errs: &mut Errs) {
    let path = spec_path.child("securityContext");
    id_range(sc.get("fsGroup"), &path.child("fsGroup"), errs);
    id_range(sc.get("runAsUser"), &path.child("runAsUser"), errs);
    id_range(sc.get("runAsGroup"), &path.child("runAsGroup"), errs);
    for (i, g) in sc.get_arr("supplementalGroups").iter().enumerate() {
        id_range(Some(g), &path.child("supplementalGroups").index(i), errs);
    }
    if spec.get_bool("shareProcessNamespace") == Some(true) && spec.get_bool("hostPID") == Some(true) {
        errs.push(Cause::invalid(
            &spec_path.child("shareProcessNamespace"),
            &Value::Bool(true),
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    if let Some(p) = sc.get_str("fsGroupChangePolicy") {
        if !matches!(p, "Always" | "OnRootMismatch") {
            errs.push(Cause::not_supported(&path.child("fsGroupChangePolicy"), &Value::from(p), &["Always", "OnRootMismatch"]));
        }
    }
    if let Some(p) = sc.get_str("supplementalGroupsPolicy") {
        if !matches!(p, "Merge" | "Strict") {
            errs.push(Cause::not_supported(&path.child("supplementalGroupsPolicy"), &Value::from(p), &["Merge", "Strict"]));
        }
    }
    seccomp_profile(sc.get("seccompProfile"), &path.child("seccompProfile"), errs);
    for (i, s) in sc.get_arr("sysctls").iter().enumerate() {
        let name = s.str_or_empty("name");
        let p = path.child("sysctls").index(i).child("name");
        if name.is_empty() {
            errs.push(Cause::required(&p));
        } else if !is_sysctl_name(name) {
            errs.push(Cause::invalid(
                &p,
                &Value::from(name),
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        }
    }
}

fn is_sysctl_name(name: &str) -> bool {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| is_lower_or_digit(c) || c == '-' || c == '_')
            && s.starts_with(is_lower_or_digit)
            && s.ends_with(is_lower_or_digit)
    };
    name.len() <= 253 && name.split(['.', '/']).all(segment_ok)
}

fn is_lower_or_digit(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

// === scheduling ===

/// `ValidateTolerations`.
pub(crate) fn tolerations(list: &[Value], path: &Path, errs: &mut Errs) {
    for (i, t) in list.iter().enumerate() {
        let p = path.index(i);
        let key = t.str_or_empty("key");
        let op = t.str_or_empty("operator");
        let effect = t.str_or_empty("effect");
        let value = t.str_or_empty("value");
        if !key.is_empty() {
            label_key(key, &p.child("key"), errs);
        }
        if key.is_empty() && op != "Exists" {
            errs.push(Cause::invalid(
                &p.child("operator"),
                &Value::from(op),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.has("tolerationSeconds") && effect != "NoExecute" {
            errs.push(Cause::invalid(
                &p.child("effect"),
                &Value::from(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let msgs = names::label_value(value);
                if !msgs.is_empty() {
                    errs.push(Cause::invalid(&p.child("operator"), &Value::from(value), msgs.join(";")));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(Cause::invalid(&p.child("operator"), &Value::from(value), "value must be empty when `operator` is 'Exists'"));
                }
            }
            other => errs.push(Cause::not_supported(&p.child("operator"), &Value::from(other), &["Equal", "Exists"])),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            errs.push(Cause::not_supported(&p.child("effect"), &Value::from(effect), &["NoSchedule", "PreferNoSchedule", "NoExecute"]));
        }
    }
}

fn affinity(a: &Value, path: &Path, errs: &mut Errs) {
    if let Some(na) = a.get("nodeAffinity").filter(|v| !v.is_null()) {
        let p = path.child("nodeAffinity");
        if let Some(req) = na.get("requiredDuringSchedulingIgnoredDuringExecution").filter(|v| !v.is_null()) {
            node_selector(req, &p.child("requiredDuringSchedulingIgnoredDuringExecution"), errs);
        }
        for (i, term) in na.get_arr("preferredDuringSchedulingIgnoredDuringExecution").iter().enumerate() {
            let tp = p.child("preferredDuringSchedulingIgnoredDuringExecution").index(i);
            weight(term, &tp, errs);
            node_selector_term(term.get("preference").unwrap_or(&NULL), &tp.child("preference"), errs);
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pa) = a.get(kind).filter(|v| !v.is_null()) else { continue };
        let p = path.child(kind);
        for (i, term) in pa.get_arr("requiredDuringSchedulingIgnoredDuringExecution").iter().enumerate() {
            pod_affinity_term(term, &p.child("requiredDuringSchedulingIgnoredDuringExecution").index(i), errs);
        }
        for (i, term) in pa.get_arr("preferredDuringSchedulingIgnoredDuringExecution").iter().enumerate() {
            let tp = p.child("preferredDuringSchedulingIgnoredDuringExecution").index(i);
            weight(term, &tp, errs);
            pod_affinity_term(term.get("podAffinityTerm").unwrap_or(&NULL), &tp.child("podAffinityTerm"), errs);
        }
    }
}

fn weight(term: &Value, path: &Path, errs: &mut Errs) {
    let w = term.get_i64("weight").unwrap_or(0);
    if !(1..=100).contains(&w) {
        errs.push(Cause::invalid(&path.child("weight"), &Value::from(w), "must be in the range 1-100"));
    }
}

fn pod_affinity_term(term: &Value, path: &Path, errs: &mut Errs) {
    for key in ["labelSelector", "namespaceSelector"] {
        if let Some(sel) = term.get(key).filter(|v| !v.is_null()) {
            meta::label_selector(sel, &path.child(key), errs);
        }
    }
    for ns in term.get_arr("namespaces") {
        let ns = ns.as_str().unwrap_or("");
        for msg in names::dns1123_label(ns) {
            errs.push(Cause::invalid(&path.child("namespace"), &Value::from(ns), msg));
        }
    }
    let key = term.str_or_empty("topologyKey");
    if key.is_empty() {
        errs.push(required_detail(&path.child("topologyKey"), "can not be empty"));
    }
    label_key(key, &path.child("topologyKey"), errs);
}

/// `ValidateNodeSelector`.
pub(crate) fn node_selector(ns: &Value, path: &Path, errs: &mut Errs) {
    let tp = path.child("nodeSelectorTerms");
    let terms = ns.get_arr("nodeSelectorTerms");
    if terms.is_empty() {
        errs.push(required_detail(&tp, "must have at least one node selector term"));
        return;
    }
    for (i, term) in terms.iter().enumerate() {
        node_selector_term(term, &tp.index(i), errs);
    }
}

fn node_selector_term(term: &Value, path: &Path, errs: &mut Errs) {
    for (j, req) in term.get_arr("matchExpressions").iter().enumerate() {
        let p = path.child("matchExpressions").index(j);
        let values = req.get_arr("values");
        match req.str_or_empty("operator") {
            "In" | "NotIn" if values.is_empty() => {
                errs.push(required_detail(&p.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"))
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                errs.push(Cause::forbidden(&p.child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
            }
            "Gt" | "Lt" if values.len() != 1 => {
                errs.push(required_detail(&p.child("values"), "must be specified single value when `operator` is 'Lt' or 'Gt'"))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            op => errs.push(Cause::invalid(&p.child("operator"), &Value::from(op), "not a valid selector operator")),
        }
        label_key(req.str_or_empty("key"), &p.child("key"), errs);
        for (k, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            for msg in names::label_value(v) {
                errs.push(Cause::invalid(&p.child("values").index(k), &Value::from(v), msg));
            }
        }
    }
    for (j, req) in term.get_arr("matchFields").iter().enumerate() {
        let p = path.child("matchFields").index(j);
        let values = req.get_arr("values");
        match req.str_or_empty("operator") {
            "In" | "NotIn" => {
                if values.len() != 1 {
                    errs.push(required_detail(
                        &p.child("values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    ));
                }
            }
            op => errs.push(Cause::invalid(&p.child("operator"), &Value::from(op), "not a valid selector operator")),
        }
        let key = req.str_or_empty("key");
        if key != "metadata.name" {
            errs.push(Cause::invalid(&p.child("key"), &Value::from(key), "not a valid field selector key"));
        } else {
            for (k, v) in values.iter().enumerate() {
                subdomain(v.as_str().unwrap_or(""), &p.child("values").index(k), errs);
            }
        }
    }
}

fn topology_spread(list: &[Value], path: &Path, errs: &mut Errs) {
    // Upstream reports a constraint whose {topologyKey, whenUnsatisfiable} appears again
    // further down the list; one pass from the end finds those without comparing pairs.
    let mut later = HashSet::new();
    let mut repeated_later: Vec<bool> =
        list.iter().rev().map(|c| !later.insert((c.str_or_empty("topologyKey"), c.str_or_empty("whenUnsatisfiable")))).collect();
    repeated_later.reverse();
    for (i, c) in list.iter().enumerate() {
        let p = path.index(i);
        let skew = c.get_i64("maxSkew").unwrap_or(0);
        if skew <= 0 {
            errs.push(Cause::invalid(&p.child("maxSkew"), &Value::from(skew), "must be greater than zero"));
        }
        let key = c.str_or_empty("topologyKey");
        if key.is_empty() {
            errs.push(required_detail(&p.child("topologyKey"), "can not be empty"));
        }
        let when = c.str_or_empty("whenUnsatisfiable");
        if !matches!(when, "DoNotSchedule" | "ScheduleAnyway") {
            errs.push(Cause::not_supported(&p.child("whenUnsatisfiable"), &Value::from(when), &["DoNotSchedule", "ScheduleAnyway"]));
        }
        if repeated_later[i] {
            errs.push(Cause::duplicate(&p.child("{topologyKey, whenUnsatisfiable}"), &Value::from(format!("{{{key}, {when}}}"))));
        }
        if let Some(md) = c.get_i64("minDomains") {
            if md <= 0 {
                errs.push(Cause::invalid(&p.child("minDomains"), &Value::from(md), "must be greater than zero"));
            }
            if when != "DoNotSchedule" {
                errs.push(Cause::invalid(
                    &p.child("minDomains"),
                    &Value::from(md),
                    format!("can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {when}"),
                ));
            }
        }
        for key in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            if let Some(v) = c.get_str(key) {
                if !matches!(v, "Honor" | "Ignore") {
                    errs.push(Cause::not_supported(&p.child(key), &Value::from(v), &["Honor", "Ignore"]));
                }
            }
        }
        if let Some(sel) = c.get("labelSelector").filter(|v| !v.is_null()) {
            meta::label_selector(sel, &p.child("labelSelector"), errs);
        }
    }
}

fn dns_config(spec: &Value, path: &Path, errs: &mut Errs) {
    let p = path.child("dnsConfig");
    let cfg = spec.get("dnsConfig").filter(|v| !v.is_null());
    if spec.str_or_empty("dnsPolicy") == "None" {
        match cfg {
            None => {
                errs.push(required_detail(&p, "must provide `dnsConfig` when `dnsPolicy` is None"));
                return;
            }
            Some(c) if c.get_arr("nameservers").is_empty() => {
                errs.push(required_detail(&p.child("nameservers"), "must provide at least one DNS nameserver when `dnsPolicy` is None"));
                return;
            }
            _ => {}
        }
    }
    let Some(cfg) = cfg else { return };
    let nameservers = cfg.get_arr("nameservers");
    if nameservers.len() > 3 {
        errs.push(invalid_go(
            &p.child("nameservers"),
            &super::field::go_string_slice(cfg.get("nameservers")),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        ip(ns.as_str().unwrap_or(""), &p.child("nameservers").index(i), errs);
    }
    let searches = cfg.get_arr("searches");
    if searches.len() > 32 {
        errs.push(invalid_go(
            &p.child("searches"),
            &super::field::go_string_slice(cfg.get("searches")),
            "must not have more than 32 search paths",
        ));
    }
    let joined: Vec<&str> = searches.iter().filter_map(Value::as_str).collect();
    if joined.join(" ").len() > 2048 {
        errs.push(invalid_go(
            &p.child("searches"),
            &super::field::go_string_slice(cfg.get("searches")),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        let s = s.as_str().unwrap_or("");
        if s != "." {
            let trimmed = s.strip_suffix('.').unwrap_or(s);
            // RelaxedDNSSearchValidation (beta, on in 1.33) also allows underscores.
            let relaxed = trimmed.replace('_', "a");
            if !names::dns1123_subdomain(&relaxed).is_empty() {
                for msg in names::dns1123_subdomain(trimmed) {
                    let msg = msg
                        .replace("lower case alphanumeric characters, '-' or '.'", "lower case alphanumeric characters, '_', '-' or '.'");
                    errs.push(Cause::invalid(&p.child("searches").index(i), &Value::from(trimmed), msg));
                }
            }
        }
    }
    for (i, o) in cfg.get_arr("options").iter().enumerate() {
        if o.str_or_empty("name").is_empty() {
            errs.push(required_detail(&p.child("options").index(i), "must not be empty"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::resources::lookup;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec});
        apply_defaults(lookup("", "v1", "pods").unwrap(), &mut p);
        p
    }

    fn errs(obj: &Value, old: Option<&Value>) -> Errs {
        let mut e = Vec::new();
        validate_pod(obj, old, &mut e);
        e
    }

    fn fields(e: &Errs) -> Vec<&str> {
        e.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn a_pod_needs_containers() {
        let e = errs(&pod(json!({})), None);
        assert_eq!(fields(&e), ["spec.containers"]);
        assert_eq!(e[0].message, "Required value");
    }

    #[test]
    fn container_names_and_images_are_required_and_unique() {
        let e = errs(
            &pod(
                json!({"containers": [{"name": "a", "image": "x"}, {"name": "a"}, {"image": "y"}], "initContainers": [{"name": "a", "image": "z"}]}),
            ),
            None,
        );
        let f = fields(&e);
        assert!(f.contains(&"spec.containers[1].image"));
        assert!(f.contains(&"spec.containers[2].name"));
        let dup: Vec<&Cause> = e.iter().filter(|c| c.reason == "FieldValueDuplicate").collect();
        let dup_fields: Vec<&str> = dup.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(dup_fields, ["spec.containers[1].name", "spec.initContainers[0].name"]);
        assert_eq!(dup[0].message, "Duplicate value: \"a\"");
    }

    #[test]
    fn ports_must_be_in_range_with_a_known_protocol() {
        let e = errs(
            &pod(
                json!({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 70000, "protocol": "HTTP"}, {"containerPort": 80, "hostPort": -1}]}]}),
            ),
            None,
        );
        assert_eq!(
            fields(&e),
            ["spec.containers[0].ports[0].containerPort", "spec.containers[0].ports[0].protocol", "spec.containers[0].ports[1].hostPort"]
        );
        assert_eq!(e[0].message, "Invalid value: 70000: must be between 1 and 65535, inclusive");
        assert_eq!(e[1].message, "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"");
    }

    #[test]
    fn mounts_must_name_a_volume() {
        let e = errs(&pod(json!({"containers": [{"name": "a", "image": "x", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}]})), None);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line(), "spec.containers[0].volumeMounts[0].name: Not found: \"x\"");
        assert_eq!(e[0].reason, "FieldValueNotFound");
    }

    #[test]
    fn volume_names_are_unique_and_need_one_source() {
        let e = errs(
            &pod(
                json!({"containers": [{"name": "a", "image": "x"}], "volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}, "secret": {"secretName": "s"}}]}),
            ),
            None,
        );
        assert_eq!(fields(&e), ["spec.volumes[1].name", "spec.volumes[2].secret"]);
        assert_eq!(e[1].message, "Forbidden: may not specify more than 1 volume type");
    }

    #[test]
    fn env_names_and_sources_are_checked() {
        let e = errs(
            &pod(
                json!({"containers": [{"name": "a", "image": "x", "env": [{"name": "A=B"}, {"name": "", "value": "x"}, {"name": "C", "valueFrom": {}}]}]}),
            ),
            None,
        );
        assert_eq!(fields(&e), ["spec.containers[0].env[0].name", "spec.containers[0].env[1].name", "spec.containers[0].env[2].valueFrom"]);
    }

    #[test]
    fn policies_are_enumerations() {
        let e = errs(
            &pod(
                json!({"restartPolicy": "Sometimes", "dnsPolicy": "Magic", "containers": [{"name": "a", "image": "x", "imagePullPolicy": "Maybe"}]}),
            ),
            None,
        );
        assert_eq!(fields(&e), ["spec.containers[0].imagePullPolicy", "spec.restartPolicy", "spec.dnsPolicy"]);
        assert_eq!(e[1].message, "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"");
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let e = errs(
            &pod(
                json!({"containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "lots"}}}]}),
            ),
            None,
        );
        assert_eq!(fields(&e), ["spec.containers[0].resources.limits[memory]", "spec.containers[0].resources.requests"]);
        assert_eq!(e[1].message, "Invalid value: \"2\": must be less than or equal to cpu limit of 1");
        assert!(e[0].message.contains("quantities must match the regular expression"));
    }

    #[test]
    fn probes_need_exactly_one_handler() {
        let e = errs(
            &pod(
                json!({"containers": [{"name": "a", "image": "x", "livenessProbe": {}, "readinessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}}]}),
            ),
            None,
        );
        assert_eq!(fields(&e), ["spec.containers[0].livenessProbe", "spec.containers[0].readinessProbe.tcpSocket"]);
        assert_eq!(e[0].message, "Required value: must specify a handler type");
    }

    #[test]
    fn image_changes_are_the_allowed_update() {
        let mut old = pod(json!({"containers": [{"name": "a", "image": "nginx:1"}]}));
        old["metadata"]["uid"] = json!("u");
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert!(errs(&new, Some(&old)).is_empty());
        new["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "protocol": "TCP"}]);
        let e = errs(&new, Some(&old));
        assert_eq!(fields(&e), ["spec"]);
        assert!(e[0].message.starts_with("Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"));
        assert!(e[0].message.contains("containers[0].ports"));
    }

    #[test]
    fn finished_containers_of_pods_that_never_restart_stay_finished() {
        let mut old = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a", "image": "x"}]}));
        old["status"] = json!({"containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 0}}}]});
        let mut new = old.clone();
        new["status"]["containerStatuses"][0]["state"] = json!({"running": {"startedAt": "2024-01-01T00:00:00Z"}});
        let e = errs(&new, Some(&old));
        assert_eq!(e[0].line(), "status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state");
        old["spec"]["restartPolicy"] = json!("Always");
        new["spec"]["restartPolicy"] = json!("Always");
        assert!(errs(&new, Some(&old)).is_empty());
    }

    #[test]
    fn pod_ips_are_one_per_family() {
        let old = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        let mut new = old.clone();
        new["status"] = json!({"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "hostIP": "192.168.0.1", "hostIPs": [{"ip": "192.168.0.2"}]});
        let fields: Vec<String> = errs(&new, Some(&old)).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["status.podIPs", "status.hostIPs[0].ip"]);
    }

    #[test]
    fn tolerations_may_only_be_added() {
        let old = pod(json!({"containers": [{"name": "a", "image": "x"}], "tolerations": [{"key": "k", "operator": "Exists"}]}));
        let mut new = old.clone();
        new["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}, {"key": "j", "operator": "Exists"}]);
        assert!(errs(&new, Some(&old)).is_empty());
        new["spec"]["tolerations"] = json!([{"key": "j", "operator": "Exists"}]);
        let e = errs(&new, Some(&old));
        assert_eq!(e[0].message, "Forbidden: existing toleration can not be modified except its tolerationSeconds");
    }

    #[test]
    fn tolerations_compare_regardless_of_key_order_seconds_and_empty_fields() {
        let old = pod(json!({"containers": [{"name": "a", "image": "x"}], "tolerations": [
            {"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 5},
        ]}));
        let mut new = old.clone();
        new["spec"]["tolerations"] = json!([{"tolerationSeconds": 10, "effect": "NoExecute", "value": "v", "operator": "Equal", "key": "k", "extra": {}}]);
        assert!(errs(&new, Some(&old)).is_empty());
        new["spec"]["tolerations"] = json!([{"key": "k", "operator": "Equal", "value": "w", "effect": "NoExecute", "tolerationSeconds": 5}]);
        assert_eq!(errs(&new, Some(&old)).len(), 1);
    }

    #[test]
    fn updating_many_tolerations_takes_linear_time() {
        // 25 000 tolerations took 200 seconds when each old one was compared with every new one.
        let list: Vec<Value> = (0..25_000).map(|i| json!({"key": format!("k{i}"), "operator": "Exists"})).collect();
        let old = pod(json!({"containers": [{"name": "a", "image": "x"}], "tolerations": list}));
        let started = std::time::Instant::now();
        assert!(errs(&old, Some(&old)).is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    }

    #[test]
    fn repeated_spread_constraints_are_reported_where_a_repeat_follows() {
        let c = |key: &str, when: &str| json!({"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": when});
        let spec = json!({"containers": [{"name": "a", "image": "x"}], "topologySpreadConstraints": [
            c("zone", "DoNotSchedule"), c("zone", "ScheduleAnyway"), c("zone", "DoNotSchedule"), c("zone", "DoNotSchedule"),
        ]});
        let lines: Vec<String> = errs(&pod(spec), None).iter().map(|e| e.line()).collect();
        assert_eq!(
            lines,
            [
                "spec.topologySpreadConstraints[0].{topologyKey, whenUnsatisfiable}: Duplicate value: \"{zone, DoNotSchedule}\"",
                "spec.topologySpreadConstraints[2].{topologyKey, whenUnsatisfiable}: Duplicate value: \"{zone, DoNotSchedule}\"",
            ]
        );
        // Tens of thousands of constraints no longer compare every pair.
        let many: Vec<Value> = (0..25_000).map(|i| c(&format!("k{i}"), "DoNotSchedule")).collect();
        let started = std::time::Instant::now();
        assert!(errs(&pod(json!({"containers": [{"name": "a", "image": "x"}], "topologySpreadConstraints": many})), None).is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    }

    #[test]
    fn containers_may_not_be_added_on_update() {
        let old = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        let new = pod(json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}));
        let e = errs(&new, Some(&old));
        assert_eq!(e[0].line(), "spec.containers: Forbidden: pod updates may not add or remove containers");
    }

    #[test]
    fn templates_report_labels_at_the_template_path() {
        let mut e = Vec::new();
        let mut tpl = json!({"metadata": {"labels": {"a": "-"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let mut d = json!({"spec": {"template": tpl.clone()}});
        apply_defaults(lookup("apps", "v1", "deployments").unwrap(), &mut d);
        tpl = d["spec"]["template"].clone();
        pod_template(&tpl, &Path::new("spec.template"), SpecOpts::default(), &mut e);
        assert_eq!(fields(&e), ["spec.template.labels"]);
    }

    #[test]
    fn init_containers_without_restart_may_not_probe() {
        let e = errs(
            &pod(
                json!({"containers": [{"name": "a", "image": "x"}], "initContainers": [{"name": "i", "image": "x", "readinessProbe": {"exec": {"command": ["x"]}}}]}),
            ),
            None,
        );
        assert_eq!(
            e[0].line(),
            "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always"
        );
    }

    #[test]
    fn tolerations_need_exists_for_empty_keys() {
        let e = errs(
            &pod(
                json!({"containers": [{"name": "a", "image": "x"}], "tolerations": [{"operator": "Equal", "value": "v"}, {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]}),
            ),
            None,
        );
        assert_eq!(fields(&e), ["spec.tolerations[0].operator", "spec.tolerations[1].effect"]);
    }
}
