//! Typed access to one kind: `Api<Pod>` for pods in a namespace (or all of them),
//! with the k8s-openapi types on the wire.

use std::marker::PhantomData;

use k8s_openapi::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{Client, PatchType, Result};

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
        todo!()
    }

    /// The collection path followed by `/{name}`.
    pub fn object_path(&self, name: &str) -> String {
        todo!()
    }

    pub async fn get(&self, name: &str) -> Result<K> {
        todo!()
    }

    /// `Ok(None)` on 404.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        todo!()
    }

    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<K>> {
        todo!()
    }

    pub async fn create(&self, obj: &K) -> Result<K> {
        todo!()
    }

    /// PUT: replaces the object (its resourceVersion is the precondition).
    pub async fn replace(&self, name: &str, obj: &K) -> Result<K> {
        todo!()
    }

    /// PUT to the status subresource.
    pub async fn replace_status(&self, name: &str, obj: &K) -> Result<K> {
        todo!()
    }

    pub async fn patch(&self, name: &str, kind: PatchType, patch: &Value) -> Result<K> {
        todo!()
    }

    pub async fn patch_status(&self, name: &str, kind: PatchType, patch: &Value) -> Result<K> {
        todo!()
    }

    /// DELETE; 404 is an error (`is_not_found()`), callers that don't care ignore it.
    pub async fn delete(&self, name: &str, params: &DeleteParams) -> Result<()> {
        todo!()
    }

    /// POST to a subresource (`binding`, `eviction`); returns the answer as JSON.
    pub async fn create_subresource<B: Serialize>(&self, name: &str, subresource: &str, body: &B) -> Result<Value> {
        todo!()
    }
}
