//! Strategic merge patch, as `k8s.io/apimachinery/pkg/util/strategicpatch` applies it
//! on the server (parallel deletion lists merged, unmatched nulls ignored).
//!
//! Maps merge recursively and `null` deletes a key. A list whose field has the `merge`
//! strategy merges element-wise: by merge key for objects, as a union for scalars;
//! every other list is replaced. Directives:
//! - `$patch: replace` on a map replaces it, `$patch: delete` empties it; inside a
//!   merging list `{"$patch": "replace"}` replaces the list and
//!   `{"<key>": "x", "$patch": "delete"}` deletes that element.
//! - `$retainKeys: [...]` clears the keys of the map that are not listed.
//! - `$setElementOrder/<field>: [...]` gives the order of the merged list.
//! - `$deleteFromPrimitiveList/<field>: [...]` removes scalars from a merged list.

use serde_json::{Map, Value};

use super::fieldpath::values_equal;
use super::typed::Ty;
use super::PatchError;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

// Upstream's messages (k8s.io/apimachinery/pkg/util/mergepatch).
const ERR_NO_LIST_OF_LISTS: &str = "lists of lists are not supported";
const ERR_PRIMITIVE_LIST_FORMAT: &str = "invalid patch format of primitive list";
const ERR_RETAIN_KEYS_FORMAT: &str = "invalid patch format of retainKeys";
const ERR_SET_ELEMENT_ORDER_FORMAT: &str = "invalid patch format of setElementOrder list";

/// Applies a strategic merge patch to `target`, whose schema is at `ty`.
pub(crate) fn apply(ty: Ty, target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Malformed(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            json_kind(patch)
        )));
    };
    let original = match target {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    merge_map(original, patch.clone(), ty).map(Value::Object)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn malformed(msg: impl Into<String>) -> PatchError {
    PatchError::Malformed(msg.into())
}

/// The strategy of a field without `retainKeys` (which only matters when patches are
/// made): `merge`, `replace`, or none.
fn strategy(ty: &Ty) -> Option<&'static str> {
    let s = ty.meta()?.patch_strategy?;
    s.split(',').find(|p| *p != "retainKeys")
}

fn merge_key(ty: &Ty) -> Option<&'static str> {
    ty.meta()?.patch_merge_key
}

fn merge_map(mut original: Map<String, Value>, mut patch: Map<String, Value>, ty: Ty) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                Ok(patch)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(malformed(format!("unknown patch type: {} in map: {}", directive_text(directive), Value::Object(patch.clone())))),
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    merge_ordered_lists(&mut original, &mut patch, ty)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(k) if !k.is_empty() => (k.to_string(), true),
            Some(_) => return Err(malformed(ERR_PRIMITIVE_LIST_FORMAT)),
            None => (key, false),
        };
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let field_ty = ty.field(&key);
        let Some(current) = original.remove(&key) else {
            if !is_delete_list {
                insert_clean(&mut original, key, patch_value);
            }
            continue;
        };
        match (current, patch_value) {
            (Value::Object(cur), Value::Object(p)) if !is_delete_list => {
                let merged = if strategy(&field_ty) == Some("replace") { p } else { merge_map(cur, p, field_ty)? };
                original.insert(key, Value::Object(merged));
            }
            (Value::Array(cur), Value::Array(p)) => {
                let merged =
                    if strategy(&field_ty) == Some("merge") || is_delete_list { merge_list(cur, p, field_ty, is_delete_list)? } else { p };
                original.insert(key, Value::Array(merged));
            }
            (current, patch_value) => {
                if is_delete_list {
                    original.insert(key, current);
                } else {
                    insert_clean(&mut original, key, patch_value);
                }
            }
        }
    }
    Ok(original)
}

fn directive_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Takes a patch value that has nothing to merge with: nulls are dropped and
/// directives removed, as upstream does before decoding.
fn insert_clean(original: &mut Map<String, Value>, key: String, value: Value) {
    if let Some(v) = clean(value) {
        original.insert(key, v);
    }
}

fn clean(mut value: Value) -> Option<Value> {
    discard_nulls(&mut value);
    remove_directives(value)
}

fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(discard_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// Drops maps that carry `$patch` and the other directive keys; `None` if the value
/// itself is such a map.
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            let out =
                m.into_iter().filter(|(k, _)| !is_directive_key(k)).filter_map(|(k, v)| remove_directives(v).map(|v| (k, v))).collect();
            Some(Value::Object(out))
        }
        Value::Array(items) => Some(Value::Array(items.into_iter().filter_map(remove_directives).collect())),
        other => Some(other),
    }
}

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE || k == RETAIN_KEYS || k.starts_with(SET_ELEMENT_ORDER) || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// `$retainKeys`: every key the patch sets must be listed, and keys of the original
/// that are not listed are cleared.
fn apply_retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else { return Ok(()) };
    let Value::Array(retain) = retain else { return Err(malformed(ERR_RETAIN_KEYS_FORMAT)) };
    let listed = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if !listed(k) {
            return Err(malformed(ERR_RETAIN_KEYS_FORMAT));
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// Handles every `$setElementOrder/<field>` of the patch: merges the list it names and
/// orders the result. The precedence is the order list, then the patch, then the
/// live list.
fn merge_ordered_lists(original: &mut Map<String, Value>, patch: &mut Map<String, Value>, ty: Ty) -> Result<(), PatchError> {
    let order_keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for order_key in order_keys {
        let order = patch.remove(&order_key).unwrap_or(Value::Null);
        let Value::Array(order) = order else {
            return Err(malformed(format!("expected a []interface {{}}, but received a {}", json_kind(&order))));
        };
        let field = &order_key[SET_ELEMENT_ORDER.len()..];
        if field.is_empty() {
            return Err(malformed(ERR_SET_ELEMENT_ORDER_FORMAT));
        }
        let field_ty = ty.field(field);
        let key = merge_key(&field_ty);
        let live = match original.get(field) {
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return Err(malformed(format!("expected a []interface {{}}, but received a {}", json_kind(other)))),
            None => None,
        };
        let patch_list = match patch.remove(field) {
            Some(Value::Array(a)) => Some(a),
            Some(other) => return Err(malformed(format!("expected a []interface {{}}, but received a {}", json_kind(&other)))),
            None => None,
        };
        if let Some(p) = &patch_list {
            validate_order(p, &order, key)?;
        }
        let merged = match (live.clone(), patch_list) {
            (Some(l), None) => l,
            (None, Some(p)) => match clean(Value::Array(p)) {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            },
            (Some(l), Some(p)) => {
                if strategy(&field_ty) == Some("merge") {
                    merge_list(l, p, field_ty, false)?
                } else {
                    p
                }
            }
            (None, None) => continue,
        };
        let (in_order, server_only) = partition(merged, &order, key)?;
        let live = live.unwrap_or_default();
        let both = normalize_order(in_order, server_only, &order, &live, key)?;
        original.insert(field.to_string(), Value::Array(both));
    }
    Ok(())
}

/// The relative order of the patch list must agree with the order list, and every
/// element the patch sets must be in it.
fn validate_order(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = match key {
        Some(_) => patch.iter().filter(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete")).collect(),
        None => patch.iter().collect(),
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < non_delete.len() && oi < order.len() {
        if non_delete[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        if same_element(non_delete[pi], &order[oi], key)? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < non_delete.len() && oi >= order.len() {
        return Err(malformed(format!(
            "The order in patch list:\n{}\n doesn't match {} list:\n{}\n",
            Value::Array(patch.to_vec()),
            SET_ELEMENT_ORDER.trim_end_matches('/'),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

fn same_element(a: &Value, b: &Value, key: Option<&str>) -> Result<bool, PatchError> {
    match key {
        None => Ok(values_equal(a, b)),
        Some(k) => Ok(values_equal(key_value(a, k)?, key_value(b, k)?)),
    }
}

fn key_value<'a>(v: &'a Value, key: &str) -> Result<&'a Value, PatchError> {
    let m = v.as_object().ok_or_else(|| malformed(format!("expected a map[string]interface {{}}, but received a {}", json_kind(v))))?;
    m.get(key).ok_or_else(|| malformed(format!("map: {} does not contain declared merge key: {}", v, key)))
}

/// Merges two lists of a field with the `merge` strategy (or a deletion list).
fn merge_list(original: Vec<Value>, patch: Vec<Value>, ty: Ty, is_delete_list: bool) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = element_kind(&original, &patch)?;
    let key = merge_key(&ty);
    if kind != "object" {
        if is_delete_list {
            return Ok(original.into_iter().filter(|v| !patch.iter().any(|d| values_equal(v, d))).collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(&patch) {
            if !merged.iter().any(|m| values_equal(m, v)) {
                merged.push(v.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, None)?;
        return normalize_order(in_patch, server_only, &patch, &original, None);
    }
    let Some(key) = key else {
        return Err(malformed(format!("cannot merge lists without merge key for {}", ty.name().unwrap_or("the list"))));
    };
    let item_ty = ty.item();
    let (original, patch) = apply_element_directives(original, patch, key)?;
    let mut merged = original.clone();
    for p in &patch {
        let p_key = key_value(p, key)?.clone();
        let found = merged.iter().position(|m| m.as_object().and_then(|m| m.get(key)).is_some_and(|v| values_equal(v, &p_key)));
        let p_map = p.as_object().cloned().unwrap_or_default();
        match found {
            Some(i) => {
                let cur = std::mem::take(&mut merged[i]);
                let cur = match cur {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                merged[i] = Value::Object(merge_map(cur, p_map, item_ty)?);
            }
            None => {
                // A new element: it has nothing to merge with.
                if let Some(v) = clean(Value::Object(p_map)) {
                    merged.push(v);
                }
            }
        }
    }
    let (in_patch, server_only) = partition(merged, &patch, Some(key))?;
    normalize_order(in_patch, server_only, &patch, &original, Some(key))
}

/// The JSON type shared by every element of both lists.
fn element_kind(a: &[Value], b: &[Value]) -> Result<&'static str, PatchError> {
    let mut kind = None;
    for v in a.iter().chain(b) {
        let k = json_kind(v);
        if k == "array" {
            return Err(PatchError::Failed(ERR_NO_LIST_OF_LISTS.into()));
        }
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err(malformed(format!(
                    "list element types are not identical: {:?}",
                    [Value::Array(a.to_vec()), Value::Array(b.to_vec())]
                )));
            }
            _ => {}
        }
    }
    Ok(kind.unwrap_or("null"))
}

/// Applies `{"$patch": "delete"}` and `{"$patch": "replace"}` elements; returns the
/// original and the rest of the patch.
fn apply_element_directives(mut original: Vec<Value>, patch: Vec<Value>, key: &str) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut rest = Vec::with_capacity(patch.len());
    let mut replace = false;
    for p in patch {
        let Some(directive) = p.get(DIRECTIVE) else {
            rest.push(p);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let k = key_value(&p, key)?.clone();
                original.retain(|o| !o.get(key).is_some_and(|v| values_equal(v, &k)));
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(malformed("merging lists cannot yet be specified in the patch")),
            _ => return Err(malformed(format!("unknown patch type: {} in map: {}", directive_text(directive), p))),
        }
    }
    if replace {
        Ok((rest, Vec::new()))
    } else {
        Ok((original, rest))
    }
}

/// Splits `merged` into the elements that appear in `by` and the others.
fn partition(merged: Vec<Value>, by: &[Value], key: Option<&str>) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut inside = Vec::new();
    let mut outside = Vec::new();
    for v in merged {
        let found = match key {
            None => by.iter().any(|b| values_equal(b, &v)),
            Some(k) => {
                let kv = key_value(&v, k)?;
                let mut found = false;
                for b in by {
                    let bm = b.as_object().ok_or_else(|| malformed(format!("value for key {k} is not a map")))?;
                    if bm.get(k).is_some_and(|bv| values_equal(bv, kv)) {
                        found = true;
                        break;
                    }
                }
                found
            }
        };
        if found {
            inside.push(v);
        } else {
            outside.push(v);
        }
    }
    Ok((inside, outside))
}

/// Sorts the patch elements by `patch_order` and the server-only ones by
/// `server_order`, then interleaves them keeping both relative orders.
fn normalize_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let patch = sort_by_order(patch, patch_order, key)?;
    let server_only = sort_by_order(server_only, server_order, key)?;
    Ok(merge_sorted(server_only, patch, server_order, key))
}

fn position(list: &[Value], v: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        None => list.iter().position(|x| values_equal(x, v)),
        Some(k) => {
            let want = v.get(k);
            list.iter().position(|x| {
                x.get(k).is_some() && want.is_some() && values_equal(x.get(k).unwrap_or(&Value::Null), want.unwrap_or(&Value::Null))
            })
        }
    }
}

fn sort_by_order(mut items: Vec<Value>, order: &[Value], key: Option<&str>) -> Result<Vec<Value>, PatchError> {
    let mut deleted = Vec::new();
    if let Some(k) = key {
        for v in items.iter().chain(order) {
            key_value(v, k)?;
        }
        let (keep, del): (Vec<Value>, Vec<Value>) =
            items.into_iter().partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"));
        items = keep;
        deleted = del;
    }
    items.sort_by_key(|v| position(order, v, key).unwrap_or(usize::MAX));
    items.extend(deleted);
    Ok(items)
}

/// Inserts each of `left` (server-only elements) into `right` (patch elements) before
/// the first element of `right` that comes after it in the live order.
fn merge_sorted(left: Vec<Value>, right: Vec<Value>, server_order: &[Value], key: Option<&str>) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(left.next()),
            (None, Some(_)) => out.extend(right.next()),
            (Some(l), Some(r)) => {
                let before = match (position(server_order, l, key), position(server_order, r, key)) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                };
                if before {
                    out.extend(left.next());
                } else {
                    out.extend(right.next());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(def: &str, target: Value, patch: Value) -> Value {
        apply(Ty::root(def), &target, &patch).unwrap()
    }

    fn deployment(containers: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": containers}}}
        })
    }

    const DEPLOY: &str = "io.k8s.api.apps.v1.Deployment";
    const POD: &str = "io.k8s.api.core.v1.Pod";

    #[test]
    fn removing_an_env_var_as_kubectl_apply_sends_it_removes_exactly_that_one() {
        let live = deployment(json!([{"name": "app", "image": "nginx", "env": [
            {"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}
        ]}]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "app", "$setElementOrder/env": [{"name": "A"}, {"name": "C"}], "env": [{"name": "B", "$patch": "delete"}]}]
        }}}});
        let out = smp(DEPLOY, live, patch);
        let env = &out["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(env, &json!([{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]));
    }

    #[test]
    fn removing_a_container_port_keeps_the_others() {
        let live = deployment(json!([{"name": "app", "image": "nginx", "ports": [
            {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}
        ]}]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "app", "$setElementOrder/ports": [{"containerPort": 80}], "ports": [{"containerPort": 443, "$patch": "delete"}]}]
        }}}});
        let out = smp(DEPLOY, live, patch);
        assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["ports"], json!([{"containerPort": 80, "protocol": "TCP"}]));
    }

    #[test]
    fn changing_one_containers_image_keeps_the_other_container() {
        let live = json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}});
        let out = smp(POD, live, json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}));
        assert_eq!(out["spec"]["containers"], json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]));
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
    }

    #[test]
    fn patch_elements_come_first_unless_an_order_is_given() {
        // Without `$setElementOrder`, upstream puts the patch's elements (in patch
        // order) before the elements only the server has.
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let out = smp(POD, live.clone(), json!({"spec": {"containers": [{"name": "d"}, {"name": "c"}]}}));
        assert_eq!(names(&out["spec"]["containers"]), ["d", "c", "a", "b"]);
        // Elements the live list already has keep their live order around the others.
        let out = smp(POD, live.clone(), json!({"spec": {"containers": [{"name": "b", "image": "x"}, {"name": "c"}]}}));
        assert_eq!(names(&out["spec"]["containers"]), ["a", "b", "c"]);
        // kubectl sends the order it wants.
        let patch =
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}], "containers": [{"name": "c"}]}});
        assert_eq!(names(&smp(POD, live, patch)["spec"]["containers"]), ["a", "b", "c"]);
    }

    #[test]
    fn null_deletes_a_label_and_maps_merge() {
        let live = deployment(json!([]));
        let out = smp(DEPLOY, live, json!({"metadata": {"labels": {"tier": null, "env": "prod"}}}));
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "env": "prod"}));
        assert_eq!(out["metadata"]["name"], "web");
    }

    #[test]
    fn retain_keys_switches_a_volume_source() {
        let live = json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}, {"name": "other", "emptyDir": {}}]}});
        let patch = json!({"spec": {
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "other"}],
            "volumes": [{"name": "data", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/srv"}}]
        }});
        let out = smp(POD, live, patch);
        assert_eq!(out["spec"]["volumes"], json!([{"name": "data", "hostPath": {"path": "/srv"}}, {"name": "other", "emptyDir": {}}]));
    }

    #[test]
    fn retain_keys_clears_the_rolling_update_when_switching_to_recreate() {
        let live = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
        assert_eq!(smp(DEPLOY, live, patch)["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn retain_keys_rejects_a_patch_with_unlisted_keys() {
        let live = json!({"spec": {"strategy": {"type": "Recreate"}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}});
        assert_eq!(apply(Ty::root(DEPLOY), &live, &patch), Err(PatchError::Malformed(ERR_RETAIN_KEYS_FORMAT.into())));
    }

    #[test]
    fn lists_without_a_strategy_are_replaced() {
        let live = json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}], "containers": [{"name": "x", "args": ["1", "2"]}]}});
        let out = smp(POD, live, json!({"spec": {"tolerations": [{"key": "c"}], "containers": [{"name": "x", "args": ["3"]}]}}));
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "c"}]));
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["3"]));
    }

    #[test]
    fn primitive_lists_with_merge_are_unioned_and_deletion_lists_remove() {
        let live = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = smp(POD, live.clone(), json!({"metadata": {"finalizers": ["c", "a"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
        let out = smp(POD, live, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["d"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["d", "b"]));
    }

    #[test]
    fn set_element_order_reorders_primitive_lists() {
        let live = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let out = smp(POD, live, json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "b", "a"]));
    }

    #[test]
    fn patch_directives_replace_and_delete_maps_and_lists() {
        let live = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "x"}, {"name": "y"}]}});
        let out = smp(POD, live.clone(), json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}));
        assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
        let out = smp(POD, live.clone(), json!({"metadata": {"labels": {"$patch": "delete"}}}));
        assert_eq!(out["metadata"]["labels"], json!({}));
        let out = smp(POD, live.clone(), json!({"spec": {"containers": [{"name": "z"}, {"$patch": "replace"}]}}));
        assert_eq!(out["spec"]["containers"], json!([{"name": "z"}]));
        let err = apply(Ty::root(POD), &live, &json!({"metadata": {"labels": {"$patch": "merge"}}}));
        assert!(matches!(err, Err(PatchError::Malformed(_))));
    }

    #[test]
    fn fields_unknown_to_the_schema_merge_like_a_merge_patch() {
        let live = json!({"spec": {"extra": {"a": [1, 2], "b": {"c": 1}}}});
        let out = smp(POD, live, json!({"spec": {"extra": {"a": [3], "b": {"d": 2, "c": null}}}}));
        assert_eq!(out["spec"]["extra"], json!({"a": [3], "b": {"d": 2}}));
    }

    #[test]
    fn new_values_lose_their_nulls_and_directives() {
        let out = smp(POD, json!({}), json!({"spec": {"containers": [{"name": "a", "image": null, "$setElementOrder/env": []}]}}));
        assert_eq!(out["spec"]["containers"], json!([{"name": "a"}]));
    }

    #[test]
    fn a_patch_that_is_not_an_object_is_rejected() {
        assert!(matches!(apply(Ty::root(POD), &json!({}), &json!([1])), Err(PatchError::Malformed(_))));
        let lol = apply(Ty::root(POD), &json!({"metadata": {"finalizers": [["a"]]}}), &json!({"metadata": {"finalizers": [["b"]]}}));
        assert_eq!(lol, Err(PatchError::Failed(ERR_NO_LIST_OF_LISTS.into())));
    }

    #[test]
    fn elements_missing_the_merge_key_are_rejected() {
        let live = json!({"spec": {"containers": [{"name": "a"}]}});
        assert!(matches!(apply(Ty::root(POD), &live, &json!({"spec": {"containers": [{"image": "x"}]}})), Err(PatchError::Malformed(_))));
    }
}
