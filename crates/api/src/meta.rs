//! Helpers over the `metadata` of objects held as JSON.

use serde_json::{Map, Value};

/// `metadata.name`, or `""`.
pub fn name(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

/// `metadata.namespace`, if set and non-empty.
pub fn namespace(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/namespace").and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// `metadata` as a mutable map, created if missing or not an object.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("object");
    let meta = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("object")
}

/// The labels as `(key, value)` pairs; non-string values are skipped.
pub fn labels(obj: &Value) -> impl Iterator<Item = (&str, &str)> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v))))
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, rv: i64) {
    metadata_mut(obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
}

/// The current time as Kubernetes writes timestamps (`2024-01-02T03:04:05Z`).
pub fn now_rfc3339() -> String {
    format_time(jiff::Timestamp::now())
}

/// A timestamp with second precision, as `metav1.Time` renders it.
pub fn format_time(t: jiff::Timestamp) -> String {
    let secs = t.as_second();
    jiff::Timestamp::from_second(secs).map(|t| t.to_string()).unwrap_or_default()
}

/// A timestamp with microsecond precision, as `metav1.MicroTime` renders it.
pub fn format_micro_time(t: jiff::Timestamp) -> String {
    let micros = t.as_microsecond();
    let t = jiff::Timestamp::from_microsecond(micros).unwrap_or(t);
    format!("{}", t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

/// Parses an RFC 3339 timestamp as written in objects.
pub fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_have_second_precision() {
        let t: jiff::Timestamp = "2024-01-02T03:04:05.678Z".parse().unwrap();
        assert_eq!(format_time(t), "2024-01-02T03:04:05Z");
        assert_eq!(format_micro_time(t), "2024-01-02T03:04:05.678000Z");
    }

    #[test]
    fn labels_skip_non_strings() {
        let o = json!({"metadata": {"labels": {"a": "1", "b": 2}}});
        assert_eq!(labels(&o).collect::<Vec<_>>(), vec![("a", "1")]);
    }
}
