//! An in-memory [`Runtime`] for the kubelet's tests: sandboxes and containers with
//! their labels and annotations, a scripted behaviour per container name (run until
//! stopped, or exit with a code after a while), images that are present or fail to
//! pull, and a log of every call with the time it was made. Time is the tests'
//! [`Clock`], so back-offs and grace periods run on Tokio's paused clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;

use super::backoff::{plus, Clock};
use crate::runtime::*;

/// What a container does once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs until stopped; exits with this code on SIGTERM after `stop_delay`.
    Serve { stop_delay: Duration, code: i32 },
    /// Exits with `code` after running `after`.
    Exit { after: Duration, code: i32 },
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour::Serve { stop_delay: Duration::ZERO, code: 143 }
    }
}

/// One call, at the time it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub at: tokio::time::Instant,
    pub what: String,
}

struct Container {
    status: ContainerStatus,
    exit_at: Option<(Timestamp, i32)>,
}

#[derive(Default)]
struct State {
    sandboxes: BTreeMap<String, SandboxStatus>,
    containers: BTreeMap<String, Container>,
    behaviours: HashMap<String, Behaviour>,
    images: HashSet<String>,
    failing_pulls: HashMap<String, String>,
    failing_starts: HashSet<String>,
    calls: Vec<Call>,
    next_id: u64,
    last_created: Option<Timestamp>,
    next_ip: u8,
}

