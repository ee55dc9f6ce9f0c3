//! `metadata` on create and update, labels, annotations, and label selectors
//! (`k8s.io/apimachinery/pkg/api/validation` and `.../apis/meta/v1/validation`).

use serde_json::Value;

use super::field::{immutable, invalid_go, nonnegative, required_detail, Errs, Obj, Path, NULL};
use super::names::{self, NameRule};
use crate::selector::LabelSelector;
use crate::Cause;

/// Upstream's `TotalAnnotationSizeLimitB`.
pub(crate) const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Finalizers Kubernetes itself understands without a domain prefix.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// `ValidateObjectMeta`: the name (and generateName) in the kind's format, the
/// namespace when the kind is namespaced (and its absence otherwise), labels,
/// annotations, owner references and finalizers.
pub(crate) fn object_meta(obj: &Value, namespaced: bool, rule: NameRule, errs: &mut Errs) {
    let meta = obj.get("metadata").unwrap_or(&NULL);
    let path = Path::new("metadata");
    let generate = meta.str_or_empty("generateName");
    if !generate.is_empty() {
        for msg in rule.check(generate, true) {
            errs.push(Cause::invalid(&path.child("generateName"), &Value::from(generate), msg));
        }
    }
    let name = meta.str_or_empty("name");
    if name.is_empty() {
        errs.push(required_detail(&path.child("name"), "name or generateName is required"));
    } else {
        for msg in rule.check(name, false) {
            errs.push(Cause::invalid(&path.child("name"), &Value::from(name), msg));
        }
    }
    let namespace = meta.str_or_empty("namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(Cause::required(&path.child("namespace")));
        } else {
            for msg in names::dns1123_label(namespace) {
                errs.push(Cause::invalid(&path.child("namespace"), &Value::from(namespace), msg));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(Cause::forbidden(&path.child("namespace"), "not allowed on this type"));
    }
    nonnegative(meta.get("generation"), &path.child("generation"), errs);
    labels(meta.get("labels"), &path.child("labels"), errs);
    annotations(meta.get("annotations"), &path.child("annotations"), errs);
    owner_references(meta.get_arr("ownerReferences"), &path.child("ownerReferences"), errs);
    finalizers(meta.get_arr("finalizers"), &path.child("finalizers"), errs);
}

/// `ValidateObjectMetaUpdate`: identity fields may not change. The server owns
/// `resourceVersion` and `generation`, so they are not judged here.
pub(crate) fn object_meta_update(new: &Value, old: &Value, errs: &mut Errs) {
    let path = Path::new("metadata");
    let new_meta = new.get("metadata").unwrap_or(&NULL);
    let old_meta = old.get("metadata").unwrap_or(&NULL);
    for key in ["name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
        let a = new_meta.get(key).unwrap_or(&NULL);
        let b = old_meta.get(key).unwrap_or(&NULL);
        if a != b {
            errs.push(immutable(&path.child(key), a));
        }
    }
}

/// `ValidateLabels`: qualified-name keys and label values, reported at the map's path.
pub(crate) fn labels(labels: Option<&Value>, path: &Path, errs: &mut Errs) {
    let Some(map) = labels.and_then(Value::as_object) else { return };
    for (k, v) in map {
        label_key(k, path, errs);
        let v = v.as_str().unwrap_or("");
        for msg in names::label_value(v) {
            errs.push(Cause::invalid(path, &Value::from(v), msg));
        }
    }
}

/// `ValidateLabelName`.
pub(crate) fn label_key(k: &str, path: &Path, errs: &mut Errs) {
    for msg in names::qualified_name(k) {
        errs.push(Cause::invalid(path, &Value::from(k), msg));
    }
}

/// `ValidateAnnotations`: keys are qualified names (case-insensitive) and the total
/// size of keys and values is at most 256 KiB.
pub(crate) fn annotations(annotations: Option<&Value>, path: &Path, errs: &mut Errs) {
    let Some(map) = annotations.and_then(Value::as_object) else { return };
    let mut total = 0;
    for (k, v) in map {
        for msg in names::qualified_name(&k.to_lowercase()) {
            errs.push(Cause::invalid(path, &Value::from(k.as_str()), msg));
        }
        total += k.len() + v.as_str().map(str::len).unwrap_or(0);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(Cause::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

/// `ValidateOwnerReferences`; upstream reports at the list's path without an index.
fn owner_references(refs: &[Value], path: &Path, errs: &mut Errs) {
    let mut first_controller: Option<String> = None;
    for r in refs {
        let api_version = r.str_or_empty("apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(Cause::invalid(&path.child("apiVersion"), &Value::from(api_version), "version must not be empty"));
        }
        for key in ["kind", "name", "uid"] {
            let v = r.str_or_empty(key);
            if v.is_empty() {
                errs.push(Cause::invalid(&path.child(key), &Value::from(v), "must not be empty"));
            }
        }
        if r.get_bool("controller") == Some(true) {
            let current = format!("{}/{}", r.str_or_empty("kind"), r.str_or_empty("name"));
            match &first_controller {
                Some(first) => errs.push(Cause::invalid(
                    path,
                    &Value::from(format!("{first}, {current}")),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"),
                )),
                None => first_controller = Some(current),
            }
        }
    }
}

/// `ValidateFinalizers` plus the core rule that unqualified names must be standard ones.
fn finalizers(list: &[Value], path: &Path, errs: &mut Errs) {
    let mut orphan = false;
    let mut foreground = false;
    for (i, f) in list.iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        finalizer_name(f, path, errs);
        if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f) {
            errs.push(Cause::invalid(
                &path.index(i),
                &Value::from(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
        orphan |= f == "orphan";
        foreground |= f == "foregroundDeletion";
    }
    if orphan && foreground {
        errs.push(invalid_go(
            path,
            &super::field::go_string_slice(Some(&Value::Array(list.to_vec()))),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
}

/// `ValidateFinalizerName`: a qualified name.
pub(crate) fn finalizer_name(f: &str, path: &Path, errs: &mut Errs) {
    for msg in names::qualified_name(f) {
        errs.push(Cause::invalid(path, &Value::from(f), msg));
    }
}

// === label selectors ===

/// `ValidateLabelSelector` for a `metav1.LabelSelector`.
pub(crate) fn label_selector(sel: &Value, path: &Path, errs: &mut Errs) {
    labels(sel.get("matchLabels"), &path.child("matchLabels"), errs);
    for (i, req) in sel.get_arr("matchExpressions").iter().enumerate() {
        let rp = path.child("matchExpressions").index(i);
        let op = req.str_or_empty("operator");
        let values = req.get_arr("values");
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(required_detail(&rp.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(Cause::forbidden(&rp.child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"));
                }
            }
            _ => errs.push(Cause::invalid(&rp.child("operator"), &Value::from(op), "not a valid selector operator")),
        }
        label_key(req.str_or_empty("key"), &rp.child("key"), errs);
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            for msg in names::label_value(v) {
                errs.push(Cause::invalid(&rp.child("values").index(j), &Value::from(v), msg));
            }
        }
    }
}

/// What a `metav1.LabelSelector` converts to (`LabelSelectorAsSelector`), built by
/// [`LabelSelector::from_json`] so matching has one implementation crate-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selector {
    /// A selector that converts; an absent one selects nothing, `{}` everything.
    Parsed(LabelSelector),
    /// A selector that does not convert (bad operator, key or values).
    Invalid,
}

impl Selector {
    pub(crate) fn from_json(sel: Option<&Value>) -> Selector {
        match LabelSelector::from_json(sel.unwrap_or(&NULL)) {
            Ok(s) => Selector::Parsed(s),
            Err(_) => Selector::Invalid,
        }
    }

    /// Whether the selector has no requirements (`labels.Selector.Empty`).
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Selector::Parsed(s) if s.is_empty())
    }

    /// Whether the selector is the one an absent selector converts to.
    pub(crate) fn is_nothing(&self) -> bool {
        matches!(self, Selector::Parsed(s) if *s == LabelSelector::nothing())
    }

    pub(crate) fn matches(&self, labels: Option<&Value>) -> bool {
        match self {
            Selector::Parsed(s) => s.matches(&|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str).map(String::from)),
            Selector::Invalid => false,
        }
    }
}

/// The shared message of every "selector does not match template" error.
pub(crate) const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta_errs(obj: Value, namespaced: bool, rule: NameRule) -> Errs {
        let mut errs = Vec::new();
        object_meta(&obj, namespaced, rule, &mut errs);
        errs
    }

    #[test]
    fn name_is_required() {
        let errs = meta_errs(json!({"metadata": {"namespace": "default"}}), true, NameRule::Subdomain);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.name");
        assert_eq!(errs[0].message, "Required value: name or generateName is required");
    }

    #[test]
    fn cluster_scoped_objects_may_not_have_a_namespace() {
        let errs = meta_errs(json!({"metadata": {"name": "n", "namespace": "x"}}), false, NameRule::Subdomain);
        assert_eq!(errs[0].field, "metadata.namespace");
        assert_eq!(errs[0].reason, "FieldValueForbidden");
    }

    #[test]
    fn bad_labels_and_annotations_are_reported_at_the_map() {
        let errs = meta_errs(
            json!({"metadata": {"name": "n", "namespace": "d", "labels": {"bad key": "ok", "k": "-bad"}, "annotations": {"x/y/z": "v"}}}),
            true,
            NameRule::Subdomain,
        );
        let fields: Vec<&str> = errs.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["metadata.labels", "metadata.labels", "metadata.annotations"]);
        assert!(errs[0].message.starts_with("Invalid value: \"bad key\": name part must consist"));
    }

    #[test]
    fn annotations_are_limited_to_256_kib() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let errs = meta_errs(json!({"metadata": {"name": "n", "namespace": "d", "annotations": {"a": big}}}), true, NameRule::Subdomain);
        assert_eq!(errs[0].reason, "FieldValueTooLong");
        assert_eq!(errs[0].field, "metadata.annotations");
    }

    #[test]
    fn unqualified_finalizers_must_be_standard() {
        let errs =
            meta_errs(json!({"metadata": {"name": "n", "finalizers": ["kubernetes", "mine", "example.com/mine"]}}), false, NameRule::Label);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.finalizers[1]");
    }

    #[test]
    fn identity_fields_are_immutable() {
        let mut errs = Vec::new();
        object_meta_update(&json!({"metadata": {"name": "b", "uid": "1"}}), &json!({"metadata": {"name": "a", "uid": "1"}}), &mut errs);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.name");
        assert_eq!(errs[0].message, "Invalid value: \"b\": field is immutable");
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}, {"key": "x", "operator": "DoesNotExist"}]});
        let s = Selector::from_json(Some(&sel));
        assert!(s.matches(Some(&json!({"app": "web", "tier": "fe"}))));
        assert!(!s.matches(Some(&json!({"app": "web", "tier": "db"}))));
        assert!(!s.matches(Some(&json!({"app": "web", "tier": "fe", "x": "1"}))));
        assert!(!Selector::from_json(None).matches(Some(&json!({}))));
        assert!(Selector::from_json(Some(&json!({}))).is_empty());
        assert_eq!(Selector::from_json(Some(&json!({"matchExpressions": [{"key": "a", "operator": "Bad"}]}))), Selector::Invalid);
        assert!(Selector::from_json(None).is_nothing());
    }

    #[test]
    fn selector_requirements_are_checked() {
        let mut errs = Vec::new();
        label_selector(
            &json!({"matchExpressions": [{"key": "a", "operator": "In"}, {"key": "b", "operator": "Exists", "values": ["x"]}]}),
            &Path::new("spec.selector"),
            &mut errs,
        );
        assert_eq!(errs[0].field, "spec.selector.matchExpressions[0].values");
        assert_eq!(errs[0].message, "Required value: must be specified when `operator` is 'In' or 'NotIn'");
        assert_eq!(errs[1].reason, "FieldValueForbidden");
    }
}
