//! Admission on the write path: what each built-in plugin reads comes from the watch
//! caches, and the decisions from [`skiff_api::admission`].
//!
//! Creates go through two phases, as upstream: [`mutate_create`] (LimitRanger
//! defaults, ServiceAccount, Priority, DefaultTolerationSeconds; DefaultStorageClass
//! and StorageObjectInUseProtection for claims and volumes; DefaultIngressClass for
//! Ingresses) on the decoded object before it is prepared and validated, and
//! [`validate_create`] (LimitRanger bounds, the single global default PriorityClass,
//! ResourceQuota last) on the object about to be stored.
//! Updates only need [`validate_update`] (pods keep their priority and get the
//! default tolerations in [`super::prepare_update`]).
//!
//! Quota counts what the caches hold once they have caught up with the datastore,
//! not a `status.used` that admission increments atomically as upstream does. Two
//! creates racing in the same namespace may therefore both fit a quota that only
//! one of them fits; the next create after them sees both and is refused. Limit
//! ranges and priority classes are read without waiting, as upstream reads them
//! from informers.

use serde_json::Value;
use skiff_api::admission::{self, limit_range, priority, quota, Denied};
use skiff_api::{defaults, resources, ResourceInfo, StatusError};

use crate::app::App;

fn lookup(group: &str, plural: &str) -> &'static ResourceInfo {
    resources::lookup(group, "v1", plural).expect("registered")
}

/// Every cached object of `res` (in `namespace` when given).
pub fn cached(app: &App, res: &ResourceInfo, namespace: Option<&str>) -> Vec<Value> {
    let prefix = match namespace {
        Some(ns) if res.namespaced => format!("{}{}/", res.key_prefix(), ns),
        _ => res.key_prefix(),
    };
    app.cache(res).list(&prefix, None, 0, &|_| true).items.iter().map(|e| e.object.value()).collect()
}

fn is_pod(res: &ResourceInfo) -> bool {
    res.group.is_empty() && res.kind == "Pod"
}

fn is_priority_class(res: &ResourceInfo) -> bool {
    res.group == "scheduling.k8s.io" && res.kind == "PriorityClass"
}

/// The mutating phase of a create. `name` is what refusals call the object: its
/// name, or its `generateName` while the name is not chosen yet.
pub fn mutate_create(app: &App, res: &ResourceInfo, obj: &mut Value, name: &str) -> Result<(), StatusError> {
    if res.group.is_empty() && res.kind == "PersistentVolumeClaim" {
        let classes = cached(app, lookup("storage.k8s.io", "storageclasses"), None);
        admission::default_storage_class::admit_claim(obj, &classes);
        admission::storage_protection::admit_claim(obj);
        return Ok(());
    }
    if res.group == "networking.k8s.io" && res.kind == "Ingress" {
        let classes = cached(app, resources::lookup("networking.k8s.io", "v1", "ingressclasses").expect("registered"), None);
        admission::default_ingress_class::admit_ingress(obj, &classes);
        return Ok(());
    }
    if res.group.is_empty() && res.kind == "PersistentVolume" {
        admission::storage_protection::admit_volume(obj);
        return Ok(());
    }
    if !is_pod(res) {
        return Ok(());
    }
    let denied = |d: Denied| d.into_status(res, name);
    // Plugins see the object as decoded, defaults included.
    defaults::apply_defaults(res, obj);
    let namespace = skiff_api::meta::namespace(obj).map(String::from);
    let limit_ranges = cached(app, lookup("", "limitranges"), namespace.as_deref());
    limit_range::default_pod(obj, &limit_ranges);
    admission::default_service_account(obj);
    let account = obj.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or_default().to_string();
    let account_automount = namespace.as_deref().and_then(|ns| {
        let sas = lookup("", "serviceaccounts");
        app.cache(sas).get(&sas.key(Some(ns), &account)).and_then(|e| e.object.value().get("automountServiceAccountToken").and_then(Value::as_bool))
    });
    admission::mount_service_account_token(obj, account_automount, &random_suffix());
    admission::default_toleration_seconds(obj);
    let classes = cached(app, lookup("scheduling.k8s.io", "priorityclasses"), None);
    priority::admit_new_pod(obj, &classes).map_err(denied)?;
    Ok(())
}

/// Five characters as upstream's `utilrand.String(5)` draws them (no vowels, no
/// look-alike digits).
fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// The validating phase of a create, on the prepared object.
pub async fn validate_create(app: &App, res: &ResourceInfo, obj: &Value, name: &str, now: jiff::Timestamp) -> Result<(), StatusError> {
    let denied = |d: Denied| d.into_status(res, name);
    let namespace = skiff_api::meta::namespace(obj).map(String::from);
    match (res.group, res.kind) {
        ("", "Pod") => {
            let limit_ranges = cached(app, lookup("", "limitranges"), namespace.as_deref());
            limit_range::validate_pod(obj, &limit_ranges).map_err(denied)?;
        }
        ("", "PersistentVolumeClaim") => {
            let limit_ranges = cached(app, lookup("", "limitranges"), namespace.as_deref());
            limit_range::validate_claim(obj, &limit_ranges).map_err(denied)?;
        }
        _ if is_priority_class(res) => {
            priority::check_class(obj, &cached(app, res, None), true).map_err(denied)?;
        }
        _ => {}
    }
    if res.namespaced {
        if let Some(ns) = namespace.as_deref() {
            check_quota(app, res, obj, ns, name, now).await?;
        }
    }
    Ok(())
}

/// ResourceQuota: the quotas of the namespace that the object counts against, each
/// with what the namespace's current objects already use.
async fn check_quota(app: &App, res: &ResourceInfo, obj: &Value, namespace: &str, name: &str, now: jiff::Timestamp) -> Result<(), StatusError> {
    let quotas = cached(app, lookup("", "resourcequotas"), Some(namespace));
    let matching: Vec<&Value> = quotas.iter().filter(|q| quota::matches(q, res, obj)).collect();
    if matching.is_empty() {
        return Ok(());
    }
    // Count every object written before this one.
    app.sync_cache(res).await?;
    let existing = cached(app, res, Some(namespace));
    let uses: Vec<quota::QuotaUse<'_>> = matching
        .into_iter()
        .map(|q| quota::QuotaUse { quota: q, used: quota::used(q, res, existing.iter().filter(|o| quota::matches(q, res, o)), now) })
        .collect();
    quota::check(res, obj, &uses, now).map_err(|d| d.into_status(res, name))
}

/// The validating phase of an update (of the main resource).
pub fn validate_update(app: &App, res: &ResourceInfo, obj: &Value, _old: &Value) -> Result<(), StatusError> {
    if is_priority_class(res) {
        let name = skiff_api::meta::name(obj).to_string();
        priority::check_class(obj, &cached(app, res, None), false).map_err(|d| d.into_status(res, &name))?;
    }
    Ok(())
}
