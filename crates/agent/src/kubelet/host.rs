//! What syncing a pod needs besides the runtime (upstream's `RuntimeHelper` and the
//! kubelet's managers): volumes, container environments, pull secrets, lifecycle
//! hooks, probers and events. [`KubeletHost`] is the real thing; tests pass a fake,
//! so the pod logic runs without an API server, volumes or probers.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, Secret};
use skiff_client::{Api, Client, EventRecorder, EventType};

use super::env::{self, EnvContext};
use super::images::Keyring;
use super::probe::{self, ProbeManager, ProbeTarget};
use super::volumes::VolumeManager;
use crate::runtime::{Mount, Runtime};

#[async_trait::async_trait]
pub trait RuntimeHelper: Send + Sync + 'static {
    /// Creates or refreshes the pod's volumes; the error is the FailedMount message.
    async fn setup_volumes(&self, pod: &Pod) -> Result<(), String>;
    /// Removes the pod's volumes.
    async fn teardown_volumes(&self, pod_uid: &str) -> Result<(), String>;
    /// The container's volume mounts (`subPathExpr` expanded from its environment).
    fn mounts(&self, pod: &Pod, container: &Container, env: &[(String, String)]) -> Result<Vec<Mount>, String>;
    /// The container's environment; the error is a CreateContainerConfigError.
    async fn container_env(&self, pod: &Pod, container: &Container, ctx: &EnvContext) -> Result<Vec<(String, String)>, String>;
    /// Registry credentials from the pod's imagePullSecrets.
    async fn pull_secrets(&self, pod: &Pod) -> Keyring;
    /// Runs a postStart or preStop hook to completion.
    async fn run_hook(&self, runtime: &dyn Runtime, container_id: &str, pod_ip: Option<IpAddr>, container: &Container, handler: &LifecycleHandler, timeout: Duration) -> Result<(), String>;

    fn probe_container(&self, target: ProbeTarget, container: &Container);
    fn stop_probing(&self, pod_uid: &str, container: &str);
    fn stop_probing_pod(&self, pod_uid: &str);
    /// The pod is terminating: liveness and startup probes stop, readiness goes on.
    fn pod_terminating(&self, pod_uid: &str);
    fn is_ready(&self, pod_uid: &str, container: &str) -> bool;
    fn is_started(&self, pod_uid: &str, container: &str) -> bool;

    /// Records an event about the pod.
    fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str);
}

/// The kubelet's own helpers: the API, the volume manager, the probers and the
/// event recorder.
pub struct KubeletHost {
    pub client: Client,
    pub volumes: Arc<VolumeManager>,
    pub probes: Arc<ProbeManager>,
    pub recorder: EventRecorder,
}

#[async_trait::async_trait]
impl RuntimeHelper for KubeletHost {
    async fn setup_volumes(&self, pod: &Pod) -> Result<(), String> {
        self.volumes.setup(pod).await.map_err(|e| e.to_string())
    }

    async fn teardown_volumes(&self, pod_uid: &str) -> Result<(), String> {
        self.volumes.teardown(pod_uid).await.map_err(|e| e.to_string())
    }

    fn mounts(&self, pod: &Pod, container: &Container, env: &[(String, String)]) -> Result<Vec<Mount>, String> {
        self.volumes.mounts_with_env(pod, container, env).map_err(|e| e.to_string())
    }

    async fn container_env(&self, pod: &Pod, container: &Container, ctx: &EnvContext) -> Result<Vec<(String, String)>, String> {
        env::container_env(&self.client, pod, container, ctx).await.map_err(|e| e.to_string())
    }

    async fn pull_secrets(&self, pod: &Pod) -> Keyring {
        let mut keyring = Keyring::default();
        let names: Vec<String> = pod.spec.as_ref().and_then(|s| s.image_pull_secrets.clone()).unwrap_or_default().into_iter().map(|r| r.name).filter(|n| !n.is_empty()).collect();
        if names.is_empty() {
            return keyring;
        }
        let secrets: Api<Secret> = Api::namespaced(&self.client, pod.metadata.namespace.as_deref().unwrap_or("default"));
        let mut missing = Vec::new();
        for name in names {
            match secrets.get(&name).await {
                Ok(secret) => keyring.add_secret(&secret),
                Err(e) => {
                    tracing::debug!(secret = %name, error = %e, "image pull secret unavailable");
                    missing.push(name);
                }
            }
        }
        if !missing.is_empty() {
            let message = format!("Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.", missing.join(", "));
            self.event(pod, EventType::Warning, "FailedToRetrieveImagePullSecret", &message);
        }
        keyring
    }

    async fn run_hook(&self, runtime: &dyn Runtime, container_id: &str, pod_ip: Option<IpAddr>, container: &Container, handler: &LifecycleHandler, timeout: Duration) -> Result<(), String> {
        probe::run_hook(runtime, container_id, pod_ip, container, handler, timeout).await
    }

    fn probe_container(&self, target: ProbeTarget, container: &Container) {
        self.probes.add_container(target, container);
    }

    fn stop_probing(&self, pod_uid: &str, container: &str) {
        self.probes.remove_container(pod_uid, container);
    }

    fn stop_probing_pod(&self, pod_uid: &str) {
        self.probes.remove_pod(pod_uid);
    }

    fn pod_terminating(&self, pod_uid: &str) {
        self.probes.pod_terminating(pod_uid);
    }

    fn is_ready(&self, pod_uid: &str, container: &str) -> bool {
        self.probes.is_ready(pod_uid, container)
    }

    fn is_started(&self, pod_uid: &str, container: &str) -> bool {
        self.probes.is_started(pod_uid, container)
    }

    fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) {
        self.recorder.record(pod, kind, reason, message);
    }
}
