//! Printers of the core/v1 kinds (and of `events.k8s.io` Events, which upstream
//! prints through the core Event printer).

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;

// === Pod ===

pub(super) fn pod_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
        col("Status", "string", "The aggregate status of the containers in this pod."),
        col(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        AGE,
        wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
        wide("Node", "string", "NodeName indicates in which node this pod is scheduled."),
        wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node."),
        wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
    ]
}

/// Whether an init container runs alongside the app containers (a sidecar).
fn is_restartable(container: Option<&Value>) -> bool {
    container.is_some_and(|c| str_at(c, "/restartPolicy") == "Always")
}

fn has_condition(pod: &Value, type_: &str) -> bool {
    arr_at(pod, "/status/conditions").iter().any(|c| str_at(c, "/type") == type_ && str_at(c, "/status") == "True")
}

/// `isPodInitializedConditionTrue`: the first `Initialized` condition decides.
fn is_initialized(pod: &Value) -> bool {
    arr_at(pod, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == "Initialized")
        .is_some_and(|c| str_at(c, "/status") == "True")
}

/// When a container last stopped, for "5 (3m ago)".
fn last_termination(status: &Value) -> Option<jiff::Timestamp> {
    time_at(status, "/lastState/terminated/finishedAt")
}

/// The pod's STATUS reason and READY/RESTARTS counts, as `printPod` computes them.
struct PodSummary {
    reason: String,
    ready: usize,
    total: usize,
    restarts: i64,
    last_restart: Option<jiff::Timestamp>,
}

