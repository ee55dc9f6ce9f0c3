//! The Priority admission plugin (`plugin/pkg/admission/priority`).
//!
//! A new pod's `spec.priority` (and `spec.preemptionPolicy`) come from the
//! PriorityClass its `spec.priorityClassName` names, or from the class marked
//! `globalDefault` when it names none (priority 0 without one). Clients may repeat
//! the value the class gives, never another. On updates the computed fields are
//! carried over when the client left them out. PriorityClasses themselves may have
//! only one global default.

use serde_json::{json, Value};

use super::Denied;
use crate::validation::SYSTEM_PRIORITY_CLASSES;

/// The priority of pods when no class is the global default.
pub const DEFAULT_PRIORITY: i64 = 0;

/// The policy of pods when no class says otherwise.
pub const DEFAULT_PREEMPTION_POLICY: &str = "PreemptLowerPriority";

/// The built-in classes, as the API server creates them when it starts.
pub fn system_classes() -> Vec<Value> {
    SYSTEM_PRIORITY_CLASSES
        .iter()
        .map(|(name, value)| {
            let description = match *name {
                "system-node-critical" => "Used for system critical pods that must not be moved from their current node.",
                _ => "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
            };
            json!({
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
                "description": description,
                "preemptionPolicy": DEFAULT_PREEMPTION_POLICY,
            })
        })
        .collect()
}

fn is_global_default(pc: &Value) -> bool {
    pc.get("globalDefault").and_then(Value::as_bool).unwrap_or(false)
}

fn value_of(pc: &Value) -> i64 {
    pc.get("value").and_then(Value::as_i64).unwrap_or(0)
}

