//! What claims, volumes and classes mean to each other, in one place for the API
//! server (the built-in class, the DefaultStorageClass plugin), the volume
//! controller with its local-path provisioner, and the scheduler's VolumeBinding.
//!
//! - The annotations upstream's PV controller, scheduler and provisioners agree on.
//! - [`local_path_class`]: the default StorageClass every Skiff cluster starts with.
//! - [`claim_class`], [`volume_class`]: the class of a claim or volume, beta
//!   annotation first, as `storagehelpers.GetPersistentVolume(Claim)Class`.
//! - [`find_matching_volume`]: upstream's `FindMatchingVolume`, the smallest
//!   Available volume that satisfies a claim, or the one already meant for it.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use serde_json::{json, Value};

use crate::validation::quantity::Quantity;

// === annotations and names ===

/// `"true"` here makes a class the default for claims that name none.
pub const IS_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta spelling of [`IS_DEFAULT_CLASS_ANNOTATION`], still honoured upstream.
pub const BETA_IS_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The class of a claim or volume before `storageClassName` existed; it wins over the field.
pub const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
/// The node the scheduler chose for a pod using a WaitForFirstConsumer claim:
/// provisioners create the volume where the pod is going to run.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// Set on a claim once the controller bound it; a bound claim whose volume is gone is Lost.
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume whose half of the binding the controller wrote (rather than the user).
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
/// The provisioner that created a volume; it deletes the volume under the Delete policy.
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// The provisioner the controller expects to provision a claim.
pub const STORAGE_PROVISIONER_ANNOTATION: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta spelling of [`STORAGE_PROVISIONER_ANNOTATION`], still written upstream.
pub const BETA_STORAGE_PROVISIONER_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Classes of pre-made local volumes, which nothing provisions.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Skiff's built-in provisioner: a directory on the node where the first pod runs.
pub const LOCAL_PATH_PROVISIONER: &str = "skiff.io/local-path";
/// The name of the built-in default class.
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// Where a node keeps local-path volumes, published by its agent on the Node.
pub const NODE_STORAGE_ANNOTATION: &str = "storage.skiff.io/local-path";
/// The storage directory of nodes that do not publish one.
pub const DEFAULT_NODE_STORAGE_DIR: &str = "/var/lib/skiff/storage";

/// The built-in default StorageClass, as the API server creates it when it starts:
/// local-path volumes, deleted with their claims, made once a pod needs them so
/// that they land on that pod's node.
pub fn local_path_class() -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": LOCAL_PATH_CLASS, "annotations": {IS_DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

/// `IsDefaultAnnotation`: the class is marked default (GA or beta annotation).
pub fn is_default_class(class: &Value) -> bool {
    let annotation = |key: &str| class.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str) == Some("true");
    annotation(IS_DEFAULT_CLASS_ANNOTATION) || annotation(BETA_IS_DEFAULT_CLASS_ANNOTATION)
}

/// The directory of a local-path volume under a node's storage directory:
/// `<base>/<volume>_<namespace>_<claim>`, so an operator looking at the node can tell
/// whose data it is.
pub fn local_path_dir(base: &str, volume: &str, namespace: &str, claim: &str) -> String {
    format!("{}/{volume}_{namespace}_{claim}", base.trim_end_matches('/'))
}

// === typed helpers ===

/// `GetPersistentVolumeClaimClass`: the beta annotation, else `spec.storageClassName`;
/// `""` means no class.
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    if let Some(c) = claim.metadata.annotations.as_ref().and_then(|a| a.get(BETA_STORAGE_CLASS_ANNOTATION)) {
        return c;
    }
    claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// `GetPersistentVolumeClass`: the beta annotation, else `spec.storageClassName`.
