//! Pod volumes on this node: emptyDir (disk or memory with sizeLimit), hostPath,
//! configMap, secret, projected (serviceAccountToken, configMap, secret,
//! downwardAPI), downwardAPI, and persistentVolumeClaim (local-path volumes).
//!
//! Content volumes are written atomically as the kubelet's AtomicWriter does (a
//! timestamped directory, the `..data` symlink swapped in one rename), and kept up to
//! date while the pod runs.
//!
//! A volume lives at `<data_dir>/pods/<uid>/volumes/<plugin>/<volume>`, with the
//! kubelet's plugin directory names (`kubernetes.io~empty-dir`,
//! `kubernetes.io~configmap`, `kubernetes.io~secret`, `kubernetes.io~projected`,
//! `kubernetes.io~downward-api`), so anyone who knows a kubelet's disk finds their
//! way. hostPath volumes and claims bind their own host paths and have no directory
//! here, so tearing a pod down never touches their data.
//!
//! - `atomic_writer`: the `..data` swap; `payload`: what the files of a
//!   configMap, secret or downwardAPI source hold; `host_path`: hostPath type
//!   checks; `mounter`: tmpfs mounts behind the [`Mounter`] trait.
//! - this module: [`VolumeManager`], which sets volumes up, names the containers'
//!   bind mounts, refreshes content volumes when their sources change (a watch on
//!   ConfigMaps and Secrets, service account tokens at 80% of their lifetime) and
//!   tears pods' volumes down.

mod atomic_writer;
mod host_path;
mod mounter;
mod payload;
#[cfg(test)]
pub(crate) mod test_server;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccountTokenProjection, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use serde_json::{json, Value};
use skiff_api::validation::quantity::Quantity;
use skiff_client::{Api, Client, Informer, InformerEvent, ListParams};

use atomic_writer::{FileProjection, Payload};
pub use mounter::{HostMounter, Mounter};

use crate::kubelet::env;
use crate::runtime::Mount;

/// Plugin directory names, as the kubelet escapes `kubernetes.io/empty-dir`.
pub const EMPTY_DIR_PLUGIN: &str = "kubernetes.io~empty-dir";
pub const CONFIG_MAP_PLUGIN: &str = "kubernetes.io~configmap";
pub const SECRET_PLUGIN: &str = "kubernetes.io~secret";
pub const PROJECTED_PLUGIN: &str = "kubernetes.io~projected";
pub const DOWNWARD_API_PLUGIN: &str = "kubernetes.io~downward-api";

/// The ConfigMap with the cluster CA that `kube-api-access-*` volumes project as
/// `ca.crt`; where it does not exist (yet), the agent's own copy of the CA stands in.
const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The API's default lifetime of a projected token.
const DEFAULT_TOKEN_EXPIRATION: i64 = 3600;
/// A token older than this is replaced whatever its lifetime (upstream's maxTTL).
const TOKEN_MAX_TTL: i64 = 24 * 3600;
/// After a failed token refresh, the old token (still valid) is used this long
/// before the next attempt.
const TOKEN_RETRY: i64 = 10;
/// How often [`VolumeManager::run`] looks for tokens that are due.
const TICK: Duration = Duration::from_secs(1);
/// How often every content volume is rewritten from the API even without events.
const RESYNC_PERIOD: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A source is missing or invalid (no such ConfigMap, unbound claim): the pod
    /// waits, with this message in a FailedMount event.
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Io(String),
}

/// The volumes of every pod on this node.
pub struct VolumeManager {
    client: Client,
    data_dir: PathBuf,
    node_name: String,
    ca_pem: String,
    mounter: Arc<dyn Mounter>,
    memory_backed_secrets: bool,
    /// What `setup` saw of each pod. std Mutex: only held to read or change the
    /// map, never across an await.
    pods: Mutex<HashMap<String, PodState>>,
    /// One lock per pod, held across its setup, refresh or teardown, so that two
    /// writers never race on one volume.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A set-up pod: its latest spec, the host paths its claims resolved to, and its
/// service account tokens.
#[derive(Default)]
struct PodState {
    pod: Option<Pod>,
    claims: BTreeMap<String, ClaimPath>,
    tokens: HashMap<String, Token>,
}

#[derive(Debug, Clone)]
struct ClaimPath {
    path: PathBuf,
    read_only: bool,
}

/// A projected service account token and when to replace it.
#[derive(Debug, Clone)]
struct Token {
    token: String,
    /// Unix seconds.
    expires: i64,
    /// The lifetime that was asked for.
    expiration_seconds: i64,
    /// No new request before this (unix seconds), after a failed one.
    not_before: i64,
}

/// A ConfigMap or Secret that changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SourceRef {
    ConfigMap { namespace: String, name: String },
    Secret { namespace: String, name: String },
}

/// Node facts that setting up one pod may need, read once per pass.
#[derive(Default)]
struct Facts {
    allocatable: Option<BTreeMap<String, String>>,
}

