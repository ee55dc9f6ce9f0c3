//! Defaulting of the fields Kubernetes defaults.
//!
//! [`apply_defaults`] fills in what kube-apiserver 1.33 fills in when it decodes a v1
//! object: the hand-written `SetDefaults_*` functions of `pkg/apis/{core,apps,batch,
//! discovery,networking}/v1/defaults.go`, the declarative defaults, and the generated
//! `zz_generated.defaults.go` walk that applies them to nested types (so every pod
//! template gets the pod spec defaults). It also does the few normalisations upstream
//! performs while converting or preparing a create, which users see in the stored
//! object: Secret `stringData` folded into `data`, Service `clusterIP`/`clusterIPs`
//! kept in sync with IP families chosen, and the Job selector generated from its uid.
//!
//! Every default applies only where the field is unset, so applying twice is the same
//! as applying once, and nothing the user wrote is replaced. "Unset" follows the Go
//! types: an empty string or a zero number counts as unset for plain fields, only
//! absence (or `null`) for optional pointer fields.
//!
//! Pods also get the default not-ready/unreachable tolerations of the
//! `DefaultTolerationSeconds` admission plugin, which upstream enables by default.
//!
//! Not defaulted here, because upstream does it elsewhere: pod `priority` and
//! `serviceAccountName` (admission), cluster IP and node port allocation (the Service
//! REST storage).

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::ResourceInfo;

/// Fills in defaults in place.
pub fn apply_defaults(res: &ResourceInfo, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    match (res.group, res.kind) {
        ("", "Pod") => pod(obj),
        ("", "Service") => service(obj),
        ("", "Endpoints") => endpoints(obj),
        ("", "Secret") => secret(obj),
        ("", "Namespace") => namespace(obj),
        ("", "Node") => node(obj),
        ("", "PersistentVolume") => persistent_volume(obj),
        ("", "PersistentVolumeClaim") => persistent_volume_claim(obj),
        ("", "LimitRange") => limit_range(obj),
        ("apps", "Deployment") => deployment(obj),
        ("apps", "ReplicaSet") => replica_set(obj),
        ("apps", "StatefulSet") => stateful_set(obj),
        ("apps", "DaemonSet") => daemon_set(obj),
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => cron_job(obj),
        ("discovery.k8s.io", "EndpointSlice") => endpoint_slice(obj),
        ("networking.k8s.io", "NetworkPolicy") => network_policy(obj),
        ("networking.k8s.io", "IngressClass") => ingress_class(obj),
        ("policy", "PodDisruptionBudget") => pod_disruption_budget(obj),
        ("scheduling.k8s.io", "PriorityClass") => priority_class(obj),
        ("storage.k8s.io", "StorageClass") => storage_class(obj),
        _ => {}
    }
}

// === setting fields only where unset ===

/// The object at `key`, created empty when absent or not an object.
fn child<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    let m = v.as_object_mut().expect("defaults only walk objects");
    let c = m.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !c.is_object() {
        *c = Value::Object(Map::new());
    }
    c
}

/// The object at `key` if there is one.
fn existing<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    v.get_mut(key).filter(|c| c.is_object())
}

/// Each object in the list at `key`.
fn each(v: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(list) = v.get_mut(key).and_then(Value::as_array_mut) {
        for item in list.iter_mut().filter(|i| i.is_object()) {
            f(item);
        }
    }
}

