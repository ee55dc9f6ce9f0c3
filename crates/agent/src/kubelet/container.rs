//! A container's config as the kubelet asks the runtime for it (upstream's
//! `generateContainerConfig`): command and args with `$(VAR)` expanded, resources
//! converted the way the kubelet converts them, identity and privileges, mounts
//! (volumes, the managed `/etc/hosts`, the termination message file), and the labels
//! and annotations that let the kubelet find the instance again after a restart.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_api::validation::quantity::Quantity;

use super::actions::{container_hash, is_sidecar};
use super::podstate::annotations;
use crate::runtime::{labels, ContainerConfig, Mount, Resources, SecurityConfig};

/// The CFS period the kubelet uses (100 ms, in microseconds).
pub const CPU_PERIOD: i64 = 100_000;
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
const MIN_QUOTA: i64 = 1000;
const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;
/// Where a container's termination message goes when the spec does not say.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

fn quantity(c: &Container, kind: &str, name: &str) -> Option<Quantity> {
    let r = c.resources.as_ref()?;
    let list = if kind == "limits" { r.limits.as_ref() } else { r.requests.as_ref() };
    Quantity::parse(&list?.get(name)?.0).ok()
}

/// `MilliCPUToShares`.
pub fn milli_cpu_to_shares(milli: i128) -> i64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    ((milli * 1024 / 1000) as i64).clamp(MIN_SHARES, MAX_SHARES)
}

/// `milliCPUToQuota`: 0 (no limit) without a limit, at least 1 ms per period.
pub fn milli_cpu_to_quota(milli: i128, period: i64) -> i64 {
    if milli <= 0 {
        return 0;
    }
    ((milli * period as i128 / 1000) as i64).max(MIN_QUOTA)
}

/// The container's OOM score adjustment by the pod's QoS class (upstream's
/// `GetContainerOOMScoreAdjust`): Guaranteed pods are the last to go, BestEffort
/// the first, Burstable in between by how much memory they asked for.
pub fn oom_score_adj(qos: &str, c: &Container, memory_capacity: i128) -> i64 {
    match qos {
        "Guaranteed" => GUARANTEED_OOM_SCORE_ADJ,
        "BestEffort" => BEST_EFFORT_OOM_SCORE_ADJ,
        _ => {
            let request = quantity(c, "requests", "memory").map_or(0, |q| q.value());
            let adj = if memory_capacity > 0 { 1000 - (1000 * request / memory_capacity) as i64 } else { 1000 };
            if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
                1000 + GUARANTEED_OOM_SCORE_ADJ
            } else if adj == BEST_EFFORT_OOM_SCORE_ADJ {
                adj - 1
            } else {
                adj
            }
        }
    }
}

/// Linux resources of a container, converted as the kubelet converts them.
pub fn resources(c: &Container, qos: &str, memory_capacity: i128) -> Resources {
    let cpu_request = quantity(c, "requests", "cpu").map_or(0, |q| q.milli_value());
    let cpu_limit = quantity(c, "limits", "cpu").map_or(0, |q| q.milli_value());
    // A limit without a request is the request too (the API defaults it the same way).
    let shares = if cpu_request == 0 && cpu_limit != 0 { milli_cpu_to_shares(cpu_limit) } else { milli_cpu_to_shares(cpu_request) };
    let memory_limit = quantity(c, "limits", "memory").map_or(0, |q| q.value()) as i64;
    Resources {
        cpu_shares: shares,
        cpu_quota: milli_cpu_to_quota(cpu_limit, CPU_PERIOD),
        cpu_period: CPU_PERIOD,
        memory_limit_bytes: memory_limit,
        oom_score_adj: oom_score_adj(qos, c, memory_capacity),
    }
}

/// Identity and privileges: the container's securityContext over the pod's.
pub fn security(pod: &Pod, c: &Container) -> SecurityConfig {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    SecurityConfig {
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        run_as_user: sc.and_then(|s| s.run_as_user).or_else(|| pod_sc.and_then(|s| s.run_as_user)),
        run_as_group: sc.and_then(|s| s.run_as_group).or_else(|| pod_sc.and_then(|s| s.run_as_group)),
        read_only_root_filesystem: sc.and_then(|s| s.read_only_root_filesystem).unwrap_or(false),
        capabilities_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        capabilities_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
    }
}

