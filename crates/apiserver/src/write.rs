//! How objects are prepared for the store on create and update: server-set metadata,
//! status handling, generation, defaulting, validation and field ownership.
//! [`admission`] runs the built-in admission plugins around these steps; `service`
//! is the Service update strategy (fields a type change drops or keeps).

use serde_json::{json, Map, Value};
use skiff_api::pod_resources::qos_class;
use skiff_api::{defaults, meta, patch, validation, ResourceInfo, StatusError};

pub mod admission;
pub(crate) mod service;

/// Characters upstream uses for `generateName` suffixes (no vowels, no confusables).
const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `generateName` + 5 random characters.
pub fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let suffix: String = (0..5).map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char).collect();
    format!("{prefix}{suffix}")
}

/// The status an object starts with when it has a status subresource (clients cannot
/// set status on create, as upstream).
fn initial_status(res: &ResourceInfo, given: Option<&Value>) -> Option<Value> {
    if !res.has_subresource(skiff_api::Subresource::Status) {
        return given.cloned();
    }
    match res.kind {
        // Nodes report their own status on registration; namespaces keep their phase.
        "Node" | "Namespace" => given.cloned(),
        "Pod" => Some(json!({"phase": "Pending"})),
        "PersistentVolume" | "PersistentVolumeClaim" => Some(json!({"phase": "Pending"})),
        "Service" | "Ingress" => Some(json!({"loadBalancer": {}})),
        _ => Some(json!({})),
    }
}

/// Everything but metadata and status: what `generation` tracks.
fn spec_part(v: &Value) -> Map<String, Value> {
    v.as_object()
        .map(|m| m.iter().filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status")).map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn invalid(res: &ResourceInfo, obj: &Value, causes: Vec<skiff_api::Cause>) -> StatusError {
    StatusError::invalid(res.group, res.kind, meta::name(obj), causes)
}

/// Prepares a new object for create: server-set metadata, initial status, defaults,
/// validation and field ownership. The name (or generateName) must already be resolved.
/// `manager` as for [`prepare_update`]: `None` keeps the managedFields `obj` carries.
pub fn prepare_create(res: &ResourceInfo, mut obj: Value, manager: Option<&str>, now: &str) -> Result<Value, StatusError> {
    {
        let m = meta::metadata_mut(&mut obj);
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now));
        m.remove("resourceVersion");
        m.remove("selfLink");
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        drop_empty_metadata_lists(m);
        if res.tracks_generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
    }
    if res.kind == "DaemonSet" {
        set_daemonset_template_generation(&mut obj, 1);
    }
    let status = initial_status(res, obj.get("status"));
    if let Some(o) = obj.as_object_mut() {
        match status {
            Some(s) => {
                o.insert("status".into(), s);
            }
            None => {
                o.remove("status");
            }
        }
    }
    defaults::apply_defaults(res, &mut obj);
    if res.kind == "Pod" {
        let q = qos_class(&obj);
        obj["status"]["qosClass"] = json!(q);
    }
    let causes = validation::validate(res, &obj, None);
    if !causes.is_empty() {
        return Err(invalid(res, &obj, causes));
    }
    if let Some(manager) = manager {
        patch::record_update(res.definition, None, &mut obj, manager, "", now);
    }
    Ok(obj)
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but status (when status is a subresource).
    Main,
    /// The status subresource: only status.
    Status,
}

