//! Patch metadata of the lists (and a few maps and structs) in the built-in kinds.
//!
//! Upstream keeps this metadata as Go struct tags and markers in `k8s.io/api`
//! (`patchStrategy:"merge" patchMergeKey:"name"`, `+listType=map`, `+listMapKey=name`,
//! `+mapType=atomic`, `+structType=atomic`) and publishes it in the OpenAPI documents
//! as `x-kubernetes-*` extensions. The k8s-openapi schemas we build from do not carry
//! it, so the table below restates it for every kind Skiff serves (Kubernetes 1.33).
//! Strategic merge patch reads the strategy and merge key; server-side apply reads the
//! list type and map keys.

/// The patch metadata of one list (or map) field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListMeta {
    /// `x-kubernetes-patch-strategy`: `merge`, `retainKeys`, `merge,retainKeys`, or `replace`.
    pub patch_strategy: Option<&'static str>,
    /// `x-kubernetes-patch-merge-key`.
    pub patch_merge_key: Option<&'static str>,
    /// `x-kubernetes-list-type`: `atomic`, `set` or `map`. On a map field, `atomic`
    /// stands for `x-kubernetes-map-type: atomic` (the map is owned as a whole).
    pub list_type: Option<&'static str>,
    /// `x-kubernetes-list-map-keys`.
    pub list_map_keys: &'static [&'static str],
}

/// How server-side apply identifies the elements of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// The list is one value, owned and replaced as a whole.
    Atomic,
    /// Scalars identified by their value (`v:<json>` in `fieldsV1`).
    Set,
    /// Objects identified by the values of these keys (`k:{...}` in `fieldsV1`).
    Map(&'static [&'static str]),
}

impl ListMeta {
    /// Whether the strategy includes `merge` (elements are merged, not replaced).
    pub fn merges(&self) -> bool {
        self.patch_strategy.is_some_and(|s| s.split(',').any(|p| p == "merge"))
    }

    /// The list type as server-side apply sees it. An explicit `x-kubernetes-list-type`
    /// wins; otherwise a `merge` strategy makes an associative list keyed by the merge
    /// key (or a set without one), as upstream's schema conversion does; anything else
    /// is atomic.
    pub fn list_type(&self) -> ListType {
        match self.list_type {
            Some("map") if !self.list_map_keys.is_empty() => ListType::Map(self.list_map_keys),
            Some("set") => ListType::Set,
            Some(_) => ListType::Atomic,
            None if self.merges() => match self.patch_merge_key {
                Some(_) if !self.list_map_keys.is_empty() => ListType::Map(self.list_map_keys),
                Some(_) => ListType::Atomic,
                None => ListType::Set,
            },
            None => ListType::Atomic,
        }
    }

    /// Whether a map or struct field is owned as a whole (`x-kubernetes-map-type: atomic`).
    pub fn is_atomic(&self) -> bool {
        self.list_type == Some("atomic")
    }
}

/// Patch metadata of `field` in the definition `definition`, if the field has any.
pub fn field_meta(definition: &str, field: &str) -> Option<ListMeta> {
    TABLE.binary_search_by(|(d, f, _)| (*d, *f).cmp(&(definition, field))).ok().map(|i| TABLE[i].2)
}

/// Whether the definition is a struct that server-side apply owns as a whole
/// (`+structType=atomic` upstream, published as `x-kubernetes-map-type: atomic`).
pub fn is_atomic_struct(definition: &str) -> bool {
    ATOMIC_STRUCTS.binary_search(&definition).is_ok()
}

/// The default of a key field of an associative list, used when an element omits it
/// (upstream publishes these as OpenAPI defaults; the protocol of a port is the one
/// that matters: `k:{"containerPort":80,"protocol":"TCP"}`).
pub fn key_default(definition: &str, field: &str) -> Option<&'static str> {
    match (definition, field) {
        ("io.k8s.api.core.v1.ContainerPort", "protocol") | ("io.k8s.api.core.v1.ServicePort", "protocol") => Some("TCP"),
        _ => None,
    }
}

