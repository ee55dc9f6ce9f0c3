//! What kube-apiserver's built-in admission plugins decide about a write, as pure
//! functions over the objects they read.
//!
//! The API server gathers what a plugin looks at (the namespace's LimitRanges and
//! ResourceQuotas, the PriorityClasses, the pods a quota counts) from its watch
//! caches and calls in here; nothing here does I/O. The order of the calls is
//! upstream's: the mutating plugins (LimitRanger defaults, ServiceAccount, Priority)
//! run on the decoded, defaulted object; then the object is validated; then the
//! validating plugins (LimitRanger bounds, ResourceQuota last) judge the result.
//!
//! - [`priority`]: a pod's priority from its PriorityClass; one global default.
//! - [`limit_range`]: default requests and limits, and min/max/ratio bounds.
//! - [`quota`]: what an object counts against a ResourceQuota, and the refusal
//!   when a create would exceed one.
//! - [`eviction`]: the disruption-budget check of `pods/eviction`.
//! - [`default_storage_class`]: the default StorageClass of claims that name none.
//! - [`default_ingress_class`]: the default IngressClass of Ingresses that name none.
//! - [`storage_protection`]: the finalizers that keep claims and volumes in use.
//! - [`default_service_account`]: the ServiceAccount plugin's defaulting.
//! - [`default_toleration_seconds`]: how long pods stay on unready or unreachable nodes.

use serde_json::{json, Value};

use crate::{ResourceInfo, StatusError};

pub mod default_ingress_class;
pub mod default_storage_class;
pub mod eviction;
pub mod limit_range;
pub mod priority;
pub mod quota;
pub mod storage_protection;

/// Of the classes that `is_default` marks as the default, the newest; classes
/// created in the same instant are taken by name. Upstream's DefaultStorageClass and
/// DefaultIngressClass plugins both settle several defaults this way rather than
/// refusing the write.
fn newest_default(classes: &[Value], is_default: impl Fn(&Value) -> bool) -> Option<&Value> {
    let created = |c: &Value| {
        c.pointer("/metadata/creationTimestamp").and_then(Value::as_str).and_then(|t| t.parse::<jiff::Timestamp>().ok()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    };
    let name = |c: &Value| c.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    classes.iter().filter(|c| is_default(c)).min_by(|a, b| created(b).cmp(&created(a)).then_with(|| name(a).cmp(&name(b))))
}

/// Why an admission plugin refused a write. At the API edge it becomes a 403
/// Forbidden: `pods "web" is forbidden: <reason>` (see [`Denied::into_status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl Denied {
    /// `admission.NewForbidden`: the resource, the object's name (its `generateName`
    /// when the name is not chosen yet), and the reason.
    pub fn into_status(self, res: &ResourceInfo, name: &str) -> StatusError {
        let resource = if res.group.is_empty() { res.plural.to_string() } else { format!("{}.{}", res.plural, res.group) };
        let message = if name.is_empty() {
            format!("{resource} is forbidden: {}", self.0)
        } else {
            format!("{resource} \"{name}\" is forbidden: {}", self.0)
        };
        let mut e = StatusError::forbidden(message);
        e.name = Some(name.to_string());
        e.group = Some(res.group.to_string());
        e.kind = Some(res.plural.to_string());
        e
    }
}

/// `utilerrors.NewAggregate(errs).Error()`: one message as is, several (repeats
/// dropped) in brackets.
pub(crate) fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in errs {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop(),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

/// The service account pods run as when they name none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// The ServiceAccount plugin's defaulting of a new pod: `spec.serviceAccountName`
/// (and its deprecated twin `spec.serviceAccount`, which v1 keeps equal) becomes
/// `default` when unset. Mirror pods are left alone. A missing account is not an
/// error here: the token controller may create it later.
pub fn default_service_account(pod: &mut Value) {
    if pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some() {
        return;
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let mut name = text(spec.get("serviceAccountName"));
    if name.is_empty() {
        name = text(spec.get("serviceAccount"));
    }
    if name.is_empty() {
        name = DEFAULT_SERVICE_ACCOUNT.to_string();
    }
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
}

/// Where containers find their service account's credentials.
pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The ServiceAccount plugin's token mount: unless the pod (or, when the pod does
/// not say, its service account) opts out with `automountServiceAccountToken:
/// false`, a projected `kube-api-access-<suffix>` volume (a bound token refreshed by
/// the kubelet, the cluster CA from `kube-root-ca.crt`, and the namespace) is added
/// and mounted read-only at [`SERVICE_ACCOUNT_MOUNT_PATH`] in every container that
/// does not mount something there already. `suffix` is upstream's five random
/// characters. Mirror pods are left alone.
pub fn mount_service_account_token(pod: &mut Value, account_automount: Option<bool>, suffix: &str) {
    if pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some() {
        return;
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let automount = spec.get("automountServiceAccountToken").and_then(Value::as_bool).or(account_automount).unwrap_or(true);
    if !automount {
        return;
    }
    let mounts_path = |c: &Value| {
        c.get("volumeMounts").and_then(Value::as_array).is_some_and(|ms| ms.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_MOUNT_PATH)))
    };
    let kinds = ["initContainers", "containers"];
    let needs: bool = kinds.iter().any(|k| spec.get(*k).and_then(Value::as_array).is_some_and(|cs| cs.iter().any(|c| !mounts_path(c))));
    if !needs {
        return;
    }
    // A pod that already has such a volume (re-admitted, or written by hand) reuses it.
    let existing = spec.get("volumes").and_then(Value::as_array).and_then(|vs| {
        vs.iter().find_map(|v| {
            let name = v.get("name").and_then(Value::as_str)?;
            (name.starts_with("kube-api-access-") && v.get("projected").is_some()).then(|| name.to_string())
        })
    });
    let name = match existing {
        Some(n) => n,
        None => {
            let name = format!("kube-api-access-{suffix}");
            let volume = json!({
                "name": name,
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                    ]
                }
            });
            match spec.get_mut("volumes").and_then(Value::as_array_mut) {
                Some(vs) => vs.push(volume),
                None => {
                    spec.insert("volumes".into(), json!([volume]));
                }
            }
            name
        }
    };
    for k in kinds {
        let Some(cs) = spec.get_mut(k).and_then(Value::as_array_mut) else { continue };
        for c in cs.iter_mut() {
            if mounts_path(c) {
                continue;
            }
            let Some(c) = c.as_object_mut() else { continue };
            let mount = json!({"name": name, "readOnly": true, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH});
            match c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                Some(ms) => ms.push(mount),
                None => {
                    c.insert("volumeMounts".into(), json!([mount]));
                }
            }
        }
    }
}