impl VolumeManager {
    /// `data_dir/pods/<uid>/volumes/...` holds the volumes; `ca_pem` is the `ca.crt`
    /// of service account token volumes.
    pub fn new(client: Client, data_dir: &Path, node_name: &str, ca_pem: String) -> VolumeManager {
        VolumeManager {
            client,
            data_dir: data_dir.to_path_buf(),
            node_name: node_name.to_string(),
            ca_pem,
            mounter: Arc::new(HostMounter),
            memory_backed_secrets: false,
            pods: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Mounts tmpfs volumes with `mounter` instead of the host's `mount` command
    /// (tests pass one that records the calls).
    pub fn with_mounter(mut self, mounter: Arc<dyn Mounter>) -> VolumeManager {
        self.mounter = mounter;
        self
    }

    /// Keeps secret and projected volumes on a tmpfs, as upstream does, so secret
    /// data never reaches the disk. Off by default: it needs mount privileges, and
    /// a pod left behind by a crash then holds a mount until it is torn down.
    pub fn with_memory_backed_secrets(mut self, on: bool) -> VolumeManager {
        self.memory_backed_secrets = on;
        self
    }

    /// Keeps configMap, secret, projected and downwardAPI volumes of set-up pods up
    /// to date until the future is dropped.
    pub async fn run(self: std::sync::Arc<Self>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let config_maps = Informer::<ConfigMap>::new(Api::all(&self.client), ListParams::default());
        let secrets = Informer::<Secret>::new(Api::all(&self.client), ListParams::default());
        let cm_tx = tx.clone();
        config_maps.on_event(Arc::new(move |event: &InformerEvent<ConfigMap>| {
            let meta = &event.object().metadata;
            let _ = cm_tx.send(SourceRef::ConfigMap { namespace: meta.namespace.clone().unwrap_or_default(), name: meta.name.clone().unwrap_or_default() });
        }));
        secrets.on_event(Arc::new(move |event: &InformerEvent<Secret>| {
            let meta = &event.object().metadata;
            let _ = tx.send(SourceRef::Secret { namespace: meta.namespace.clone().unwrap_or_default(), name: meta.name.clone().unwrap_or_default() });
        }));
        let informers = async move {
            tokio::join!(config_maps.run(), secrets.run());
        };
        tokio::select! {
            _ = informers => {}
            _ = self.sync_loop(rx) => {}
        }
    }

    /// Creates (or refreshes) every volume of the pod. Idempotent.
    pub async fn setup(&self, pod: &Pod) -> Result<(), VolumeError> {
        let uid = pod_uid(pod)?;
        let lock = self.pod_lock(uid);
        let _guard = lock.lock().await;
        self.with_state(uid, |s| s.pod = Some(pod.clone()));
        let volumes_dir = self.pod_dir(uid).join("volumes");
        fs::create_dir_all(&volumes_dir).map_err(|e| VolumeError::Io(format!("creating {}: {e}", volumes_dir.display())))?;
        let mut facts = Facts::default();
        let mut first = None;
        for vol in pod_volumes(pod) {
            if let Err(e) = self.setup_volume(pod, uid, vol, &mut facts).await {
                tracing::debug!(pod = uid, volume = %vol.name, error = %e, "volume not set up");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The container's mounts (volumeMounts with subPath and readOnly) for volumes
    /// that `setup` made.
    ///
    /// `subPathExpr` is expanded from the variables this can know without the API:
    /// literal env values (with their `$(VAR)` references) and fieldRefs to the pod.
    /// [`VolumeManager::mounts_with_env`] takes the full environment instead.
    pub fn mounts(&self, pod: &Pod, container: &Container) -> Result<Vec<Mount>, VolumeError> {
        let env = local_env(pod, container);
        self.mounts_with_env(pod, container, &env)
    }

    /// The container's mounts, `subPathExpr` expanded from `env` (the container's
    /// environment as [`env::container_env`] makes it). A reference to a variable
    /// that is unset or empty is an error, as upstream.
    ///
    /// configMap, secret, downwardAPI and projected volumes are always read-only; a
    /// subPath into one pins the file it names at that moment (it does not follow
    /// later updates, as upstream), and a subPath that resolves outside its volume
    /// (through a symlink) is refused.
    pub fn mounts_with_env(&self, pod: &Pod, container: &Container, env: &[(String, String)]) -> Result<Vec<Mount>, VolumeError> {
        let uid = pod_uid(pod)?;
        let volumes = pod_volumes(pod);
        let mut mounts = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let vol = volumes
                .iter()
                .find(|v| v.name == m.name)
                .ok_or_else(|| VolumeError::NotReady(format!("cannot find volume {:?} to mount into container {:?}", m.name, container.name)))?;
            let (base, source_read_only) = self.volume_path(uid, vol)?;
            let sub_path = sub_path(m, env)?;
            let host_path = if sub_path.is_empty() { base } else { resolve_sub_path(&base, &sub_path, &m.name, &container.name)? };
            mounts.push(Mount { host_path, container_path: m.mount_path.clone(), read_only: m.read_only.unwrap_or(false) || source_read_only });
        }
        Ok(mounts)
    }

    /// Removes the pod's volumes (memory-backed ones unmounted); claim data stays.
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        if pod_uid.is_empty() || pod_uid.contains('/') || pod_uid == "." || pod_uid == ".." {
            return Err(VolumeError::Io(format!("invalid pod uid {pod_uid:?}")));
        }
        let lock = self.pod_lock(pod_uid);
        let _guard = lock.lock().await;
        self.pods.lock().unwrap_or_else(|e| e.into_inner()).remove(pod_uid);
        let dir = self.pod_dir(pod_uid);
        if fs::symlink_metadata(&dir).is_err() {
            self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(pod_uid);
            return Ok(());
        }
        let io_err = |what: &str, e: io::Error| VolumeError::Io(format!("{what} {}: {e}", dir.display()));
        for point in self.mounter.mounts_under(&dir).map_err(|e| io_err("reading the mounts under", e))? {
            self.mounter.unmount(&point).map_err(|e| VolumeError::Io(format!("unmounting {}: {e}", point.display())))?;
        }
        // Never delete through a mount that did not go away.
        let left = self.mounter.mounts_under(&dir).map_err(|e| io_err("reading the mounts under", e))?;
        if !left.is_empty() {
            return Err(VolumeError::Io(format!("{} is still mounted", left[0].display())));
        }
        let target = dir.clone();
        tokio::task::spawn_blocking(move || fs::remove_dir_all(target))
            .await
            .map_err(|e| VolumeError::Io(format!("removing {}: {e}", dir.display())))?
            .map_err(|e| io_err("removing", e))?;
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(pod_uid);
        Ok(())
    }

    /// The pod's directory on this node.
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(pod_uid)
    }

    /// Where volume `name` of plugin `plugin` lives for the pod.
    pub fn volume_dir(&self, pod_uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_dir(pod_uid).join("volumes").join(plugin).join(name)
    }
}

// === setup ===

impl VolumeManager {
    async fn setup_volume(&self, pod: &Pod, uid: &str, vol: &Volume, facts: &mut Facts) -> Result<(), VolumeError> {
        let name = &vol.name;
        if let Some(empty_dir) = &vol.empty_dir {
            let dir = self.volume_dir(uid, EMPTY_DIR_PLUGIN, name);
            ensure_dir(&dir, 0o777).map_err(|e| setup_io(name, e))?;
            match empty_dir.medium.as_deref().unwrap_or("") {
                "" => {}
                "Memory" => self.ensure_tmpfs(pod, &dir, empty_dir.size_limit.as_ref(), facts).await.map_err(|e| setup_io(name, e))?,
                other => return Err(setup_failed(name, format!("emptyDir medium {other:?} is not supported on this node"))),
            }
            // The mount root gets the volume's mode too (a fresh tmpfs has 1777);
            // a setgid bit from the fsGroup step stays.
            let current = fs::metadata(&dir).map(|m| m.permissions().mode() & 0o7777).map_err(|e| setup_io(name, e))?;
            if current & 0o777 != 0o777 {
                set_mode(&dir, current | 0o777).map_err(|e| setup_io(name, e))?;
            }
            if let Some(gid) = fs_group(pod) {
                give_empty_dir_to_group(&dir, gid).map_err(|e| setup_io(name, e))?;
            }
            return Ok(());
        }
        if let Some(host) = &vol.host_path {
            return host_path::check_type(Path::new(&host.path), host.type_.as_deref().unwrap_or("")).map_err(|e| setup_failed(name, e));
        }
        if let Some(claim) = &vol.persistent_volume_claim {
            return self.setup_claim(pod, uid, name, &claim.claim_name, claim.read_only.unwrap_or(false), false).await;
        }
        if vol.ephemeral.is_some() {
            // A generic ephemeral volume is the claim `<pod>-<volume>` that the pod owns.
            let claim = format!("{}-{}", pod.metadata.name.as_deref().unwrap_or(""), name);
            return self.setup_claim(pod, uid, name, &claim, false, true).await;
        }
        if content_plugin(vol).is_some() {
            return self.setup_content(pod, uid, vol, facts).await;
        }
        Err(setup_failed(name, "no volume plugin matched".into()))
    }

    /// Writes a configMap, secret, downwardAPI or projected volume.
    async fn setup_content(&self, pod: &Pod, uid: &str, vol: &Volume, facts: &mut Facts) -> Result<(), VolumeError> {
        let name = &vol.name;
        let Some((plugin, secret_data)) = content_plugin(vol) else { return Ok(()) };
        let dir = self.volume_dir(uid, plugin, name);
        ensure_dir(&dir, 0o777).map_err(|e| setup_io(name, e))?;
        if secret_data && self.memory_backed_secrets {
            self.ensure_tmpfs(pod, &dir, None, facts).await.map_err(|e| setup_io(name, e))?;
        }
        let (mut payload, deferred) = self.content_payload(pod, uid, vol, facts).await?;
        let group = fs_group(pod);
        if group.is_some() {
            // What the kubelet's ownership step leaves: group-readable files.
            for file in payload.values_mut() {
                file.mode |= 0o440;
            }
        }
        let target = dir.clone();
        let changed = tokio::task::spawn_blocking(move || atomic_writer::write(&target, &payload, group))
            .await
            .map_err(|e| setup_io(name, io::Error::other(e.to_string())))?
            .map_err(|e| setup_io(name, e))?;
        if changed {
            tracing::debug!(pod = uid, volume = %name, "volume content written");
        }
        deferred.map_or(Ok(()), Err)
    }

    /// The files of a content volume; the second value is an error to report after
    /// writing them (a token that could not be had, while the other files can be).
    async fn content_payload(&self, pod: &Pod, uid: &str, vol: &Volume, facts: &mut Facts) -> Result<(Payload, Option<VolumeError>), VolumeError> {
        let name = &vol.name;
        let namespace = pod_namespace(pod);
        if let Some(src) = &vol.config_map {
            let optional = src.optional.unwrap_or(false);
            let cm = match self.config_map(namespace, &src.name).await.map_err(|e| setup_failed(name, e))? {
                Some(cm) => cm,
                None if optional => ConfigMap::default(),
                None => return Err(setup_failed(name, format!("configmap {:?} not found", src.name))),
            };
            let files = payload::config_map(src.items.as_deref(), &cm, src.default_mode.unwrap_or(payload::DEFAULT_MODE), optional).map_err(|e| setup_failed(name, e))?;
            return Ok((files, None));
        }
        if let Some(src) = &vol.secret {
            let optional = src.optional.unwrap_or(false);
            let secret_name = src.secret_name.as_deref().unwrap_or("");
            let secret = match self.secret(namespace, secret_name).await.map_err(|e| setup_failed(name, e))? {
                Some(s) => s,
                None if optional => Secret::default(),
                None => return Err(setup_failed(name, format!("secret {secret_name:?} not found"))),
            };
            let files = payload::secret(src.items.as_deref(), &secret, src.default_mode.unwrap_or(payload::DEFAULT_MODE), optional).map_err(|e| setup_failed(name, e))?;
            return Ok((files, None));
        }
        if let Some(src) = &vol.downward_api {
            let items = src.items.as_deref().unwrap_or(&[]);
            let allocatable = if items.iter().any(|i| i.resource_field_ref.is_some()) { self.allocatable(facts).await } else { BTreeMap::new() };
            let files = payload::downward_api(items, pod, src.default_mode.unwrap_or(payload::DEFAULT_MODE), &allocatable).map_err(|e| setup_failed(name, e))?;
            return Ok((files, None));
        }
        let Some(src) = &vol.projected else { return Ok((Payload::new(), None)) };
        let default_mode = src.default_mode.unwrap_or(payload::DEFAULT_MODE);
        let mut files = Payload::new();
        let mut errors: Vec<String> = Vec::new();
        let mut token_error = None;
        for source in src.sources.iter().flatten() {
            if let Some(cm_src) = &source.config_map {
                let optional = cm_src.optional.unwrap_or(false);
                let cm = match self.config_map(namespace, &cm_src.name).await {
                    Ok(Some(cm)) => cm,
                    Ok(None) if cm_src.name == ROOT_CA_CONFIG_MAP && !self.ca_pem.is_empty() => {
                        ConfigMap { data: Some([("ca.crt".to_string(), self.ca_pem.clone())].into_iter().collect()), ..ConfigMap::default() }
                    }
                    Ok(None) if optional => ConfigMap::default(),
                    Ok(None) => {
                        errors.push(format!("configmap {:?} not found", cm_src.name));
                        continue;
                    }
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                match payload::config_map(cm_src.items.as_deref(), &cm, default_mode, optional) {
                    Ok(more) => files.extend(more),
                    Err(e) => errors.push(e),
                }
            } else if let Some(secret_src) = &source.secret {
                let optional = secret_src.optional.unwrap_or(false);
                let secret = match self.secret(namespace, &secret_src.name).await {
                    Ok(Some(s)) => s,
                    Ok(None) if optional => Secret::default(),
                    Ok(None) => {
                        errors.push(format!("secret {:?} not found", secret_src.name));
                        continue;
                    }
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                match payload::secret(secret_src.items.as_deref(), &secret, default_mode, optional) {
                    Ok(more) => files.extend(more),
                    Err(e) => errors.push(e),
                }
            } else if let Some(downward) = &source.downward_api {
                let items = downward.items.as_deref().unwrap_or(&[]);
                let allocatable = if items.iter().any(|i| i.resource_field_ref.is_some()) { self.allocatable(facts).await } else { BTreeMap::new() };
                match payload::downward_api(items, pod, default_mode, &allocatable) {
                    Ok(more) => files.extend(more),
                    Err(e) => errors.push(e),
                }
            } else if let Some(projection) = &source.service_account_token {
                match self.service_account_token(pod, uid, name, projection).await {
                    Ok(token) => {
                        // With an fsGroup the token is for the owner and that group only.
                        let mode = if fs_group(pod).is_some() { 0o600 } else { (default_mode as u32) & 0o7777 };
                        files.insert(projection.path.clone(), FileProjection { data: token.into_bytes(), mode });
                    }
                    Err(e) => token_error = Some(setup_failed(name, e)),
                }
            } else if source.cluster_trust_bundle.is_some() {
                errors.push("clusterTrustBundle projections are not supported on this node".into());
            }
        }
        match errors.len() {
            0 => Ok((files, token_error)),
            1 => Err(setup_failed(name, errors.remove(0))),
            _ => Err(setup_failed(name, format!("[{}]", errors.join(", ")))),
        }
    }

    /// Resolves a claim to the host directory of its volume (`hostPath` or `local`),
    /// creating it if needed (mode 0777, as the local-path provisioner does).
    async fn setup_claim(&self, pod: &Pod, uid: &str, volume: &str, claim: &str, read_only: bool, ephemeral: bool) -> Result<(), VolumeError> {
        let namespace = pod_namespace(pod);
        let pvc = Api::<PersistentVolumeClaim>::namespaced(&self.client, namespace)
            .get_opt(claim)
            .await
            .map_err(|e| VolumeError::NotReady(format!("error reading persistentvolumeclaim {claim:?}: {}", api_message(&e))))?
            .ok_or_else(|| VolumeError::NotReady(format!("persistentvolumeclaim {claim:?} not found")))?;
        if ephemeral && !pvc.metadata.owner_references.iter().flatten().any(|o| o.uid == uid) {
            return Err(VolumeError::NotReady(format!("PVC {namespace}/{claim} was not created for pod {namespace}/{} (pod is not owner)", pod.metadata.name.as_deref().unwrap_or(""))));
        }
        let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        let pv_name = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("");
        if phase != "Bound" || pv_name.is_empty() {
            return Err(VolumeError::NotReady(format!("persistentvolumeclaim {claim:?} is not bound")));
        }
        let pv = Api::<PersistentVolume>::all(&self.client)
            .get_opt(pv_name)
            .await
            .map_err(|e| VolumeError::NotReady(format!("error reading persistentvolume {pv_name:?}: {}", api_message(&e))))?
            .ok_or_else(|| VolumeError::NotReady(format!("persistentvolume {pv_name:?} not found")))?;
        let spec = pv.spec.as_ref();
        let path = spec
            .and_then(|s| s.host_path.as_ref().map(|h| h.path.clone()).or_else(|| s.local.as_ref().map(|l| l.path.clone())))
            .ok_or_else(|| VolumeError::NotReady(format!("persistentvolume {pv_name:?} has no hostPath or local source that this node can mount")))?;
        let path = PathBuf::from(path);
        if fs::symlink_metadata(&path).is_err() {
            fs::create_dir_all(&path).and_then(|()| set_mode(&path, 0o777)).map_err(|e| VolumeError::Io(format!("creating {} for persistentvolume {pv_name:?}: {e}", path.display())))?;
        }
        self.with_state(uid, |s| {
            s.claims.insert(volume.to_string(), ClaimPath { path, read_only });
        });
        Ok(())
    }

    /// Mounts a tmpfs on `dir` unless one is there, sized as upstream sizes
    /// memory-backed emptyDirs: the node's allocatable memory, or less if the pod's
    /// memory limit or the volume's sizeLimit is smaller.
    async fn ensure_tmpfs(&self, pod: &Pod, dir: &Path, size_limit: Option<&ApiQuantity>, facts: &mut Facts) -> io::Result<()> {
        let canonical = fs::canonicalize(dir)?;
        if self.mounter.mounts_under(dir)?.iter().any(|p| p == dir || *p == canonical) {
            return Ok(());
        }
        let allocatable = self.allocatable(facts).await;
        let node_memory = allocatable.get("memory").and_then(|m| Quantity::parse(m).ok()).map(|q| q.value());
        let size = memory_volume_size(node_memory, pod_memory_limit(pod), size_limit.and_then(|q| Quantity::parse(&q.0).ok()).map(|q| q.value()));
        self.mounter.mount_tmpfs(dir, size.and_then(|s| u64::try_from(s).ok()))
    }

    /// The node's allocatable resources from its Node object, or the host's own
    /// CPU count and memory where the Node cannot be read.
    async fn allocatable(&self, facts: &mut Facts) -> BTreeMap<String, String> {
        if let Some(known) = &facts.allocatable {
            return known.clone();
        }
        let mut allocatable: BTreeMap<String, String> = match Api::<Node>::all(&self.client).get_opt(&self.node_name).await {
            Ok(Some(node)) => node.status.and_then(|s| s.allocatable).unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(),
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                tracing::debug!(node = %self.node_name, error = %e, "node allocatable unreadable, using the host's");
                BTreeMap::new()
            }
        };
        for (key, value) in host_allocatable() {
            allocatable.entry(key).or_insert(value);
        }
        facts.allocatable = Some(allocatable.clone());
        allocatable
    }

    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        Api::<ConfigMap>::namespaced(&self.client, namespace).get_opt(name).await.map_err(|e| format!("couldn't get configmap {namespace}/{name}: {}", api_message(&e)))
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        Api::<Secret>::namespaced(&self.client, namespace).get_opt(name).await.map_err(|e| format!("couldn't get secret {namespace}/{name}: {}", api_message(&e)))
    }
}

// === service account tokens ===

impl VolumeManager {
    /// A token for the pod's service account with the projection's audience and
    /// lifetime, bound to the pod: the cached one until 80% of its lifetime has
    /// passed (or a day), then a new one. A failed refresh keeps the old token
    /// while it is valid.
    async fn service_account_token(&self, pod: &Pod, uid: &str, volume: &str, projection: &ServiceAccountTokenProjection) -> Result<String, String> {
        let expiration = projection.expiration_seconds.unwrap_or(DEFAULT_TOKEN_EXPIRATION);
        let audience = projection.audience.as_deref().unwrap_or("");
        let key = format!("{volume}/{}|{audience}|{expiration}", projection.path);
        let now = jiff::Timestamp::now().as_second();
        let cached = self.with_state(uid, |s| s.tokens.get(&key).cloned());
        if let Some(token) = &cached {
            if !requires_refresh(now, token) || (now < token.not_before && now < token.expires) {
                return Ok(token.token.clone());
            }
        }
        match self.request_token(pod, audience, expiration).await {
            Ok(token) => {
                let value = token.token.clone();
                self.with_state(uid, |s| {
                    s.tokens.insert(key, token);
                });
                Ok(value)
            }
            Err(e) => match cached {
                Some(mut old) if now < old.expires => {
                    tracing::warn!(pod = uid, volume, error = %e, "service account token refresh failed; keeping the current token");
                    old.not_before = now + TOKEN_RETRY;
                    let value = old.token.clone();
                    self.with_state(uid, |s| {
                        s.tokens.insert(key, old);
                    });
                    Ok(value)
                }
                _ => Err(e),
            },
        }
    }

    /// `POST serviceaccounts/<sa>/token`: a TokenRequest bound to the pod.
    async fn request_token(&self, pod: &Pod, audience: &str, expiration: i64) -> Result<Token, String> {
        let namespace = pod_namespace(pod);
        let spec = pod.spec.as_ref();
        let account = spec
            .and_then(|s| s.service_account_name.as_deref().or(s.service_account.as_deref()))
            .filter(|a| !a.is_empty())
            .unwrap_or("default");
        let mut request_spec = json!({
            "expirationSeconds": expiration,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name, "uid": pod.metadata.uid},
        });
        // No audience means the API server's own.
        if !audience.is_empty() {
            request_spec["audiences"] = json!([audience]);
        }
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": request_spec});
        let path = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token");
        let answer = self.client.create(&path, &body).await.map_err(|e| format!("failed to fetch token: {}", api_message(&e)))?;
        let token = answer.pointer("/status/token").and_then(Value::as_str).filter(|t| !t.is_empty()).ok_or("failed to fetch token: the answer holds no token")?;
        let now = jiff::Timestamp::now().as_second();
        let expires = answer
            .pointer("/status/expirationTimestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second())
            .unwrap_or(now + expiration);
        Ok(Token { token: token.to_string(), expires, expiration_seconds: expiration, not_before: 0 })
    }
}

/// Whether a token is due: within 20% of its asked-for lifetime of expiring, or
/// issued more than a day ago (the kubelet token manager's rule).
fn requires_refresh(now: i64, token: &Token) -> bool {
    let issued = token.expires - token.expiration_seconds;
    now >= issued + TOKEN_MAX_TTL || now >= token.expires - token.expiration_seconds / 5
}

// === keeping content volumes current ===

impl VolumeManager {
    async fn sync_loop(&self, mut changes: tokio::sync::mpsc::UnboundedReceiver<SourceRef>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_full = tokio::time::Instant::now();
        loop {
            let due: BTreeSet<String> = tokio::select! {
                Some(first) = changes.recv() => {
                    // Take every change queued so far, so a burst costs one pass.
                    let mut changed = BTreeSet::from([first]);
                    while let Ok(more) = changes.try_recv() {
                        changed.insert(more);
                    }
                    self.pods_referencing(&changed)
                }
                _ = tick.tick() => {
                    if last_full.elapsed() >= RESYNC_PERIOD {
                        last_full = tokio::time::Instant::now();
                        self.known_pods()
                    } else {
                        self.pods_with_tokens_due(jiff::Timestamp::now().as_second())
                    }
                }
            };
            for uid in due {
                if let Err(e) = self.refresh(&uid).await {
                    tracing::warn!(pod = %uid, error = %e, "volume refresh failed");
                }
            }
        }
    }

    /// Rewrites the content volumes of a set-up pod from the API.
    async fn refresh(&self, uid: &str) -> Result<(), VolumeError> {
        let lock = self.pod_lock(uid);
        let _guard = lock.lock().await;
        let Some(pod) = self.pods.lock().unwrap_or_else(|e| e.into_inner()).get(uid).and_then(|s| s.pod.clone()) else {
            return Ok(());
        };
        let mut facts = Facts::default();
        let mut first = None;
        for vol in pod_volumes(&pod).iter().filter(|v| content_plugin(v).is_some()) {
            if let Err(e) = self.setup_content(&pod, uid, vol, &mut facts).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn known_pods(&self) -> BTreeSet<String> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|(_, s)| s.pod.is_some()).map(|(uid, _)| uid.clone()).collect()
    }

    fn pods_with_tokens_due(&self, now: i64) -> BTreeSet<String> {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.iter()
            .filter(|(_, s)| s.pod.is_some() && s.tokens.values().any(|t| requires_refresh(now, t) && now >= t.not_before))
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    fn pods_referencing(&self, changed: &BTreeSet<SourceRef>) -> BTreeSet<String> {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.iter()
            .filter(|(_, s)| s.pod.as_ref().is_some_and(|pod| changed.iter().any(|c| references(pod, c))))
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    fn pod_lock(&self, uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).entry(uid.to_string()).or_default().clone()
    }

    fn with_state<T>(&self, uid: &str, f: impl FnOnce(&mut PodState) -> T) -> T {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        f(pods.entry(uid.to_string()).or_default())
    }
}

/// Whether any content volume of the pod reads the changed object.
fn references(pod: &Pod, changed: &SourceRef) -> bool {
    let (namespace, kind_is_cm, name) = match changed {
        SourceRef::ConfigMap { namespace, name } => (namespace, true, name),
        SourceRef::Secret { namespace, name } => (namespace, false, name),
    };
    if pod_namespace(pod) != namespace {
        return false;
    }
    pod_volumes(pod).iter().any(|vol| {
        if kind_is_cm {
            vol.config_map.as_ref().is_some_and(|c| &c.name == name)
                || vol.projected.as_ref().is_some_and(|p| p.sources.iter().flatten().any(|s| s.config_map.as_ref().is_some_and(|c| &c.name == name)))
        } else {
            vol.secret.as_ref().is_some_and(|s| s.secret_name.as_ref() == Some(name))
                || vol.projected.as_ref().is_some_and(|p| p.sources.iter().flatten().any(|s| s.secret.as_ref().is_some_and(|c| &c.name == name)))
        }
    })
}

// === mounts ===

impl VolumeManager {
    /// The host path of a volume, and whether the volume itself is read-only.
    fn volume_path(&self, uid: &str, vol: &Volume) -> Result<(PathBuf, bool), VolumeError> {
        let not_set_up = || VolumeError::NotReady(format!("volume {:?} of pod {uid} is not set up", vol.name));
        if vol.empty_dir.is_some() {
            let dir = self.volume_dir(uid, EMPTY_DIR_PLUGIN, &vol.name);
            return if dir.is_dir() { Ok((dir, false)) } else { Err(not_set_up()) };
        }
        if let Some(host) = &vol.host_path {
            return Ok((PathBuf::from(&host.path), false));
        }
        if vol.persistent_volume_claim.is_some() || vol.ephemeral.is_some() {
            let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
            let claim = pods.get(uid).and_then(|s| s.claims.get(&vol.name)).ok_or_else(not_set_up)?;
            return Ok((claim.path.clone(), claim.read_only));
        }
        if let Some((plugin, _)) = content_plugin(vol) {
            let dir = self.volume_dir(uid, plugin, &vol.name);
            // Written at least once.
            return if fs::symlink_metadata(dir.join(atomic_writer::DATA_DIR)).is_ok() { Ok((dir, true)) } else { Err(not_set_up()) };
        }
        Err(VolumeError::NotReady(format!("no volume plugin matched volume {:?}", vol.name)))
    }
}

/// The subPath of a mount, `subPathExpr` expanded from `env`.
fn sub_path(m: &VolumeMount, env: &[(String, String)]) -> Result<String, VolumeError> {
    let Some(expr) = m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) else {
        return Ok(m.sub_path.clone().unwrap_or_default());
    };
    let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut missing = BTreeSet::new();
    let expanded = env::expand(expr, |name| match vars.get(name) {
        Some(v) if !v.is_empty() => Some(v.to_string()),
        _ => {
            missing.insert(name.to_string());
            Some(String::new())
        }
    });
    if !missing.is_empty() {
        return Err(VolumeError::NotReady(format!("missing value for {}", missing.into_iter().collect::<Vec<_>>().join(", "))));
    }
    Ok(expanded)
}

/// `base/sub`, created as a directory with the volume's mode if missing, resolved
/// through symlinks, and refused if that leads outside `base`.
fn resolve_sub_path(base: &Path, sub: &str, mount: &str, container: &str) -> Result<PathBuf, VolumeError> {
    if sub.starts_with('/') {
        return Err(VolumeError::NotReady(format!("error SubPath `{sub}` must not be an absolute path")));
    }
    if sub.split('/').any(|p| p == "..") {
        return Err(VolumeError::NotReady(format!("unable to provision SubPath `{sub}`: must not contain '..'")));
    }
    let escape = || VolumeError::NotReady(format!("failed to prepare subPath for volumeMount {mount:?} of container {container:?}"));
    let root = fs::canonicalize(base).map_err(|e| VolumeError::Io(format!("resolving {}: {e}", base.display())))?;
    if fs::symlink_metadata(base.join(sub)).is_err() {
        let mode = fs::metadata(&root).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o755);
        safe_make_dir(&root, sub, mode).map_err(|e| {
            tracing::debug!(error = %e, mount, container, "creating a subPath directory failed");
            VolumeError::NotReady(format!("failed to create subPath directory for volumeMount {mount:?} of container {container:?}"))
        })?;
    }
    let resolved = fs::canonicalize(base.join(sub)).map_err(|_| escape())?;
    if !resolved.starts_with(&root) {
        return Err(escape());
    }
    Ok(resolved)
}

/// Creates `root/sub` one directory at a time, following a symlink only where it
/// stays under `root` (a container must not get the agent to create directories
/// elsewhere through a link it planted).
fn safe_make_dir(root: &Path, sub: &str, mode: u32) -> io::Result<()> {
    let mut current = root.to_path_buf();
    for part in sub.split('/').filter(|p| !p.is_empty() && *p != ".") {
        let next = current.join(part);
        match fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::canonicalize(&next)?;
                if !target.starts_with(root) || !target.is_dir() {
                    return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("{} leads outside the volume", next.display())));
                }
                current = target;
            }
            Ok(meta) if meta.is_dir() => current = next,
            Ok(_) => return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} is not a directory", next.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&next)?;
                set_mode(&next, mode)?;
                current = next;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The variables a subPathExpr can use without the API: literal values (expanded
/// against the ones before) and fieldRefs to the pod.
fn local_env(pod: &Pod, container: &Container) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) if !v.is_empty() => env::expand(v, |name| vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone())),
            (_, Some(from)) => match &from.field_ref {
                Some(selector) => match env::field_ref_value(pod, selector, &env::EnvContext::default()) {
                    Ok(v) => v,
                    Err(_) => continue,
                },
                None => continue,
            },
            _ => String::new(),
        };
        vars.push((var.name.clone(), value));
    }
    vars
}

