//! The DefaultStorageClass admission plugin
//! (`plugin/pkg/admission/storage/storageclass/setdefault`).
//!
//! A claim created without a class gets the default class's name, so that it is
//! provisioned without the user knowing the cluster's classes. A claim that names
//! a class, even the empty one (`storageClassName: ""`, "no class, bind to a
//! pre-made volume"), or uses the beta annotation is left alone. Only creates are
//! admitted; the volume controller later gives the default class to claims created
//! while there was none.

use serde_json::Value;

use crate::storage::{is_default_class, BETA_STORAGE_CLASS_ANNOTATION};

/// `PersistentVolumeClaimHasClass`: the field is present (empty or not) or the beta
/// annotation is.
pub fn claim_has_class(claim: &Value) -> bool {
    claim.pointer("/spec/storageClassName").is_some_and(|c| !c.is_null())
        || claim.pointer("/metadata/annotations").and_then(|a| a.get(BETA_STORAGE_CLASS_ANNOTATION)).is_some()
}

/// `GetDefaultClass`: of the classes marked default, the newest; classes created in
/// the same instant are taken by name.
pub fn default_class(classes: &[Value]) -> Option<&Value> {
    super::newest_default(classes, is_default_class)
}

/// Admits a new claim: names the default class in `spec.storageClassName` when the
/// claim names none and `classes` (every StorageClass there is) has a default.
pub fn admit_claim(claim: &mut Value, classes: &[Value]) {
    if claim_has_class(claim) {
        return;
    }
    let Some(name) = default_class(classes).and_then(|c| c.pointer("/metadata/name")).cloned() else { return };
    if let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("storageClassName".into(), name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, created: &str, default: bool) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created, "annotations": {crate::storage::IS_DEFAULT_CLASS_ANNOTATION: default.to_string()}}})
    }

    #[test]
    fn claims_without_a_class_get_the_newest_default() {
        let classes = [class("old", "2024-01-01T00:00:00Z", true), class("new", "2024-06-01T00:00:00Z", true), class("newest", "2025-01-01T00:00:00Z", false)];
        let mut claim = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}});
        admit_claim(&mut claim, &classes);
        assert_eq!(claim["spec"]["storageClassName"], "new");
    }

    #[test]
    fn defaults_made_at_the_same_time_are_taken_by_name() {
        let classes = [class("b", "2024-01-01T00:00:00Z", true), class("a", "2024-01-01T00:00:00Z", true)];
        assert_eq!(default_class(&classes).unwrap()["metadata"]["name"], "a");
    }

    #[test]
    fn an_explicit_or_empty_class_is_kept() {
        let classes = [class("local-path", "2024-01-01T00:00:00Z", true)];
        let mut empty = json!({"spec": {"storageClassName": ""}});
        admit_claim(&mut empty, &classes);
        assert_eq!(empty["spec"]["storageClassName"], "");
        let mut beta = json!({"metadata": {"annotations": {BETA_STORAGE_CLASS_ANNOTATION: "slow"}}, "spec": {}});
        admit_claim(&mut beta, &classes);
        assert!(beta["spec"].get("storageClassName").is_none());
        let mut none = json!({"spec": {}});
        admit_claim(&mut none, &[]);
        assert!(none["spec"].get("storageClassName").is_none(), "no default class, no class");
    }
}
