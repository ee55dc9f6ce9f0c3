//! Which Ingresses this gateway serves.
//!
//! The rules, in the order ingress-nginx applies them:
//! 1. The legacy annotation `kubernetes.io/ingress.class`, when present, decides
//!    alone: the Ingress is ours exactly when it names our class.
//! 2. `spec.ingressClassName` names an IngressClass: ours when that class's
//!    controller is ours. A name with no IngressClass object behind it is ours
//!    when it is our class name (as ingress-nginx's `--ingress-class-by-name`), so
//!    that an Ingress works before, or without, its class object.
//! 3. Neither: ours when one of our IngressClasses is marked as the cluster default.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// The annotation that names an Ingress's class, from before `ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The annotation that marks an IngressClass as the default for Ingresses that name none.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Whether `ing` belongs to the gateway named `class_name` that owns the
/// controller value `controller`, given the IngressClasses known by name.
pub fn is_ours(ing: &Ingress, classes: &BTreeMap<String, IngressClass>, class_name: &str, controller: &str) -> bool {
    if let Some(legacy) = ing.metadata.annotations.as_ref().and_then(|a| a.get(LEGACY_CLASS_ANNOTATION)) {
        return legacy == class_name;
    }
    match ing.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref()) {
        Some(name) => match classes.get(name) {
            Some(class) => controller_of(class) == Some(controller),
            None => name == class_name,
        },
        None => classes.values().any(|c| controller_of(c) == Some(controller) && is_default(c)),
    }
}

/// Whether an IngressClass carries the default-class annotation set to `"true"`.
pub fn is_default(class: &IngressClass) -> bool {
    class
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}

fn controller_of(class: &IngressClass) -> Option<&str> {
    class.spec.as_ref().and_then(|s| s.controller.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::{IngressClassSpec, IngressSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    const CLASS: &str = "skiff";
    const CONTROLLER: &str = "skiff.io/ingress";

    fn class(name: &str, controller: &str, default: bool) -> IngressClass {
        IngressClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: default.then(|| [(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            spec: Some(IngressClassSpec { controller: Some(controller.into()), ..Default::default() }),
        }
    }

    fn classes(list: &[IngressClass]) -> BTreeMap<String, IngressClass> {
        list.iter().map(|c| (c.metadata.name.clone().unwrap(), c.clone())).collect()
    }

    fn ingress(class_name: Option<&str>, legacy: Option<&str>) -> Ingress {
        Ingress {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                annotations: legacy.map(|l| [(LEGACY_CLASS_ANNOTATION.to_string(), l.to_string())].into()),
                ..Default::default()
            },
            spec: Some(IngressSpec { ingress_class_name: class_name.map(Into::into), ..Default::default() }),
            status: None,
        }
    }

    #[test]
    fn a_class_whose_controller_is_ours_selects_the_ingress() {
        let known = classes(&[class("public", CONTROLLER, false), class("nginx", "k8s.io/ingress-nginx", false)]);
        assert!(is_ours(&ingress(Some("public"), None), &known, CLASS, CONTROLLER));
        assert!(!is_ours(&ingress(Some("nginx"), None), &known, CLASS, CONTROLLER));
    }

    #[test]
    fn our_class_name_without_a_class_object_is_still_ours() {
        assert!(is_ours(&ingress(Some("skiff"), None), &BTreeMap::new(), CLASS, CONTROLLER));
        assert!(!is_ours(&ingress(Some("other"), None), &BTreeMap::new(), CLASS, CONTROLLER));
    }

    #[test]
    fn a_class_object_named_like_ours_but_run_by_another_controller_wins_over_the_name() {
        let known = classes(&[class("skiff", "example.com/other", false)]);
        assert!(!is_ours(&ingress(Some("skiff"), None), &known, CLASS, CONTROLLER));
    }

    #[test]
    fn an_ingress_without_a_class_is_ours_only_when_our_class_is_the_default() {
        let unclassed = ingress(None, None);
        assert!(!is_ours(&unclassed, &BTreeMap::new(), CLASS, CONTROLLER));
        assert!(!is_ours(&unclassed, &classes(&[class("skiff", CONTROLLER, false)]), CLASS, CONTROLLER));
        assert!(!is_ours(&unclassed, &classes(&[class("nginx", "k8s.io/ingress-nginx", true)]), CLASS, CONTROLLER));
        assert!(is_ours(&unclassed, &classes(&[class("skiff", CONTROLLER, true)]), CLASS, CONTROLLER));
    }

    #[test]
    fn the_legacy_annotation_decides_alone() {
        let default_ours = classes(&[class("skiff", CONTROLLER, true)]);
        assert!(is_ours(&ingress(None, Some("skiff")), &BTreeMap::new(), CLASS, CONTROLLER));
        assert!(!is_ours(&ingress(None, Some("nginx")), &default_ours, CLASS, CONTROLLER));
        assert!(!is_ours(&ingress(Some("skiff"), Some("nginx")), &default_ours, CLASS, CONTROLLER));
    }
}