pub struct FakeRuntime {
    state: Mutex<State>,
    handler: String,
    clock: Clock,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        FakeRuntime::new()
    }
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        FakeRuntime::with_clock(Clock::tokio())
    }

    pub fn with_clock(clock: Clock) -> FakeRuntime {
        FakeRuntime { state: Mutex::new(State { next_ip: 2, ..Default::default() }), handler: "cri".into(), clock }
    }

    /// A runtime serving another RuntimeClass handler (e.g. "process").
    pub fn with_handler(handler: &str) -> FakeRuntime {
        FakeRuntime { handler: handler.to_string(), ..FakeRuntime::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add_image(&self, image: &str) {
        self.lock().images.insert(image.to_string());
    }

    pub fn fail_pulls(&self, image: &str, message: &str) {
        self.lock().failing_pulls.insert(image.to_string(), message.to_string());
    }

    pub fn fail_starts(&self, name: &str) {
        self.lock().failing_starts.insert(name.to_string());
    }

    /// How containers named `name` behave from their next start on.
    pub fn behave(&self, name: &str, behaviour: Behaviour) {
        self.lock().behaviours.insert(name.to_string(), behaviour);
    }

    /// Makes the running instance of `name` exit now with `code`.
    pub fn exit(&self, name: &str, code: i32) {
        let now = self.clock.now();
        let mut st = self.lock();
        for c in st.containers.values_mut().filter(|c| c.status.name == name && c.status.state == ContainerState::Running) {
            c.exit_at = Some((now, code));
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls' descriptions, in order.
    pub fn call_names(&self) -> Vec<String> {
        self.lock().calls.iter().map(|c| c.what.clone()).collect()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Every container, settled to the current time.
    pub fn all_containers(&self) -> Vec<ContainerStatus> {
        let now = self.clock.now();
        let mut st = self.lock();
        settle(&mut st, now);
        st.containers.values().map(|c| c.status.clone()).collect()
    }

    pub fn all_sandboxes(&self) -> Vec<SandboxStatus> {
        self.lock().sandboxes.values().cloned().collect()
    }

    fn record(st: &mut State, what: String) {
        st.calls.push(Call { at: tokio::time::Instant::now(), what });
    }

    /// A creation time after every earlier one, so "newest" is never a tie.
    fn created(&self, st: &mut State) -> Timestamp {
        let mut now = self.clock.now();
        if let Some(last) = st.last_created {
            if now <= last {
                now = plus(last, Duration::from_micros(1));
            }
        }
        st.last_created = Some(now);
        now
    }

    fn label(c: &ContainerStatus) -> String {
        format!("{}#{}", c.name, c.attempt)
    }
}

/// Applies scripted exits that are due.
fn settle(st: &mut State, now: Timestamp) {
    for c in st.containers.values_mut() {
        if c.status.state != ContainerState::Running {
            continue;
        }
        if let Some((at, code)) = c.exit_at {
            if at <= now {
                c.status.state = ContainerState::Exited;
                c.status.exit_code = code;
                c.status.finished_at = Some(at);
                c.status.reason = if code == 0 { "Completed".into() } else { "Error".into() };
            }
        }
    }
}

fn not_found(what: &str) -> RuntimeError {
    RuntimeError::NotFound(what.to_string())
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    fn handler(&self) -> &str {
        &self.handler
    }

    async fn version(&self) -> Result<String> {
        Ok("fake://1.0".into())
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>> {
        let st = self.lock();
        Ok(st.images.contains(image).then(|| ImageInfo { id: format!("sha256:{image}"), repo_tags: vec![image.to_string()], repo_digests: vec![], size_bytes: 1024 }))
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<String> {
        let mut st = self.lock();
        Self::record(&mut st, format!("pull {image}{}", auth.map(|a| format!(" as {}", a.username)).unwrap_or_default()));
        if let Some(message) = st.failing_pulls.get(image) {
            return Err(RuntimeError::ImagePull { image: image.to_string(), message: message.clone() });
        }
        st.images.insert(image.to_string());
        Ok(format!("sha256:{image}"))
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<String> {
        let created = {
            let mut st = self.lock();
            self.created(&mut st)
        };
        let mut st = self.lock();
        st.next_id += 1;
        let id = format!("sandbox-{}", st.next_id);
        let ips = if config.host_network {
            Vec::new()
        } else {
            st.next_ip += 1;
            vec![format!("10.244.0.{}", st.next_ip).parse().expect("an address")]
        };
        Self::record(&mut st, format!("run_sandbox {} attempt={}", config.pod_name, config.attempt));
        let mut labels = config.labels.clone();
        labels.insert(labels::POD_UID.into(), config.pod_uid.clone());
        st.sandboxes.insert(
            id.clone(),
            SandboxStatus { id: id.clone(), state: SandboxState::Ready, ips, created_at: Some(created), attempt: config.attempt, labels, annotations: config.annotations.clone() },
        );
        Ok(id)
    }

    async fn stop_sandbox(&self, id: &str) -> Result<()> {
        let now = self.clock.now();
        let mut st = self.lock();
        Self::record(&mut st, format!("stop_sandbox {id}"));
        let Some(s) = st.sandboxes.get_mut(id) else { return Ok(()) };
        s.state = SandboxState::NotReady;
        for c in st.containers.values_mut().filter(|c| c.status.sandbox_id == id && c.status.state == ContainerState::Running) {
            c.status.state = ContainerState::Exited;
            c.status.exit_code = 137;
            c.status.finished_at = Some(now);
            c.status.reason = "Error".into();
        }
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let mut st = self.lock();
        Self::record(&mut st, format!("remove_sandbox {id}"));
        st.sandboxes.remove(id);
        st.containers.retain(|_, c| c.status.sandbox_id != id);
        Ok(())
    }

    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        self.lock().sandboxes.get(id).cloned().ok_or_else(|| not_found(id))
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        Ok(self.all_sandboxes())
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig, sandbox: &SandboxConfig) -> Result<String> {
        let mut st = self.lock();
        if !st.sandboxes.contains_key(sandbox_id) {
            return Err(not_found(sandbox_id));
        }
        let created = self.created(&mut st);
        st.next_id += 1;
        let id = format!("{}-{}", config.name, st.next_id);
        Self::record(&mut st, format!("create {}#{}", config.name, config.attempt));
        let status = ContainerStatus {
            id: id.clone(),
            sandbox_id: sandbox_id.to_string(),
            name: config.name.clone(),
            attempt: config.attempt,
            state: ContainerState::Created,
            created_at: Some(created),
            started_at: None,
            finished_at: None,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image: config.image.clone(),
            image_ref: format!("sha256:{}", config.image),
            log_path: sandbox.log_directory.join(&config.log_path),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
        };
        st.containers.insert(id.clone(), Container { status, exit_at: None });
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let now = self.clock.now();
        let mut st = self.lock();
        let name = st.containers.get(id).map(|c| c.status.name.clone()).ok_or_else(|| not_found(id))?;
        let behaviour = st.behaviours.get(&name).copied().unwrap_or_default();
        let failing = st.failing_starts.contains(&name);
        let c = st.containers.get_mut(id).expect("looked up above");
        let label = Self::label(&c.status);
        if failing {
            c.status.state = ContainerState::Exited;
            c.status.exit_code = 128;
            c.status.reason = "StartError".into();
            c.status.finished_at = Some(now);
            Self::record(&mut st, format!("start {label} (failed)"));
            return Err(RuntimeError::Failed(format!("failed to start {name}: exec: not found")));
        }
        c.status.state = ContainerState::Running;
        c.status.started_at = Some(now);
        if let Behaviour::Exit { after, code } = behaviour {
            c.exit_at = Some((plus(now, after), code));
        }
        Self::record(&mut st, format!("start {label}"));
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let (label, delay, code) = {
            let now = self.clock.now();
            let mut st = self.lock();
            settle(&mut st, now);
            let c = st.containers.get(id).ok_or_else(|| not_found(id))?;
            let label = Self::label(&c.status);
            let running = c.status.state == ContainerState::Running;
            let behaviour = st.behaviours.get(&c.status.name).copied().unwrap_or_default();
            Self::record(&mut st, format!("stop {label} grace={}s", grace.as_secs()));
            if !running {
                return Ok(());
            }
            match behaviour {
                Behaviour::Serve { stop_delay, code } if stop_delay <= grace => (label, stop_delay, code),
                // Ignores SIGTERM (or takes too long): SIGKILL when the grace period ends.
                _ => (label, grace, 137),
            }
        };
        tokio::time::sleep(delay).await;
        let now = self.clock.now();
        let mut st = self.lock();
        if let Some(c) = st.containers.get_mut(id) {
            if c.status.state == ContainerState::Running {
                c.status.state = ContainerState::Exited;
                c.status.exit_code = code;
                c.status.finished_at = Some(now);
                c.status.reason = "Error".into();
            }
        }
        Self::record(&mut st, format!("stopped {label}"));
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut st = self.lock();
        if let Some(c) = st.containers.remove(id) {
            let label = Self::label(&c.status);
            Self::record(&mut st, format!("remove {label}"));
        }
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let now = self.clock.now();
        let mut st = self.lock();
        settle(&mut st, now);
        st.containers.get(id).map(|c| c.status.clone()).ok_or_else(|| not_found(id))
    }

    async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<ContainerStatus>> {
        Ok(self.all_containers().into_iter().filter(|c| sandbox_id.is_none_or(|s| c.sandbox_id == s)).collect())
    }

    async fn exec_sync(&self, id: &str, command: &[String], _timeout: Duration) -> Result<ExecOutput> {
        let mut st = self.lock();
        Self::record(&mut st, format!("exec {id} {}", command.join(" ")));
        Ok(ExecOutput::default())
    }

    async fn exec(&self, _: &str, _: &StreamRequest) -> Result<Stream> {
        Err(RuntimeError::Failed("streaming is not faked".into()))
    }

    async fn attach(&self, _: &str, _: &StreamRequest) -> Result<Stream> {
        Err(RuntimeError::Failed("streaming is not faked".into()))
    }

    async fn port_forward(&self, _: &str) -> Result<Stream> {
        Err(RuntimeError::Failed("streaming is not faked".into()))
    }
}

// === FakeHost ===

/// A [`RuntimeHelper`](super::host::RuntimeHelper) without API, volumes or probers:
/// it records events and hooks, and its probers say what the test says.
#[derive(Default)]
pub struct FakeHost {
    inner: Mutex<HostState>,
}

#[derive(Default)]
struct HostState {
    events: Vec<(String, String, String)>,
    hooks: Vec<(tokio::time::Instant, String)>,
    hook_duration: HashMap<String, Duration>,
    failing_hooks: HashSet<String>,
    volume_error: Option<String>,
    unready: HashSet<String>,
    unstarted: HashSet<String>,
    probed: Vec<String>,
    torn_down: Vec<String>,
}

impl FakeHost {
    fn lock(&self) -> MutexGuard<'_, HostState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events as `Type Reason: message`.
    pub fn events(&self) -> Vec<String> {
        self.lock().events.iter().map(|(t, r, m)| format!("{t} {r}: {m}")).collect()
    }

    pub fn reasons(&self) -> Vec<String> {
        self.lock().events.iter().map(|(_, r, _)| r.clone()).collect()
    }

    pub fn hooks(&self) -> Vec<(tokio::time::Instant, String)> {
        self.lock().hooks.clone()
    }

    pub fn hook_takes(&self, container: &str, d: Duration) {
        self.lock().hook_duration.insert(container.to_string(), d);
    }

    pub fn fail_hooks(&self, container: &str) {
        self.lock().failing_hooks.insert(container.to_string());
    }

    pub fn fail_volumes(&self, message: Option<&str>) {
        self.lock().volume_error = message.map(String::from);
    }

    pub fn set_ready(&self, container: &str, ready: bool) {
        let mut st = self.lock();
        if ready {
            st.unready.remove(container);
        } else {
            st.unready.insert(container.to_string());
        }
    }

    pub fn set_started(&self, container: &str, started: bool) {
        let mut st = self.lock();
        if started {
            st.unstarted.remove(container);
        } else {
            st.unstarted.insert(container.to_string());
        }
    }

    /// The containers (`name@id`) probers were started for.
    pub fn probed(&self) -> Vec<String> {
        self.lock().probed.clone()
    }

    pub fn torn_down(&self) -> Vec<String> {
        self.lock().torn_down.clone()
    }
}

#[async_trait::async_trait]
impl super::host::RuntimeHelper for FakeHost {
    async fn setup_volumes(&self, _pod: &k8s_openapi::api::core::v1::Pod) -> std::result::Result<(), String> {
        match self.lock().volume_error.clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn teardown_volumes(&self, pod_uid: &str) -> std::result::Result<(), String> {
        self.lock().torn_down.push(pod_uid.to_string());
        Ok(())
    }

    fn mounts(&self, _pod: &k8s_openapi::api::core::v1::Pod, _c: &k8s_openapi::api::core::v1::Container, _env: &[(String, String)]) -> std::result::Result<Vec<Mount>, String> {
        Ok(Vec::new())
    }

    async fn container_env(
        &self,
        _pod: &k8s_openapi::api::core::v1::Pod,
        c: &k8s_openapi::api::core::v1::Container,
        _ctx: &super::env::EnvContext,
    ) -> std::result::Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        for e in c.env.iter().flatten() {
            match (&e.value, &e.value_from) {
                (_, Some(_)) => return Err(format!("couldn't find key for {}", e.name)),
                (v, None) => out.push((e.name.clone(), v.clone().unwrap_or_default())),
            }
        }
        Ok(out)
    }

    async fn pull_secrets(&self, _pod: &k8s_openapi::api::core::v1::Pod) -> super::images::Keyring {
        super::images::Keyring::default()
    }

    async fn run_hook(
        &self,
        _runtime: &dyn Runtime,
        _container_id: &str,
        _pod_ip: Option<std::net::IpAddr>,
        c: &k8s_openapi::api::core::v1::Container,
        handler: &k8s_openapi::api::core::v1::LifecycleHandler,
        timeout: Duration,
    ) -> std::result::Result<(), String> {
        let kind = if c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) == Some(handler) { "preStop" } else { "postStart" };
        let (d, fail) = {
            let mut st = self.lock();
            st.hooks.push((tokio::time::Instant::now(), format!("{kind} {}", c.name)));
            (st.hook_duration.get(&c.name).copied().unwrap_or_default(), st.failing_hooks.contains(&c.name))
        };
        tokio::time::sleep(d.min(timeout)).await;
        if fail {
            Err("command 'false' exited with 1".to_string())
        } else {
            Ok(())
        }
    }

    fn probe_container(&self, target: super::probe::ProbeTarget, c: &k8s_openapi::api::core::v1::Container) {
        self.lock().probed.push(format!("{}@{}", c.name, target.container_id));
    }

    fn stop_probing(&self, _pod_uid: &str, _container: &str) {}

    fn stop_probing_pod(&self, _pod_uid: &str) {}

    fn pod_terminating(&self, _pod_uid: &str) {}

    fn is_ready(&self, _pod_uid: &str, container: &str) -> bool {
        !self.lock().unready.contains(container)
    }

    fn is_started(&self, _pod_uid: &str, container: &str) -> bool {
        !self.lock().unstarted.contains(container)
    }

    fn event(&self, _pod: &k8s_openapi::api::core::v1::Pod, kind: skiff_client::EventType, reason: &str, message: &str) {
        self.lock().events.push((kind.as_str().to_string(), reason.to_string(), message.to_string()));
    }
}
