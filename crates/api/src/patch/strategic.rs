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

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};

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
    let retain: HashSet<&str> = retain.iter().filter_map(Value::as_str).collect();
    let listed = |k: &str| retain.contains(k);
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
            let deleted = Index::of(patch.iter().map(Some));
            return Ok(original.into_iter().filter(|v| deleted.find(v, |i| patch.get(i)).is_none()).collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        let mut seen = Index::default();
        for v in original.iter().chain(&patch) {
            if seen.find(v, |i| merged.get(i)).is_none() {
                seen.insert(merged.len(), v);
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
    // Merging keeps each element's key, so positions found once stay right.
    let mut by_key = Index::of(merged.iter().map(|m| m.get(key)));
    for p in &patch {
        let p_key = key_value(p, key)?;
        let found = by_key.find(p_key, |i| merged.get(i).and_then(|m| m.as_object()).and_then(|m| m.get(key)));
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
                    if let Some(k) = v.get(key) {
                        by_key.insert(merged.len(), k);
                    }
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
    let mut deleted = Vec::new();
    for p in patch {
        let Some(directive) = p.get(DIRECTIVE) else {
            rest.push(p);
            continue;
        };
        match directive.as_str() {
            Some("delete") => deleted.push(key_value(&p, key)?.clone()),
            Some("replace") => replace = true,
            Some("merge") => return Err(malformed("merging lists cannot yet be specified in the patch")),
            _ => return Err(malformed(format!("unknown patch type: {} in map: {}", directive_text(directive), p))),
        }
    }
    if !deleted.is_empty() {
        let index = Index::of(deleted.iter().map(Some));
        original.retain(|o| !o.get(key).is_some_and(|v| index.find(v, |i| deleted.get(i)).is_some()));
    }
    if replace {
        Ok((rest, Vec::new()))
    } else {
        Ok((original, rest))
    }
}

/// Splits `merged` into the elements that appear in `by` and the others.
///
/// As upstream scans `by` for each element, an element of `by` that is not a map is
/// an error once some element is looked for past it.
fn partition(merged: Vec<Value>, by: &[Value], key: Option<&str>) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut inside = Vec::new();
    let mut outside = Vec::new();
    let positions = Positions::new(by, key);
    let first_non_map = key.and_then(|_| by.iter().position(|b| !b.is_object()));
    for v in merged {
        let found = match key {
            None => positions.of(&v).is_some(),
            Some(k) => {
                let kv = key_value(&v, k)?;
                let at = positions.of_key(kv);
                if first_non_map.is_some_and(|bad| at.is_none_or(|at| bad < at)) {
                    return Err(malformed(format!("value for key {k} is not a map")));
                }
                at.is_some()
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

/// Where elements sit in a list: by the whole value, or by the value of the merge key
/// (elements without it have no position).
struct Positions<'a> {
    list: &'a [Value],
    key: Option<&'a str>,
    index: Index,
}

impl<'a> Positions<'a> {
    fn new(list: &'a [Value], key: Option<&'a str>) -> Self {
        let index = match key {
            None => Index::of(list.iter().map(Some)),
            Some(k) => Index::of(list.iter().map(|x| x.get(k))),
        };
        Positions { list, key, index }
    }

    /// The first position of `v` (or of its merge key's value).
    fn of(&self, v: &Value) -> Option<usize> {
        match self.key {
            None => self.index.find(v, |i| self.list.get(i)),
            Some(k) => self.of_key(v.get(k)?),
        }
    }

    /// The first position of an element whose merge key has the value `kv`.
    fn of_key(&self, kv: &Value) -> Option<usize> {
        let k = self.key?;
        self.index.find(kv, |i| self.list.get(i).and_then(|x| x.get(k)))
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
    let positions = Positions::new(order, key);
    items.sort_by_cached_key(|v| positions.of(v).unwrap_or(usize::MAX));
    items.extend(deleted);
    Ok(items)
}

/// Inserts each of `left` (server-only elements) into `right` (patch elements) before
/// the first element of `right` that comes after it in the live order.
fn merge_sorted(left: Vec<Value>, right: Vec<Value>, server_order: &[Value], key: Option<&str>) -> Vec<Value> {
    let positions = Positions::new(server_order, key);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().map(|v| (positions.of(&v), v)).peekable();
    let mut right = right.into_iter().map(|v| (positions.of(&v), v)).peekable();
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(left.next().map(|(_, v)| v)),
            (None, Some(_)) => out.extend(right.next().map(|(_, v)| v)),
            (Some((l, _)), Some((r, _))) => {
                let before = match (l, r) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                };
                if before {
                    out.extend(left.next().map(|(_, v)| v));
                } else {
                    out.extend(right.next().map(|(_, v)| v));
                }
            }
        }
    }
    out
}

// === impl Index ===

/// Finds list elements by value in constant time. Merging by scanning costs O(n²) in
/// the list length, and a body may carry lists of tens of thousands of elements, which
/// is minutes of CPU per request.
///
/// Values are bucketed by a hash that agrees with [`values_equal`] (numbers hash by
/// their `f64` value, objects regardless of key order); a lookup confirms a match with
/// `values_equal` itself. Positions are inserted in increasing order, so a lookup
/// finds the first match, as a scan would.
#[derive(Default)]
struct Index {
    state: RandomState,
    buckets: HashMap<u64, Vec<usize>>,
}

impl Index {
    /// Indexes each `Some` value by its position.
    fn of<'a>(values: impl IntoIterator<Item = Option<&'a Value>>) -> Index {
        let mut index = Index::default();
        for (i, v) in values.into_iter().enumerate() {
            if let Some(v) = v {
                index.insert(i, v);
            }
        }
        index
    }

    fn insert(&mut self, position: usize, v: &Value) {
        let h = self.hash(v);
        self.buckets.entry(h).or_default().push(position);
    }

    /// The first position whose value (as `at` reads it now) equals `v`.
    fn find<'a>(&self, v: &Value, at: impl Fn(usize) -> Option<&'a Value>) -> Option<usize> {
        self.buckets.get(&self.hash(v))?.iter().copied().find(|&i| at(i).is_some_and(|x| values_equal(x, v)))
    }

    fn hash(&self, v: &Value) -> u64 {
        let mut h = self.state.build_hasher();
        self.hash_into(v, &mut h);
        h.finish()
    }

    fn hash_into(&self, v: &Value, h: &mut impl Hasher) {
        match v {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => (1u8, b).hash(h),
            Value::Number(n) => (2u8, n.as_f64().unwrap_or(0.0).to_bits()).hash(h),
            Value::String(s) => (3u8, s).hash(h),
            Value::Array(items) => {
                (4u8, items.len()).hash(h);
                items.iter().for_each(|item| self.hash_into(item, h));
            }
            Value::Object(m) => {
                // A sum of the entries' hashes does not depend on their order.
                let entries = m.iter().fold(0u64, |sum, (k, v)| {
                    let mut eh = self.state.build_hasher();
                    k.hash(&mut eh);
                    self.hash_into(v, &mut eh);
                    sum.wrapping_add(eh.finish())
                });
                (5u8, m.len(), entries).hash(h);
            }
        }
    }
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
    fn the_index_finds_what_values_equal_matches_first() {
        let list = [json!(1), json!("a"), json!({"x": 1, "y": [1, 2]}), json!("a"), json!(2.5)];
        let index = Index::of(list.iter().map(Some));
        let find = |v: Value| index.find(&v, |i| list.get(i));
        assert_eq!(find(json!(1.0)), Some(0));
        assert_eq!(find(json!("a")), Some(1));
        assert_eq!(find(json!({"y": [1, 2], "x": 1})), Some(2));
        assert_eq!(find(json!({"y": [2, 1], "x": 1})), None);
        assert_eq!(find(json!(2.5)), Some(4));
        assert_eq!(find(json!(null)), None);
    }

    /// Lists as long as a body may carry: a quadratic merge would take minutes.
    #[test]
    fn merging_long_lists_takes_linear_time() {
        const N: usize = 20_000;
        let named = |prefix: &str, i: usize| json!({"name": format!("{prefix}{i}"), "image": "i"});
        let live = deployment(Value::Array((0..N).map(|i| named("c", i)).collect()));
        let started = std::time::Instant::now();
        // Reverse the order, delete every other live container and add as many new ones.
        let order: Vec<Value> = (0..N).rev().map(|i| json!({"name": format!("c{i}")})).chain((0..N).map(|i| json!({"name": format!("n{i}")}))).collect();
        let changes: Vec<Value> = (0..N)
            .rev()
            .map(|i| if i % 2 == 0 { json!({"name": format!("c{i}"), "$patch": "delete"}) } else { json!({"name": format!("c{i}"), "image": "j"}) })
            .chain((0..N).map(|i| named("n", i)))
            .collect();
        let patch = json!({"spec": {"template": {"spec": {"$setElementOrder/containers": order, "containers": changes}}}});
        let out = smp(DEPLOY, live, patch);
        let names = names(&out["spec"]["template"]["spec"]["containers"]);
        assert_eq!(names.len(), N + N / 2);
        assert_eq!((names[0], names[N / 2 - 1], names[N / 2]), (format!("c{}", N - 1).as_str(), "c1", "n0"));
        // Primitive lists: a union, a deletion list and an order over all of them.
        let finalizers: Vec<String> = (0..N).map(|i| format!("f{i}")).collect();
        let reversed: Vec<&String> = finalizers.iter().rev().collect();
        let live = json!({"metadata": {"name": "p", "finalizers": finalizers}});
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": reversed,
            "$deleteFromPrimitiveList/finalizers": finalizers[..N / 2],
            "finalizers": reversed,
        }});
        let out = smp(POD, live, patch);
        let kept = out["metadata"]["finalizers"].as_array().unwrap();
        assert_eq!((kept.len(), &kept[0], &kept[N / 2 - 1]), (N / 2, &json!(format!("f{}", N - 1)), &json!(format!("f{}", N / 2))));
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    }

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
