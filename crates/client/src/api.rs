//! Typed access to one kind: `Api<Pod>` for pods in a namespace (or all of them),
//! with the k8s-openapi types on the wire.

use std::marker::PhantomData;

use bytes::Bytes;
use http::Method;
use k8s_openapi::Resource;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::{Client, Error, PatchType, Result};

/// Query of a LIST (and of an informer's list+watch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<u32>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
}

/// Options of a DELETE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteParams {
    pub grace_period_seconds: Option<i64>,
    /// `Background`, `Foreground` or `Orphan`.
    pub propagation_policy: Option<String>,
    /// Delete only if the object still has this uid.
    pub precondition_uid: Option<String>,
    /// Delete only if the object still has this resourceVersion.
    pub precondition_resource_version: Option<String>,
}

/// One page of a LIST.
#[derive(Debug, Clone)]
pub struct ObjectList<K> {
    pub items: Vec<K>,
    pub resource_version: String,
    /// Continue token for the next page, if any.
    pub continue_token: Option<String>,
}

/// Typed requests for kind `K`, in one namespace or across all (or cluster-scoped).
pub struct Api<K> {
    client: Client,
    namespace: Option<String>,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api { client: self.client.clone(), namespace: self.namespace.clone(), _kind: PhantomData }
    }
}

impl<K> Api<K>
where
    K: Resource + DeserializeOwned + Serialize + Clone + Send + Sync + 'static,
{
    /// Objects in namespace `ns`.
    pub fn namespaced(client: &Client, ns: &str) -> Api<K> {
        Api { client: client.clone(), namespace: Some(ns.to_string()), _kind: PhantomData }
    }

    /// Objects across all namespaces, or a cluster-scoped kind.
    pub fn all(client: &Client) -> Api<K> {
        Api { client: client.clone(), namespace: None, _kind: PhantomData }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// `/api/v1/namespaces/{ns}/pods`, `/apis/apps/v1/deployments`, …
    pub fn collection_path(&self) -> String {
        collection_path::<K>(self.namespace.as_deref())
    }

    /// The collection path followed by `/{name}`.
    pub fn object_path(&self, name: &str) -> String {
        format!("{}/{}", self.collection_path(), encode(name))
    }

    pub async fn get(&self, name: &str) -> Result<K> {
        let value = self.client.get(&self.object_path(name)).await?;
        decode(value)
    }

    /// `Ok(None)` on 404.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        match self.get(name).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<K>> {
        let path = format!("{}{}", self.collection_path(), params.query());
        let value = self.client.get(&path).await?;
        decode_list(value)
    }

    pub async fn create(&self, obj: &K) -> Result<K> {
        let value = self.client.create(&self.collection_path(), &encode_object(obj)?).await?;
        decode(value)
    }

    /// PUT: replaces the object (its resourceVersion is the precondition).
    pub async fn replace(&self, name: &str, obj: &K) -> Result<K> {
        let value = self.client.update(&self.object_path(name), &encode_object(obj)?).await?;
        decode(value)
    }

    /// PUT to the status subresource.
    pub async fn replace_status(&self, name: &str, obj: &K) -> Result<K> {
        let value = self.client.update(&self.subresource_path(name, "status"), &encode_object(obj)?).await?;
        decode(value)
    }

    pub async fn patch(&self, name: &str, kind: PatchType, patch: &Value) -> Result<K> {
        let value = self.client.patch(&self.object_path(name), kind, patch).await?;
        decode(value)
    }

    pub async fn patch_status(&self, name: &str, kind: PatchType, patch: &Value) -> Result<K> {
        let value = self.client.patch(&self.subresource_path(name, "status"), kind, patch).await?;
        decode(value)
    }

    /// DELETE; 404 is an error (`is_not_found()`), callers that don't care ignore it.
    pub async fn delete(&self, name: &str, params: &DeleteParams) -> Result<()> {
        let body = serde_json::to_vec(&params.body()).map_err(|e| Error::Decode(format!("encoding DeleteOptions: {e}")))?;
        self.client.request(Method::DELETE, &self.object_path(name), Some((Bytes::from(body), "application/json"))).await?;
        Ok(())
    }

    /// POST to a subresource (`binding`, `eviction`); returns the answer as JSON.
    pub async fn create_subresource<B: Serialize>(&self, name: &str, subresource: &str, body: &B) -> Result<Value> {
        let body = serde_json::to_value(body).map_err(|e| Error::Decode(format!("encoding the {subresource} body: {e}")))?;
        self.client.create(&self.subresource_path(name, subresource), &body).await
    }

    /// The object path followed by `/{subresource}`.
    pub fn subresource_path(&self, name: &str, subresource: &str) -> String {
        format!("{}/{}", self.object_path(name), subresource)
    }
}

// === impl ListParams ===

