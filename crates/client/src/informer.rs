//! Informers: a LIST then a WATCH of one kind, kept in a local store, with event
//! handlers. Relists on 410 Gone and after errors (with back-off); uses bookmarks to
//! keep its resourceVersion fresh.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{Api, ListParams};

/// What an informer tells its handlers.
#[derive(Debug)]
pub enum InformerEvent<K> {
    /// Added (`old` is None) or updated.
    Applied { old: Option<Arc<K>>, new: Arc<K> },
    Deleted(Arc<K>),
}

/// The informer's local copy, keyed by `namespace/name` (or `name`).
pub struct Store<K> {
    _kind: std::marker::PhantomData<K>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        todo!()
    }
}

impl<K> Store<K> {
    /// `namespace` is `""` for cluster-scoped kinds.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        todo!()
    }
    pub fn list(&self) -> Vec<Arc<K>> {
        todo!()
    }
    /// Objects of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        todo!()
    }
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub type Handler<K> = Arc<dyn Fn(&InformerEvent<K>) + Send + Sync>;

/// A shared informer. Cheap to clone; every clone sees the same store and handlers.
pub struct Informer<K> {
    _kind: std::marker::PhantomData<K>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        todo!()
    }
}

impl<K> Informer<K>
where
    K: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Serialize + Clone + Send + Sync + 'static,
{
    pub fn new(api: Api<K>, params: ListParams) -> Informer<K> {
        todo!()
    }

    pub fn store(&self) -> Store<K> {
        todo!()
    }

    /// Registers a handler. If the informer has already synced, the handler is first
    /// called with `Applied { old: None }` for every object in the store, so handlers
    /// can be added at any time without missing objects.
    pub fn on_event(&self, handler: Handler<K>) {
        todo!()
    }

    /// Runs forever: list, watch, relist when needed. Spawn it.
    pub async fn run(self) {
        todo!()
    }

    /// Resolves once the first list has been loaded into the store.
    pub async fn wait_synced(&self) {
        todo!()
    }

    pub fn has_synced(&self) -> bool {
        todo!()
    }
}
