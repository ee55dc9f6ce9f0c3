//! Translation between the agent's runtime types and CRI v1 messages. Pure
//! functions, so that every field mapping is checked without a runtime.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use k8s_cri::v1 as cri;

use crate::runtime::{
    ContainerConfig, ContainerState, ContainerStatus, DnsConfig, ImageInfo, Protocol, RuntimeError, SandboxConfig, SandboxState, SandboxStatus,
};

/// The sandbox as CRI `RunPodSandbox` (and `CreateContainer`, which repeats it)
/// takes it. `privileged` marks the sandbox as allowed to hold privileged
/// containers: containerd refuses a privileged container unless the sandbox config
/// that comes with its `CreateContainer` says so.
pub(crate) fn sandbox_config(config: &SandboxConfig, privileged: bool) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: config.pod_name.clone(),
            uid: config.pod_uid.clone(),
            namespace: config.pod_namespace.clone(),
            attempt: config.attempt,
        }),
        hostname: config.hostname.clone(),
        log_directory: path_string(&config.log_directory),
        dns_config: config.dns.as_ref().map(dns_config),
        port_mappings: config
            .port_mappings
            .iter()
            .map(|port| cri::PortMapping {
                protocol: protocol(port.protocol) as i32,
                container_port: i32::from(port.container_port),
                host_port: i32::from(port.host_port),
                host_ip: port.host_ip.clone(),
            })
            .collect(),
        labels: hash_map(&config.labels),
        annotations: hash_map(&config.annotations),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: config.cgroup_parent.clone(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(config.host_network)),
                privileged,
                ..Default::default()
            }),
            sysctls: config.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ..Default::default()
        }),
        windows: None,
    }
}

/// Network, PID and IPC namespaces as the kubelet asks for them by default: the
/// pod's network (or the node's), a PID namespace per container, the pod's IPC.
fn namespace_options(host_network: bool) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: if host_network { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod } as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn dns_config(dns: &DnsConfig) -> cri::DnsConfig {
    cri::DnsConfig { servers: dns.servers.clone(), searches: dns.searches.clone(), options: dns.options.clone() }
}

fn protocol(protocol: Protocol) -> cri::Protocol {
    match protocol {
        Protocol::Tcp => cri::Protocol::Tcp,
        Protocol::Udp => cri::Protocol::Udp,
        Protocol::Sctp => cri::Protocol::Sctp,
    }
}

/// The container as CRI `CreateContainer` takes it. `host_network` repeats the
/// sandbox's choice: containerd decides a container's network namespace from the
/// container's own namespace options.
pub(crate) fn container_config(config: &ContainerConfig, host_network: bool) -> cri::ContainerConfig {
    let security = &config.security;
    let resources = &config.resources;
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: config.name.clone(), attempt: config.attempt }),
        image: Some(cri::ImageSpec { image: config.image.clone(), ..Default::default() }),
        command: config.command.clone(),
        args: config.args.clone(),
        working_dir: config.working_dir.clone().unwrap_or_default(),
        envs: config.env.iter().map(|(key, value)| cri::KeyValue { key: key.clone(), value: value.clone() }).collect(),
        mounts: config
            .mounts
            .iter()
            .map(|mount| cri::Mount {
                container_path: mount.container_path.clone(),
                host_path: path_string(&mount.host_path),
                readonly: mount.read_only,
                propagation: cri::MountPropagation::PropagationPrivate as i32,
                ..Default::default()
            })
            .collect(),
        labels: hash_map(&config.labels),
        annotations: hash_map(&config.annotations),
        log_path: path_string(&config.log_path),
        stdin: config.stdin,
        stdin_once: config.stdin_once,
        tty: config.tty,
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_period: resources.cpu_period,
                cpu_quota: resources.cpu_quota,
                cpu_shares: resources.cpu_shares,
                memory_limit_in_bytes: resources.memory_limit_bytes,
                oom_score_adj: resources.oom_score_adj,
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                capabilities: Some(cri::Capability {
                    add_capabilities: security.capabilities_add.clone(),
                    drop_capabilities: security.capabilities_drop.clone(),
                    ..Default::default()
                }),
                privileged: security.privileged,
                namespace_options: Some(namespace_options(host_network)),
                run_as_user: security.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: security.run_as_group.map(|value| cri::Int64Value { value }),
                readonly_rootfs: security.read_only_root_filesystem,
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