impl ListParams {
    /// The query string (with its leading `?`, or empty), every value percent-encoded.
    pub fn query(&self) -> String {
        let pairs = [
            ("labelSelector", &self.label_selector),
            ("fieldSelector", &self.field_selector),
            ("continue", &self.continue_token),
            ("resourceVersion", &self.resource_version),
        ];
        let mut parts: Vec<String> = pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v)))).collect();
        if let Some(limit) = self.limit {
            parts.push(format!("limit={limit}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

// === impl DeleteParams ===

impl DeleteParams {
    /// The `DeleteOptions` body of the request.
    pub fn body(&self) -> Value {
        let mut body = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(grace) = self.grace_period_seconds {
            body["gracePeriodSeconds"] = json!(grace);
        }
        if let Some(policy) = &self.propagation_policy {
            body["propagationPolicy"] = json!(policy);
        }
        let mut preconditions = serde_json::Map::new();
        if let Some(uid) = &self.precondition_uid {
            preconditions.insert("uid".into(), json!(uid));
        }
        if let Some(rv) = &self.precondition_resource_version {
            preconditions.insert("resourceVersion".into(), json!(rv));
        }
        if !preconditions.is_empty() {
            body["preconditions"] = Value::Object(preconditions);
        }
        body
    }
}

/// The core group lives under `/api/v1`, the others under `/apis/{group}/{version}`.
fn collection_path<K: Resource>(namespace: Option<&str>) -> String {
    let mut path = if K::GROUP.is_empty() { format!("/api/{}", K::VERSION) } else { format!("/apis/{}/{}", K::GROUP, K::VERSION) };
    if let Some(ns) = namespace {
        path.push_str("/namespaces/");
        path.push_str(&encode(ns));
    }
    path.push('/');
    path.push_str(K::URL_PATH_SEGMENT);
    path
}

/// Everything but RFC 3986's unreserved characters is escaped, so selectors
/// (`a in (x,y)`, `!b`, `spec.nodeName=`) survive the trip unchanged.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

fn encode_object<K: Serialize>(obj: &K) -> Result<Value> {
    serde_json::to_value(obj).map_err(|e| Error::Decode(format!("encoding the object: {e}")))
}

/// An object of kind `K` from JSON; `apiVersion` and `kind` are filled in when
/// missing, as they are on the items of a list.
pub(crate) fn decode<K: Resource + DeserializeOwned>(mut value: Value) -> Result<K> {
    if let Some(map) = value.as_object_mut() {
        map.entry("apiVersion").or_insert_with(|| json!(K::API_VERSION));
        map.entry("kind").or_insert_with(|| json!(K::KIND));
    }
    serde_json::from_value(value).map_err(|e| Error::Decode(format!("a {} that does not decode: {e}", K::KIND)))
}

fn decode_list<K: Resource + DeserializeOwned>(mut value: Value) -> Result<ObjectList<K>> {
    let resource_version = value.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    let continue_token = value.pointer("/metadata/continue").and_then(Value::as_str).filter(|c| !c.is_empty()).map(String::from);
    let items = match value.get_mut("items").map(Value::take) {
        Some(Value::Array(items)) => items.into_iter().map(decode).collect::<Result<Vec<K>>>()?,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => return Err(Error::Decode(format!("a {} list whose items are not an array: {other}", K::KIND))),
    };
    Ok(ObjectList { items, resource_version, continue_token })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;

    #[test]
    fn paths_follow_the_group_version_and_namespace() {
        assert_eq!(collection_path::<Pod>(Some("x")), "/api/v1/namespaces/x/pods");
        assert_eq!(collection_path::<Pod>(None), "/api/v1/pods");
        assert_eq!(collection_path::<Deployment>(Some("x")), "/apis/apps/v1/namespaces/x/deployments");
        assert_eq!(collection_path::<PodDisruptionBudget>(None), "/apis/policy/v1/poddisruptionbudgets");
        assert_eq!(collection_path::<Node>(None), "/api/v1/nodes");
    }

    #[test]
    fn list_queries_are_percent_encoded() {
        let params = ListParams {
            label_selector: Some("app in (a,b),!canary".into()),
            field_selector: Some("spec.nodeName=".into()),
            limit: Some(500),
            continue_token: Some("eyJ2Ijo=".into()),
            resource_version: None,
        };
        assert_eq!(
            params.query(),
            "?labelSelector=app%20in%20%28a%2Cb%29%2C%21canary&fieldSelector=spec.nodeName%3D&continue=eyJ2Ijo%3D&limit=500"
        );
        assert_eq!(ListParams::default().query(), "");
    }

    #[test]
    fn delete_options_carry_only_what_was_asked() {
        assert_eq!(DeleteParams::default().body(), json!({"kind": "DeleteOptions", "apiVersion": "v1"}));
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            propagation_policy: Some("Foreground".into()),
            precondition_uid: Some("u-1".into()),
            precondition_resource_version: Some("7".into()),
        };
        assert_eq!(
            params.body(),
            json!({
                "kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "propagationPolicy": "Foreground",
                "preconditions": {"uid": "u-1", "resourceVersion": "7"},
            })
        );
    }
}
