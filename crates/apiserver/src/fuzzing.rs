//! Entry points for fuzzing the request decoders: every function that reads
//! client-controlled bytes before any I/O happens. The fuzz targets under `fuzz/` and
//! a unit test call [`request_decoders`]; none of them may panic or hang.

use axum::http::{header, HeaderMap, HeaderValue};
use serde_json::Value;
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::{openapi, patch, RESOURCES};

use crate::request::{parse_path, Query};

/// Feeds `data` to each decoder. The first byte picks the resource, the rest is input.
pub fn request_decoders(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else { return };
    let res = &RESOURCES[pick as usize % RESOURCES.len()];
    let text = String::from_utf8_lossy(rest);

    let _ = parse_path(&text);
    let q = Query::parse(Some(&text));
    let _ = q.int("limit");
    let _ = LabelSelector::parse(&text);
    let _ = FieldSelector::parse(&text).map(|f| f.check_supported(res));

    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let json = crate::handlers::parse_body(res, &headers, rest);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
    let _ = crate::handlers::parse_body(res, &headers, rest);
    let _ = openapi::duplicate_fields(rest);
    let _ = openapi::duplicate_fields_yaml(rest);
    let _ = crate::handlers::delete_options(&Query::default(), rest);

    let live = live_object(res);
    if let Ok(obj) = json {
        let _ = openapi::unknown_fields(res.definition, &obj);
        let mut o = obj.clone();
        skiff_api::defaults::apply_defaults(res, &mut o);
        let _ = skiff_api::validation::validate(res, &o, None);
        let _ = skiff_api::validation::validate(res, &o, Some(&obj));
        let _ = skiff_api::table::cells(res, &o, jiff::Timestamp::UNIX_EPOCH);
        let _ = skiff_api::selector::selectable_fields(res, &o);
        // The object as a patch against itself and against an empty object.
        let empty = Value::Object(Default::default());
        let _ = patch::merge_patch(&empty, &obj);
        let _ = patch::strategic_merge_patch(res.definition, &obj, &obj);
        let _ = patch::strategic_merge_patch(res.definition, &empty, &obj);
        let _ = patch::server_side_apply(res.definition, Some(&obj), &obj, "fuzz", false, "2024-01-01T00:00:00Z");
        // The object as a patch against a live object that another manager applied.
        let _ = patch::merge_patch(&live, &obj);
        let _ = patch::strategic_merge_patch(res.definition, &live, &obj);
        let _ = patch::server_side_apply(res.definition, Some(&live), &obj, "fuzz", false, NOW);
        let _ = patch::server_side_apply(res.definition, Some(&live), &obj, "fuzz", true, NOW);
        let mut updated = obj.clone();
        patch::record_update(res.definition, Some(&live), &mut updated, "fuzz", "", NOW);
        let mut created = obj.clone();
        patch::record_update(res.definition, None, &mut created, "fuzz", "status", NOW);
        if let Some(sel) = obj.get("selector") {
            let _ = LabelSelector::from_json(sel);
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(rest) {
        let target = serde_json::json!({"metadata": {"name": "x"}, "spec": {"a": [1, 2]}});
        let _ = patch::json_patch(&target, &v);
        let _ = patch::json_patch(&live, &v);
    }
}

const NOW: &str = "2024-01-01T00:00:00Z";

/// An object of `res`'s kind with lists of every patch strategy (merge keys, sets,
/// atomic lists), owned by another manager through server-side apply, so patches
/// and applies meet existing elements and managed fields.
fn live_object(res: &skiff_api::ResourceInfo) -> Value {
    let intent = serde_json::json!({
        "apiVersion": res.api_version(),
        "kind": res.kind,
        "metadata": {
            "name": "x",
            "labels": {"app": "web"},
            "finalizers": ["f"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "o", "uid": "u"}],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "protocol": "TCP"}], "env": [{"name": "A", "value": "1"}]}],
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": [{"name": "v", "emptyDir": {}}]}},
            "ports": [{"port": 80, "protocol": "TCP"}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
        },
        "data": {"k": "v"},
    });
    patch::server_side_apply(res.definition, None, &intent, "other", false, NOW).unwrap_or(intent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_alias_bombs_are_refused_before_they_expand() {
        // Eight kilobytes that once expanded to two million scalars per decode.
        let bomb = format!("a: &a [{}]\nb: [{}]\n", vec!["x"; 1000].join(","), vec!["*a"; 2000].join(","));
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
        let started = std::time::Instant::now();
        let err = crate::handlers::parse_body(&RESOURCES[4], &headers, bomb.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("yaml: document contains excessive aliasing"), "{err}");
        let mut data = vec![4];
        data.extend_from_slice(bomb.as_bytes());
        request_decoders(&data);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    /// A deterministic smoke run of the fuzz entry point on mutated seeds, so CI
    /// catches decoder panics without a fuzzing toolchain.
    #[test]
    fn decoders_survive_mutated_inputs() {
        let seeds: &[&[u8]] = &[
            br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#,
            br#"{"metadata":{"name":"a","name":"b"},"spec":{"$patch":"replace","containers":[{"$patch":"delete"}]}}"#,
            br#"[{"op":"add","path":"/spec/a/-","value":3},{"op":"remove","path":"/metadata"}]"#,
            b"app in (a,b),!x,y!=z,version>3",
            b"/api/v1/namespaces/default/pods/p/status?watch=true&limit=x",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: *b}\n",
            b"{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        ];
        let mut state: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (i, seed) in seeds.iter().enumerate() {
            for round in 0..300 {
                let mut data = vec![(i * 7 + round) as u8];
                data.extend_from_slice(seed);
                for _ in 0..(next() % 6) {
                    if data.len() < 2 {
                        break;
                    }
                    let pos = 1 + (next() as usize % (data.len() - 1));
                    match next() % 4 {
                        0 => data[pos] = next() as u8,
                        1 => {
                            data.remove(pos);
                        }
                        2 => data.insert(pos, b"{}[]\",:$\\"[next() as usize % 9]),
                        _ => data.truncate(pos),
                    }
                }
                request_decoders(&data);
            }
        }
    }
}