fn summarize_pod(pod: &Value) -> PodSummary {
    let init_specs = arr_at(pod, "/spec/initContainers");
    let init_spec = |name: &str| init_specs.iter().find(|c| str_at(c, "/name") == name);
    let total = arr_at(pod, "/spec/containers").len() + init_specs.iter().filter(|c| is_restartable(Some(c))).count();
    let mut ready = 0;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart: Option<jiff::Timestamp> = None;
    let mut last_sidecar_restart: Option<jiff::Timestamp> = None;

    let phase = str_at(pod, "/status/phase");
    let mut reason = match str_at(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if arr_at(pod, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let init_statuses = arr_at(pod, "/status/initContainerStatuses");
    let mut initializing = false;
    for (i, c) in init_statuses.iter().enumerate() {
        restarts = restarts.saturating_add(int_at(c, "/restartCount"));
        last_restart = last_restart.max(last_termination(c));
        let sidecar = is_restartable(init_spec(str_at(c, "/name")));
        if sidecar {
            sidecar_restarts = sidecar_restarts.saturating_add(int_at(c, "/restartCount"));
            last_sidecar_restart = last_sidecar_restart.max(last_termination(c));
        }
        let terminated = c.pointer("/state/terminated").filter(|t| !t.is_null());
        let waiting_reason = str_at(c, "/state/waiting/reason");
        if terminated.is_some_and(|t| int_at(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && bool_at(c, "/started") {
            if bool_at(c, "/ready") {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = match str_at(t, "/reason") {
                "" if int_at(t, "/signal") != 0 => format!("Init:Signal:{}", int_at(t, "/signal")),
                "" => format!("Init:ExitCode:{}", int_at(t, "/exitCode")),
                r => format!("Init:{r}"),
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || is_initialized(pod) {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in arr_at(pod, "/status/containerStatuses").iter().rev() {
            restarts = restarts.saturating_add(int_at(c, "/restartCount"));
            last_restart = last_restart.max(last_termination(c));
            let terminated = c.pointer("/state/terminated").filter(|t| !t.is_null());
            let waiting_reason = str_at(c, "/state/waiting/reason");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match str_at(t, "/reason") {
                    "" if int_at(t, "/signal") != 0 => format!("Signal:{}", int_at(t, "/signal")),
                    "" => format!("ExitCode:{}", int_at(t, "/exitCode")),
                    r => r.to_string(),
                };
            } else if bool_at(c, "/ready") && c.pointer("/state/running").is_some_and(|r| !r.is_null()) {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but another still runs is not done.
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") { "Running" } else { "NotReady" }.to_string();
        }
    }

    if crate::meta::is_deleting(pod) {
        if str_at(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".to_string();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_string();
        }
    }
    PodSummary { reason, ready, total, restarts, last_restart }
}

pub(super) fn pod_cells(pod: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let s = summarize_pod(pod);
    let restarts = match s.last_restart {
        Some(t) if s.restarts != 0 => format!("{} ({} ago)", s.restarts, since(Some(t), now)),
        _ => s.restarts.to_string(),
    };
    let or_none = |v: &str| if v.is_empty() { "<none>".to_string() } else { v.to_string() };
    let ip = opt_str_at(pod, "/status/podIPs/0/ip").unwrap_or_else(|| str_at(pod, "/status/podIP"));
    let gates = arr_at(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr_at(pod, "/status/conditions");
        let true_count = gates
            .iter()
            .filter(|g| {
                let type_ = str_at(g, "/conditionType");
                conditions.iter().find(|c| str_at(c, "/type") == type_).is_some_and(|c| str_at(c, "/status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        name(pod).into(),
        format!("{}/{}", s.ready, s.total).into(),
        s.reason.into(),
        restarts.into(),
        age(pod, now).into(),
        or_none(ip).into(),
        or_none(str_at(pod, "/spec/nodeName")).into(),
        or_none(str_at(pod, "/status/nominatedNodeName")).into(),
        readiness_gates.into(),
    ]
}

// === Node ===

pub(super) fn node_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Status", "string", "The status of the node"),
        col("Roles", "string", "The roles of the node"),
        AGE,
        col("Version", "string", "Kubelet Version reported by the node."),
        wide("Internal-IP", "string", "List of addresses reachable to the node."),
        wide("External-IP", "string", "List of addresses reachable to the node."),
        wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
        wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
        wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
    ]
}

/// `findNodeRoles`: `node-role.kubernetes.io/<role>` keys and `kubernetes.io/role` values.
fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (k, v) in crate::meta::labels(node) {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.insert(v.to_string());
        }
    }
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

fn node_address(node: &Value, type_: &str) -> String {
    arr_at(node, "/status/addresses")
        .iter()
        .find(|a| str_at(a, "/type") == type_)
        .map(|a| str_at(a, "/address").to_string())
        .unwrap_or_else(|| "<none>".to_string())
}

pub(super) fn node_cells(node: &Value, now: jiff::Timestamp) -> Vec<Value> {
    // The last Ready condition wins, as upstream builds a map by type.
    let mut status: Vec<&str> = match arr_at(node, "/status/conditions").iter().rev().find(|c| str_at(c, "/type") == "Ready") {
        Some(c) if str_at(c, "/status") == "True" => vec!["Ready"],
        Some(_) => vec!["NotReady"],
        None => vec!["Unknown"],
    };
    if bool_at(node, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }
    let info = |field: &str| match str_at(node, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        name(node).into(),
        status.join(",").into(),
        node_roles(node).into(),
        age(node, now).into(),
        str_at(node, "/status/nodeInfo/kubeletVersion").into(),
        node_address(node, "InternalIP").into(),
        node_address(node, "ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

// === Service ===

pub(super) fn service_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP."),
        col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
        col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
        col("Port(s)", "string", "The list of ports that are exposed by this service."),
        AGE,
        wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
    ]
}

/// `getServiceExternalIP` with wide output (the server never clips).
fn service_external_ip(svc: &Value, type_: &str) -> String {
    let external: Vec<&str> = arr_at(svc, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    match type_ {
        "ClusterIP" | "NodePort" if !external.is_empty() => external.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_string(),
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = arr_at(svc, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| match str_at(i, "/ip") {
                    "" => str_at(i, "/hostname"),
                    ip => ip,
                })
                .filter(|s| !s.is_empty())
                .collect();
            let mut all: Vec<&str> = ingress.into_iter().collect();
            all.extend(external);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// `makePortString`: `80/TCP`, or `80:30080/TCP` with a node port.
fn service_ports(svc: &Value) -> String {
    let s = arr_at(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = opt_str_at(p, "/protocol").unwrap_or("TCP");
            match int_at(p, "/nodePort") {
                n if n > 0 => format!("{}:{n}/{protocol}", int_at(p, "/port")),
                _ => format!("{}/{protocol}", int_at(p, "/port")),
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

pub(super) fn service_cells(svc: &Value, now: jiff::Timestamp) -> Vec<Value> {
    // `type` always has a value once defaulted.
    let type_ = opt_str_at(svc, "/spec/type").unwrap_or("ClusterIP");
    let cluster_ip = opt_str_at(svc, "/spec/clusterIPs/0")
        .or_else(|| opt_str_at(svc, "/spec/clusterIP"))
        .filter(|ip| !ip.is_empty())
        .unwrap_or("<none>");
    vec![
        name(svc).into(),
        type_.into(),
        cluster_ip.into(),
        service_external_ip(svc, type_).into(),
        service_ports(svc).into(),
        age(svc, now).into(),
        format_labels(map_at(svc, "/spec/selector")).into(),
    ]
}

// === Endpoints ===

pub(super) fn endpoints_columns() -> Vec<Column> {
    vec![NAME, col("Endpoints", "string", "The set of all endpoints is the union of all subsets."), AGE]
}

/// `formatEndpoints`: up to three `ip:port` pairs, then `+ N more...`.
fn format_endpoints(ep: &Value) -> String {
    const MAX: usize = 3;
    let subsets = arr_at(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    for ss in subsets {
        let addresses = arr_at(ss, "/addresses");
        let ports = arr_at(ss, "/ports");
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            list.extend(addresses.iter().take(MAX - list.len().min(MAX)).map(|a| str_at(a, "/ip").to_string()));
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    break;
                }
                let ip = str_at(a, "/ip");
                let port = int_at(port, "/port");
                list.push(if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") });
            }
        }
    }
    let joined = list.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

pub(super) fn endpoints_cells(ep: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![name(ep).into(), format_endpoints(ep).into(), age(ep, now).into()]
}

// === Namespace, ConfigMap, Secret, ServiceAccount ===

pub(super) fn namespace_columns() -> Vec<Column> {
    vec![NAME, col("Status", "string", "The status of the namespace"), AGE]
}

pub(super) fn namespace_cells(ns: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![name(ns).into(), str_at(ns, "/status/phase").into(), age(ns, now).into()]
}

pub(super) fn config_map_columns() -> Vec<Column> {
    vec![NAME, col("Data", "string", "Data contains the configuration data."), AGE]
}

pub(super) fn config_map_cells(cm: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let data = len_at(cm, "/data") + len_at(cm, "/binaryData");
    vec![name(cm).into(), data.into(), age(cm, now).into()]
}

pub(super) fn secret_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Type", "string", "Used to facilitate programmatic handling of secret data."),
        col("Data", "string", "Data contains the secret data."),
        AGE,
    ]
}

pub(super) fn secret_cells(secret: &Value, now: jiff::Timestamp) -> Vec<Value> {
    // `stringData` is merged into `data` on write; count both in case it was not.
    let keys: BTreeSet<&String> =
        map_at(secret, "/data").into_iter().chain(map_at(secret, "/stringData")).flat_map(|m| m.keys()).collect();
    vec![name(secret).into(), str_at(secret, "/type").into(), (keys.len() as i64).into(), age(secret, now).into()]
}

pub(super) fn service_account_columns() -> Vec<Column> {
    vec![NAME, col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), AGE]
}

pub(super) fn service_account_cells(sa: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![name(sa).into(), len_at(sa, "/secrets").into(), age(sa, now).into()]
}

// === Event ===

pub(super) fn event_columns() -> Vec<Column> {
    vec![
        col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
        col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
        col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
        col("Object", "string", "The object that this event is about."),
        wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
        wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
        col("Message", "string", "A human-readable description of the status of this operation."),
        wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
        wide("Count", "string", "The number of times this event has occurred."),
        Column { priority: 1, ..NAME },
    ]
}

/// Where `printEvent` finds its fields in each API's shape of an Event.
struct EventShape {
    regarding: &'static str,
    first_timestamp: &'static str,
    last_timestamp: &'static str,
    count: &'static str,
    message: &'static str,
    source: &'static str,
    reporting_controller: &'static str,
}

const CORE_EVENT: EventShape = EventShape {
    regarding: "/involvedObject",
    first_timestamp: "/firstTimestamp",
    last_timestamp: "/lastTimestamp",
    count: "/count",
    message: "/message",
    source: "/source",
    reporting_controller: "/reportingComponent",
};

const EVENTS_EVENT: EventShape = EventShape {
    regarding: "/regarding",
    first_timestamp: "/deprecatedFirstTimestamp",
    last_timestamp: "/deprecatedLastTimestamp",
    count: "/deprecatedCount",
    message: "/note",
    source: "/deprecatedSource",
    reporting_controller: "/reportingController",
};

fn print_event(ev: &Value, shape: &EventShape, now: jiff::Timestamp) -> Vec<Value> {
    let at = |ptr: &str, field: &str| format!("{ptr}/{field}");
    let first = match time_at(ev, shape.first_timestamp) {
        Some(t) => since(Some(t), now),
        None => since(time_at(ev, "/eventTime"), now),
    };
    let mut last = match time_at(ev, shape.last_timestamp) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int_at(ev, shape.count);
    if ev.pointer("/series").is_some_and(|s| !s.is_null()) {
        last = since(time_at(ev, "/series/lastObservedTime"), now);
        count = int_at(ev, "/series/count");
    } else if count == 0 {
        // Singleton events have no count in the events.k8s.io API.
        count = 1;
    }
    let kind = str_at(ev, &at(shape.regarding, "kind")).to_lowercase();
    let target = match str_at(ev, &at(shape.regarding, "name")) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = match str_at(ev, &at(shape.source, "component")) {
        "" => str_at(ev, shape.reporting_controller),
        c => c,
    };
    let instance = match str_at(ev, &at(shape.source, "host")) {
        "" => str_at(ev, "/reportingInstance"),
        h => h,
    };
    let source = if instance.is_empty() { component.to_string() } else { format!("{component}, {instance}") };
    vec![
        last.into(),
        str_at(ev, "/type").into(),
        str_at(ev, "/reason").into(),
        target.into(),
        str_at(ev, &at(shape.regarding, "fieldPath")).into(),
        source.into(),
        str_at(ev, shape.message).trim().into(),
        first.into(),
        count.into(),
        name(ev).into(),
    ]
}

pub(super) fn event_cells(ev: &Value, now: jiff::Timestamp) -> Vec<Value> {
    print_event(ev, &CORE_EVENT, now)
}

pub(super) fn events_event_cells(ev: &Value, now: jiff::Timestamp) -> Vec<Value> {
    print_event(ev, &EVENTS_EVENT, now)
}

// === PersistentVolume, PersistentVolumeClaim ===

/// `GetAccessModesAsString`: `RWO,ROX,RWX,RWOP`, in that order, without duplicates.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(mode, _)| has(mode))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// The storage class, from the beta annotation first.
fn storage_class(obj: &Value) -> &str {
    opt_str_at(obj, "/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .unwrap_or_else(|| str_at(obj, "/spec/storageClassName"))
}

/// A phase, or `Terminating` while the object is being deleted.
fn phase(obj: &Value) -> &str {
    if crate::meta::is_deleting(obj) {
        "Terminating"
    } else {
        str_at(obj, "/status/phase")
    }
}

fn unset_or<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    opt_str_at(obj, ptr).unwrap_or("<unset>")
}

pub(super) fn persistent_volume_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
        col("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
        col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
        col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
        col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
        col("StorageClass", "string", "StorageClass of the pv"),
        col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
        col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
        AGE,
        wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
    ]
}

pub(super) fn persistent_volume_cells(pv: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let claim = match pv.pointer("/spec/claimRef").filter(|c| !c.is_null()) {
        Some(c) => format!("{}/{}", str_at(c, "/namespace"), str_at(c, "/name")),
        None => String::new(),
    };
    vec![
        name(pv).into(),
        quantity_at(pv, "/spec/capacity/storage").into(),
        access_modes(arr_at(pv, "/spec/accessModes")).into(),
        str_at(pv, "/spec/persistentVolumeReclaimPolicy").into(),
        phase(pv).into(),
        claim.into(),
        storage_class(pv).into(),
        unset_or(pv, "/spec/volumeAttributesClassName").into(),
        str_at(pv, "/status/reason").into(),
        age(pv, now).into(),
        unset_or(pv, "/spec/volumeMode").into(),
    ]
}

pub(super) fn persistent_volume_claim_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
        col("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
        col("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
        col("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has."),
        col("StorageClass", "string", "StorageClass of the pvc"),
        col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
        AGE,
        wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim."),
    ]
}

pub(super) fn persistent_volume_claim_cells(pvc: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let volume = str_at(pvc, "/spec/volumeName");
    // Capacity and modes are only shown once the claim is bound to a volume.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (quantity_at(pvc, "/status/capacity/storage"), access_modes(arr_at(pvc, "/status/accessModes")))
    };
    vec![
        name(pvc).into(),
        phase(pvc).into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        storage_class(pvc).into(),
        unset_or(pvc, "/spec/volumeAttributesClassName").into(),
        age(pvc, now).into(),
        unset_or(pvc, "/spec/volumeMode").into(),
    ]
}

// === ResourceQuota ===

pub(super) fn resource_quota_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
        col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
        AGE,
    ]
}

pub(super) fn resource_quota_cells(quota: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    let mut resources: Vec<&String> = map_at(quota, "/status/hard").into_iter().flat_map(|m| m.keys()).collect();
    resources.sort();
    for r in resources {
        let escaped = r.replace('~', "~0").replace('/', "~1");
        let entry = format!(
            "{r}: {}/{}",
            quantity_at(quota, &format!("/status/used/{escaped}")),
            quantity_at(quota, &format!("/status/hard/{escaped}"))
        );
        let pieces: Vec<&str> = r.split('.').collect();
        if pieces.len() > 1 && pieces[0] == "limits" {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![name(quota).into(), requests.join(", ").into(), limits.join(", ").into(), age(quota, now).into()]
}