// === helpers ===

/// The plugin directory of a content volume, and whether it holds secret data
/// (kept in memory when asked to).
fn content_plugin(vol: &Volume) -> Option<(&'static str, bool)> {
    if vol.config_map.is_some() {
        Some((CONFIG_MAP_PLUGIN, false))
    } else if vol.secret.is_some() {
        Some((SECRET_PLUGIN, true))
    } else if vol.downward_api.is_some() {
        Some((DOWNWARD_API_PLUGIN, false))
    } else if vol.projected.is_some() {
        Some((PROJECTED_PLUGIN, true))
    } else {
        None
    }
}

fn pod_volumes(pod: &Pod) -> &[Volume] {
    pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or(&[])
}

fn pod_uid(pod: &Pod) -> Result<&str, VolumeError> {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() && !uid.contains('/') && uid != "." && uid != ".." => Ok(uid),
        _ => Err(VolumeError::Io(format!("pod {:?} has no usable uid", pod.metadata.name.as_deref().unwrap_or("")))),
    }
}

fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default")
}

/// The FailedMount message of a volume whose source is not usable.
fn setup_failed(volume: &str, cause: String) -> VolumeError {
    VolumeError::NotReady(format!("MountVolume.SetUp failed for volume {volume:?} : {cause}"))
}

