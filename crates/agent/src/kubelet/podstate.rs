//! What the runtime has of one pod: its sandboxes and containers, newest first, with
//! what the kubelet wrote into their annotations read back (restart count, spec hash,
//! termination message file). This is the kubelet's `kubecontainer.PodStatus`: the
//! runtime is the source of truth, so the kubelet finds its pods again after a restart.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::Path;

use crate::runtime::{labels, ContainerState, ContainerStatus, Runtime, SandboxState, SandboxStatus};

/// Annotation keys on containers and sandboxes (upstream's, where upstream has one).
pub mod annotations {
    /// The hash of the container's spec the instance was made from.
    pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    /// The path in the container, as the spec says.
    pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
    pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
    pub const POD_TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
    /// The file on the host the termination message path is mounted from.
    pub const TERMINATION_MESSAGE_FILE: &str = "skiff.io/termination-message-file";
    /// `true` on sidecars (init containers with restartPolicy Always).
    pub const SIDECAR: &str = "skiff.io/sidecar";
    /// `true` on regular init containers.
    pub const INIT: &str = "skiff.io/init-container";
}

/// Upstream's `MaxContainerTerminationMessageLength`.
pub const MAX_TERMINATION_MESSAGE: usize = 4096;
/// What FallbackToLogsOnError takes from the log: the last 80 lines, 2 KiB at most.
pub const MAX_TERMINATION_LOG_LINES: usize = 80;
pub const MAX_TERMINATION_LOG_BYTES: usize = 2048;

/// One container instance as the kubelet sees it.
#[derive(Debug, Clone)]
pub struct ObservedContainer {
    pub status: ContainerStatus,
    /// From the restart count annotation (the attempt when it is missing).
    pub restart_count: i32,
    /// The spec hash annotation ("" when missing).
    pub hash: String,
    /// For exited containers: the runtime's message, enriched with the termination
    /// message the container wrote (or its log tail, per its policy).
    pub message: String,
}

impl ObservedContainer {
    pub fn new(status: ContainerStatus) -> ObservedContainer {
        let restart_count = status.annotations.get(annotations::RESTART_COUNT).and_then(|v| v.parse().ok()).unwrap_or(status.attempt as i32);
        let hash = status.annotations.get(annotations::CONTAINER_HASH).cloned().unwrap_or_default();
        let message = status.message.clone();
        ObservedContainer { status, restart_count, hash, message }
    }

    pub fn id(&self) -> &str {
        &self.status.id
    }

    pub fn name(&self) -> &str {
        &self.status.name
    }

    pub fn state(&self) -> ContainerState {
        self.status.state
    }

    pub fn is_running(&self) -> bool {
        self.status.state == ContainerState::Running
    }

    pub fn is_exited(&self) -> bool {
        self.status.state == ContainerState::Exited
    }

    /// Reads the termination message (and the log tail when the policy asks for it)
    /// into `message`, as the kubelet does for exited containers.
    pub fn read_termination_message(&mut self) {
        if !self.is_exited() {
            return;
        }
        let a = &self.status.annotations;
        let fallback = a.get(annotations::TERMINATION_MESSAGE_POLICY).map(String::as_str) == Some("FallbackToLogsOnError")
            && self.status.exit_code != 0
            && self.status.reason != "ContainerCannotRun";
        let (mut text, check_logs) = match a.get(annotations::TERMINATION_MESSAGE_FILE) {
            None => (String::new(), fallback),
            Some(file) => match read_at_most(Path::new(file), MAX_TERMINATION_MESSAGE) {
                Ok(data) => {
                    let empty = data.is_empty();
                    (data, fallback && empty)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), fallback),
                Err(e) => (format!("Error on reading termination log {file}: {e}"), false),
            },
        };
        if check_logs {
            text = log_tail(&self.status.log_path, MAX_TERMINATION_LOG_LINES, MAX_TERMINATION_LOG_BYTES);
        }
        if !text.is_empty() {
            let mut message = self.status.message.clone();
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
            self.message = message;
        }
    }
}

/// The sandboxes and containers of one pod, newest first.
#[derive(Debug, Clone, Default)]
pub struct PodRuntimeState {
    pub sandboxes: Vec<SandboxStatus>,
    pub containers: Vec<ObservedContainer>,
}