fn is_unset(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

/// An optional (pointer) field: set when absent or `null`.
fn or_set(v: &mut Value, key: &str, default: Value) {
    if let Some(m) = v.as_object_mut() {
        if is_unset(m.get(key)) {
            m.insert(key.to_string(), default);
        }
    }
}

/// A plain string field: set when absent, `null` or empty.
fn or_set_str(v: &mut Value, key: &str, default: &str) {
    if let Some(m) = v.as_object_mut() {
        if m.get(key).and_then(Value::as_str).is_none_or(str::is_empty) && m.get(key).is_none_or(|x| x.is_null() || x.is_string()) {
            m.insert(key.to_string(), Value::from(default));
        }
    }
}

/// A plain integer field: set when absent, `null` or zero.
fn or_set_int(v: &mut Value, key: &str, default: i64) {
    if let Some(m) = v.as_object_mut() {
        if m.get(key).is_none_or(|x| x.is_null() || x.as_i64() == Some(0)) {
            m.insert(key.to_string(), Value::from(default));
        }
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

// === pods ===

/// v1 keeps the deprecated `serviceAccount` beside `serviceAccountName`: conversion
/// reads the old name when the new one is empty and always writes both, so a client
/// that sends only one of them changes nothing.
fn service_account_alias(spec: &mut Value) {
    let name = match str_of(spec, "serviceAccountName") {
        "" => str_of(spec, "serviceAccount").to_string(),
        n => n.to_string(),
    };
    if !name.is_empty() {
        spec["serviceAccountName"] = json!(name);
        spec["serviceAccount"] = json!(name);
    }
}

/// `SetObjectDefaults_Pod`: the pod-only defaults, then the pod spec's.
fn pod(obj: &mut Value) {
    let spec = child(obj, "spec");
    // Requests default to limits for each resource limited but not requested.
    for list in ["containers", "initContainers"] {
        each(spec, list, |c| {
            let Some(limits) = c.pointer("/resources/limits").and_then(Value::as_object).cloned() else { return };
            let requests = child(child(c, "resources"), "requests");
            for (k, v) in limits {
                or_set(requests, &k, v);
            }
        });
    }
    or_set(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for list in ["containers", "initContainers"] {
            each(spec, list, |c| {
                each(c, "ports", |p| {
                    let cp = p.get("containerPort").cloned().unwrap_or(Value::Null);
                    if p.get("hostPort").is_none_or(|h| h.is_null() || h.as_i64() == Some(0)) && !cp.is_null() {
                        p["hostPort"] = cp;
                    }
                });
            });
        }
    }
    pod_spec(spec);
    // Admission acts on pods the server is storing, which have their uid by the
    // time defaults apply; bare bodies (a validation fixture, say) stay as written.
    if obj.pointer("/metadata/uid").and_then(Value::as_str).is_some_and(|u| !u.is_empty()) {
        default_toleration_seconds(child(obj, "spec"));
    }
}

/// How long pods stay bound to a node that is not ready or unreachable, by default
/// (the `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds` of kube-apiserver).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The `DefaultTolerationSeconds` admission plugin, which upstream enables by
/// default: a pod that does not already tolerate the `node.kubernetes.io/not-ready`
/// or `node.kubernetes.io/unreachable` NoExecute taint (a toleration with that key
/// or no key, and NoExecute or no effect) tolerates it for five minutes, so the
/// taint eviction controller moves its pods off a failed node after that long.
/// It runs on every pod write the server stores, as upstream's does on create and
/// update; on pods that have the tolerations it changes nothing.
fn default_toleration_seconds(spec: &mut Value) {
    let existing = spec.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let tolerates = |taint: &str| {
        existing.iter().any(|t| {
            let key = str_of(t, "key");
            let effect = str_of(t, "effect");
            (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let mut added = Vec::new();
    for taint in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        if !tolerates(taint) {
            added.push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}));
        }
    }
    if added.is_empty() {
        return;
    }
    match spec.get_mut("tolerations").and_then(Value::as_array_mut) {
        Some(list) => list.extend(added),
        None => spec["tolerations"] = Value::Array(added),
    }
}

/// Every pod template (`spec.template`) gets the pod spec defaults.
fn pod_template(template: &mut Value) {
    pod_spec(child(template, "spec"));
}

/// `SetDefaults_PodSpec` and the nested defaults of volumes and containers.
fn pod_spec(spec: &mut Value) {
    service_account_alias(spec);
    or_set_str(spec, "dnsPolicy", "ClusterFirst");
    or_set_str(spec, "restartPolicy", "Always");
    or_set(spec, "securityContext", json!({}));
    or_set(spec, "terminationGracePeriodSeconds", json!(30));
    or_set_str(spec, "schedulerName", "default-scheduler");
    each(spec, "volumes", volume);
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        each(spec, list, container);
    }
}

/// The keys of a `VolumeSource`; a volume with none of them is an `emptyDir`.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// The `0644` file mode of projected files.
const DEFAULT_MODE: i64 = 0o644;

/// `SetDefaults_Volume` and the defaults of each source.
fn volume(v: &mut Value) {
    if VOLUME_SOURCES.iter().all(|k| is_unset(v.get(*k))) {
        v["emptyDir"] = json!({});
    }
    if let Some(hp) = existing(v, "hostPath") {
        or_set(hp, "type", json!(""));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = existing(v, source) {
            or_set(s, "defaultMode", json!(DEFAULT_MODE));
        }
    }
    if let Some(d) = existing(v, "downwardAPI") {
        downward_api_items(d);
    }
    if let Some(p) = existing(v, "projected") {
        each(p, "sources", |s| {
            if let Some(d) = existing(s, "downwardAPI") {
                downward_api_items(d);
            }
            if let Some(t) = existing(s, "serviceAccountToken") {
                or_set(t, "expirationSeconds", json!(3600));
            }
        });
    }
    if let Some(t) = v.get_mut("ephemeral").and_then(|e| existing(e, "volumeClaimTemplate")) {
        or_set(child(t, "spec"), "volumeMode", json!("Filesystem"));
    }
    if let Some(image) = existing(v, "image") {
        let policy = pull_policy_for(str_of(image, "reference"));
        or_set_str(image, "pullPolicy", policy);
    }
}

fn downward_api_items(d: &mut Value) {
    each(d, "items", |item| {
        if let Some(fr) = existing(item, "fieldRef") {
            or_set_str(fr, "apiVersion", "v1");
        }
    });
}

/// `SetDefaults_Container` plus ports, env, probes and lifecycle hooks.
fn container(c: &mut Value) {
    let policy = pull_policy_for(str_of(c, "image"));
    or_set_str(c, "imagePullPolicy", policy);
    or_set_str(c, "terminationMessagePath", "/dev/termination-log");
    or_set_str(c, "terminationMessagePolicy", "File");
    each(c, "ports", |p| or_set_str(p, "protocol", "TCP"));
    each(c, "env", |e| {
        if let Some(fr) = e.get_mut("valueFrom").and_then(|vf| existing(vf, "fieldRef")) {
            or_set_str(fr, "apiVersion", "v1");
        }
    });
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = existing(c, key) {
            probe(p);
        }
    }
    if let Some(l) = existing(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = existing(l, hook).and_then(|h| existing(h, "httpGet")) {
                http_get(h);
            }
        }
    }
}