pub fn volume_class(pv: &PersistentVolume) -> &str {
    if let Some(c) = pv.metadata.annotations.as_ref().and_then(|a| a.get(BETA_STORAGE_CLASS_ANNOTATION)) {
        return c;
    }
    pv.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// `IsVolumeBoundToClaim`: the volume's claimRef names the claim (and, once the
/// controller wrote it, its uid).
pub fn is_volume_bound_to_claim(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else { return false };
    r.name.as_deref() == claim.metadata.name.as_deref()
        && r.namespace.as_deref().unwrap_or("") == claim.metadata.namespace.as_deref().unwrap_or("")
        && r.uid.as_deref().is_none_or(|u| u.is_empty() || Some(u) == claim.metadata.uid.as_deref())
}

/// The storage a claim asks for.
pub fn claim_request(claim: &PersistentVolumeClaim) -> Quantity {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .unwrap_or_else(Quantity::zero)
}

/// The storage a volume offers.
pub fn volume_capacity(pv: &PersistentVolume) -> Quantity {
    pv.spec.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")).and_then(|q| Quantity::parse(&q.0).ok()).unwrap_or_else(Quantity::zero)
}

/// `CheckAccessModes`: the volume offers every mode the claim asks for.
pub fn volume_has_access_modes(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let offered = pv.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or_default();
    claim.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or_default().iter().all(|m| offered.contains(m))
}

/// `CheckVolumeModeMismatches`: Filesystem unless said otherwise, on both sides.
pub fn volume_mode_mismatch(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let pv_mode = pv.spec.as_ref().and_then(|s| s.volume_mode.as_deref()).unwrap_or("Filesystem");
    let claim_mode = claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()).unwrap_or("Filesystem");
    pv_mode != claim_mode
}