impl PodRuntimeState {
    /// Sorts what was found, newest first (creation time, then attempt).
    pub fn new(mut sandboxes: Vec<SandboxStatus>, mut containers: Vec<ObservedContainer>) -> PodRuntimeState {
        sandboxes.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.attempt.cmp(&a.attempt)));
        containers.sort_by(|a, b| b.status.created_at.cmp(&a.status.created_at).then(b.restart_count.cmp(&a.restart_count)));
        PodRuntimeState { sandboxes, containers }
    }

    /// Asks the runtime for everything of pod `uid`.
    pub async fn gather(runtime: &dyn Runtime, uid: &str) -> crate::runtime::Result<PodRuntimeState> {
        let sandboxes: Vec<SandboxStatus> = runtime.list_pod_sandboxes(uid).await?.into_iter().filter(|s| is_pod(&s.labels, uid)).collect();
        let mut containers = Vec::new();
        for sandbox in &sandboxes {
            for c in runtime.list_containers(Some(&sandbox.id)).await? {
                if is_pod(&c.labels, uid) {
                    let mut c = ObservedContainer::new(c);
                    c.read_termination_message();
                    containers.push(c);
                }
            }
        }
        Ok(PodRuntimeState::new(sandboxes, containers))
    }

    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.containers.is_empty()
    }

    /// The newest instance of a container.
    pub fn latest(&self, name: &str) -> Option<&ObservedContainer> {
        self.containers.iter().find(|c| c.name() == name)
    }

    /// Every instance of a container, newest first.
    pub fn instances<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ObservedContainer> + 'a {
        self.containers.iter().filter(move |c| c.name() == name)
    }

    pub fn running(&self) -> impl Iterator<Item = &ObservedContainer> {
        self.containers.iter().filter(|c| c.is_running())
    }

    /// The newest sandbox.
    pub fn sandbox(&self) -> Option<&SandboxStatus> {
        self.sandboxes.first()
    }

    /// The newest sandbox, if it is ready.
    pub fn ready_sandbox(&self) -> Option<&SandboxStatus> {
        self.sandboxes.first().filter(|s| s.state == SandboxState::Ready)
    }

    /// Upstream's `PodSandboxChanged`: whether a new sandbox is needed, the attempt
    /// it gets, and the current sandbox. `own_network`: the pod has a network
    /// namespace of its own, so a sandbox without an address is broken.
    pub fn sandbox_changed(&self, own_network: bool) -> (bool, u32, Option<String>) {
        let Some(newest) = self.sandboxes.first() else { return (true, 0, None) };
        let ready = self.sandboxes.iter().filter(|s| s.state == SandboxState::Ready).count();
        if ready > 1 || newest.state != SandboxState::Ready {
            return (true, newest.attempt + 1, Some(newest.id.clone()));
        }
        if own_network && newest.ips.is_empty() {
            return (true, newest.attempt + 1, Some(newest.id.clone()));
        }
        (false, newest.attempt, Some(newest.id.clone()))
    }

    /// The pod's addresses: those of the newest sandbox.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        self.sandboxes.first().map(|s| s.ips.clone()).unwrap_or_default()
    }
}

fn is_pod(labels: &BTreeMap<String, String>, uid: &str) -> bool {
    labels.get(labels::POD_UID).map(String::as_str) == Some(uid)
}

/// The first `max` bytes of a file, as text.
fn read_at_most(path: &Path, max: usize) -> std::io::Result<String> {
    let mut data = Vec::new();
    std::fs::File::open(path)?.take(max as u64).read_to_end(&mut data)?;
    Ok(String::from_utf8_lossy(&data).into_owned())
}

