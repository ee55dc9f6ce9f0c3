//! The strict field check behind `fieldValidation=Strict|Warn`.
//!
//! Upstream finds unknown and duplicate fields while decoding into the Go types; Skiff
//! decodes into `serde_json::Value`, so it walks the value against the kind's schema
//! (unknown fields) and rescans the raw bytes (duplicate keys, which `Value` silently
//! collapses to the last one). Paths are spelled as upstream spells them:
//! `spec.containers[0].imagePullPolicyy`, `metadata.labels.app`.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::components::{definitions, ref_name};

/// How deep the schema walk goes before giving up; the decoders refuse deeper input anyway.
const MAX_DEPTH: usize = 256;

/// How many fields each check reports at most. Upstream (sigs.k8s.io/json) stops
/// saving strict errors at 100 and drops repeats of the same message; without a cap,
/// a body that repeats one key a million times under a long path would be reported
/// as a million copies of that path.
pub(crate) const MAX_REPORTED: usize = 100;

/// A field path being built, as upstream prints it.
#[derive(Default)]
struct Path(String);

impl Path {
    /// Appends `.key` (or `key` at the top) and returns the length to truncate back to.
    fn push_key(&mut self, key: &str) -> usize {
        let len = self.0.len();
        if len > 0 {
            self.0.push('.');
        }
        self.0.push_str(key);
        len
    }

    fn push_index(&mut self, i: usize) -> usize {
        let len = self.0.len();
        self.0.push('[');
        self.0.push_str(&i.to_string());
        self.0.push(']');
        len
    }

    fn pop(&mut self, len: usize) {
        self.0.truncate(len);
    }
}

// === unknown fields ===

pub(crate) fn unknown_fields(definition: &str, obj: &Value) -> Vec<String> {
    unknown_fields_in(definitions(), definition, obj)
}

/// [`unknown_fields`] against a given set of definitions.
pub(crate) fn unknown_fields_in(defs: &BTreeMap<String, Value>, definition: &str, obj: &Value) -> Vec<String> {
    let Some(schema) = defs.get(definition) else { return Vec::new() };
    let mut out = Vec::new();
    walk(defs, schema, obj, &mut Path::default(), &mut out, 0);
    out
}

/// Follows `$ref` and single-element `allOf` wrappers to the schema that describes
/// the value.
fn resolve<'a>(defs: &'a BTreeMap<String, Value>, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        if let Some(name) = ref_name(schema) {
            match defs.get(name) {
                Some(s) => schema = s,
                None => return schema,
            }
        } else if let Some([one]) = schema.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
            schema = one;
        } else {
            break;
        }
    }
    schema
}

fn walk(defs: &BTreeMap<String, Value>, schema: &Value, value: &Value, path: &mut Path, out: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH || out.len() >= MAX_REPORTED {
        return;
    }
    let schema = resolve(defs, schema);
    if schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true) {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            // `additionalProperties: true` or a schema: a map, or a struct that keeps extras.
            let extra = schema.get("additionalProperties").filter(|ap| *ap != &Value::Bool(false));
            if props.is_none() && extra.is_none() {
                // A free-form object (RawExtension, FieldsV1, Patch) holds anything.
                return;
            }
            for (key, v) in map {
                let field_schema = props.and_then(|p| p.get(key)).or(extra.filter(|ap| ap.is_object()));
                let known = field_schema.is_some()
                    || extra.is_some()
                    || (depth == 0 && (key == "apiVersion" || key == "kind"));
                if out.len() >= MAX_REPORTED {
                    return;
                }
                let mark = path.push_key(key);
                if !known {
                    out.push(path.0.clone());
                } else if let Some(s) = field_schema {
                    walk(defs, s, v, path, out, depth + 1);
                }
                path.pop(mark);
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items") else { return };
            for (i, v) in items.iter().enumerate() {
                let mark = path.push_index(i);
                walk(defs, item_schema, v, path, out, depth + 1);
                path.pop(mark);
            }
        }
        _ => {}
    }
}

// === duplicate fields ===

pub(crate) fn duplicate_fields<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    let mut path = Path::default();
    let mut found = Vec::new();
    Scan { path: &mut path, found: &mut found }.deserialize(de)?;
    Ok(found)
}

/// Visits any self-describing document (JSON or YAML) without building it, noting
/// every key seen twice in the same object.
struct Scan<'a> {
    path: &'a mut Path,
    found: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        self.deserialize(de)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        self.deserialize(de)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let mark = self.path.push_index(i);
            let more = seq.next_element_seed(Scan { path: self.path, found: self.found })?;
            self.path.pop(mark);
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Each key, and whether its repetition is already reported: a path can only
        // repeat within one mapping, so this is upstream's dedupe by message.
        let mut seen: HashMap<String, bool> = HashMap::new();
        while let Some(Key(key)) = map.next_key::<Key>()? {
            let mark = self.path.push_key(key.as_deref().unwrap_or("?"));
            if let Some(key) = key {
                match seen.entry(key) {
                    Entry::Vacant(e) => {
                        e.insert(false);
                    }
                    Entry::Occupied(mut e) => {
                        if !*e.get() && self.found.len() < MAX_REPORTED {
                            e.insert(true);
                            self.found.push(self.path.0.clone());
                        }
                    }
                }
            }
            map.next_value_seed(Scan { path: self.path, found: self.found })?;
            self.path.pop(mark);
        }
        Ok(())
    }

    /// YAML values with a custom tag (`!foo {...}`) arrive as enums.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess;
        let (IgnoredAny, variant) = data.variant::<IgnoredAny>()?;
        variant.newtype_variant_seed(self)
    }
}

/// A mapping key as text; `None` for YAML's complex (mapping or sequence) keys,
/// which no Kubernetes field uses.
struct Key(Option<String>);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(Key(Some(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Key, E> {
        Ok(Key(Some(v)))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
        Ok(Key(Some(v.to_string())))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
        Ok(Key(Some(v.to_string())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
        Ok(Key(Some(v.to_string())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Key, E> {
        Ok(Key(Some(v.to_string())))
    }
    fn visit_unit<E>(self) -> Result<Key, E> {
        Ok(Key(Some("null".into())))
    }
    fn visit_none<E>(self) -> Result<Key, E> {
        Ok(Key(Some("null".into())))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Key, E> {
        Ok(Key(Some(String::from_utf8_lossy(v).into_owned())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Key, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Key(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Key(None))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Key, A::Error> {
        use de::VariantAccess;
        let (IgnoredAny, variant) = data.variant::<IgnoredAny>()?;
        variant.newtype_variant::<IgnoredAny>()?;
        Ok(Key(None))
    }
}