/// Prepares an update of `old` to `new`: keeps what the caller may not change,
/// bumps generation on spec changes, defaults, validates and records ownership.
/// `manager` is who made the change (recorded as an Update in managedFields); `None`
/// when the caller already computed managedFields (server-side apply).
pub fn prepare_update(res: &ResourceInfo, old: &Value, new: Value, part: Part, manager: Option<&str>, now: &str) -> Result<Value, StatusError> {
    let mut obj = match part {
        Part::Main => {
            let mut obj = new;
            if res.has_subresource(skiff_api::Subresource::Status) {
                match old.get("status") {
                    Some(s) => obj["status"] = s.clone(),
                    None => {
                        if let Some(o) = obj.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            obj
        }
        Part::Status => {
            let mut obj = old.clone();
            match new.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(o) = obj.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            // Status writers may still move labels, annotations and finalizers? Upstream
            // keeps the old metadata apart from managedFields; so do we.
            obj
        }
    };
    {
        let old_meta = old.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
        let m = meta::metadata_mut(&mut obj);
        for key in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
            match old_meta.get(key) {
                Some(v) => {
                    m.insert(key.into(), v.clone());
                }
                None => {
                    m.remove(key);
                }
            }
        }
        m.remove("resourceVersion");
        m.remove("selfLink");
        drop_empty_metadata_lists(m);
        if m.get("managedFields").is_none() {
            if let Some(mf) = old_meta.get("managedFields") {
                m.insert("managedFields".into(), mf.clone());
            }
        }
    }
    if res.group.is_empty() && res.kind == "Service" && part == Part::Main {
        service::prepare_update(old, &mut obj);
    }
    // Deleting objects may only lose finalizers, never gain new ones (upstream rule).
    if meta::is_deleting(old) {
        let old_f = meta::finalizers(old);
        let added: Vec<String> = meta::finalizers(&obj).into_iter().filter(|f| !old_f.contains(f)).collect();
        if !added.is_empty() {
            return Err(invalid(
                res,
                &obj,
                vec![skiff_api::Cause::forbidden("metadata.finalizers", format!("no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"))],
            ));
        }
    }
    defaults::apply_defaults(res, &mut obj);
    if res.group.is_empty() && res.kind == "Pod" && part == Part::Main {
        // The Priority plugin's update rule (what it computed at create stays), and
        // DefaultTolerationSeconds, which upstream runs on updates too.
        skiff_api::admission::priority::keep_on_update(&mut obj, old);
        skiff_api::admission::default_toleration_seconds(&mut obj);
    }
    // Upstream decodes the stored object with today's defaults before comparing, so
    // a default added since it was written is not a change the client made.
    let mut old_view = old.clone();
    defaults::apply_defaults(res, &mut old_view);
    let old = &old_view;
    if res.tracks_generation && spec_part(&obj) != spec_part(old) {
        let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        meta::metadata_mut(&mut obj).insert("generation".into(), json!(g + 1));
    }
    if res.kind == "DaemonSet" {
        // Upstream's DaemonSet strategy keeps the template generation in this
        // annotation (pods carry it as `pod-template-generation`): it starts at 1
        // and grows by one whenever the pod template changes.
        let previous = daemonset_template_generation(old).unwrap_or(1);
        let next = if obj.pointer("/spec/template") != old.pointer("/spec/template") { previous + 1 } else { previous };
        set_daemonset_template_generation(&mut obj, next);
    }
    let causes = validation::validate(res, &obj, Some(old));
    if !causes.is_empty() {
        return Err(invalid(res, &obj, causes));
    }
    if let Some(manager) = manager {
        let sub = if part == Part::Status { "status" } else { "" };
        patch::record_update(res.definition, Some(old), &mut obj, manager, sub, now);
    }
    Ok(obj)
}

/// Whether two versions differ in anything but managed-fields timestamps.
pub fn meaningfully_equal(a: &Value, b: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            if let Some(Value::Array(mf)) = m.get_mut("managedFields") {
                for e in mf.iter_mut() {
                    if let Some(o) = e.as_object_mut() {
                        o.remove("time");
                    }
                }
            }
        }
        v
    }
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_follows_requests_and_limits() {
        assert_eq!(qos_class(&json!({"spec": {"containers": [{"name": "a"}]}})), "BestEffort");
        let g = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn generated_names_use_the_upstream_alphabet() {
        let n = generate_name("web-");
        assert_eq!(n.len(), 9);
        assert!(n[4..].bytes().all(|c| NAME_CHARS.contains(&c)));
    }
}

const DAEMONSET_TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

fn daemonset_template_generation(ds: &Value) -> Option<i64> {
    ds.pointer("/metadata/annotations")?.get(DAEMONSET_TEMPLATE_GENERATION)?.as_str()?.parse().ok()
}

fn set_daemonset_template_generation(ds: &mut Value, generation: i64) {
    let m = meta::metadata_mut(ds);
    let annotations = m.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[DAEMONSET_TEMPLATE_GENERATION] = json!(generation.to_string());
}

/// ObjectMeta's lists and maps are `omitempty` upstream: an object whose last
/// finalizer or owner reference was patched away has no such field at all, and
/// clients (and `kubectl get -o yaml`) see it that way.
fn drop_empty_metadata_lists(m: &mut serde_json::Map<String, Value>) {
    for key in ["finalizers", "ownerReferences", "labels", "annotations"] {
        let empty = match m.get(key) {
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            m.remove(key);
        }
    }
}
