//! Conversions between versions that share storage.
//!
//! `events.k8s.io/v1` Events are stored as `core/v1` Events (as upstream does), so
//! `kubectl get events` and `kubectl describe` see events written through either API.

use serde_json::{Map, Value};

use crate::ResourceInfo;

/// Field renames between events.k8s.io/v1 (left) and core/v1 (right).
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether `res` is stored in another resource's form.
pub fn stored_as_core_event(res: &ResourceInfo) -> bool {
    res.group == "events.k8s.io" && res.kind == "Event"
}

/// The form `res` objects are written to the store in.
pub fn to_storage(res: &ResourceInfo, v: Value) -> Value {
    if !stored_as_core_event(res) {
        return v;
    }
    let Value::Object(m) = v else { return v };
    let mut out = Map::new();
    for (k, val) in m {
        let key = match EVENT_RENAMES.iter().find(|(new, _)| *new == k) {
            Some((_, core)) => core.to_string(),
            None => k,
        };
        out.insert(key, val);
    }
    out.insert("apiVersion".into(), Value::String("v1".into()));
    out.insert("kind".into(), Value::String("Event".into()));
    if let (Some(r), false) = (out.get("reportingComponent").cloned(), out.contains_key("source")) {
        out.insert("source".into(), serde_json::json!({"component": r}));
    }
    Value::Object(out)
}

/// The form `res` objects are served in, from their stored form.
pub fn from_storage(res: &ResourceInfo, v: Value) -> Value {
    if !stored_as_core_event(res) {
        return v;
    }
    let Value::Object(m) = v else { return v };
    let mut out = Map::new();
    for (k, val) in m {
        let key = match EVENT_RENAMES.iter().find(|(_, core)| *core == k) {
            Some((new, _)) => new.to_string(),
            None => k,
        };
        out.insert(key, val);
    }
    out.insert("apiVersion".into(), Value::String(res.api_version()));
    out.insert("kind".into(), Value::String("Event".into()));
    if !out.contains_key("reportingController") {
        if let Some(c) = out.get("deprecatedSource").and_then(|s| s.get("component")).cloned() {
            out.insert("reportingController".into(), c);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_through_core_storage() {
        let new = crate::resources::lookup("events.k8s.io", "v1", "events").unwrap();
        let e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "pulled", "reason": "Pulled", "type": "Normal",
            "reportingController": "skiff/agent", "reportingInstance": "n1", "eventTime": "2024-01-01T00:00:00.000000Z", "action": "Pull"});
        let core = to_storage(new, e.clone());
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "pulled");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["source"]["component"], "skiff/agent");
        let back = from_storage(new, core);
        assert_eq!(back["regarding"], e["regarding"]);
        assert_eq!(back["note"], "pulled");
        assert_eq!(back["apiVersion"], "events.k8s.io/v1");
    }

    #[test]
    fn other_kinds_are_stored_as_they_are() {
        let pods = crate::resources::lookup("", "v1", "pods").unwrap();
        let p = json!({"kind": "Pod"});
        assert_eq!(to_storage(pods, p.clone()), p);
    }
}
