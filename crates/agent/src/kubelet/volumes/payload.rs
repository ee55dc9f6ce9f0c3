//! What the files of a content volume hold, computed from API objects and the pod
//! without I/O: configMap and secret items (`MakePayload`) and downward API items
//! (`CollectData`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret};

use super::atomic_writer::{FileProjection, Payload};
use crate::kubelet::env;

/// The API's default file mode of content volumes (0644).
pub(crate) const DEFAULT_MODE: i32 = 0o644;

/// The files of a configMap volume or projection: every key (data and
/// binaryData) with `default_mode`, or only the listed items at their paths.
/// A listed key the ConfigMap lacks is an error unless the source is optional.
pub(crate) fn config_map(items: Option<&[KeyToPath]>, cm: &ConfigMap, default_mode: i32, optional: bool) -> Result<Payload, String> {
    let mut all: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        all.insert(k, v.as_bytes());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        all.entry(k).or_insert(&v.0);
    }
    project(items, &all, default_mode, optional, |key| format!("configmap references non-existent config key: {key}"))
}

/// The files of a secret volume or projection.
pub(crate) fn secret(items: Option<&[KeyToPath]>, secret: &Secret, default_mode: i32, optional: bool) -> Result<Payload, String> {
    let all: BTreeMap<&str, &[u8]> = secret.data.iter().flatten().map(|(k, v)| (k.as_str(), v.0.as_slice())).collect();
    project(items, &all, default_mode, optional, |key| format!("references non-existent secret key: {key}"))
}

fn project(items: Option<&[KeyToPath]>, all: &BTreeMap<&str, &[u8]>, default_mode: i32, optional: bool, missing: impl Fn(&str) -> String) -> Result<Payload, String> {
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, data) in all {
                payload.insert(key.to_string(), FileProjection { data: data.to_vec(), mode: mode(default_mode) });
            }
        }
        Some(items) => {
            for item in items {
                let Some(data) = all.get(item.key.as_str()) else {
                    if optional {
                        continue;
                    }
                    return Err(missing(&item.key));
                };
                payload.insert(item.path.clone(), FileProjection { data: data.to_vec(), mode: mode(item.mode.unwrap_or(default_mode)) });
            }
        }
    }
    Ok(payload)
}

/// The files of a downwardAPI volume or projection: pod metadata fields and
/// container resources (unset limits read as `allocatable`). Every item is tried;
/// the errors are reported together.
pub(crate) fn downward_api(items: &[DownwardAPIVolumeFile], pod: &Pod, default_mode: i32, allocatable: &BTreeMap<String, String>) -> Result<Payload, String> {
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            env::extract_field_path(pod, &field.field_path)
        } else if let Some(selector) = &item.resource_field_ref {
            let name = selector.container_name.as_deref().unwrap_or("");
            match env::find_container(pod, name) {
                Some(container) => env::container_resource_value(container, selector, allocatable),
                None => Err(format!("container {name} not found")),
            }
        } else {
            Ok(String::new())
        };
        match value {
            Ok(v) => {
                payload.insert(item.path.clone(), FileProjection { data: v.into_bytes(), mode: mode(item.mode.unwrap_or(default_mode)) });
            }
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(payload),
        1 => Err(errors.remove(0)),
        _ => Err(format!("[{}]", errors.join(", "))),
    }
}

fn mode(m: i32) -> u32 {
    (m as u32) & 0o7777
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cm() -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"bin": "AAEC"}})).unwrap()
    }

    fn items(v: serde_json::Value) -> Vec<KeyToPath> {
        serde_json::from_value(v).unwrap()
    }

    fn text(p: &Payload, path: &str) -> String {
        String::from_utf8(p[path].data.clone()).unwrap()
    }

    #[test]
    fn every_key_becomes_a_file_with_the_default_mode() {
        let p = config_map(None, &cm(), 0o640, false).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a", "b", "bin"]);
        assert_eq!(p["bin"].data, vec![0, 1, 2]);
        assert!(p.values().all(|f| f.mode == 0o640));
    }

    #[test]
    fn items_choose_keys_paths_and_modes() {
        let it = items(json!([{"key": "a", "path": "conf/a.txt", "mode": 0o400}, {"key": "bin", "path": "b.bin"}]));
        let p = config_map(Some(&it), &cm(), DEFAULT_MODE, false).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["b.bin", "conf/a.txt"]);
        assert_eq!(p["conf/a.txt"].mode, 0o400);
        assert_eq!(p["b.bin"].mode, 0o644);
        assert_eq!(text(&p, "conf/a.txt"), "1");
    }

    #[test]
    fn a_missing_item_key_fails_unless_optional() {
        let it = items(json!([{"key": "zzz", "path": "z"}, {"key": "a", "path": "a"}]));
        assert_eq!(config_map(Some(&it), &cm(), DEFAULT_MODE, false).unwrap_err(), "configmap references non-existent config key: zzz");
        let p = config_map(Some(&it), &cm(), DEFAULT_MODE, true).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a"]);
        let s: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}})).unwrap();
        assert_eq!(secret(Some(&it), &s, DEFAULT_MODE, false).unwrap_err(), "references non-existent secret key: zzz");
        assert_eq!(text(&secret(None, &s, 0o400, false).unwrap(), "a"), "x");
    }

    #[test]
    fn downward_api_items_read_metadata_and_resources() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"b": "2", "a": "1"}},
            "spec": {"containers": [{"name": "app", "resources": {"requests": {"memory": "32Mi"}}}]}
        }))
        .unwrap();
        let files: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}, "mode": 0o600},
            {"path": "mem_limit", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}},
            {"path": "mem_request", "resourceFieldRef": {"containerName": "app", "resource": "requests.memory", "divisor": "1Mi"}}
        ]))
        .unwrap();
        let alloc = [("memory".to_string(), "2Gi".to_string())].into_iter().collect();
        let p = downward_api(&files, &pod, DEFAULT_MODE, &alloc).unwrap();
        assert_eq!(text(&p, "name"), "p");
        assert_eq!(text(&p, "labels"), "a=\"1\"\nb=\"2\"");
        assert_eq!(p["labels"].mode, 0o600);
        assert_eq!(text(&p, "mem_limit"), "2048");
        assert_eq!(text(&p, "mem_request"), "32");

        let bad: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "x", "fieldRef": {"fieldPath": "spec.nodeName"}},
            {"path": "y", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}}
        ]))
        .unwrap();
        assert_eq!(downward_api(&bad, &pod, DEFAULT_MODE, &alloc).unwrap_err(), "[unsupported fieldPath: spec.nodeName, container nope not found]");
    }
}