pub(crate) fn sandbox_status(status: cri::PodSandboxStatus) -> SandboxStatus {
    let mut ips = Vec::new();
    if let Some(network) = &status.network {
        let addresses = std::iter::once(network.ip.as_str()).chain(network.additional_ips.iter().map(|ip| ip.ip.as_str()));
        // Host-network sandboxes report no address at all; anything unparsable is
        // the runtime's bug and is better left out than invented.
        ips.extend(addresses.filter_map(|ip| ip.parse::<IpAddr>().ok()));
    }
    SandboxStatus {
        id: status.id,
        state: sandbox_state(status.state),
        ips,
        created_at: timestamp(status.created_at),
        attempt: status.metadata.map(|m| m.attempt).unwrap_or(0),
        labels: btree_map(status.labels),
        annotations: btree_map(status.annotations),
    }
}

/// A sandbox as ListPodSandbox gives it: no addresses.
pub(crate) fn sandbox_brief(item: cri::PodSandbox) -> SandboxStatus {
    SandboxStatus {
        id: item.id,
        state: sandbox_state(item.state),
        ips: Vec::new(),
        created_at: timestamp(item.created_at),
        attempt: item.metadata.map(|m| m.attempt).unwrap_or(0),
        labels: btree_map(item.labels),
        annotations: btree_map(item.annotations),
    }
}

/// A container as ListContainers gives it: no exit code, reason or start and
/// finish times.
pub(crate) fn container_brief(item: cri::Container) -> ContainerStatus {
    let metadata = item.metadata.unwrap_or_default();
    ContainerStatus {
        id: item.id,
        sandbox_id: item.pod_sandbox_id,
        name: metadata.name,
        attempt: metadata.attempt,
        state: container_state(item.state),
        created_at: timestamp(item.created_at),
        started_at: None,
        finished_at: None,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        image: item.image.map(|image| image.image).unwrap_or_default(),
        image_ref: item.image_ref,
        log_path: PathBuf::new(),
        labels: btree_map(item.labels),
        annotations: btree_map(item.annotations),
    }
}

pub(crate) fn sandbox_state(state: i32) -> SandboxState {
    if state == cri::PodSandboxState::SandboxReady as i32 {
        SandboxState::Ready
    } else {
        SandboxState::NotReady
    }
}

pub(crate) fn container_status(status: cri::ContainerStatus, sandbox_id: String) -> ContainerStatus {
    let metadata = status.metadata.unwrap_or_default();
    ContainerStatus {
        id: status.id,
        sandbox_id,
        name: metadata.name,
        attempt: metadata.attempt,
        state: container_state(status.state),
        created_at: timestamp(status.created_at),
        started_at: timestamp(status.started_at),
        finished_at: timestamp(status.finished_at),
        exit_code: status.exit_code,
        reason: status.reason,
        message: status.message,
        image: status.image.map(|image| image.image).unwrap_or_default(),
        image_ref: status.image_ref,
        log_path: PathBuf::from(status.log_path),
        labels: btree_map(status.labels),
        annotations: btree_map(status.annotations),
    }
}

pub(crate) fn container_state(state: i32) -> ContainerState {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
        Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running,
        Ok(cri::ContainerState::ContainerExited) => ContainerState::Exited,
        Ok(cri::ContainerState::ContainerUnknown) | Err(_) => ContainerState::Unknown,
    }
}

pub(crate) fn image_info(image: cri::Image) -> ImageInfo {
    ImageInfo { id: image.id, repo_tags: image.repo_tags, repo_digests: image.repo_digests, size_bytes: image.size }
}

