//! The relist (upstream's PLEG): every second the runtimes are listed, each pod's
//! sandboxes and containers compared with the list before, and the workers of the
//! pods that changed (a container exited, a sandbox died) are woken. What belongs to
//! no pod of this node is an orphan of a pod deleted while the agent was away: it
//! is stopped and removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::manager::{remove_dir, PodRuntime};
use super::podstate::PodRuntimeState;
use super::pods::Change;
use super::worker::Kubelet;
use crate::runtime::{labels, ContainerState, Runtime, SandboxState};

/// How often the runtimes are listed (upstream's relist period).
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);

/// A pod's sandboxes and containers with their states, sorted: equal when nothing
/// changed.
type Fingerprint = Vec<(String, u8)>;

fn container_code(s: ContainerState) -> u8 {
    match s {
        ContainerState::Created => 0,
        ContainerState::Running => 1,
        ContainerState::Exited => 2,
        ContainerState::Unknown => 3,
    }
}

impl Kubelet {
    /// Lists the runtimes forever, waking the workers of pods that changed.
    pub(super) async fn relist(self) {
        let mut previous: HashMap<String, Fingerprint> = HashMap::new();
        let mut cleaned_dirs = false;
        let mut ticker = tokio::time::interval(RELIST_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(current) = self.list_all().await else { continue };
            let registry = &self.shared.registry;
            let mut changed: Vec<&String> = current.iter().filter(|(uid, fp)| previous.get(*uid) != Some(fp)).map(|(uid, _)| uid).collect();
            changed.extend(previous.keys().filter(|uid| !current.contains_key(*uid)));
            for uid in changed {
                if registry.contains(uid) {
                    self.update(Change { uid: uid.clone(), terminating: false });
                }
            }
            if registry.has_synced() {
                for uid in current.keys().filter(|uid| !registry.contains(uid)) {
                    self.clean_orphan(uid.clone());
                }
                if !cleaned_dirs {
                    self.clean_pod_dirs(&current).await;
                    cleaned_dirs = true;
                }
            }
            previous = current;
        }
    }

    /// Every pod the runtimes have something of, with its fingerprint; `None`
    /// when a runtime could not be listed (nothing is concluded from half a list).
    async fn list_all(&self) -> Option<HashMap<String, Fingerprint>> {
        let mut current: HashMap<String, Fingerprint> = HashMap::new();
        for (_, rt) in self.runtimes() {
            let sandboxes = rt.list_sandboxes_brief().await;
            let containers = rt.list_containers_brief().await;
            let (sandboxes, containers) = match (sandboxes, containers) {
                (Ok(s), Ok(c)) => (s, c),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(runtime = rt.handler(), error = %e, "relisting the runtime failed");
                    return None;
                }
            };
            for s in sandboxes {
                if let Some(uid) = s.labels.get(labels::POD_UID) {
                    current.entry(uid.clone()).or_default().push((s.id, if s.state == SandboxState::Ready { 10 } else { 11 }));
                }
            }
            for c in containers {
                if let Some(uid) = c.labels.get(labels::POD_UID) {
                    current.entry(uid.clone()).or_default().push((c.id, container_code(c.state)));
                }
            }
        }
        for fp in current.values_mut() {
            fp.sort();
        }
        Some(current)
    }

    /// Stops and removes, in the background, what the runtimes have of a pod this
    /// node does not run (deleted while the agent was down).
    fn clean_orphan(&self, uid: String) {
        if !self.shared.cleaning.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.clone()) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            tracing::info!(uid = %uid, "removing the containers of a pod that no longer exists");
            for (_, rt) in this.runtimes() {
                if let Err(e) = this.remove_orphan(&rt, &uid).await {
                    tracing::warn!(uid = %uid, error = %e, "removing an orphaned pod failed; retrying later");
                }
            }
            if let Err(e) = this.shared.host.teardown_volumes(&uid).await {
                tracing::warn!(uid = %uid, error = %e, "tearing down the volumes of an orphaned pod failed");
            }
            remove_dir(&this.shared.manager.pod_dir(&uid));
            this.shared.cleaning.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
        });
    }

    async fn remove_orphan(&self, rt: &Arc<dyn Runtime>, uid: &str) -> Result<(), String> {
        let state = PodRuntimeState::gather(rt.as_ref(), uid).await.map_err(|e| e.to_string())?;
        if state.is_empty() {
            return Ok(());
        }
        // The pod as its sandbox remembers it: enough to stop and name things.
        let labels = state.sandbox().map(|s| s.labels.clone()).unwrap_or_default();
        let pod = Pod {
            metadata: ObjectMeta {
                name: labels.get(labels::POD_NAME).cloned(),
                namespace: labels.get(labels::POD_NAMESPACE).cloned(),
                uid: Some(uid.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let prt = PodRuntime { runtime: rt.clone(), handler: String::new(), name: String::new(), own_network: true };
        let manager = &self.shared.manager;
        manager.kill_pod(&pod, &prt, &state, None).await?;
        let state = PodRuntimeState::gather(rt.as_ref(), uid).await.map_err(|e| e.to_string())?;
        manager.remove_pod(&pod, &prt, &state).await
    }

    /// Pod directories of pods that are neither in the API nor in a runtime.
    async fn clean_pod_dirs(&self, current: &HashMap<String, Fingerprint>) {
        let dir = self.shared.data_dir.join("pods");
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for entry in entries.flatten() {
            let Some(uid) = entry.file_name().to_str().map(String::from) else { continue };
            if self.shared.registry.contains(&uid) || current.contains_key(&uid) {
                continue;
            }
            tracing::info!(uid = %uid, "removing the directory of a pod that no longer exists");
            if let Err(e) = self.shared.host.teardown_volumes(&uid).await {
                tracing::warn!(uid = %uid, error = %e, "tearing down the volumes of an orphaned pod failed");
                continue;
            }
            remove_dir(&entry.path());
        }
    }
}