/// `SetDefaults_Probe` and its handler's defaults.
fn probe(p: &mut Value) {
    or_set_int(p, "timeoutSeconds", 1);
    or_set_int(p, "periodSeconds", 10);
    or_set_int(p, "successThreshold", 1);
    or_set_int(p, "failureThreshold", 3);
    if let Some(h) = existing(p, "httpGet") {
        http_get(h);
    }
    if let Some(g) = existing(p, "grpc") {
        or_set(g, "service", json!(""));
    }
}

fn http_get(h: &mut Value) {
    or_set_str(h, "path", "/");
    or_set_str(h, "scheme", "HTTP");
}

/// `Always` for `:latest` or an untagged, undigested image; `IfNotPresent` otherwise
/// (including references that do not parse, as upstream ignores the parse error).
fn pull_policy_for(image: &str) -> &'static str {
    if image.is_empty() {
        return "IfNotPresent";
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let tag = name[last_slash..].split_once(':').map(|(_, t)| t);
    let repo = match tag {
        Some(t) => &name[..name.len() - t.len() - 1],
        None => name,
    };
    // Upper case is allowed in the registry host only; anything else fails to parse.
    let path = if repo.contains('/') {
        repo.split_once('/').map(|(host, rest)| if host.contains(['.', ':']) || host == "localhost" { rest } else { repo }).unwrap_or(repo)
    } else {
        repo
    };
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return "IfNotPresent";
    }
    match tag {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if digest => "IfNotPresent",
        None => "Always",
    }
}

// === core/v1 ===