/// The content of the last `lines` lines of a CRI-format log (partial lines joined),
/// at most `max_bytes` of it (the end).
pub fn log_tail(path: &Path, lines: usize, max_bytes: usize) -> String {
    // Read enough of the end of the file: every line carries a ~40 byte prefix.
    let window = (max_bytes + lines * 64) as u64 * 2;
    let Ok(mut file) = std::fs::File::open(path) else { return String::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(window);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut data = Vec::new();
    if file.read_to_end(&mut data).is_err() {
        return String::new();
    }
    let mut text = &data[..];
    if start > 0 {
        // Skip the line the window starts in the middle of.
        match text.iter().position(|b| *b == b'\n') {
            Some(i) => text = &text[i + 1..],
            None => return String::new(),
        }
    }
    // Whole lines of output: partial records are joined with the next.
    let mut out_lines: Vec<Vec<u8>> = Vec::new();
    let mut partial = Vec::new();
    for record in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let mut parts = record.splitn(4, |b| *b == b' ');
        let (Some(_ts), Some(_stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let content = parts.next().unwrap_or_default();
        partial.extend_from_slice(content);
        if tag != b"P" {
            partial.push(b'\n');
            out_lines.push(std::mem::take(&mut partial));
        }
    }
    if !partial.is_empty() {
        out_lines.push(partial);
    }
    let keep = out_lines.len().saturating_sub(lines);
    let joined: Vec<u8> = out_lines[keep..].concat();
    let tail = &joined[joined.len().saturating_sub(max_bytes)..];
    String::from_utf8_lossy(tail).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn container(name: &str, state: ContainerState, created: i64, annotations: &[(&str, &str)]) -> ObservedContainer {
        ObservedContainer::new(ContainerStatus {
            id: format!("{name}-{created}"),
            sandbox_id: "s".into(),
            name: name.into(),
            attempt: 0,
            state,
            created_at: Some(jiff::Timestamp::from_second(created).unwrap()),
            started_at: None,
            finished_at: None,
            exit_code: 1,
            reason: "Error".into(),
            message: String::new(),
            image: String::new(),
            image_ref: String::new(),
            log_path: PathBuf::new(),
            labels: BTreeMap::new(),
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        })
    }

    #[test]
    fn containers_are_sorted_newest_first_and_carry_their_annotations() {
        let state = PodRuntimeState::new(
            Vec::new(),
            vec![
                container("app", ContainerState::Exited, 10, &[(annotations::RESTART_COUNT, "0")]),
                container("app", ContainerState::Running, 20, &[(annotations::RESTART_COUNT, "1"), (annotations::CONTAINER_HASH, "abc")]),
            ],
        );
        let latest = state.latest("app").unwrap();
        assert_eq!((latest.restart_count, latest.hash.as_str(), latest.is_running()), (1, "abc", true));
        assert_eq!(state.instances("app").count(), 2);
        assert!(state.latest("other").is_none());
    }

    #[test]
    fn the_termination_message_file_is_read_and_logs_are_the_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("msg");
        std::fs::write(&file, "bye").unwrap();
        let mut c = container("app", ContainerState::Exited, 1, &[(annotations::TERMINATION_MESSAGE_FILE, file.to_str().unwrap())]);
        c.read_termination_message();
        assert_eq!(c.message, "bye");

        let log = dir.path().join("0.log");
        std::fs::write(&log, "2025-01-01T00:00:00.000000000Z stdout P par\n2025-01-01T00:00:00.000000000Z stdout F tial\n2025-01-01T00:00:01.000000000Z stderr F boom\n").unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let mut c = container(
            "app",
            ContainerState::Exited,
            1,
            &[(annotations::TERMINATION_MESSAGE_FILE, empty.to_str().unwrap()), (annotations::TERMINATION_MESSAGE_POLICY, "FallbackToLogsOnError")],
        );
        c.status.log_path = log.clone();
        c.read_termination_message();
        assert_eq!(c.message, "partial\nboom\n");

        assert_eq!(log_tail(&log, 1, 100), "boom\n");
        assert_eq!(log_tail(&log, 80, 3), "om\n");
    }

    #[test]
    fn a_missing_or_unready_sandbox_needs_a_new_one() {
        let sandbox = |id: &str, state: SandboxState, attempt: u32, ips: Vec<IpAddr>| SandboxStatus {
            id: id.into(),
            state,
            ips,
            created_at: Some(jiff::Timestamp::from_second(attempt as i64).unwrap()),
            attempt,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        };
        assert_eq!(PodRuntimeState::default().sandbox_changed(true), (true, 0, None));
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let ok = PodRuntimeState::new(vec![sandbox("a", SandboxState::Ready, 0, vec![ip])], Vec::new());
        assert_eq!(ok.sandbox_changed(true), (false, 0, Some("a".into())));
        let dead = PodRuntimeState::new(vec![sandbox("a", SandboxState::NotReady, 0, vec![ip])], Vec::new());
        assert_eq!(dead.sandbox_changed(true), (true, 1, Some("a".into())));
        let no_ip = PodRuntimeState::new(vec![sandbox("a", SandboxState::Ready, 2, vec![])], Vec::new());
        assert_eq!(no_ip.sandbox_changed(true), (true, 3, Some("a".into())));
        assert_eq!(no_ip.sandbox_changed(false), (false, 2, Some("a".into())), "a host-network sandbox has no address of its own");
    }
}