fn name_of(pc: &Value) -> &str {
    pc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

/// `getDefaultPriorityClass`: the global default; when a race left several, the one
/// with the lowest value.
pub fn default_class(classes: &[Value]) -> Option<&Value> {
    classes.iter().filter(|pc| is_global_default(pc)).min_by_key(|pc| value_of(pc))
}

/// Resolves a new pod's priority from `classes` (every PriorityClass there is).
pub fn admit_new_pod(pod: &mut Value, classes: &[Value]) -> Result<(), Denied> {
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    let class_name = spec.get("priorityClassName").and_then(Value::as_str).unwrap_or("");
    let (name, priority, policy) = if class_name.is_empty() {
        match default_class(classes) {
            Some(pc) => (name_of(pc).to_string(), value_of(pc), pc.get("preemptionPolicy").and_then(Value::as_str).map(String::from)),
            None => (String::new(), DEFAULT_PRIORITY, Some(DEFAULT_PREEMPTION_POLICY.to_string())),
        }
    } else {
        match classes.iter().find(|pc| name_of(pc) == class_name) {
            Some(pc) => (class_name.to_string(), value_of(pc), pc.get("preemptionPolicy").and_then(Value::as_str).map(String::from)),
            None => return Err(Denied(format!("no PriorityClass with name {class_name} was found"))),
        }
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        if given != priority {
            return Err(Denied(format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            )));
        }
    }
    if let Some(policy) = &policy {
        if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str) {
            if given != policy {
                return Err(Denied(format!(
                    "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                )));
            }
        }
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    if !name.is_empty() {
        spec.insert("priorityClassName".into(), json!(name));
    }
    spec.insert("priority".into(), json!(priority));
    if let Some(policy) = policy {
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

/// Keeps the priority fields admission set at create when an update leaves them out
/// (validation then refuses any real change to them).
pub fn keep_on_update(pod: &mut Value, old: &Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    for key in ["priority", "preemptionPolicy"] {
        if spec.get(key).is_none_or(Value::is_null) {
            if let Some(v) = old.pointer(&format!("/spec/{key}")).filter(|v| !v.is_null()) {
                spec.insert(key.into(), v.clone());
            }
        }
    }
}

/// `validatePriorityClass`: a class may become the global default only while no
/// other class is. `classes` is every existing class (the one being updated included).
pub fn check_class(pc: &Value, classes: &[Value], creating: bool) -> Result<(), Denied> {
    if !is_global_default(pc) {
        return Ok(());
    }
    match default_class(classes) {
        Some(existing) if creating || name_of(existing) != name_of(pc) => Err(Denied(format!(
            "PriorityClass {} is already marked as default. Only one default can exist",
            name_of(existing)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, value: i64, default: bool) -> Value {
        json!({"metadata": {"name": name}, "value": value, "globalDefault": default, "preemptionPolicy": "PreemptLowerPriority"})
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn pods_take_the_value_of_their_class() {
        let mut classes = system_classes();
        classes.push(json!({"metadata": {"name": "batch"}, "value": 100, "preemptionPolicy": "Never"}));
        let mut p = pod(json!({"priorityClassName": "batch"}));
        admit_new_pod(&mut p, &classes).unwrap();
        assert_eq!((p["spec"]["priority"].clone(), p["spec"]["preemptionPolicy"].clone()), (json!(100), json!("Never")));
        let mut critical = pod(json!({"priorityClassName": "system-node-critical"}));
        admit_new_pod(&mut critical, &classes).unwrap();
        assert_eq!(critical["spec"]["priority"], 2_000_001_000);
    }

    #[test]
    fn an_unknown_class_is_refused() {
        let mut p = pod(json!({"priorityClassName": "foo"}));
        assert_eq!(admit_new_pod(&mut p, &system_classes()).unwrap_err().0, "no PriorityClass with name foo was found");
    }

    #[test]
    fn pods_without_a_class_get_the_global_default_or_zero() {
        let mut p = pod(json!({}));
        admit_new_pod(&mut p, &system_classes()).unwrap();
        assert_eq!((p["spec"]["priority"].clone(), p["spec"]["preemptionPolicy"].clone()), (json!(0), json!("PreemptLowerPriority")));
        assert!(p["spec"].get("priorityClassName").is_none());
        let classes = vec![class("low", 10, true), class("lower", 5, true), class("high", 1000, false)];
        let mut d = pod(json!({}));
        admit_new_pod(&mut d, &classes).unwrap();
        assert_eq!((d["spec"]["priorityClassName"].clone(), d["spec"]["priority"].clone()), (json!("lower"), json!(5)));
    }

    #[test]
    fn a_priority_may_only_repeat_what_the_class_gives() {
        let classes = vec![class("high", 1000, false)];
        let mut same = pod(json!({"priorityClassName": "high", "priority": 1000}));
        assert!(admit_new_pod(&mut same, &classes).is_ok());
        let mut other = pod(json!({"priorityClassName": "high", "priority": 7}));
        assert_eq!(
            admit_new_pod(&mut other, &classes).unwrap_err().0,
            "the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
        );
        let mut policy = pod(json!({"priorityClassName": "high", "preemptionPolicy": "Never"}));
        assert!(admit_new_pod(&mut policy, &classes).unwrap_err().0.starts_with("the string value of PreemptionPolicy (Never) must not be provided"));
    }

    #[test]
    fn updates_keep_the_computed_priority() {
        let old = pod(json!({"priority": 1000, "preemptionPolicy": "Never"}));
        let mut new = pod(json!({"containers": []}));
        keep_on_update(&mut new, &old);
        assert_eq!((new["spec"]["priority"].clone(), new["spec"]["preemptionPolicy"].clone()), (json!(1000), json!("Never")));
    }

    #[test]
    fn only_one_class_is_the_global_default() {
        let classes = vec![class("low", 10, true), class("high", 1000, false)];
        let e = check_class(&class("another", 1, true), &classes, true).unwrap_err();
        assert_eq!(e.0, "PriorityClass low is already marked as default. Only one default can exist");
        assert!(check_class(&class("low", 10, true), &classes, false).is_ok());
        assert!(check_class(&class("high", 1000, true), &classes, false).is_err());
        assert!(check_class(&class("x", 1, false), &classes, true).is_ok());
    }
}