fn setup_io(volume: &str, e: io::Error) -> VolumeError {
    VolumeError::Io(format!("MountVolume.SetUp failed for volume {volume:?} : {e}"))
}

/// The message of an API error without its code and reason.
fn api_message(e: &skiff_client::Error) -> String {
    match e {
        skiff_client::Error::Api { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The pod's `securityContext.fsGroup`.
fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec.as_ref()?.security_context.as_ref()?.fs_group.and_then(|g| u32::try_from(g).ok())
}

/// Gives an emptyDir to the pod's fsGroup (setgid directories, group read and
/// write), walking it only when its root is not the group's yet, as the
/// `OnRootMismatch` policy does.
fn give_empty_dir_to_group(dir: &Path, gid: u32) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(dir)?;
    if meta.gid() == gid && meta.mode() & 0o2000 != 0 {
        return Ok(());
    }
    fn walk(path: &Path, gid: u32) -> io::Result<()> {
        std::os::unix::fs::lchown(path, None, Some(gid))?;
        let meta = fs::symlink_metadata(path)?;
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            set_mode(path, mode | 0o2770)?;
            for entry in fs::read_dir(path)? {
                walk(&entry?.path(), gid)?;
            }
        } else {
            set_mode(path, mode | 0o660)?;
        }
        Ok(())
    }
    walk(dir, gid)
}

fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    if !dir.is_dir() {
        fs::create_dir_all(dir)?;
        set_mode(dir, mode)?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// The pod's memory limit as its cgroup would get it: the sum over its containers
/// when every one has a limit, raised to any larger init container's limit.
fn pod_memory_limit(pod: &Pod) -> Option<i128> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &Container| c.resources.as_ref()?.limits.as_ref()?.get("memory").and_then(|q| Quantity::parse(&q.0).ok()).map(|q| q.value());
    let mut sum: i128 = 0;
    for c in &spec.containers {
        sum += limit(c)?;
    }
    for c in spec.init_containers.iter().flatten() {
        if let Some(l) = limit(c) {
            sum = sum.max(l);
        }
    }
    Some(sum)
}

/// Upstream's `calculateEmptyDirMemorySize`: the node's memory, lowered to the
/// pod's limit and then to the volume's sizeLimit where those are positive and
/// smaller.
fn memory_volume_size(node: Option<i128>, pod_limit: Option<i128>, size_limit: Option<i128>) -> Option<i128> {
    let mut size = node;
    for candidate in [pod_limit, size_limit].into_iter().flatten() {
        if candidate > 0 && size.is_none_or(|s| candidate <= s) {
            size = Some(candidate);
        }
    }
    size
}

/// The host's CPU count and memory, for a node whose allocatable is unknown.
fn host_allocatable() -> Vec<(String, String)> {
    let mut facts = Vec::new();
    if let Ok(n) = std::thread::available_parallelism() {
        facts.push(("cpu".to_string(), n.get().to_string()));
    }
    if let Ok(meminfo) = fs::read_to_string("/proc/meminfo") {
        let kib = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        if let Some(kib) = kib {
            facts.push(("memory".to_string(), format!("{}", kib * 1024)));
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;
    use skiff_client::PatchType;

    use super::test_server::TestServer;
    use super::*;

    /// Records tmpfs mounts instead of making them.
    #[derive(Default)]
    struct RecordingMounter {
        mounted: Mutex<Vec<(PathBuf, Option<u64>)>>,
        unmounted: Mutex<Vec<PathBuf>>,
    }

    impl Mounter for RecordingMounter {
        fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> io::Result<()> {
            self.mounted.lock().unwrap().push((target.to_path_buf(), size_bytes));
            Ok(())
        }

        fn unmount(&self, target: &Path) -> io::Result<()> {
            self.mounted.lock().unwrap().retain(|(p, _)| p != target);
            self.unmounted.lock().unwrap().push(target.to_path_buf());
            Ok(())
        }

        fn mounts_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
            let mut points: Vec<PathBuf> = self.mounted.lock().unwrap().iter().map(|(p, _)| p.clone()).filter(|p| p.starts_with(dir)).collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            Ok(points)
        }
    }

    struct Fixture {
        ts: TestServer,
        dir: tempfile::TempDir,
        mounter: Arc<RecordingMounter>,
        volumes: Arc<VolumeManager>,
    }

    impl Fixture {
        async fn start() -> Fixture {
            let ts = TestServer::start().await;
            let dir = tempfile::tempdir().unwrap();
            let mounter = Arc::new(RecordingMounter::default());
            let volumes = Arc::new(VolumeManager::new(ts.client(), dir.path(), "node-1", ts.ca_pem()).with_mounter(mounter.clone()));
            Fixture { ts, dir, mounter, volumes }
        }

        fn host(&self, rel: &str) -> PathBuf {
            self.dir.path().join("host").join(rel)
        }
    }

    fn pod(uid: &str, spec: Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": uid, "labels": {"app": "web"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn first_container(p: &Pod) -> Container {
        p.spec.as_ref().unwrap().containers[0].clone()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn not_ready(r: Result<impl std::fmt::Debug, VolumeError>) -> String {
        match r {
            Err(VolumeError::NotReady(m)) => m,
            other => panic!("expected NotReady, got {other:?}"),
        }
    }

    async fn eventually<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) -> Duration {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    // === emptyDir and hostPath ===

    #[tokio::test]
    async fn an_empty_dir_on_disk_is_a_world_writable_directory_mounted_read_write() {
        let f = Fixture::start().await;
        let p = pod("u1", json!({
            "containers": [{"name": "app", "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}, {"name": "scratch", "mountPath": "/ro", "readOnly": true}]}],
            "volumes": [{"name": "scratch", "emptyDir": {}}]
        }));
        f.volumes.setup(&p).await.unwrap();
        let dir = f.dir.path().join("pods/u1/volumes/kubernetes.io~empty-dir/scratch");
        assert!(dir.is_dir());
        assert_eq!(mode(&dir), 0o777);
        assert!(f.mounter.mounted.lock().unwrap().is_empty());
        let mounts = f.volumes.mounts(&p, &first_container(&p)).unwrap();
        assert_eq!(
            mounts,
            vec![
                Mount { host_path: dir.clone(), container_path: "/scratch".into(), read_only: false },
                Mount { host_path: dir, container_path: "/ro".into(), read_only: true },
            ]
        );
        // Idempotent.
        f.volumes.setup(&p).await.unwrap();
    }

    #[tokio::test]
    async fn a_memory_empty_dir_is_a_tmpfs_sized_by_the_smallest_limit() {
        let f = Fixture::start().await;
        let p = pod("u2", json!({
            "containers": [{"name": "app", "resources": {"limits": {"memory": "256Mi"}}, "volumeMounts": [{"name": "mem", "mountPath": "/mem"}]}],
            "volumes": [{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}, {"name": "big", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]
        }));
        f.volumes.setup(&p).await.unwrap();
        f.volumes.setup(&p).await.unwrap();
        let base = f.dir.path().join("pods/u2/volumes/kubernetes.io~empty-dir");
        let mounted = f.mounter.mounted.lock().unwrap().clone();
        assert_eq!(mounted, vec![(base.join("mem"), Some(64 << 20)), (base.join("big"), Some(256 << 20))], "each mounted once");
    }

    #[test]
    fn memory_volume_sizes_follow_upstream() {
        let gi: i128 = 1 << 30;
        assert_eq!(memory_volume_size(Some(8 * gi), None, None), Some(8 * gi));
        assert_eq!(memory_volume_size(Some(8 * gi), Some(gi), None), Some(gi));
        assert_eq!(memory_volume_size(Some(8 * gi), Some(gi), Some(2 * gi)), Some(gi));
        assert_eq!(memory_volume_size(Some(8 * gi), None, Some(16 * gi)), Some(8 * gi));
        assert_eq!(memory_volume_size(Some(8 * gi), Some(0), Some(0)), Some(8 * gi));
        assert_eq!(memory_volume_size(None, None, Some(gi)), Some(gi));
        let limited = pod("x", json!({
            "initContainers": [{"name": "init", "resources": {"limits": {"memory": "1Gi"}}}],
            "containers": [{"name": "a", "resources": {"limits": {"memory": "100Mi"}}}, {"name": "b", "resources": {"limits": {"memory": "200Mi"}}}]
        }));
        assert_eq!(pod_memory_limit(&limited), Some(gi));
        let unlimited = pod("y", json!({"containers": [{"name": "a", "resources": {"limits": {"memory": "100Mi"}}}, {"name": "b"}]}));
        assert_eq!(pod_memory_limit(&unlimited), None);
    }

    #[tokio::test]
    async fn host_paths_are_checked_and_bound_as_they_are() {
        let f = Fixture::start().await;
        let made = f.host("made/here");
        let file = f.host("file.txt");
        fs::create_dir_all(f.host("")).unwrap();
        fs::write(&file, "x").unwrap();
        let p = pod("u3", json!({
            "containers": [{"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "hostPath": {"path": made, "type": "DirectoryOrCreate"}}]
        }));
        f.volumes.setup(&p).await.unwrap();
        assert!(made.is_dir());
        assert_eq!(f.volumes.mounts(&p, &first_container(&p)).unwrap(), vec![Mount { host_path: made.clone(), container_path: "/data".into(), read_only: false }]);
        assert!(!f.dir.path().join("pods/u3/volumes").read_dir().unwrap().any(|_| true), "no pod directory for hostPath");

        let wrong = pod("u4", json!({
            "containers": [{"name": "app"}],
            "volumes": [{"name": "data", "hostPath": {"path": file, "type": "Directory"}}]
        }));
        assert_eq!(
            not_ready(f.volumes.setup(&wrong).await),
            format!("MountVolume.SetUp failed for volume \"data\" : hostPath type check failed: {} is not a directory", file.display())
        );
    }

    // === content volumes ===

    #[tokio::test]
    async fn a_config_map_volume_holds_its_keys_as_links_into_the_data_directory() {
        let f = Fixture::start().await;
        f.ts.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"app.conf": "a=1", "other": "o"}, "binaryData": {"blob": "AAE="}})).await;
        let p = pod("c1", json!({
            "containers": [{"name": "app", "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, {"name": "picked", "mountPath": "/etc/picked"}]}],
            "volumes": [
                {"name": "config", "configMap": {"name": "cfg"}},
                {"name": "picked", "configMap": {"name": "cfg", "defaultMode": 0o600, "items": [{"key": "app.conf", "path": "conf/app.conf", "mode": 0o400}, {"key": "blob", "path": "blob.bin"}]}}
            ]
        }));
        f.volumes.setup(&p).await.unwrap();
        let dir = f.volumes.volume_dir("c1", CONFIG_MAP_PLUGIN, "config");
        assert_eq!(fs::read_link(dir.join("app.conf")).unwrap(), PathBuf::from("..data/app.conf"));
        assert_eq!(fs::read_to_string(dir.join("app.conf")).unwrap(), "a=1");
        assert_eq!(fs::read(dir.join("blob")).unwrap(), vec![0, 1]);
        assert_eq!(mode(&dir.join("other")), 0o644);
        let picked = f.volumes.volume_dir("c1", CONFIG_MAP_PLUGIN, "picked");
        assert_eq!(fs::read_to_string(picked.join("conf/app.conf")).unwrap(), "a=1");
        assert_eq!(mode(&picked.join("conf/app.conf")), 0o400);
        assert_eq!(mode(&picked.join("blob.bin")), 0o600);
        assert!(fs::symlink_metadata(picked.join("other")).is_err());
        // Content volumes are always read-only in containers.
        let mounts = f.volumes.mounts(&p, &first_container(&p)).unwrap();
        assert!(mounts.iter().all(|m| m.read_only));
        assert_eq!(mounts[0].host_path, dir);
    }

    #[tokio::test]
    async fn missing_sources_keep_the_pod_waiting_unless_optional() {
        let f = Fixture::start().await;
        let p = pod("c2", json!({
            "containers": [{"name": "app"}],
            "volumes": [{"name": "cfg", "configMap": {"name": "nope"}}]
        }));
        assert_eq!(not_ready(f.volumes.setup(&p).await), "MountVolume.SetUp failed for volume \"cfg\" : configmap \"nope\" not found");
        let s = pod("c3", json!({"containers": [{"name": "app"}], "volumes": [{"name": "creds", "secret": {"secretName": "nope"}}]}));
        assert_eq!(not_ready(f.volumes.setup(&s).await), "MountVolume.SetUp failed for volume \"creds\" : secret \"nope\" not found");
        let mounts_before = pod("c3", json!({"containers": [{"name": "app", "volumeMounts": [{"name": "creds", "mountPath": "/c"}]}], "volumes": [{"name": "creds", "secret": {"secretName": "nope"}}]}));
        assert!(not_ready(f.volumes.mounts(&mounts_before, &first_container(&mounts_before))).contains("is not set up"));

        let optional = pod("c4", json!({
            "containers": [{"name": "app"}],
            "volumes": [{"name": "cfg", "configMap": {"name": "nope", "optional": true}}, {"name": "creds", "secret": {"secretName": "nope", "optional": true}}]
        }));
        f.volumes.setup(&optional).await.unwrap();
        let dir = f.volumes.volume_dir("c4", CONFIG_MAP_PLUGIN, "cfg");
        let names: Vec<String> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with("..")).collect();
        assert!(names.is_empty(), "{names:?}");

        f.ts.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg2"}, "data": {"a": "1"}})).await;
        let bad_key = pod("c5", json!({"containers": [{"name": "app"}], "volumes": [{"name": "cfg", "configMap": {"name": "cfg2", "items": [{"key": "b", "path": "b"}]}}]}));
        assert_eq!(not_ready(f.volumes.setup(&bad_key).await), "MountVolume.SetUp failed for volume \"cfg\" : configmap references non-existent config key: b");
    }

    #[tokio::test]
    async fn a_secret_volume_decodes_its_data_with_the_default_mode() {
        let f = Fixture::start().await;
        f.ts.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"password": "s3cr3t"}})).await;
        let p = pod("s1", json!({"containers": [{"name": "app"}], "volumes": [{"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}}]}));
        f.volumes.setup(&p).await.unwrap();
        let dir = f.volumes.volume_dir("s1", SECRET_PLUGIN, "creds");
        assert_eq!(fs::read_to_string(dir.join("password")).unwrap(), "s3cr3t");
        assert_eq!(mode(&dir.join("password")), 0o400);
        assert!(f.mounter.mounted.lock().unwrap().is_empty(), "on disk unless asked otherwise");
    }

    #[tokio::test]
    async fn secrets_can_be_kept_in_memory() {
        let ts = TestServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mounter = Arc::new(RecordingMounter::default());
        let volumes = VolumeManager::new(ts.client(), dir.path(), "node-1", ts.ca_pem()).with_mounter(mounter.clone()).with_memory_backed_secrets(true);
        ts.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"k": "v"}})).await;
        let p = pod("s2", json!({"containers": [{"name": "app"}], "volumes": [{"name": "creds", "secret": {"secretName": "creds"}}, {"name": "cfg", "downwardAPI": {"items": []}}]}));
        volumes.setup(&p).await.unwrap();
        volumes.setup(&p).await.unwrap();
        let mounted: Vec<PathBuf> = mounter.mounted.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(mounted, vec![volumes.volume_dir("s2", SECRET_PLUGIN, "creds")]);
        volumes.teardown("s2").await.unwrap();
        assert_eq!(*mounter.unmounted.lock().unwrap(), mounted);
    }

    #[tokio::test]
    async fn a_downward_api_volume_follows_the_pod_it_was_last_set_up_with() {
        let f = Fixture::start().await;
        let spec = json!({
            "containers": [{"name": "app", "resources": {"limits": {"cpu": "250m"}}}],
            "volumes": [{"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "cpu_millis", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory"}}
            ]}}]
        });
        let mut p = pod("d1", spec);
        f.volumes.setup(&p).await.unwrap();
        let dir = f.volumes.volume_dir("d1", DOWNWARD_API_PLUGIN, "info");
        assert_eq!(fs::read_to_string(dir.join("labels")).unwrap(), "app=\"web\"");
        assert_eq!(fs::read_to_string(dir.join("name")).unwrap(), "web");
        assert_eq!(fs::read_to_string(dir.join("cpu_millis")).unwrap(), "250");
        // No Node object: the host's memory stands in for the unset limit.
        let mem: i128 = fs::read_to_string(dir.join("mem")).unwrap().parse().unwrap();
        assert!(mem > 0);
        p.metadata.labels.as_mut().unwrap().insert("version".into(), "2".into());
        f.volumes.setup(&p).await.unwrap();
        assert_eq!(fs::read_to_string(dir.join("labels")).unwrap(), "app=\"web\"\nversion=\"2\"");
    }

    #[tokio::test]
    async fn the_node_allocatable_comes_from_the_node_object() {
        let f = Fixture::start().await;
        f.ts.create(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})).await;
        f.ts.client()
            .patch("/api/v1/nodes/node-1/status", PatchType::Merge, &json!({"status": {"allocatable": {"cpu": "3", "memory": "1Gi"}}}))
            .await
            .unwrap();
        let p = pod("d2", json!({
            "containers": [{"name": "app"}],
            "volumes": [{"name": "info", "downwardAPI": {"items": [
                {"path": "cpu", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}
            ]}}, {"name": "mem", "emptyDir": {"medium": "Memory"}}]
        }));
        f.volumes.setup(&p).await.unwrap();
        let dir = f.volumes.volume_dir("d2", DOWNWARD_API_PLUGIN, "info");
        assert_eq!(fs::read_to_string(dir.join("cpu")).unwrap(), "3");
        assert_eq!(fs::read_to_string(dir.join("mem")).unwrap(), "1024");
        assert_eq!(f.mounter.mounted.lock().unwrap()[0].1, Some(1 << 30));
    }

    // === projected and tokens ===

    async fn api_pod(ts: &TestServer, name: &str, account: &str) -> Pod {
        let created = ts
            .create(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"serviceAccountName": account, "containers": [{"name": "app", "image": "busybox"}]}
            }))
            .await;
        serde_json::from_value(created).unwrap()
    }

    fn access_volume(p: &Pod) -> Volume {
        pod_volumes(p).iter().find(|v| v.name.starts_with("kube-api-access-")).cloned().expect("the API server injects kube-api-access")
    }

    #[tokio::test]
    async fn a_service_account_volume_holds_a_token_the_ca_and_the_namespace() {
        let f = Fixture::start().await;
        let sa = f.ts.client().create("/api/v1/namespaces/default/serviceaccounts", &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner"}})).await;
        if let Err(e) = sa {
            assert!(e.is_conflict() || e.code() == Some(409), "{e}");
        }
        let p = api_pod(&f.ts, "tokened", "runner").await;
        let uid = p.metadata.uid.clone().unwrap();
        let vol = access_volume(&p);
        f.volumes.setup(&p).await.unwrap();
        let dir = f.volumes.volume_dir(&uid, PROJECTED_PLUGIN, &vol.name);
        let token = fs::read_to_string(dir.join("token")).unwrap();
        assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
        assert_eq!(fs::read_to_string(dir.join("ca.crt")).unwrap().trim(), f.ts.ca_pem().trim());
        assert_eq!(fs::read_to_string(dir.join("namespace")).unwrap(), "default");
        assert_eq!(mode(&dir.join("token")), 0o644);
        // The same token until it is due.
        f.volumes.setup(&p).await.unwrap();
        assert_eq!(fs::read_to_string(dir.join("token")).unwrap(), token);
        let mounts = f.volumes.mounts(&p, &first_container(&p)).unwrap();
        assert_eq!(mounts, vec![Mount { host_path: dir, container_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(), read_only: true }]);
    }

    #[tokio::test]
    async fn without_a_token_the_pod_waits_but_the_other_files_are_there() {
        let f = Fixture::start().await;
        let mut p = api_pod(&f.ts, "tokenless", "default").await;
        p.spec.as_mut().unwrap().service_account_name = Some("ghost".into());
        let uid = p.metadata.uid.clone().unwrap();
        let vol = access_volume(&p);
        let msg = not_ready(f.volumes.setup(&p).await);
        assert!(msg.starts_with(&format!("MountVolume.SetUp failed for volume {:?} : failed to fetch token: ", vol.name)), "{msg}");
        assert!(msg.contains("ghost"), "{msg}");
        let dir = f.volumes.volume_dir(&uid, PROJECTED_PLUGIN, &vol.name);
        assert!(fs::symlink_metadata(dir.join("token")).is_err());
        assert_eq!(fs::read_to_string(dir.join("namespace")).unwrap(), "default");
        assert!(dir.join("ca.crt").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_that_are_due_are_replaced_by_the_run_loop() {
        let f = Fixture::start().await;
        let _ = f.ts.client().create("/api/v1/namespaces/default/serviceaccounts", &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner"}})).await;
        let p = api_pod(&f.ts, "refreshed", "runner").await;
        let uid = p.metadata.uid.clone().unwrap();
        let dir = f.volumes.volume_dir(&uid, PROJECTED_PLUGIN, &access_volume(&p).name);
        f.volumes.setup(&p).await.unwrap();
        let first = fs::read_to_string(dir.join("token")).unwrap();
        // A later second gives a different token.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let now = jiff::Timestamp::now().as_second();
        f.volumes.with_state(&uid, |s| {
            for t in s.tokens.values_mut() {
                t.expires = now + 60;
            }
        });
        let task = tokio::spawn(f.volumes.clone().run());
        eventually("a fresh token", Duration::from_secs(5), || fs::read_to_string(dir.join("token")).is_ok_and(|t| t != first)).await;
        let expires = f.volumes.with_state(&uid, |s| s.tokens.values().map(|t| t.expires).min().unwrap());
        assert!(expires > now + 3000, "the new token lives about an hour");
        task.abort();
    }

    #[tokio::test]
    async fn an_fs_group_owns_content_volumes_and_empty_dirs() {
        use std::os::unix::fs::MetadataExt;
        let f = Fixture::start().await;
        // The test's own group, which it may always give files to.
        let gid = fs::metadata(f.dir.path()).unwrap().gid();
        f.ts.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"k": "v"}})).await;
        let p = pod("g1", json!({
            "securityContext": {"fsGroup": gid},
            "containers": [{"name": "app"}],
            "volumes": [{"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}}, {"name": "scratch", "emptyDir": {}}]
        }));
        f.volumes.setup(&p).await.unwrap();
        let secret = f.volumes.volume_dir("g1", SECRET_PLUGIN, "creds");
        assert_eq!(mode(&secret.join("k")), 0o440);
        assert_eq!(fs::metadata(secret.join("k")).unwrap().gid(), gid);
        let data = fs::canonicalize(secret.join(atomic_writer::DATA_DIR)).unwrap();
        assert_eq!(mode(&data) & 0o2000, 0o2000);
        let scratch = f.volumes.volume_dir("g1", EMPTY_DIR_PLUGIN, "scratch");
        assert_eq!(mode(&scratch), 0o2777);
        // Nothing changes on the next pass.
        f.volumes.setup(&p).await.unwrap();
        assert_eq!(fs::canonicalize(secret.join(atomic_writer::DATA_DIR)).unwrap(), data);
        assert_eq!(mode(&scratch), 0o2777);
    }

    #[test]
    fn tokens_are_refreshed_at_eighty_percent_of_their_lifetime_or_after_a_day() {
        let token = |expires: i64, lifetime: i64| Token { token: "t".into(), expires, expiration_seconds: lifetime, not_before: 0 };
        let issued = 1_000_000;
        let hour = token(issued + 3600, 3600);
        assert!(!requires_refresh(issued, &hour));
        assert!(!requires_refresh(issued + 2879, &hour));
        assert!(requires_refresh(issued + 2880, &hour));
        let long = token(issued + 7 * 86400, 7 * 86400);
        assert!(!requires_refresh(issued + 86399, &long));
        assert!(requires_refresh(issued + 86400, &long));
    }

    #[tokio::test]
    async fn projected_sources_combine_and_a_missing_one_fails_the_volume() {
        let f = Fixture::start().await;
        f.ts.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}})).await;
        f.ts.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"}, "stringData": {"b": "2"}})).await;
        let p = pod("p1", json!({"containers": [{"name": "app"}], "volumes": [{"name": "all", "projected": {"defaultMode": 0o440, "sources": [
            {"configMap": {"name": "cfg"}},
            {"secret": {"name": "sec", "items": [{"key": "b", "path": "sub/b"}]}},
            {"secret": {"name": "gone", "optional": true}},
            {"downwardAPI": {"items": [{"path": "pod", "fieldRef": {"fieldPath": "metadata.name"}}]}}
        ]}}]}));
        f.volumes.setup(&p).await.unwrap();
        let dir = f.volumes.volume_dir("p1", PROJECTED_PLUGIN, "all");
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(fs::read_to_string(dir.join("pod")).unwrap(), "web");
        assert_eq!(mode(&dir.join("a")), 0o440);

        let broken = pod("p2", json!({"containers": [{"name": "app"}], "volumes": [{"name": "all", "projected": {"sources": [
            {"configMap": {"name": "cfg"}}, {"secret": {"name": "gone"}}
        ]}}]}));
        assert_eq!(not_ready(f.volumes.setup(&broken).await), "MountVolume.SetUp failed for volume \"all\" : secret \"gone\" not found");
        assert!(fs::symlink_metadata(f.volumes.volume_dir("p2", PROJECTED_PLUGIN, "all").join("a")).is_err(), "nothing written");
    }

    // === claims ===

    #[tokio::test]
    async fn a_bound_claim_binds_its_local_volume_directory() {
        let f = Fixture::start().await;
        let data = f.host("storage/pvc-1");
        f.ts.create(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-1"}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": data},
            "claimRef": {"namespace": "default", "name": "data"}
        }})).await;
        f.ts.create(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv-1"
        }})).await;
        let p = pod("v1", json!({
            "containers": [{"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "ro", "mountPath": "/ro"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}, {"name": "ro", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}}]
        }));
        assert_eq!(not_ready(f.volumes.setup(&p).await), "persistentvolumeclaim \"data\" is not bound");
        f.ts.client()
            .patch("/api/v1/namespaces/default/persistentvolumeclaims/data/status", PatchType::Merge, &json!({"status": {"phase": "Bound"}}))
            .await
            .unwrap();
        f.volumes.setup(&p).await.unwrap();
        assert!(data.is_dir());
        assert_eq!(mode(&data), 0o777);
        assert_eq!(
            f.volumes.mounts(&p, &first_container(&p)).unwrap(),
            vec![
                Mount { host_path: data.clone(), container_path: "/data".into(), read_only: false },
                Mount { host_path: data.clone(), container_path: "/ro".into(), read_only: true },
            ]
        );
        fs::write(data.join("keep"), "me").unwrap();
        f.volumes.teardown("v1").await.unwrap();
        assert_eq!(fs::read_to_string(data.join("keep")).unwrap(), "me", "claim data outlives the pod");

        let missing = pod("v2", json!({"containers": [{"name": "app"}], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "nope"}}]}));
        assert_eq!(not_ready(f.volumes.setup(&missing).await), "persistentvolumeclaim \"nope\" not found");
    }

    // === mounts ===

    #[tokio::test]
    async fn sub_paths_are_created_pinned_and_kept_inside_their_volume() {
        let f = Fixture::start().await;
        f.ts.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"app.conf": "v1"}})).await;
        let p = pod("m1", json!({
            "containers": [{"name": "app",
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "DIR", "value": "logs-$(POD_NAME)"}],
                "volumeMounts": [
                    {"name": "scratch", "mountPath": "/a", "subPath": "nested/dir"},
                    {"name": "config", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
                    {"name": "scratch", "mountPath": "/logs", "subPathExpr": "$(DIR)"}
                ]}],
            "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "config", "configMap": {"name": "cfg"}}]
        }));
        f.volumes.setup(&p).await.unwrap();
        let c = first_container(&p);
        let mounts = f.volumes.mounts(&p, &c).unwrap();
        let scratch = fs::canonicalize(f.volumes.volume_dir("m1", EMPTY_DIR_PLUGIN, "scratch")).unwrap();
        assert_eq!(mounts[0].host_path, scratch.join("nested/dir"));
        assert!(mounts[0].host_path.is_dir());
        assert_eq!(mode(&mounts[0].host_path), 0o777, "the volume's mode");
        // A configMap key through subPath is the file in the current data directory.
        let config = fs::canonicalize(f.volumes.volume_dir("m1", CONFIG_MAP_PLUGIN, "config")).unwrap();
        assert!(mounts[1].host_path.starts_with(&config));
        assert!(mounts[1].host_path.parent().unwrap().file_name().unwrap().to_string_lossy().starts_with("..2"));
        assert!(mounts[1].read_only);
        assert_eq!(mounts[2].host_path, scratch.join("logs-web"));

        // The full environment may be given instead.
        let env = vec![("DIR".to_string(), "other".to_string())];
        assert_eq!(f.volumes.mounts_with_env(&p, &c, &env).unwrap()[2].host_path, scratch.join("other"));
        let empty = vec![("DIR".to_string(), String::new())];
        assert_eq!(not_ready(f.volumes.mounts_with_env(&p, &c, &empty)), "missing value for DIR");
    }

    #[tokio::test]
    async fn sub_paths_that_leave_the_volume_are_refused() {
        let f = Fixture::start().await;
        let outside = f.host("outside");
        fs::create_dir_all(&outside).unwrap();
        let spec = |sub: &str| {
            json!({
                "containers": [{"name": "app", "volumeMounts": [{"name": "scratch", "mountPath": "/x", "subPath": sub}]}],
                "volumes": [{"name": "scratch", "emptyDir": {}}]
            })
        };
        let p = pod("m2", spec("escape"));
        f.volumes.setup(&p).await.unwrap();
        // What a container could plant in its own emptyDir.
        std::os::unix::fs::symlink(&outside, f.volumes.volume_dir("m2", EMPTY_DIR_PLUGIN, "scratch").join("escape")).unwrap();
        assert_eq!(not_ready(f.volumes.mounts(&p, &first_container(&p))), "failed to prepare subPath for volumeMount \"scratch\" of container \"app\"");
        let deeper = pod("m2", spec("escape/new"));
        assert_eq!(not_ready(f.volumes.mounts(&deeper, &first_container(&deeper))), "failed to create subPath directory for volumeMount \"scratch\" of container \"app\"");
        assert!(!outside.join("new").exists(), "nothing created outside the volume");
        let absolute = pod("m2", spec("/etc"));
        assert_eq!(not_ready(f.volumes.mounts(&absolute, &first_container(&absolute))), "error SubPath `/etc` must not be an absolute path");
        let back = pod("m2", spec("a/../../etc"));
        assert_eq!(not_ready(f.volumes.mounts(&back, &first_container(&back))), "unable to provision SubPath `a/../../etc`: must not contain '..'");
    }

    #[tokio::test]
    async fn a_mount_of_an_unknown_volume_is_an_error() {
        let f = Fixture::start().await;
        let p = pod("m3", json!({"containers": [{"name": "app", "volumeMounts": [{"name": "ghost", "mountPath": "/g"}]}]}));
        f.volumes.setup(&p).await.unwrap();
        assert_eq!(not_ready(f.volumes.mounts(&p, &first_container(&p))), "cannot find volume \"ghost\" to mount into container \"app\"");
    }

    // === teardown ===

    #[tokio::test]
    async fn teardown_unmounts_memory_volumes_and_removes_the_pod_directory() {
        let f = Fixture::start().await;
        let p = pod("t1", json!({
            "containers": [{"name": "app"}],
            "volumes": [{"name": "mem", "emptyDir": {"medium": "Memory"}}, {"name": "disk", "emptyDir": {}}]
        }));
        f.volumes.setup(&p).await.unwrap();
        let pod_dir = f.volumes.pod_dir("t1");
        assert_eq!(pod_dir, f.dir.path().join("pods/t1"));
        f.volumes.teardown("t1").await.unwrap();
        assert_eq!(*f.mounter.unmounted.lock().unwrap(), vec![f.volumes.volume_dir("t1", EMPTY_DIR_PLUGIN, "mem")]);
        assert!(!pod_dir.exists());
        // Again, and for a pod never seen: nothing to do.
        f.volumes.teardown("t1").await.unwrap();
        f.volumes.teardown("never").await.unwrap();
        assert!(f.volumes.teardown("../etc").await.is_err());
    }

    // === keeping volumes current ===

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changed_config_maps_and_secrets_reach_running_pods_within_a_second_or_so() {
        let f = Fixture::start().await;
        f.ts.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"mode": "slow"}})).await;
        f.ts.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"}, "stringData": {"pass": "one"}})).await;
        let p = pod("r1", json!({
            "containers": [{"name": "app", "volumeMounts": [{"name": "config", "mountPath": "/pinned", "subPath": "mode"}]}],
            "volumes": [
                {"name": "config", "configMap": {"name": "cfg"}},
                {"name": "creds", "secret": {"secretName": "sec"}},
                {"name": "both", "projected": {"sources": [{"configMap": {"name": "cfg"}}, {"secret": {"name": "sec"}}]}}
            ]
        }));
        f.volumes.setup(&p).await.unwrap();
        let pinned = f.volumes.mounts(&p, &first_container(&p)).unwrap()[0].host_path.clone();
        let task = tokio::spawn(f.volumes.clone().run());

        let client = f.ts.client();
        // Give the informers their first list before changing anything.
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.patch("/api/v1/namespaces/default/configmaps/cfg", PatchType::Merge, &json!({"data": {"mode": "fast", "extra": "x"}})).await.unwrap();
        client.patch("/api/v1/namespaces/default/secrets/sec", PatchType::Merge, &json!({"stringData": {"pass": "two"}})).await.unwrap();
        let config = f.volumes.volume_dir("r1", CONFIG_MAP_PLUGIN, "config");
        let creds = f.volumes.volume_dir("r1", SECRET_PLUGIN, "creds");
        let both = f.volumes.volume_dir("r1", PROJECTED_PLUGIN, "both");
        let took = eventually("the volumes to follow the changes", Duration::from_secs(10), || {
            fs::read_to_string(config.join("mode")).ok().as_deref() == Some("fast")
                && fs::read_to_string(config.join("extra")).ok().as_deref() == Some("x")
                && fs::read_to_string(creds.join("pass")).ok().as_deref() == Some("two")
                && fs::read_to_string(both.join("mode")).ok().as_deref() == Some("fast")
                && fs::read_to_string(both.join("pass")).ok().as_deref() == Some("two")
        })
        .await;
        assert!(took < Duration::from_secs(3), "took {took:?}");
        // A subPath mount keeps the file it was given (its directory is gone now).
        assert!(!pinned.exists());

        // A deleted key disappears; a deleted pod is left alone.
        client.patch("/api/v1/namespaces/default/configmaps/cfg", PatchType::Json, &json!([{"op": "remove", "path": "/data/extra"}])).await.unwrap();
        eventually("the removed key to go", Duration::from_secs(10), || fs::symlink_metadata(config.join("extra")).is_err()).await;
        f.volumes.teardown("r1").await.unwrap();
        client.patch("/api/v1/namespaces/default/configmaps/cfg", PatchType::Merge, &json!({"data": {"mode": "again"}})).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!f.volumes.pod_dir("r1").exists(), "a torn-down pod is not written again");
        task.abort();
    }

    #[test]
    fn pods_reference_the_sources_of_their_content_volumes() {
        let p = pod("x", json!({"containers": [{"name": "app"}], "volumes": [
            {"name": "a", "configMap": {"name": "cfg"}},
            {"name": "b", "secret": {"secretName": "sec"}},
            {"name": "c", "projected": {"sources": [{"configMap": {"name": "pcfg"}}, {"secret": {"name": "psec"}}]}}
        ]}));
        let cm = |ns: &str, name: &str| SourceRef::ConfigMap { namespace: ns.into(), name: name.into() };
        let secret = |ns: &str, name: &str| SourceRef::Secret { namespace: ns.into(), name: name.into() };
        assert!(references(&p, &cm("default", "cfg")));
        assert!(references(&p, &cm("default", "pcfg")));
        assert!(references(&p, &secret("default", "sec")));
        assert!(references(&p, &secret("default", "psec")));
        assert!(!references(&p, &cm("default", "sec")));
        assert!(!references(&p, &secret("default", "cfg")));
        assert!(!references(&p, &cm("other", "cfg")));
    }
}
