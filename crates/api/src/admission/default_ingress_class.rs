//! The DefaultIngressClass admission plugin
//! (`plugin/pkg/admission/network/defaultingressclass`).
//!
//! An Ingress created without a class gets the name of the class the cluster marks
//! as default, so users need not know which controllers run. An Ingress that names a
//! class, even the empty one, or still uses the legacy `kubernetes.io/ingress.class`
//! annotation is left alone, as are updates and the status subresource.

use serde_json::Value;

use crate::validation::INGRESS_CLASS_ANNOTATION;

/// The annotation that marks an IngressClass as the cluster's default.
pub const IS_DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Whether the class carries `ingressclass.kubernetes.io/is-default-class: "true"`.
pub fn is_default_class(class: &Value) -> bool {
    class.pointer("/metadata/annotations").and_then(|a| a.get(IS_DEFAULT_CLASS_ANNOTATION)).and_then(Value::as_str) == Some("true")
}

/// Whether the Ingress names its class: `spec.ingressClassName` is set (empty or
/// not) or the legacy annotation is.
pub fn ingress_has_class(ingress: &Value) -> bool {
    ingress.pointer("/spec/ingressClassName").is_some_and(|c| !c.is_null())
        || ingress.pointer("/metadata/annotations").and_then(|a| a.get(INGRESS_CLASS_ANNOTATION)).is_some()
}

/// `getDefaultClass`: of the classes marked default, the newest (by name when they
/// were created in the same instant).
pub fn default_class(classes: &[Value]) -> Option<&Value> {
    super::newest_default(classes, is_default_class)
}

/// Admits a new Ingress: names the default class in `spec.ingressClassName` when the
/// Ingress names none and `classes` (every IngressClass there is) has a default.
pub fn admit_ingress(ingress: &mut Value, classes: &[Value]) {
    if ingress_has_class(ingress) {
        return;
    }
    let Some(name) = default_class(classes).and_then(|c| c.pointer("/metadata/name")).cloned() else { return };
    let Some(obj) = ingress.as_object_mut() else { return };
    let spec = obj.entry("spec").or_insert_with(|| Value::Object(Default::default()));
    if let Some(spec) = spec.as_object_mut() {
        spec.insert("ingressClassName".into(), name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, created: &str, default: &str) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created, "annotations": {IS_DEFAULT_CLASS_ANNOTATION: default}}, "spec": {"controller": "skiff.io/gateway"}})
    }

    #[test]
    fn ingresses_without_a_class_get_the_newest_default() {
        let classes = [
            class("old", "2024-01-01T00:00:00Z", "true"),
            class("new", "2024-06-01T00:00:00Z", "true"),
            class("newest", "2025-01-01T00:00:00Z", "false"),
            class("yes", "2025-02-01T00:00:00Z", "True"),
        ];
        let mut ing = json!({"metadata": {"name": "web"}, "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}});
        admit_ingress(&mut ing, &classes);
        assert_eq!(ing["spec"]["ingressClassName"], "new", "only the exact value \"true\" marks a default");
    }

    #[test]
    fn defaults_made_at_the_same_time_are_taken_by_name() {
        let classes = [class("b", "2024-01-01T00:00:00Z", "true"), class("a", "2024-01-01T00:00:00Z", "true")];
        assert_eq!(default_class(&classes).unwrap()["metadata"]["name"], "a");
    }

    #[test]
    fn a_named_empty_or_annotated_class_is_kept() {
        let classes = [class("skiff", "2024-01-01T00:00:00Z", "true")];
        let mut named = json!({"spec": {"ingressClassName": "nginx"}});
        admit_ingress(&mut named, &classes);
        assert_eq!(named["spec"]["ingressClassName"], "nginx");
        let mut empty = json!({"spec": {"ingressClassName": ""}});
        admit_ingress(&mut empty, &classes);
        assert_eq!(empty["spec"]["ingressClassName"], "");
        let mut legacy = json!({"metadata": {"annotations": {INGRESS_CLASS_ANNOTATION: "nginx"}}, "spec": {}});
        admit_ingress(&mut legacy, &classes);
        assert!(legacy["spec"].get("ingressClassName").is_none());
        let mut none = json!({"spec": {}});
        admit_ingress(&mut none, &[class("plain", "2024-01-01T00:00:00Z", "false")]);
        assert!(none["spec"].get("ingressClassName").is_none(), "no default class, no class");
        let mut null = json!({"spec": {"ingressClassName": null}});
        admit_ingress(&mut null, &classes);
        assert_eq!(null["spec"]["ingressClassName"], "skiff", "null is no class");
    }
}