/// `FindMatchingVolume`. A volume already meant for the claim (its claimRef names
/// the claim: pre-bound by the user, or provisioned for it) is returned at once,
/// unless it does not fit the node. Otherwise the smallest Available volume of the
/// claim's class, selected by the claim's selector, big enough, with the access and
/// volume modes asked for, wins.
///
/// `node_fits` is the scheduler's view: whether a volume's node affinity admits the
/// node in question. Without it (the controller deciding on its own), claims that
/// wait for their first consumer (`delay_binding`) only get volumes meant for them.
pub fn find_matching_volume<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    node_fits: Option<&dyn Fn(&PersistentVolume) -> bool>,
    delay_binding: bool,
) -> Option<&'a PersistentVolume> {
    let requested = claim_request(claim);
    let class = claim_class(claim);
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref()).map(|s| {
        crate::selector::LabelSelector::from_json(&serde_json::to_value(s).unwrap_or(Value::Null)).unwrap_or_else(|_| crate::selector::LabelSelector::nothing())
    });
    let mut smallest: Option<(&PersistentVolume, Quantity)> = None;
    for pv in volumes {
        let bound_elsewhere = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some() && !is_volume_bound_to_claim(pv, claim);
        if bound_elsewhere {
            continue;
        }
        let capacity = volume_capacity(pv);
        if capacity < requested || volume_mode_mismatch(pv, claim) || pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let fits_node = node_fits.is_none_or(|f| f(pv));
        if is_volume_bound_to_claim(pv, claim) {
            return fits_node.then_some(pv);
        }
        if node_fits.is_none() && delay_binding {
            continue;
        }
        if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Available") {
            continue;
        }
        if let Some(sel) = &selector {
            let labels = pv.metadata.labels.clone().unwrap_or_default();
            if !sel.matches(&|k| labels.get(k).cloned()) {
                continue;
            }
        }
        if volume_class(pv) != class || !fits_node || !volume_has_access_modes(pv, claim) {
            continue;
        }
        if smallest.as_ref().is_none_or(|(_, q)| capacity < *q) {
            smallest = Some((pv, capacity));
        }
    }
    smallest.map(|(pv, _)| pv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(class: &str, request: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "c1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": request}}, "storageClassName": class}
        }))
        .unwrap()
    }

    fn volume(name: &str, class: &str, capacity: &str, phase: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"tier": name}},
            "spec": {"capacity": {"storage": capacity}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "storageClassName": class, "hostPath": {"path": "/d"}},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn the_smallest_available_volume_of_the_class_that_is_big_enough_wins() {
        let vols = [volume("big", "manual", "10Gi", "Available"), volume("small", "manual", "2Gi", "Available"), volume("tiny", "manual", "500Mi", "Available"), volume("other", "fast", "1Gi", "Available"), volume("taken", "manual", "1Gi", "Bound")];
        let m = find_matching_volume(&claim("manual", "1Gi"), vols.iter(), None, false).unwrap();
        assert_eq!(m.metadata.name.as_deref(), Some("small"));
    }

    #[test]
    fn claims_that_wait_for_a_consumer_only_get_their_own_volume_without_a_node() {
        let mut mine = volume("pvc-c1", "local-path", "1Gi", "Pending");
        mine.spec.as_mut().unwrap().claim_ref = Some(serde_json::from_value(json!({"name": "data", "namespace": "ns", "uid": "c1"})).unwrap());
        let free = volume("free", "local-path", "1Gi", "Available");
        assert!(find_matching_volume(&claim("local-path", "1Gi"), [&free], None, true).is_none());
        let m = find_matching_volume(&claim("local-path", "1Gi"), [&free, &mine], None, true).unwrap();
        assert_eq!(m.metadata.name.as_deref(), Some("pvc-c1"));
        // With a node, free volumes that fit it count again, and the own volume only
        // where it fits.
        let on_node: &dyn Fn(&PersistentVolume) -> bool = &|pv| pv.metadata.name.as_deref() == Some("free");
        assert!(find_matching_volume(&claim("local-path", "1Gi"), [&mine], Some(on_node), true).is_none());
        assert_eq!(find_matching_volume(&claim("local-path", "1Gi"), [&free], Some(on_node), true).unwrap().metadata.name.as_deref(), Some("free"));
    }

    #[test]
    fn selectors_access_modes_and_other_claims_rule_volumes_out() {
        let mut c = claim("manual", "1Gi");
        c.spec.as_mut().unwrap().selector = Some(serde_json::from_value(json!({"matchLabels": {"tier": "gold"}})).unwrap());
        let silver = volume("silver", "manual", "1Gi", "Available");
        let gold = volume("gold", "manual", "5Gi", "Available");
        assert_eq!(find_matching_volume(&c, [&silver, &gold], None, false).unwrap().metadata.name.as_deref(), Some("gold"));
        let mut rwx = claim("manual", "1Gi");
        rwx.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteMany".into()]);
        assert!(find_matching_volume(&rwx, [&silver], None, false).is_none());
        let mut someone_elses = volume("x", "manual", "1Gi", "Available");
        someone_elses.spec.as_mut().unwrap().claim_ref = Some(serde_json::from_value(json!({"name": "other", "namespace": "ns"})).unwrap());
        assert!(find_matching_volume(&claim("manual", "1Gi"), [&someone_elses], None, false).is_none());
    }

    #[test]
    fn the_beta_annotation_names_the_class_before_the_field() {
        let mut c = claim("manual", "1Gi");
        assert_eq!(claim_class(&c), "manual");
        c.metadata.annotations = Some([(BETA_STORAGE_CLASS_ANNOTATION.to_string(), "old".to_string())].into());
        assert_eq!(claim_class(&c), "old");
    }

    #[test]
    fn the_built_in_class_is_the_default_and_waits_for_consumers() {
        let c = local_path_class();
        assert!(is_default_class(&c));
        assert_eq!(c["volumeBindingMode"], "WaitForFirstConsumer");
        assert!(!is_default_class(&json!({"metadata": {"annotations": {IS_DEFAULT_CLASS_ANNOTATION: "false"}}})));
        assert!(is_default_class(&json!({"metadata": {"annotations": {BETA_IS_DEFAULT_CLASS_ANNOTATION: "true"}}})));
        assert_eq!(local_path_dir("/var/lib/skiff/storage/", "pvc-1", "ns", "data"), "/var/lib/skiff/storage/pvc-1_ns_data");
    }
}
