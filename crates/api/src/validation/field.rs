//! Field paths, the causes upstream builds that [`Cause`] has no constructor for, and
//! reading helpers over JSON objects.
//!
//! Upstream renders bad values with Go's `%#v` when they are not strings or numbers, so
//! a selector mismatch reads `map[string]string{"app":"web"}`. Users paste these
//! messages into searches; the renderers here keep them recognisable.

use std::fmt;

use serde_json::{Map, Value};

use crate::Cause;

/// A field path as upstream prints it: `spec.containers[0].resources.limits[cpu]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn new(root: &str) -> Path {
        Path(root.to_string())
    }

    /// `a.b`; a child of the empty (root) path is just the name.
    pub(crate) fn child(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{}", self.0, name))
        }
    }

    /// `a[3]`.
    pub(crate) fn index(&self, i: usize) -> Path {
        Path(format!("{}[{}]", self.0, i))
    }

    /// `a[key]`, for map entries (upstream does not quote the key).
    pub(crate) fn key(&self, k: &str) -> Path {
        Path(format!("{}[{}]", self.0, k))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&Path> for String {
    fn from(p: &Path) -> String {
        p.0.clone()
    }
}

/// Every problem found so far; validation never stops at the first.
pub(crate) type Errs = Vec<Cause>;

// === causes beyond the ones `Cause` provides ===

/// `Required value: <detail>`.
pub(crate) fn required_detail(path: &Path, detail: &str) -> Cause {
    let mut c = Cause::required(path);
    if !detail.is_empty() {
        c.message = format!("Required value: {detail}");
    }
    c
}

/// `Invalid value: <rendered>: <detail>`, for values upstream prints with `%#v`.
pub(crate) fn invalid_go(path: &Path, rendered: &str, detail: &str) -> Cause {
    Cause { reason: "FieldValueInvalid".into(), field: path.into(), message: format!("Invalid value: {rendered}: {detail}") }
}

/// `Not found: "x"` (`FieldValueNotFound`).
pub(crate) fn not_found(path: &Path, value: &str) -> Cause {
    Cause { reason: "FieldValueNotFound".into(), field: path.into(), message: format!("Not found: {value:?}") }
}

/// `Too many: 1001: must have at most 1000 items` (`FieldValueTooMany`).
pub(crate) fn too_many(path: &Path, actual: usize, max: usize) -> Cause {
    Cause { reason: "FieldValueTooMany".into(), field: path.into(), message: format!("Too many: {actual}: must have at most {max} items") }
}

/// `Duplicate value: <rendered>` for values upstream prints with `%#v`.
pub(crate) fn duplicate_go(path: &Path, rendered: &str) -> Cause {
    Cause { reason: "FieldValueDuplicate".into(), field: path.into(), message: format!("Duplicate value: {rendered}") }
}

/// `Unsupported value: <rendered>: supported values: ...` for `%#v` values.
pub(crate) fn not_supported_go(path: &Path, rendered: &str, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
    Cause {
        reason: "FieldValueNotSupported".into(),
        field: path.into(),
        message: format!("Unsupported value: {rendered}: supported values: {}", list.join(", ")),
    }
}

/// The upstream `field is immutable` error.
pub(crate) fn immutable(path: &Path, new: &Value) -> Cause {
    Cause::invalid(path, new, IMMUTABLE)
}

pub(crate) const IMMUTABLE: &str = "field is immutable";
pub(crate) const NEGATIVE: &str = "must be greater than or equal to 0";

/// `ValidateNonnegativeField`.
pub(crate) fn nonnegative(v: Option<&Value>, path: &Path, errs: &mut Errs) {
    if let Some(n) = v.and_then(Value::as_i64) {
        if n < 0 {
            errs.push(Cause::invalid(path, &Value::from(n), NEGATIVE));
        }
    }
}

// === reading JSON ===

/// Short accessors over JSON objects. Wrongly typed fields read as absent: the strict
/// schema check reports type errors, validation only judges values.
pub(crate) trait Obj {
    fn get_str(&self, key: &str) -> Option<&str>;
    /// The string, or `""` when absent.
    fn str_or_empty(&self, key: &str) -> &str;
    fn get_i64(&self, key: &str) -> Option<i64>;
    fn get_bool(&self, key: &str) -> Option<bool>;
    fn get_obj(&self, key: &str) -> Option<&Map<String, Value>>;
    /// The array, or an empty slice.
    fn get_arr(&self, key: &str) -> &[Value];
    /// Present and not `null`.
    fn has(&self, key: &str) -> bool;
}

impl Obj for Value {
    fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
    fn str_or_empty(&self, key: &str) -> &str {
        self.get_str(key).unwrap_or("")
    }
    fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_i64)
    }
    fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(Value::as_bool)
    }
    fn get_obj(&self, key: &str) -> Option<&Map<String, Value>> {
        self.get(key).and_then(Value::as_object)
    }
    fn get_arr(&self, key: &str) -> &[Value] {
        self.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }
    fn has(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| !v.is_null())
    }
}