/// Every field with patch metadata, sorted by (definition, field) for binary search.
#[rustfmt::skip]
static TABLE: &[(&str, &str, ListMeta)] = &[
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("type"), list_type: Some("map"), list_map_keys: &["type"] }),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", ListMeta { patch_strategy: Some("retainKeys"), patch_merge_key: None, list_type: None, list_map_keys: &[] }),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("type"), list_type: Some("map"), list_map_keys: &["type"] }),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("type"), list_type: Some("map"), list_map_keys: &["type"] }),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "volumeClaimTemplates", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("type"), list_type: Some("map"), list_map_keys: &["type"] }),
    ("io.k8s.api.batch.v1.CronJobStatus", "active", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("type"), list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.batch.v1.PodFailurePolicy", "rules", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", "values", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("set"), list_map_keys: &[] }),
    ("io.k8s.api.batch.v1.PodFailurePolicyRule", "onPodConditions", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.batch.v1.SuccessPolicy", "rules", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.batch.v1.UncountedTerminatedPods", "failed", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("set"), list_map_keys: &[] }),
    ("io.k8s.api.batch.v1.UncountedTerminatedPods", "succeeded", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("set"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.Capabilities", "add", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.Capabilities", "drop", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.CephFSPersistentVolumeSource", "monitors", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.CephFSVolumeSource", "monitors", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ConfigMapProjection", "items", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ConfigMapVolumeSource", "items", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.Container", "args", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.Container", "command", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.Container", "env", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("name"), list_type: Some("map"), list_map_keys: &["name"] }),
    ("io.k8s.api.core.v1.Container", "envFrom", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.Container", "ports", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("containerPort"), list_type: Some("map"), list_map_keys: &["containerPort", "protocol"] }),
    ("io.k8s.api.core.v1.Container", "resizePolicy", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.Container", "volumeDevices", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("devicePath"), list_type: Some("map"), list_map_keys: &["devicePath"] }),
    ("io.k8s.api.core.v1.Container", "volumeMounts", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("mountPath"), list_type: Some("map"), list_map_keys: &["mountPath"] }),
    ("io.k8s.api.core.v1.ContainerImage", "names", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("name"), list_type: Some("map"), list_map_keys: &["name"] }),
    ("io.k8s.api.core.v1.ContainerStatus", "volumeMounts", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("mountPath"), list_type: Some("map"), list_map_keys: &["mountPath"] }),
    ("io.k8s.api.core.v1.DownwardAPIProjection", "items", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.DownwardAPIVolumeSource", "items", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.EndpointSubset", "addresses", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.EndpointSubset", "notReadyAddresses", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.EndpointSubset", "ports", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.Endpoints", "subsets", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.EphemeralContainer", "args", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.EphemeralContainer", "command", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("name"), list_type: Some("map"), list_map_keys: &["name"] }),
    ("io.k8s.api.core.v1.EphemeralContainer", "envFrom", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("containerPort"), list_type: Some("map"), list_map_keys: &["containerPort", "protocol"] }),
    ("io.k8s.api.core.v1.EphemeralContainer", "resizePolicy", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("devicePath"), list_type: Some("map"), list_map_keys: &["devicePath"] }),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("mountPath"), list_type: Some("map"), list_map_keys: &["mountPath"] }),
    ("io.k8s.api.core.v1.ExecAction", "command", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.FCVolumeSource", "targetWWNs", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.FCVolumeSource", "wwids", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.HTTPGetAction", "httpHeaders", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.HostAlias", "hostnames", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ISCSIPersistentVolumeSource", "portals", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ISCSIVolumeSource", "portals", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.LimitRangeSpec", "limits", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.LinuxContainerUser", "supplementalGroups", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.LoadBalancerIngress", "ports", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.LoadBalancerStatus", "ingress", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.NamespaceSpec", "finalizers", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("type"), list_type: Some("map"), list_map_keys: &["type"] }),
    ("io.k8s.api.core.v1.NodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.NodeSelector", "nodeSelectorTerms", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.NodeSelectorRequirement", "values", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.NodeSelectorTerm", "matchExpressions", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.NodeSelectorTerm", "matchFields", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", ListMeta { patch_strategy: Some("merge"), patch_merge_key: None, list_type: Some("set"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.NodeSpec", "taints", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("type"), list_type: Some("map"), list_map_keys: &["type"] }),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("type"), list_type: Some("map"), list_map_keys: &["type"] }),
    ("io.k8s.api.core.v1.NodeStatus", "images", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.NodeStatus", "runtimeHandlers", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.NodeStatus", "volumesAttached", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.NodeStatus", "volumesInUse", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "accessModes", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "accessModes", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("type"), list_type: Some("map"), list_map_keys: &["type"] }),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "accessModes", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "mountOptions", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodAffinity", "preferredDuringSchedulingIgnoredDuringExecution", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodAffinity", "requiredDuringSchedulingIgnoredDuringExecution", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodAffinityTerm", "matchLabelKeys", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodAffinityTerm", "mismatchLabelKeys", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodAffinityTerm", "namespaces", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodDNSConfig", "nameservers", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodDNSConfig", "options", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodDNSConfig", "searches", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodSecurityContext", "supplementalGroups", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodSecurityContext", "sysctls", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodSpec", "containers", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("name"), list_type: Some("map"), list_map_keys: &["name"] }),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("name"), list_type: Some("map"), list_map_keys: &["name"] }),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("ip"), list_type: Some("map"), list_map_keys: &["ip"] }),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("name"), list_type: Some("map"), list_map_keys: &["name"] }),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("name"), list_type: Some("map"), list_map_keys: &["name"] }),
    ("io.k8s.api.core.v1.PodSpec", "nodeSelector", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodSpec", "readinessGates", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", ListMeta { patch_strategy: Some("merge,retainKeys"), patch_merge_key: Some("name"), list_type: Some("map"), list_map_keys: &["name"] }),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("name"), list_type: Some("map"), list_map_keys: &["name"] }),
    ("io.k8s.api.core.v1.PodSpec", "tolerations", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("topologyKey"), list_type: Some("map"), list_map_keys: &["topologyKey", "whenUnsatisfiable"] }),
    ("io.k8s.api.core.v1.PodSpec", "volumes", ListMeta { patch_strategy: Some("merge,retainKeys"), patch_merge_key: Some("name"), list_type: Some("map"), list_map_keys: &["name"] }),
    ("io.k8s.api.core.v1.PodStatus", "conditions", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("type"), list_type: Some("map"), list_map_keys: &["type"] }),
    ("io.k8s.api.core.v1.PodStatus", "containerStatuses", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodStatus", "ephemeralContainerStatuses", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("ip"), list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodStatus", "initContainerStatuses", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("ip"), list_type: Some("map"), list_map_keys: &["ip"] }),
    ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", ListMeta { patch_strategy: Some("merge,retainKeys"), patch_merge_key: Some("name"), list_type: Some("map"), list_map_keys: &["name"] }),
    ("io.k8s.api.core.v1.ProjectedVolumeSource", "sources", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.RBDPersistentVolumeSource", "monitors", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.RBDVolumeSource", "monitors", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ResourceQuotaSpec", "scopes", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ResourceRequirements", "claims", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("map"), list_map_keys: &["name"] }),
    ("io.k8s.api.core.v1.ResourceStatus", "resources", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("map"), list_map_keys: &["resourceID"] }),
    ("io.k8s.api.core.v1.ScopeSelector", "matchExpressions", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ScopedResourceSelectorRequirement", "values", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.SecretProjection", "items", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.SecretVolumeSource", "items", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ServiceAccount", "imagePullSecrets", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("name"), list_type: Some("map"), list_map_keys: &["name"] }),
    ("io.k8s.api.core.v1.ServiceSpec", "clusterIPs", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ServiceSpec", "externalIPs", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ServiceSpec", "loadBalancerSourceRanges", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("port"), list_type: Some("map"), list_map_keys: &["port", "protocol"] }),
    ("io.k8s.api.core.v1.ServiceSpec", "selector", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("type"), list_type: Some("map"), list_map_keys: &["type"] }),
    ("io.k8s.api.core.v1.TopologySpreadConstraint", "matchLabelKeys", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.discovery.v1.Endpoint", "addresses", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("set"), list_map_keys: &[] }),
    ("io.k8s.api.discovery.v1.EndpointHints", "forNodes", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.discovery.v1.EndpointHints", "forZones", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.discovery.v1.EndpointSlice", "ports", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.HTTPIngressRuleValue", "paths", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.IPBlock", "except", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.IngressLoadBalancerIngress", "ports", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.IngressLoadBalancerStatus", "ingress", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.IngressSpec", "rules", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.IngressSpec", "tls", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.IngressTLS", "hosts", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.NetworkPolicyEgressRule", "ports", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.NetworkPolicyEgressRule", "to", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.NetworkPolicyIngressRule", "from", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.NetworkPolicyIngressRule", "ports", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "egress", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "ingress", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "policyTypes", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.node.v1.Scheduling", "nodeSelector", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.node.v1.Scheduling", "tolerations", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector", ListMeta { patch_strategy: Some("replace"), patch_merge_key: None, list_type: None, list_map_keys: &[] }),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("type"), list_type: Some("map"), list_map_keys: &["type"] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "serverAddressByClientCIDRs", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "versions", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList", "groups", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "categories", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "shortNames", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList", "resources", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "serverAddressByClientCIDRs", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "versions", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", "dryRun", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "matchExpressions", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement", "values", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", ListMeta { patch_strategy: Some("merge"), patch_merge_key: None, list_type: Some("set"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "managedFields", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", ListMeta { patch_strategy: Some("merge"), patch_merge_key: Some("uid"), list_type: Some("map"), list_map_keys: &["uid"] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "details", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails", "causes", ListMeta { patch_strategy: None, patch_merge_key: None, list_type: Some("atomic"), list_map_keys: &[] }),
];

/// Structs that server-side apply owns as a whole, sorted.
static ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.EndpointAddress",
    "io.k8s.api.core.v1.EndpointPort",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.ScopeSelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.discovery.v1.EndpointPort",
    "io.k8s.api.networking.v1.ServiceBackendPort",
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::schemas;

    #[test]
    fn every_entry_names_a_field_of_the_schema() {
        let s = schemas();
        for (definition, field, _) in TABLE {
            let def = s.get(definition).unwrap_or_else(|| panic!("no definition {definition}"));
            assert!(s.property(def, field).is_some(), "{definition} has no field {field}");
        }
        for definition in ATOMIC_STRUCTS {
            assert!(s.get(definition).is_some(), "no definition {definition}");
        }
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(TABLE.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
        assert!(ATOMIC_STRUCTS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn list_map_keys_name_fields_of_the_element() {
        let s = schemas();
        for (definition, field, meta) in TABLE {
            let def = s.get(definition).unwrap();
            let keys: Vec<&str> = meta.list_map_keys.iter().copied().chain(meta.patch_merge_key).collect();
            if keys.is_empty() {
                continue;
            }
            let element = s.field_definition(def, field).unwrap_or_else(|| panic!("{definition}.{field} has no element type"));
            let element = s.get(element).unwrap();
            for key in keys {
                assert!(s.property(element, key).is_some(), "{definition}.{field}: key {key} is not a field");
            }
        }
    }

    #[test]
    fn merge_keyed_lists_declare_their_map_keys() {
        for (definition, field, meta) in TABLE {
            if meta.patch_merge_key.is_some() && meta.list_type.is_none() {
                assert!(!meta.list_map_keys.is_empty(), "{definition}.{field}");
            }
        }
    }

    #[test]
    fn containers_merge_by_name() {
        let m = field_meta("io.k8s.api.core.v1.PodSpec", "containers").unwrap();
        assert_eq!(m.patch_strategy, Some("merge"));
        assert_eq!(m.patch_merge_key, Some("name"));
        assert_eq!(m.list_type(), ListType::Map(&["name"]));
    }

    #[test]
    fn container_ports_are_keyed_by_port_and_protocol() {
        let m = field_meta("io.k8s.api.core.v1.Container", "ports").unwrap();
        assert_eq!(m.patch_merge_key, Some("containerPort"));
        assert_eq!(m.list_map_keys, &["containerPort", "protocol"]);
        let s = field_meta("io.k8s.api.core.v1.ServiceSpec", "ports").unwrap();
        assert_eq!((s.patch_merge_key, s.list_map_keys), (Some("port"), &["port", "protocol"][..]));
    }

    #[test]
    fn finalizers_are_a_merged_set_and_tolerations_are_atomic() {
        let f = field_meta("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers").unwrap();
        assert!(f.merges());
        assert_eq!(f.list_type(), ListType::Set);
        let t = field_meta("io.k8s.api.core.v1.PodSpec", "tolerations").unwrap();
        assert!(!t.merges());
        assert_eq!(t.list_type(), ListType::Atomic);
        let o = field_meta("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences").unwrap();
        assert_eq!(o.list_type(), ListType::Map(&["uid"]));
    }

    #[test]
    fn volumes_retain_keys_and_node_selector_is_atomic() {
        let v = field_meta("io.k8s.api.core.v1.PodSpec", "volumes").unwrap();
        assert_eq!(v.patch_strategy, Some("merge,retainKeys"));
        assert!(v.merges());
        assert!(field_meta("io.k8s.api.core.v1.PodSpec", "nodeSelector").unwrap().is_atomic());
        assert!(is_atomic_struct("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"));
        assert!(!is_atomic_struct("io.k8s.api.core.v1.PodSpec"));
        assert_eq!(field_meta("io.k8s.api.core.v1.PodSpec", "hostname"), None);
    }
}
