//! The StorageObjectInUseProtection admission plugin
//! (`plugin/pkg/admission/storageobjectinuseprotection`).
//!
//! New claims and volumes get a finalizer, so that deleting one that is still in
//! use only marks it: the volume controller removes the claim's finalizer once no
//! pod uses the claim, and the volume's once it is no longer Bound. Without it, a
//! claim deleted under a running pod would take a Delete-policy volume (and its
//! data) along at once.

use serde_json::{json, Value};

/// Keeps a claim while pods use it.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// Keeps a volume while a claim is bound to it.
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";

/// Adds `finalizer` to a new object's `metadata.finalizers` unless it is there.
fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let list = list.as_array_mut().expect("just made a list");
    if !list.iter().any(|f| f.as_str() == Some(finalizer)) {
        list.push(json!(finalizer));
    }
}

/// Admits a new PersistentVolumeClaim.
pub fn admit_claim(claim: &mut Value) {
    add_finalizer(claim, PVC_PROTECTION_FINALIZER);
}

/// Admits a new PersistentVolume.
pub fn admit_volume(volume: &mut Value) {
    add_finalizer(volume, PV_PROTECTION_FINALIZER);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_claims_and_volumes_are_protected_once() {
        let mut claim = json!({"metadata": {"name": "data", "finalizers": ["example.com/keep"]}});
        admit_claim(&mut claim);
        admit_claim(&mut claim);
        assert_eq!(claim["metadata"]["finalizers"], json!(["example.com/keep", PVC_PROTECTION_FINALIZER]));
        let mut volume = json!({"metadata": {"name": "pv-1"}});
        admit_volume(&mut volume);
        assert_eq!(volume["metadata"]["finalizers"], json!([PV_PROTECTION_FINALIZER]));
    }
}
