//! The form objects take in the watch cache: serialized once, with the fields that
//! selectors need pulled out, so LIST and WATCH never re-parse JSON to filter.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use skiff_api::{meta, selector, ResourceInfo};
use skiff_store::cache::{CacheEntry, Decoder};
use skiff_store::KeyValue;

/// One object as the cache holds it.
#[derive(Debug)]
pub struct CachedObject {
    /// The object's JSON with `metadata.resourceVersion` set.
    pub json: Bytes,
    pub namespace: Option<String>,
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub fields: Vec<(&'static str, String)>,
    pub uid: String,
    /// `metadata.ownerReferences`, for the garbage collector.
    pub owners: Vec<OwnerRef>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl CachedObject {
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    pub fn label(&self, key: &str) -> Option<String> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    pub fn field(&self, key: &str) -> Option<String> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    }
}

/// The parts of an owner reference the garbage collector needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

impl OwnerRef {
    fn from_json(v: &Value) -> Option<OwnerRef> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(String::from);
        Some(OwnerRef { api_version: s("apiVersion")?, kind: s("kind")?, name: s("name")?, uid: s("uid")? })
    }
}

/// Decodes a stored value into the JSON object `res` serves, with its resourceVersion set.
pub fn decode_stored(res: &ResourceInfo, kv: &KeyValue) -> Option<Value> {
    let v: Value = serde_json::from_slice(&kv.value).ok()?;
    let mut v = skiff_api::convert::from_storage(res, v);
    meta::set_resource_version(&mut v, kv.mod_revision);
    Some(v)
}

/// Builds the cache entry form of an object.
pub fn cached(res: &ResourceInfo, v: &Value) -> CachedObject {
    CachedObject {
        json: Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        namespace: meta::namespace(v).map(String::from),
        name: meta::name(v).to_string(),
        labels: meta::labels(v).map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        fields: selector::selectable_fields(res, v),
        uid: v.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string(),
        owners: v
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(OwnerRef::from_json).collect())
            .unwrap_or_default(),
        deleting: meta::is_deleting(v),
        finalizers: meta::finalizers(v),
    }
}

/// The decoder the watch cache of `res` uses.
pub fn decoder(res: &'static ResourceInfo) -> Decoder<CachedObject> {
    Arc::new(move |kv: &KeyValue| decode_stored(res, kv).map(|v| cached(res, &v)))
}

pub type Entry = Arc<CacheEntry<CachedObject>>;