/// Expands `$(VAR)` references as Kubernetes does: `$$` is a literal `$`, a
/// reference to an unknown variable stays as written.
pub fn expand(input: &str, env: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Labels of a container instance.
pub fn container_labels(pod: &Pod, c: &Container) -> BTreeMap<String, String> {
    let m = &pod.metadata;
    [
        (labels::POD_NAME, m.name.clone().unwrap_or_default()),
        (labels::POD_NAMESPACE, m.namespace.clone().unwrap_or_default()),
        (labels::POD_UID, m.uid.clone().unwrap_or_default()),
        (labels::CONTAINER_NAME, c.name.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub fn termination_message_path(c: &Container) -> String {
    c.termination_message_path.clone().unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.to_string())
}

/// What goes into one container instance besides the spec.
pub struct ContainerInputs<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    /// The restart count of the new instance.
    pub attempt: u32,
    /// The image as pulled (default tag applied).
    pub image: String,
    pub env: Vec<(String, String)>,
    /// The container's volume mounts.
    pub mounts: Vec<Mount>,
    /// The managed /etc/hosts, for pods with addresses of their own.
    pub hosts_file: Option<PathBuf>,
    /// The host file behind the termination message path.
    pub termination_file: Option<PathBuf>,
    pub qos: &'a str,
    /// The node's memory (bytes), for the OOM score of Burstable containers.
    pub memory_capacity: i128,
    pub is_init: bool,
}

/// The container config of one instance.
pub fn container_config(input: ContainerInputs<'_>) -> ContainerConfig {
    let c = input.container;
    let pod = input.pod;
    let vars: HashMap<&str, &str> = input.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let command = c.command.iter().flatten().map(|s| expand(s, &vars)).collect();
    let args = c.args.iter().flatten().map(|s| expand(s, &vars)).collect();

    let mut mounts = input.mounts;
    if let Some(hosts) = input.hosts_file {
        if !mounts.iter().any(|m| m.container_path == "/etc/hosts") {
            mounts.push(Mount { host_path: hosts, container_path: "/etc/hosts".into(), read_only: false });
        }
    }
    let message_path = termination_message_path(c);
    if let Some(file) = &input.termination_file {
        mounts.push(Mount { host_path: file.clone(), container_path: message_path.clone(), read_only: false });
    }

    let mut ann: BTreeMap<String, String> = BTreeMap::new();
    ann.insert(annotations::CONTAINER_HASH.into(), container_hash(c));
    ann.insert(annotations::RESTART_COUNT.into(), input.attempt.to_string());
    ann.insert(annotations::TERMINATION_MESSAGE_PATH.into(), message_path);
    ann.insert(annotations::TERMINATION_MESSAGE_POLICY.into(), c.termination_message_policy.clone().unwrap_or_else(|| "File".into()));
    if let Some(file) = &input.termination_file {
        ann.insert(annotations::TERMINATION_MESSAGE_FILE.into(), file.display().to_string());
    }
    if let Some(grace) = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds) {
        ann.insert(annotations::POD_TERMINATION_GRACE_PERIOD.into(), grace.to_string());
    }
    if input.is_init {
        ann.insert(if is_sidecar(c) { annotations::SIDECAR } else { annotations::INIT }.into(), "true".into());
    }

    ContainerConfig {
        name: c.name.clone(),
        attempt: input.attempt,
        image: input.image,
        command,
        args,
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        env: input.env,
        mounts,
        log_path: Path::new(&c.name).join(format!("{}.log", input.attempt)),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        resources: resources(c, input.qos, input.memory_capacity),
        security: security(pod, c),
        labels: container_labels(pod, c),
        annotations: ann,
    }
}

/// The restart count of a container whose previous instances the runtime lost:
/// one past the highest `<n>.log` in its log directory (upstream's
/// `calcRestartCountByLogDir`), so a new instance never overwrites an old log.
pub fn restart_count_from_logs(container_log_dir: &Path) -> u32 {
    let Ok(entries) = std::fs::read_dir(container_log_dir) else { return 0 };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse::<u32>().ok())
        .max()
        .map_or(0, |n| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": spec})).unwrap()
    }

    fn first(p: &Pod) -> &Container {
        &p.spec.as_ref().unwrap().containers[0]
    }

    const GI: i128 = 1 << 30;

    #[test]
    fn cpu_and_memory_are_converted_as_the_kubelet_converts_them() {
        let p = pod(json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "2Gi"}}}]}));
        let r = resources(first(&p), "Burstable", 8 * GI);
        assert_eq!(r, Resources { cpu_shares: 256, cpu_quota: 50_000, cpu_period: 100_000, memory_limit_bytes: 2 * GI as i64, oom_score_adj: 875 });

        let none = pod(json!({"containers": [{"name": "a"}]}));
        assert_eq!(resources(first(&none), "BestEffort", 8 * GI), Resources { cpu_shares: 2, cpu_quota: 0, cpu_period: 100_000, memory_limit_bytes: 0, oom_score_adj: 1000 });

        let tiny = pod(json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "1m"}}}]}));
        let r = resources(first(&tiny), "Burstable", 8 * GI);
        assert_eq!((r.cpu_shares, r.cpu_quota), (2, 1000), "shares follow the limit without a request; the quota has a floor");
        assert_eq!(oom_score_adj("Guaranteed", first(&tiny), 8 * GI), -997);
        assert_eq!(oom_score_adj("Burstable", first(&none), 8 * GI), 999, "burstable outlives best effort");
        let huge = pod(json!({"containers": [{"name": "a", "resources": {"requests": {"memory": "9Gi"}}}]}));
        assert_eq!(oom_score_adj("Burstable", first(&huge), 8 * GI), 3);
    }

    #[test]
    fn variable_references_expand_like_kubernetes() {
        let env: HashMap<&str, &str> = [("A", "1"), ("B", "two")].into();
        assert_eq!(expand("x$(A)y$(B)", &env), "x1ytwo");
        assert_eq!(expand("$(C) $$(A) $$ $x $(A", &env), "$(C) $(A) $ $x $(A");
    }

    #[test]
    fn the_config_carries_mounts_annotations_and_expanded_commands() {
        let p = pod(json!({
            "terminationGracePeriodSeconds": 5,
            "securityContext": {"runAsUser": 1000},
            "containers": [{"name": "app", "image": "busybox:1.35", "command": ["sh", "-c"], "args": ["echo $(GREETING)"], "workingDir": "/w",
                "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}]
        }));
        let c = container_config(ContainerInputs {
            pod: &p,
            container: first(&p),
            attempt: 3,
            image: "busybox:1.35".into(),
            env: vec![("GREETING".into(), "hi".into())],
            mounts: vec![Mount { host_path: "/v/data".into(), container_path: "/data".into(), read_only: true }],
            hosts_file: Some("/pods/u1/etc-hosts".into()),
            termination_file: Some("/pods/u1/containers/app/abc".into()),
            qos: "BestEffort",
            memory_capacity: GI,
            is_init: false,
        });
        assert_eq!((c.command.clone(), c.args.clone()), (vec!["sh".to_string(), "-c".to_string()], vec!["echo hi".to_string()]));
        assert_eq!(c.log_path, Path::new("app/3.log"));
        let paths: Vec<&str> = c.mounts.iter().map(|m| m.container_path.as_str()).collect();
        assert_eq!(paths, ["/data", "/etc/hosts", "/dev/termination-log"]);
        assert_eq!(c.annotations[annotations::RESTART_COUNT], "3");
        assert_eq!(c.annotations[annotations::POD_TERMINATION_GRACE_PERIOD], "5");
        assert_eq!(c.annotations[annotations::TERMINATION_MESSAGE_FILE], "/pods/u1/containers/app/abc");
        assert_eq!(c.labels[labels::CONTAINER_NAME], "app");
        assert_eq!((c.security.run_as_user, c.security.capabilities_add.clone()), (Some(1000), vec!["NET_ADMIN".to_string()]));
        assert_eq!(c.working_dir.as_deref(), Some("/w"));
    }

    #[test]
    fn a_lost_restart_count_is_recovered_from_the_logs() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(restart_count_from_logs(&dir.path().join("missing")), 0);
        for f in ["0.log", "3.log", "notes.txt"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        assert_eq!(restart_count_from_logs(dir.path()), 4);
    }
}