/// How long pods stay bound to a node that turned unready or unreachable before the
/// node lifecycle controller evicts them (`--default-not-ready-toleration-seconds`).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The DefaultTolerationSeconds plugin (create and update of pods): pods that do
/// not tolerate the `NoExecute` taints of unready and unreachable nodes tolerate
/// them for [`DEFAULT_TOLERATION_SECONDS`]. A toleration with an empty key or effect
/// covers the taint already.
pub fn default_toleration_seconds(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let list = list.as_array_mut().expect("just made a list");
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let text = |t: &Value, k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let tolerated = list.iter().any(|t| {
            let (k, effect) = (text(t, "key"), text(t, "effect"));
            (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        });
        if !tolerated {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;

    #[test]
    fn refusals_read_like_upstream() {
        let pods = lookup("", "v1", "pods").unwrap();
        let e = Denied("no PriorityClass with name foo was found".into()).into_status(pods, "web");
        assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
        assert_eq!(e.message, "pods \"web\" is forbidden: no PriorityClass with name foo was found");
        let pcs = lookup("scheduling.k8s.io", "v1", "priorityclasses").unwrap();
        let e = Denied("x".into()).into_status(pcs, "high");
        assert_eq!(e.message, "priorityclasses.scheduling.k8s.io \"high\" is forbidden: x");
    }

    #[test]
    fn several_reasons_are_bracketed_once_each() {
        assert_eq!(aggregate(vec![]), None);
        assert_eq!(aggregate(vec!["a".into()]).as_deref(), Some("a"));
        assert_eq!(aggregate(vec!["a".into(), "b".into(), "a".into()]).as_deref(), Some("[a, b]"));
    }

    #[test]
    fn pods_run_as_the_default_service_account_unless_they_name_one() {
        let mut p = json!({"spec": {"containers": []}});
        default_service_account(&mut p);
        assert_eq!((p["spec"]["serviceAccountName"].clone(), p["spec"]["serviceAccount"].clone()), (json!("default"), json!("default")));
        let mut named = json!({"spec": {"serviceAccountName": "builder"}});
        default_service_account(&mut named);
        assert_eq!(named["spec"]["serviceAccount"], "builder");
        let mut old_field = json!({"spec": {"serviceAccount": "legacy"}});
        default_service_account(&mut old_field);
        assert_eq!(old_field["spec"]["serviceAccountName"], "legacy");
        let mut mirror = json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}, "spec": {}});
        default_service_account(&mut mirror);
        assert!(mirror["spec"].get("serviceAccountName").is_none());
    }

    #[test]
    fn pods_tolerate_unready_nodes_for_five_minutes() {
        let mut p = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]}});
        default_toleration_seconds(&mut p);
        let t = p["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1], json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        let mut everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut everything);
        assert_eq!(everything["spec"]["tolerations"].as_array().unwrap().len(), 1);
        let mut again = p.clone();
        default_toleration_seconds(&mut again);
        assert_eq!(again, p);
    }
    #[test]
    fn pods_get_a_projected_token_volume_mounted_in_every_container() {
        let mut p = json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "own", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}], "initContainers": [{"name": "i"}]}});
        mount_service_account_token(&mut p, None, "x7k2q");
        assert_eq!(p["spec"]["volumes"][0]["name"], "kube-api-access-x7k2q");
        assert_eq!(p["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["path"], "token");
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"][0]["mountPath"], SERVICE_ACCOUNT_MOUNT_PATH);
        assert_eq!(p["spec"]["containers"][1]["volumeMounts"].as_array().unwrap().len(), 1, "a container mounting the path keeps its own");
        assert_eq!(p["spec"]["initContainers"][0]["volumeMounts"][0]["readOnly"], true);
        // Admitting again changes nothing.
        let before = p.clone();
        mount_service_account_token(&mut p, None, "other");
        assert_eq!(p, before);
    }

    #[test]
    fn automount_false_on_the_pod_or_its_account_skips_the_token() {
        let mut p = json!({"spec": {"automountServiceAccountToken": false, "containers": [{"name": "a"}]}});
        mount_service_account_token(&mut p, Some(true), "abcde");
        assert!(p["spec"].get("volumes").is_none());
        let mut p = json!({"spec": {"containers": [{"name": "a"}]}});
        mount_service_account_token(&mut p, Some(false), "abcde");
        assert!(p["spec"].get("volumes").is_none());
        let mut p = json!({"spec": {"automountServiceAccountToken": true, "containers": [{"name": "a"}]}});
        mount_service_account_token(&mut p, Some(false), "abcde");
        assert_eq!(p["spec"]["volumes"][0]["name"], "kube-api-access-abcde");
    }

}