/// The `null` that stands for an absent field.
pub(crate) static NULL: Value = Value::Null;

/// Compares two JSON values the way `apiequality.Semantic.DeepEqual` compares the
/// typed objects: `null`, empty lists and empty maps all equal an absent field.
pub(crate) fn semantic_eq(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

pub(crate) fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let n = normalize(v);
                if !is_empty(&n) {
                    out.insert(k.clone(), n);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Lists the leaf differences between two values as `path: old -> new` lines, the
/// stand-in for the `cmp.Diff` that upstream appends to "may not change" errors.
pub(crate) fn diff(old: &Value, new: &Value) -> String {
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    walk(&p, va, y.get(k).unwrap_or(&Value::Null), out);
                }
                for (k, vb) in y {
                    if !x.contains_key(k) {
                        let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                        walk(&p, &Value::Null, vb, out);
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    walk(&format!("{path}[{i}]"), va, vb, out);
                }
            }
            _ if a == b => {}
            _ => out.push(format!("  {path}: {a} -> {b}")),
        }
    }
    let mut out = Vec::new();
    walk("", &normalize(old), &normalize(new), &mut out);
    out.join("\n")
}

// === Go `%#v` renderings ===

/// `map[string]string{"a":"1", "b":"2"}` (keys sorted, as `fmt` prints maps), or
/// `map[string]string(nil)` when absent.
pub(crate) fn go_string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".into(),
        Some(m) => {
            let mut pairs: Vec<(&String, String)> =
                m.iter().map(|(k, v)| (k, v.as_str().map(String::from).unwrap_or_else(|| v.to_string()))).collect();
            pairs.sort();
            let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
    }
}

/// `[]string{"a", "b"}` or `[]string(nil)`.
pub(crate) fn go_string_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]string(nil)".into(),
        Some(a) => {
            let inner: Vec<String> = a.iter().map(|s| format!("{:?}", s.as_str().unwrap_or(""))).collect();
            format!("[]string{{{}}}", inner.join(", "))
        }
    }
}

/// `v1.LabelSelector{MatchLabels:..., MatchExpressions:...}`.
pub(crate) fn go_label_selector(sel: &Value) -> String {
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:{}}}",
                        r.str_or_empty("key"),
                        r.str_or_empty("operator"),
                        go_string_slice(r.get("values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}", go_string_map(sel.get("matchLabels")), exprs)
}

/// `intstr.IntOrString{Type:0, IntVal:1, StrVal:""}` (the zero value when absent).
pub(crate) fn go_int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{s:?}}}"),
        Some(Value::Number(n)) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        _ => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_print_like_upstream() {
        let p = Path::new("spec").child("containers").index(0).child("resources").child("limits").key("cpu");
        assert_eq!(p.to_string(), "spec.containers[0].resources.limits[cpu]");
        assert_eq!(Path::new("").child("data").to_string(), "data");
    }

    #[test]
    fn go_renderings_match_fmt() {
        assert_eq!(go_string_map(Some(&json!({"b": "2", "a": "1"}))), r#"map[string]string{"a":"1", "b":"2"}"#);
        assert_eq!(go_string_map(None), "map[string]string(nil)");
        assert_eq!(
            go_label_selector(&json!({"matchLabels": {"app": "web"}})),
            r#"v1.LabelSelector{MatchLabels:map[string]string{"app":"web"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#
        );
        assert_eq!(go_int_or_string(Some(&json!(0))), r#"intstr.IntOrString{Type:0, IntVal:0, StrVal:""}"#);
    }

    #[test]
    fn semantic_equality_ignores_empty_collections() {
        assert!(semantic_eq(&json!({"a": [], "b": {}, "c": null, "d": 1}), &json!({"d": 1})));
        assert!(!semantic_eq(&json!({"d": 1}), &json!({"d": 2})));
    }

    #[test]
    fn diffs_name_the_changed_leaves() {
        let d = diff(&json!({"a": {"b": 1, "c": 2}}), &json!({"a": {"b": 1, "c": 3}}));
        assert_eq!(d, "  a.c: 2 -> 3");
    }
}