/// CRI times are nanoseconds since the epoch; 0 means "not yet".
pub(crate) fn timestamp(nanos: i64) -> Option<Timestamp> {
    if nanos <= 0 {
        return None;
    }
    Timestamp::from_nanosecond(i128::from(nanos)).ok()
}

/// CRI timeouts are whole seconds; a grace period is never cut short, so a
/// fraction of a second counts as one more.
pub(crate) fn whole_seconds(duration: Duration) -> i64 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

/// A gRPC failure as the agent's error: the codes that mean something to the
/// kubelet keep their meaning, the rest carry the runtime's message.
pub(crate) fn status_error(what: &str, status: &tonic::Status) -> RuntimeError {
    let message = if status.message().is_empty() { format!("{what}: {}", status.code()) } else { format!("{what}: {}", status.message()) };
    match status.code() {
        tonic::Code::NotFound => RuntimeError::NotFound(message),
        tonic::Code::Unavailable => RuntimeError::Unavailable(message),
        tonic::Code::DeadlineExceeded => RuntimeError::Timeout(message),
        _ => RuntimeError::Failed(message),
    }
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn hash_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn btree_map(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Mount, PortMapping, Resources, SecurityConfig};

    fn pod() -> SandboxConfig {
        SandboxConfig {
            pod_name: "web".into(),
            pod_namespace: "default".into(),
            pod_uid: "0c5f".into(),
            attempt: 2,
            hostname: "web".into(),
            log_directory: "/var/lib/skiff/logs/default_web_0c5f".into(),
            dns: Some(DnsConfig { servers: vec!["10.43.0.10".into()], searches: vec!["default.svc.cluster.local".into()], options: vec!["ndots:5".into()] }),
            port_mappings: vec![PortMapping { protocol: Protocol::Udp, container_port: 53, host_port: 5353, host_ip: String::new() }],
            labels: BTreeMap::from([("io.kubernetes.pod.name".into(), "web".into())]),
            annotations: BTreeMap::from([("skiff.io/hash".into(), "1".into())]),
            host_network: false,
            cgroup_parent: "/skiff/pod0c5f".into(),
            sysctls: BTreeMap::from([("net.ipv4.ip_unprivileged_port_start".into(), "0".into())]),
            runtime_handler: String::new(),
        }
    }

    #[test]
    fn sandbox_config_carries_identity_network_and_linux_settings() {
        let config = sandbox_config(&pod(), false);
        let metadata = config.metadata.as_ref().unwrap();
        assert_eq!((metadata.name.as_str(), metadata.namespace.as_str(), metadata.uid.as_str(), metadata.attempt), ("web", "default", "0c5f", 2));
        assert_eq!(config.hostname, "web");
        assert_eq!(config.log_directory, "/var/lib/skiff/logs/default_web_0c5f");
        assert_eq!(config.dns_config.as_ref().unwrap().options, vec!["ndots:5"]);
        assert_eq!(config.port_mappings, vec![cri::PortMapping { protocol: cri::Protocol::Udp as i32, container_port: 53, host_port: 5353, host_ip: String::new() }]);
        assert_eq!(config.labels["io.kubernetes.pod.name"], "web");
        assert_eq!(config.annotations["skiff.io/hash"], "1");

        let linux = config.linux.as_ref().unwrap();
        assert_eq!(linux.cgroup_parent, "/skiff/pod0c5f");
        assert_eq!(linux.sysctls["net.ipv4.ip_unprivileged_port_start"], "0");
        let security = linux.security_context.as_ref().unwrap();
        assert!(!security.privileged);
        let namespaces = security.namespace_options.as_ref().unwrap();
        assert_eq!(namespaces.network, cri::NamespaceMode::Pod as i32);
        assert_eq!(namespaces.pid, cri::NamespaceMode::Container as i32);
    }

    #[test]
    fn host_network_pods_use_the_node_network_namespace() {
        let mut pod = pod();
        pod.host_network = true;
        let config = sandbox_config(&pod, true);
        let security = config.linux.unwrap().security_context.unwrap();
        assert_eq!(security.namespace_options.unwrap().network, cri::NamespaceMode::Node as i32);
        assert!(security.privileged);

        let container = container_config(&ContainerConfig::default(), true);
        let namespaces = container.linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        assert_eq!(namespaces.network, cri::NamespaceMode::Node as i32);
    }

    #[test]
    fn container_config_maps_process_mounts_resources_and_privileges() {
        let config = ContainerConfig {
            name: "app".into(),
            attempt: 3,
            image: "skiff.local/busybox:1.35".into(),
            command: vec!["httpd".into()],
            args: vec!["-f".into()],
            working_dir: Some("/www".into()),
            env: vec![("A".into(), "1".into())],
            mounts: vec![Mount { host_path: "/data/v".into(), container_path: "/v".into(), read_only: true }],
            log_path: "app/3.log".into(),
            stdin: true,
            stdin_once: true,
            tty: true,
            resources: Resources { cpu_shares: 102, cpu_quota: 50_000, cpu_period: 100_000, memory_limit_bytes: 16 << 20, oom_score_adj: 999 },
            security: SecurityConfig {
                privileged: false,
                run_as_user: Some(65534),
                run_as_group: Some(65534),
                read_only_root_filesystem: true,
                capabilities_add: vec!["NET_ADMIN".into()],
                capabilities_drop: vec!["ALL".into()],
            },
            labels: BTreeMap::from([("io.kubernetes.container.name".into(), "app".into())]),
            annotations: BTreeMap::from([("restart".into(), "3".into())]),
        };
        let c = container_config(&config, false);
        let metadata = c.metadata.as_ref().unwrap();
        assert_eq!((metadata.name.as_str(), metadata.attempt), ("app", 3));
        assert_eq!(c.image.as_ref().unwrap().image, "skiff.local/busybox:1.35");
        assert_eq!((c.command.clone(), c.args.clone(), c.working_dir.as_str()), (vec!["httpd".to_string()], vec!["-f".to_string()], "/www"));
        assert_eq!(c.envs, vec![cri::KeyValue { key: "A".into(), value: "1".into() }]);
        assert_eq!((c.mounts[0].host_path.as_str(), c.mounts[0].container_path.as_str(), c.mounts[0].readonly), ("/data/v", "/v", true));
        assert_eq!(c.log_path, "app/3.log");
        assert!(c.stdin && c.stdin_once && c.tty);
        assert_eq!(c.labels["io.kubernetes.container.name"], "app");
        assert_eq!(c.annotations["restart"], "3");

        let linux = c.linux.unwrap();
        let resources = linux.resources.unwrap();
        assert_eq!((resources.cpu_shares, resources.cpu_quota, resources.cpu_period), (102, 50_000, 100_000));
        assert_eq!((resources.memory_limit_in_bytes, resources.oom_score_adj), (16 << 20, 999));
        let security = linux.security_context.unwrap();
        assert!(!security.privileged && security.readonly_rootfs);
        assert_eq!(security.run_as_user, Some(cri::Int64Value { value: 65534 }));
        assert_eq!(security.run_as_group, Some(cri::Int64Value { value: 65534 }));
        let capabilities = security.capabilities.unwrap();
        assert_eq!((capabilities.add_capabilities, capabilities.drop_capabilities), (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()]));
        assert_eq!(security.namespace_options.unwrap().network, cri::NamespaceMode::Pod as i32);
    }

    #[test]
    fn an_unset_working_dir_leaves_the_image_default() {
        assert_eq!(container_config(&ContainerConfig::default(), false).working_dir, "");
    }

    #[test]
    fn sandbox_status_lists_the_primary_address_first() {
        let status = sandbox_status(cri::PodSandboxStatus {
            id: "s1".into(),
            metadata: Some(cri::PodSandboxMetadata { attempt: 4, ..Default::default() }),
            state: cri::PodSandboxState::SandboxReady as i32,
            created_at: 1_700_000_000_123_456_789,
            network: Some(cri::PodSandboxNetworkStatus { ip: "10.88.0.5".into(), additional_ips: vec![cri::PodIp { ip: "fd00::5".into() }] }),
            labels: HashMap::from([("a".into(), "b".into())]),
            ..Default::default()
        });
        assert_eq!(status.id, "s1");
        assert_eq!(status.state, SandboxState::Ready);
        assert_eq!(status.ips, vec!["10.88.0.5".parse::<IpAddr>().unwrap(), "fd00::5".parse().unwrap()]);
        assert_eq!(status.attempt, 4);
        assert_eq!(status.created_at.unwrap().as_nanosecond(), 1_700_000_000_123_456_789);
        assert_eq!(status.labels["a"], "b");
    }

    #[test]
    fn host_network_sandboxes_have_no_addresses() {
        let status = sandbox_status(cri::PodSandboxStatus {
            state: cri::PodSandboxState::SandboxNotready as i32,
            network: Some(cri::PodSandboxNetworkStatus { ip: String::new(), additional_ips: vec![] }),
            ..Default::default()
        });
        assert!(status.ips.is_empty());
        assert_eq!(status.state, SandboxState::NotReady);
        assert_eq!(status.created_at, None);
    }

    #[test]
    fn container_status_keeps_exit_details_and_times() {
        let status = container_status(
            cri::ContainerStatus {
                id: "c1".into(),
                metadata: Some(cri::ContainerMetadata { name: "app".into(), attempt: 1 }),
                state: cri::ContainerState::ContainerExited as i32,
                created_at: 1_000,
                started_at: 2_000,
                finished_at: 3_000,
                exit_code: 137,
                image: Some(cri::ImageSpec { image: "skiff.local/busybox:1.35".into(), ..Default::default() }),
                image_ref: "sha256:abc".into(),
                reason: "OOMKilled".into(),
                message: "out of memory".into(),
                log_path: "/logs/app/1.log".into(),
                ..Default::default()
            },
            "s1".into(),
        );
        assert_eq!((status.id.as_str(), status.sandbox_id.as_str(), status.name.as_str(), status.attempt), ("c1", "s1", "app", 1));
        assert_eq!(status.state, ContainerState::Exited);
        assert_eq!(status.started_at.unwrap().as_nanosecond(), 2_000);
        assert_eq!(status.finished_at.unwrap().as_nanosecond(), 3_000);
        assert_eq!((status.exit_code, status.reason.as_str(), status.message.as_str()), (137, "OOMKilled", "out of memory"));
        assert_eq!((status.image.as_str(), status.image_ref.as_str()), ("skiff.local/busybox:1.35", "sha256:abc"));
        assert_eq!(status.log_path, PathBuf::from("/logs/app/1.log"));
    }

    #[test]
    fn unknown_container_states_are_unknown() {
        assert_eq!(container_state(cri::ContainerState::ContainerCreated as i32), ContainerState::Created);
        assert_eq!(container_state(cri::ContainerState::ContainerRunning as i32), ContainerState::Running);
        assert_eq!(container_state(42), ContainerState::Unknown);
    }

    #[test]
    fn grace_periods_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_secs(30)), 30);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2500)), 3);
    }

    #[test]
    fn grpc_codes_become_runtime_errors() {
        let error = |code| status_error("StopContainer", &tonic::Status::new(code, "boom"));
        assert!(matches!(error(tonic::Code::NotFound), RuntimeError::NotFound(m) if m == "StopContainer: boom"));
        assert!(matches!(error(tonic::Code::Unavailable), RuntimeError::Unavailable(_)));
        assert!(matches!(error(tonic::Code::DeadlineExceeded), RuntimeError::Timeout(_)));
        assert!(matches!(error(tonic::Code::Internal), RuntimeError::Failed(_)));
    }
}