/// `SetDefaults_Service`, with the cluster IP fields normalised and IP families chosen
/// the way the Service storage does on a single-stack IPv4 cluster.
fn service(obj: &mut Value) {
    let spec = child(obj, "spec");
    or_set_str(spec, "sessionAffinity", "None");
    match str_of(spec, "sessionAffinity") {
        "None" => {
            if let Some(m) = spec.as_object_mut() {
                m.remove("sessionAffinityConfig");
            }
        }
        "ClientIP" if is_unset(spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")) => {
            spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 10800}});
        }
        _ => {}
    }
    or_set_str(spec, "type", "ClusterIP");
    each(spec, "ports", |p| {
        or_set_str(p, "protocol", "TCP");
        let unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(v) => v.as_i64() == Some(0),
        };
        if unset {
            p["targetPort"] = p.get("port").cloned().unwrap_or(json!(0));
        }
    });
    let typ = str_of(spec, "type").to_string();
    let externally_accessible = match typ.as_str() {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" => spec.get("externalIPs").and_then(Value::as_array).is_some_and(|a| !a.is_empty()),
        _ => false,
    };
    if externally_accessible {
        or_set_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(typ.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        or_set(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if typ == "LoadBalancer" {
        or_set(spec, "allocateLoadBalancerNodePorts", json!(true));
        if let Some(ingress) = obj.pointer_mut("/status/loadBalancer/ingress").and_then(Value::as_array_mut) {
            for ing in ingress.iter_mut().filter(|i| i.is_object()) {
                if !str_of(ing, "ip").is_empty() {
                    or_set(ing, "ipMode", json!("VIP"));
                }
            }
        }
    }
    let spec = child(obj, "spec");
    if typ == "ExternalName" {
        return;
    }
    // clusterIP and clusterIPs[0] say the same thing; fill whichever is missing.
    let cluster_ip = str_of(spec, "clusterIP").to_string();
    let ips_empty = spec.get("clusterIPs").and_then(Value::as_array).is_none_or(|a| a.is_empty());
    if !cluster_ip.is_empty() && ips_empty {
        spec["clusterIPs"] = json!([cluster_ip]);
    } else if cluster_ip.is_empty() && !ips_empty {
        if let Some(first) = spec["clusterIPs"][0].as_str().map(String::from) {
            spec["clusterIP"] = json!(first);
        }
    }
    let headless = str_of(spec, "clusterIP") == "None";
    let has_selector = spec.get("selector").and_then(Value::as_object).is_some_and(|s| !s.is_empty());
    // Headless services without a selector may adopt any family.
    let policy = if headless && !has_selector { "RequireDualStack" } else { "SingleStack" };
    or_set(spec, "ipFamilyPolicy", json!(policy));
    if spec.get("ipFamilies").and_then(Value::as_array).is_none_or(|a| a.is_empty()) {
        let v6 = str_of(spec, "clusterIP").contains(':');
        spec["ipFamilies"] = json!([if v6 { "IPv6" } else { "IPv4" }]);
    }
}

/// `SetDefaults_Endpoints`.
fn endpoints(obj: &mut Value) {
    each(obj, "subsets", |ss| each(ss, "ports", |p| or_set_str(p, "protocol", "TCP")));
}

/// `SetDefaults_Secret`, after folding `stringData` into `data` as the v1 conversion
/// does (a `stringData` key wins over the same `data` key).
fn secret(obj: &mut Value) {
    if let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
        let data = child(obj, "data");
        for (k, v) in string_data {
            let raw = v.as_str().unwrap_or("");
            data[k] = json!(base64::engine::general_purpose::STANDARD.encode(raw.as_bytes()));
        }
    } else if let Some(m) = obj.as_object_mut() {
        // A `null` stringData carries nothing.
        if m.get("stringData").is_some_and(Value::is_null) {
            m.remove("stringData");
        }
    }
    or_set_str(obj, "type", "Opaque");
}

/// `SetDefaults_Namespace` (the name label), the `kubernetes` finalizer the namespace
/// strategy adds on create, and `SetDefaults_NamespaceStatus`.
fn namespace(obj: &mut Value) {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    if !name.is_empty() {
        let labels = child(child(obj, "metadata"), "labels");
        labels["kubernetes.io/metadata.name"] = json!(name);
    }
    or_set(child(obj, "spec"), "finalizers", json!(["kubernetes"]));
    or_set_str(child(obj, "status"), "phase", "Active");
}

/// `SetDefaults_NodeStatus`: allocatable defaults to capacity.
fn node(obj: &mut Value) {
    let Some(status) = existing(obj, "status") else { return };
    if is_unset(status.get("allocatable")) {
        if let Some(cap) = status.get("capacity").filter(|c| c.is_object()).cloned() {
            status["allocatable"] = cap;
        }
    }
}

/// `SetDefaults_PersistentVolume`.
fn persistent_volume(obj: &mut Value) {
    or_set_str(child(obj, "status"), "phase", "Pending");
    let spec = child(obj, "spec");
    or_set_str(spec, "persistentVolumeReclaimPolicy", "Retain");
    or_set(spec, "volumeMode", json!("Filesystem"));
    if let Some(hp) = existing(spec, "hostPath") {
        or_set(hp, "type", json!(""));
    }
}

/// `SetDefaults_PersistentVolumeClaim` and `SetDefaults_PersistentVolumeClaimSpec`.
fn persistent_volume_claim(obj: &mut Value) {
    or_set_str(child(obj, "status"), "phase", "Pending");
    or_set(child(obj, "spec"), "volumeMode", json!("Filesystem"));
}

/// `SetDefaults_LimitRangeItem`: for containers, the default limit falls back to the
/// max, and the default request to the default limit, then to the min.
fn limit_range(obj: &mut Value) {
    let Some(spec) = existing(obj, "spec") else { return };
    each(spec, "limits", |item| {
        if str_of(item, "type") != "Container" {
            return;
        }
        let max = item.get("max").and_then(Value::as_object).cloned().unwrap_or_default();
        let min = item.get("min").and_then(Value::as_object).cloned().unwrap_or_default();
        let default = child(item, "default");
        for (k, v) in max {
            or_set(default, &k, v);
        }
        let default = default.as_object().cloned().unwrap_or_default();
        let request = child(item, "defaultRequest");
        for (k, v) in default.into_iter().chain(min) {
            or_set(request, &k, v);
        }
        // Empty maps are not serialised upstream.
        for key in ["default", "defaultRequest"] {
            if item.get(key).and_then(Value::as_object).is_some_and(Map::is_empty) {
                if let Some(m) = item.as_object_mut() {
                    m.remove(key);
                }
            }
        }
    });
}

// === policy/v1 and scheduling.k8s.io/v1 ===

/// The status counters of a PodDisruptionBudget are plain `int32`s upstream, so every
/// stored budget carries them, zero until the disruption controller counts.
fn pod_disruption_budget(obj: &mut Value) {
    let status = child(obj, "status");
    for key in ["disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"] {
        or_set(status, key, json!(0));
    }
}

/// `SetDefaults_PriorityClass`, and the plain `int32` value that is always written.
fn priority_class(obj: &mut Value) {
    or_set(obj, "value", json!(0));
    or_set(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
}

// === networking.k8s.io/v1 ===

/// `SetDefaults_NetworkPolicy` and `SetDefaults_NetworkPolicyPort`. A policy that
/// names no `policyTypes` isolates ingress, and egress too once it has egress
/// rules; ports without a protocol are TCP. `podSelector` is a non-pointer struct
/// upstream, so the stored object always has one (`{}` selects every pod).
fn network_policy(obj: &mut Value) {
    let spec = child(obj, "spec");
    or_set(spec, "podSelector", json!({}));
    if spec.get("policyTypes").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        let has_egress = spec.get("egress").and_then(Value::as_array).is_some_and(|e| !e.is_empty());
        spec["policyTypes"] = if has_egress { json!(["Ingress", "Egress"]) } else { json!(["Ingress"]) };
    }
    for rules in ["ingress", "egress"] {
        each(spec, rules, |rule| each(rule, "ports", |p| or_set(p, "protocol", json!("TCP"))));
    }
}

/// `SetDefaults_IngressClass`: a parameters reference is cluster-scoped unless it
/// says otherwise.
fn ingress_class(obj: &mut Value) {
    if let Some(params) = existing(child(obj, "spec"), "parameters") {
        or_set(params, "scope", json!("Cluster"));
    }
}

// === storage.k8s.io/v1 ===

/// `SetDefaults_StorageClass`: volumes are deleted with their claims and bound as
/// soon as the claim exists, unless the class says otherwise.
fn storage_class(obj: &mut Value) {
    or_set(obj, "reclaimPolicy", json!("Delete"));
    or_set(obj, "volumeBindingMode", json!("Immediate"));
}

// === apps/v1 ===

/// `SetDefaults_Deployment`.
fn deployment(obj: &mut Value) {
    let spec = child(obj, "spec");
    or_set(spec, "replicas", json!(1));
    let strategy = child(spec, "strategy");
    or_set_str(strategy, "type", "RollingUpdate");
    if str_of(strategy, "type") == "RollingUpdate" {
        let ru = child(strategy, "rollingUpdate");
        or_set(ru, "maxUnavailable", json!("25%"));
        or_set(ru, "maxSurge", json!("25%"));
    }
    or_set(spec, "revisionHistoryLimit", json!(10));
    or_set(spec, "progressDeadlineSeconds", json!(600));
    pod_template(child(spec, "template"));
}

/// `SetDefaults_ReplicaSet`.
fn replica_set(obj: &mut Value) {
    let spec = child(obj, "spec");
    or_set(spec, "replicas", json!(1));
    pod_template(child(spec, "template"));
}

/// `SetDefaults_StatefulSet`, with claim templates defaulted like claims.
fn stateful_set(obj: &mut Value) {
    let spec = child(obj, "spec");
    or_set_str(spec, "podManagementPolicy", "OrderedReady");
    let us = child(spec, "updateStrategy");
    if str_of(us, "type").is_empty() {
        us["type"] = json!("RollingUpdate");
        or_set(us, "rollingUpdate", json!({}));
    }
    if str_of(us, "type") == "RollingUpdate" {
        if let Some(ru) = existing(us, "rollingUpdate") {
            or_set(ru, "partition", json!(0));
        }
    }
    let policy = child(spec, "persistentVolumeClaimRetentionPolicy");
    or_set_str(policy, "whenDeleted", "Retain");
    or_set_str(policy, "whenScaled", "Retain");
    or_set(spec, "replicas", json!(1));
    or_set(spec, "revisionHistoryLimit", json!(10));
    pod_template(child(spec, "template"));
    each(spec, "volumeClaimTemplates", persistent_volume_claim);
}

/// `SetDefaults_DaemonSet`.
fn daemon_set(obj: &mut Value) {
    let spec = child(obj, "spec");
    let us = child(spec, "updateStrategy");
    or_set_str(us, "type", "RollingUpdate");
    if str_of(us, "type") == "RollingUpdate" {
        let ru = child(us, "rollingUpdate");
        or_set(ru, "maxUnavailable", json!(1));
        or_set(ru, "maxSurge", json!(0));
    }
    or_set(spec, "revisionHistoryLimit", json!(10));
    pod_template(child(spec, "template"));
}

// === batch/v1 ===

const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// `SetDefaults_Job`, and the selector the job strategy generates on create.
fn job(obj: &mut Value) {
    let spec = child(obj, "spec");
    if is_unset(spec.get("completions")) && is_unset(spec.get("parallelism")) {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    or_set(spec, "parallelism", json!(1));
    let backoff = if is_unset(spec.get("backoffLimitPerIndex")) { json!(6) } else { json!(i32::MAX) };
    or_set(spec, "backoffLimit", backoff);
    or_set(spec, "completionMode", json!("NonIndexed"));
    or_set(spec, "suspend", json!(false));
    let has_failure_policy = !is_unset(spec.get("podFailurePolicy"));
    if let Some(pfp) = existing(spec, "podFailurePolicy") {
        each(pfp, "rules", |rule| each(rule, "onPodConditions", |c| or_set_str(c, "status", "True")));
    }
    or_set(spec, "podReplacementPolicy", json!(if has_failure_policy { "Failed" } else { "TerminatingOrFailed" }));
    pod_template(child(spec, "template"));
    // The Job's labels default to its template's, as written by the user.
    copy_template_labels(obj);
    generate_selector(obj);
    // A template without labels of its own now has the generated ones.
    copy_template_labels(obj);
}

fn copy_template_labels(obj: &mut Value) {
    let Some(labels) = obj.pointer("/spec/template/metadata/labels").filter(|l| l.as_object().is_some_and(|m| !m.is_empty())).cloned()
    else {
        return;
    };
    let metadata = child(obj, "metadata");
    if metadata.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty) {
        metadata["labels"] = labels;
    }
}

/// `generateSelector`: unless the user manages the selector, pods get the Job's name
/// and uid as labels and the selector picks the uid. Needs `metadata.uid`, which the
/// server sets before defaulting a create.
fn generate_selector(obj: &mut Value) {
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    if uid.is_empty() || obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let spec = child(obj, "spec");
    let labels = child(child(child(spec, "template"), "metadata"), "labels");
    for (key, value) in
        [(LEGACY_JOB_NAME_LABEL, &name), (JOB_NAME_LABEL, &name), (LEGACY_CONTROLLER_UID_LABEL, &uid), (CONTROLLER_UID_LABEL, &uid)]
    {
        or_set(labels, key, json!(value));
    }
    let match_labels = child(child(spec, "selector"), "matchLabels");
    or_set(match_labels, CONTROLLER_UID_LABEL, json!(uid));
}

/// `SetDefaults_CronJob`; the job template gets only the pod template defaults.
fn cron_job(obj: &mut Value) {
    let spec = child(obj, "spec");
    or_set_str(spec, "concurrencyPolicy", "Allow");
    or_set(spec, "suspend", json!(false));
    or_set(spec, "successfulJobsHistoryLimit", json!(3));
    or_set(spec, "failedJobsHistoryLimit", json!(1));
    pod_template(child(child(child(spec, "jobTemplate"), "spec"), "template"));
}

// === discovery.k8s.io/v1 ===

/// `SetDefaults_EndpointPort`.
fn endpoint_slice(obj: &mut Value) {
    each(obj, "ports", |p| {
        or_set(p, "name", json!(""));
        or_set(p, "protocol", json!("TCP"));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{lookup, lookup_kind};
    use crate::RESOURCES;

    fn defaulted(group: &str, kind: &str, mut v: Value) -> Value {
        apply_defaults(lookup_kind(group, kind).unwrap(), &mut v);
        v
    }

    #[test]
    fn pods_get_the_upstream_spec_defaults() {
        let p = defaulted("", "Pod", json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}));
        let s = &p["spec"];
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["dnsPolicy"], "ClusterFirst");
        assert_eq!(s["schedulerName"], "default-scheduler");
        assert_eq!(s["terminationGracePeriodSeconds"], 30);
        assert_eq!(s["securityContext"], json!({}));
        assert_eq!(s["enableServiceLinks"], true);
        let c = &s["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert!(s.get("priority").is_none());
    }

    #[test]
    fn pods_tolerate_not_ready_and_unreachable_nodes_for_five_minutes() {
        let stored = |spec: Value| defaulted("", "Pod", json!({"metadata": {"uid": "u-1"}, "spec": spec}));
        let p = stored(json!({"containers": [{"name": "c", "image": "i"}]}));
        assert_eq!(
            p["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        // A pod's own toleration of either taint is kept and not doubled.
        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2});
        let p = stored(json!({"containers": [], "tolerations": [own.clone()]}));
        assert_eq!(p["spec"]["tolerations"][0], own);
        assert_eq!(p["spec"]["tolerations"][1]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 2);
        // Tolerating everything (no key, no effect) covers both.
        let p = stored(json!({"containers": [], "tolerations": [{"operator": "Exists"}]}));
        assert_eq!(p["spec"]["tolerations"], json!([{"operator": "Exists"}]));
        // A NoSchedule toleration of the key does not count.
        let p = stored(json!({"containers": [], "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]}));
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 3);
        // Bodies the server is not storing, and templates, are left alone.
        let bare = defaulted("", "Pod", json!({"spec": {"containers": []}}));
        assert!(bare["spec"].get("tolerations").is_none());
        let d = defaulted("apps", "Deployment", json!({"metadata": {"uid": "u-2"}, "spec": {"template": {"spec": {"containers": []}}}}));
        assert!(d["spec"]["template"]["spec"].get("tolerations").is_none());
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy_for("nginx"), "Always");
        assert_eq!(pull_policy_for("nginx:latest"), "Always");
        assert_eq!(pull_policy_for("nginx:1.27"), "IfNotPresent");
        assert_eq!(pull_policy_for("localhost:5000/app"), "Always");
        assert_eq!(pull_policy_for("localhost:5000/app:v1"), "IfNotPresent");
        assert_eq!(pull_policy_for("nginx@sha256:abc"), "IfNotPresent");
        assert_eq!(pull_policy_for("Nginx"), "IfNotPresent");
        assert_eq!(pull_policy_for("Registry.example.com/app"), "Always");
    }

    #[test]
    fn nested_pod_fields_are_defaulted() {
        let p = defaulted(
            "",
            "Pod",
            json!({"spec": {
                "containers": [{"name": "c", "image": "i:1",
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "livenessProbe": {"httpGet": {"port": 80}},
                    "readinessProbe": {"grpc": {"port": 9}},
                    "resources": {"limits": {"cpu": "1"}}}],
                "volumes": [{"name": "a"}, {"name": "b", "configMap": {"name": "x"}}, {"name": "c", "secret": {"secretName": "s"}}, {"name": "d", "hostPath": {"path": "/x"}}]}}),
        );
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["readinessProbe"]["grpc"]["service"], "");
        assert_eq!(c["resources"]["requests"], json!({"cpu": "1"}));
        let v = &p["spec"]["volumes"];
        assert_eq!(v[0]["emptyDir"], json!({}));
        assert_eq!(v[1]["configMap"]["defaultMode"], 420);
        assert_eq!(v[2]["secret"]["defaultMode"], 420);
        assert_eq!(v[3]["hostPath"]["type"], "");
    }

    #[test]
    fn host_network_pods_publish_container_ports() {
        let p = defaulted(
            "",
            "Pod",
            json!({"spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 8080}]}]}}),
        );
        assert_eq!(p["spec"]["containers"][0]["ports"][0]["hostPort"], 8080);
    }

    #[test]
    fn services_default_type_affinity_ports_and_families() {
        let s = defaulted(
            "",
            "Service",
            json!({"spec": {"selector": {"app": "a"}, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}),
        );
        let spec = &s["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
        assert_eq!(spec["ports"][1]["targetPort"], "dns");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert!(spec.get("externalTrafficPolicy").is_none());
        assert!(spec.get("clusterIP").is_none());
    }

    #[test]
    fn node_ports_are_externally_accessible() {
        let s = defaulted("", "Service", json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}));
        assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(s["spec"]["allocateLoadBalancerNodePorts"], true);
        let s = defaulted("", "Service", json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}));
        assert!(s["spec"].get("ipFamilies").is_none());
        assert!(s["spec"].get("internalTrafficPolicy").is_none());
    }

    #[test]
    fn cluster_ip_and_cluster_ips_agree() {
        let s = defaulted("", "Service", json!({"spec": {"clusterIP": "None"}}));
        assert_eq!(s["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(s["spec"]["ipFamilyPolicy"], "RequireDualStack");
        let s = defaulted("", "Service", json!({"spec": {"clusterIPs": ["10.96.0.9"], "ports": [{"port": 1}]}}));
        assert_eq!(s["spec"]["clusterIP"], "10.96.0.9");
    }

    #[test]
    fn deployments_get_strategy_and_limits() {
        let d = defaulted("apps", "Deployment", json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}));
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["strategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}));
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        assert!(spec["template"]["spec"].get("enableServiceLinks").is_none());
        let r = defaulted("apps", "Deployment", json!({"spec": {"strategy": {"type": "Recreate"}}}));
        assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn stateful_sets_and_daemon_sets_get_their_strategies() {
        let s = defaulted("apps", "StatefulSet", json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {}}]}}));
        let spec = &s["spec"];
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(spec["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
        assert_eq!(spec["persistentVolumeClaimRetentionPolicy"], json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
        assert_eq!(spec["volumeClaimTemplates"][0]["spec"]["volumeMode"], "Filesystem");
        assert_eq!(spec["volumeClaimTemplates"][0]["status"]["phase"], "Pending");
        let d = defaulted("apps", "DaemonSet", json!({}));
        assert_eq!(d["spec"]["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    }

    #[test]
    fn jobs_get_counts_and_a_generated_selector() {
        let j = defaulted(
            "batch",
            "Job",
            json!({"metadata": {"name": "pi", "uid": "u1"}, "spec": {"template": {"spec": {"restartPolicy": "Never"}}}}),
        );
        let spec = &j["spec"];
        assert_eq!(
            (spec["completions"].clone(), spec["parallelism"].clone(), spec["backoffLimit"].clone()),
            (json!(1), json!(1), json!(6))
        );
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(spec["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}));
        assert_eq!(
            spec["template"]["metadata"]["labels"],
            json!({"job-name": "pi", "batch.kubernetes.io/job-name": "pi", "controller-uid": "u1", "batch.kubernetes.io/controller-uid": "u1"})
        );
        assert_eq!(j["metadata"]["labels"], spec["template"]["metadata"]["labels"]);
        let p = defaulted("batch", "Job", json!({"spec": {"parallelism": 3}}));
        assert!(p["spec"].get("completions").is_none());
        assert!(p["spec"].get("selector").is_none(), "no uid, no generated selector");
    }

    #[test]
    fn job_labels_copy_the_users_template_labels() {
        let j = defaulted(
            "batch",
            "Job",
            json!({"metadata": {"name": "pi", "uid": "u1"}, "spec": {"template": {"metadata": {"labels": {"app": "pi"}}}}}),
        );
        assert_eq!(j["metadata"]["labels"], json!({"app": "pi"}));
        let m = defaulted(
            "batch",
            "Job",
            json!({"metadata": {"name": "pi", "uid": "u1"}, "spec": {"manualSelector": true, "selector": {"matchLabels": {"app": "pi"}}}}),
        );
        assert_eq!(m["spec"]["selector"], json!({"matchLabels": {"app": "pi"}}));
    }

    #[test]
    fn cron_jobs_get_policies_and_limits() {
        let c = defaulted("batch", "CronJob", json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {}}}}}}));
        let spec = &c["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        assert_eq!(spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
    }

    #[test]
    fn core_kinds_get_their_defaults() {
        let ns = defaulted("", "Namespace", json!({"metadata": {"name": "team"}}));
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "team");
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        let sec = defaulted("", "Secret", json!({"stringData": {"a": "hi"}, "data": {"b": "eA=="}}));
        assert_eq!(sec["type"], "Opaque");
        assert_eq!(sec["data"], json!({"b": "eA==", "a": "aGk="}));
        assert!(sec.get("stringData").is_none());
        let pvc = defaulted("", "PersistentVolumeClaim", json!({"spec": {}}));
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["status"]["phase"], "Pending");
        let pv = defaulted("", "PersistentVolume", json!({"spec": {"hostPath": {"path": "/d"}}}));
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["spec"]["hostPath"]["type"], "");
        let ep = defaulted("", "Endpoints", json!({"subsets": [{"ports": [{"port": 80}]}]}));
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
        let es = defaulted("discovery.k8s.io", "EndpointSlice", json!({"ports": [{"port": 80}]}));
        assert_eq!(es["ports"][0], json!({"port": 80, "name": "", "protocol": "TCP"}));
        let n = defaulted("", "Node", json!({"status": {"capacity": {"cpu": "4"}}}));
        assert_eq!(n["status"]["allocatable"], json!({"cpu": "4"}));
        let lr = defaulted(
            "",
            "LimitRange",
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}}),
        );
        assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(lr["spec"]["limits"][0]["defaultRequest"], json!({"cpu": "2", "memory": "1Mi"}));
    }

    #[test]
    fn the_deprecated_service_account_field_mirrors_the_name() {
        let p = defaulted("", "Pod", json!({"spec": {"serviceAccountName": "builder"}}));
        assert_eq!(p["spec"]["serviceAccount"], "builder");
        let old = defaulted("", "Pod", json!({"spec": {"serviceAccount": "legacy"}}));
        assert_eq!(old["spec"]["serviceAccountName"], "legacy");
        let none = defaulted("", "Pod", json!({"spec": {}}));
        assert!(none["spec"].get("serviceAccount").is_none());
    }

    #[test]
    fn budgets_count_from_zero_and_classes_preempt_lower_priorities() {
        let pdb = defaulted("policy", "PodDisruptionBudget", json!({"spec": {"minAvailable": 1}}));
        assert_eq!(pdb["status"], json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}));
        let kept = defaulted("policy", "PodDisruptionBudget", json!({"status": {"disruptionsAllowed": 2}}));
        assert_eq!(kept["status"]["disruptionsAllowed"], 2);
        let pc = defaulted("scheduling.k8s.io", "PriorityClass", json!({"metadata": {"name": "high"}}));
        assert_eq!((pc["value"].clone(), pc["preemptionPolicy"].clone()), (json!(0), json!("PreemptLowerPriority")));
        let never = defaulted("scheduling.k8s.io", "PriorityClass", json!({"value": 5, "preemptionPolicy": "Never"}));
        assert_eq!((never["value"].clone(), never["preemptionPolicy"].clone()), (json!(5), json!("Never")));
    }

    #[test]
    fn network_policies_isolate_ingress_and_egress_only_when_they_have_egress_rules() {
        let bare = defaulted("networking.k8s.io", "NetworkPolicy", json!({"metadata": {"name": "deny"}}));
        assert_eq!(bare["spec"], json!({"podSelector": {}, "policyTypes": ["Ingress"]}));
        let egress = defaulted("networking.k8s.io", "NetworkPolicy", json!({"spec": {"podSelector": {}, "egress": [{}]}}));
        assert_eq!(egress["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        let empty_egress = defaulted("networking.k8s.io", "NetworkPolicy", json!({"spec": {"egress": []}}));
        assert_eq!(empty_egress["spec"]["policyTypes"], json!(["Ingress"]));
        let only_egress = defaulted("networking.k8s.io", "NetworkPolicy", json!({"spec": {"policyTypes": ["Egress"], "ingress": [{}]}}));
        assert_eq!(only_egress["spec"]["policyTypes"], json!(["Egress"]), "what the user chose is kept");
    }

    #[test]
    fn network_policy_ports_are_tcp_unless_they_say_otherwise() {
        let np = defaulted(
            "networking.k8s.io",
            "NetworkPolicy",
            json!({"spec": {"ingress": [{"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}], "egress": [{"ports": [{}]}]}}),
        );
        assert_eq!(np["spec"]["ingress"][0]["ports"], json!([{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]));
        assert_eq!(np["spec"]["egress"][0]["ports"], json!([{"protocol": "TCP"}]));
    }

    #[test]
    fn ingress_class_parameters_are_cluster_scoped_by_default() {
        let ic = defaulted("networking.k8s.io", "IngressClass", json!({"spec": {"controller": "skiff.io/gateway", "parameters": {"kind": "Config", "name": "c"}}}));
        assert_eq!(ic["spec"]["parameters"]["scope"], "Cluster");
        let none = defaulted("networking.k8s.io", "IngressClass", json!({"spec": {"controller": "skiff.io/gateway"}}));
        assert!(none["spec"].get("parameters").is_none());
    }

    #[test]
    fn storage_classes_delete_their_volumes_and_bind_at_once_by_default() {
        let sc = defaulted("storage.k8s.io", "StorageClass", json!({"metadata": {"name": "fast"}, "provisioner": "example.com/disk"}));
        assert_eq!((sc["reclaimPolicy"].clone(), sc["volumeBindingMode"].clone()), (json!("Delete"), json!("Immediate")));
        let kept = defaulted("storage.k8s.io", "StorageClass", json!({"reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"}));
        assert_eq!((kept["reclaimPolicy"].clone(), kept["volumeBindingMode"].clone()), (json!("Retain"), json!("WaitForFirstConsumer")));
    }

    #[test]
    fn user_values_are_kept() {
        let p = defaulted(
            "",
            "Pod",
            json!({"spec": {"restartPolicy": "Never", "dnsPolicy": "Default", "terminationGracePeriodSeconds": 0, "enableServiceLinks": false,
                "containers": [{"name": "c", "image": "i", "imagePullPolicy": "Never", "ports": [{"containerPort": 1, "protocol": "UDP"}]}]}}),
        );
        assert_eq!(p["spec"]["restartPolicy"], "Never");
        assert_eq!(p["spec"]["dnsPolicy"], "Default");
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 0);
        assert_eq!(p["spec"]["enableServiceLinks"], false);
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(p["spec"]["containers"][0]["ports"][0]["protocol"], "UDP");
        let d = defaulted("apps", "Deployment", json!({"spec": {"replicas": 0, "strategy": {"rollingUpdate": {"maxSurge": 2}}}}));
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"], json!({"maxSurge": 2, "maxUnavailable": "25%"}));
    }

    #[test]
    fn defaults_are_idempotent_for_every_kind() {
        for res in RESOURCES {
            for obj in [crate::validation::fixture(res), json!({}), json!({"spec": {}, "metadata": {"name": "x", "uid": "u"}})] {
                let mut once = obj.clone();
                apply_defaults(res, &mut once);
                let mut twice = once.clone();
                apply_defaults(res, &mut twice);
                assert_eq!(once, twice, "{} defaults are not idempotent", res.kind);
            }
        }
    }

    #[test]
    fn non_objects_are_left_alone() {
        let mut v = json!("x");
        apply_defaults(lookup("", "v1", "pods").unwrap(), &mut v);
        assert_eq!(v, json!("x"));
    }
}
