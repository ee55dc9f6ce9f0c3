//! A container's environment: env (value, configMapKeyRef, secretKeyRef, fieldRef,
//! resourceFieldRef), envFrom, and the service links (`<SVC>_SERVICE_HOST`, …) of
//! the services that exist when the container starts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_client::Client;

/// Facts of the running pod that field and resource references read.
#[derive(Debug, Clone, Default)]
pub struct EnvContext {
    pub host_ip: String,
    pub pod_ips: Vec<String>,
    /// The node's allocatable ("cpu" → "4", "memory" → "8Gi"): the value of a
    /// resourceFieldRef to a limit the container does not set.
    pub node_allocatable: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A referenced ConfigMap/Secret or key is missing and the reference is not
    /// optional: the container cannot start (CreateContainerConfigError).
    #[error("{0}")]
    Config(String),
    /// The API could not be read; try again.
    #[error("{0}")]
    Api(String),
}

/// The container's environment, in the order the container sees it (service links
/// first, then envFrom, then env, later names replacing earlier ones; `$(VAR)`
/// references expanded as Kubernetes does).
pub async fn container_env(client: &Client, pod: &Pod, container: &Container, ctx: &EnvContext) -> Result<Vec<(String, String)>, EnvError> {
    let _ = (client, pod, container, ctx);
    Err(EnvError::Api("container environments are not built yet".into()))
}
