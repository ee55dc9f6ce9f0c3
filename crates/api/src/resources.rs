//! The registry of every API resource Skiff serves.
//!
//! One static table drives discovery, routing, storage keys, OpenAPI and
//! validation, so adding a kind means adding one row here (and its columns,
//! defaults and validation in the sibling modules).

/// A subresource that a resource exposes under `/{name}/{sub}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subresource {
    /// `/status`: writes touch only `.status`.
    Status,
    /// `/scale`: an `autoscaling/v1` `Scale` view of `.spec.replicas`.
    Scale,
    /// `pods/binding`: assigns a pod to a node.
    Binding,
    /// `pods/eviction`: a `policy/v1` `Eviction`.
    Eviction,
    /// `namespaces/finalize`.
    Finalize,
    /// `pods/log`: a container's log, read from the node's agent.
    Log,
    /// `pods/exec`: a command in a container, streamed (WebSocket or SPDY).
    Exec,
    /// `pods/attach`: a running container's stdio, streamed.
    Attach,
    /// `pods/portforward`: TCP streams to the pod's ports.
    PortForward,
    /// `serviceaccounts/token`: an `authentication.k8s.io/v1` `TokenRequest`.
    Token,
}

impl Subresource {
    /// The path segment, as in `pods/status`.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Finalize => "finalize",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Token => "token",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "status" => Subresource::Status,
            "scale" => Subresource::Scale,
            "binding" => Subresource::Binding,
            "eviction" => Subresource::Eviction,
            "finalize" => Subresource::Finalize,
            "log" => Subresource::Log,
            "exec" => Subresource::Exec,
            "attach" => Subresource::Attach,
            "portforward" => Subresource::PortForward,
            "token" => Subresource::Token,
            _ => return None,
        })
    }
}

/// Everything the server needs to know about one resource (one row of the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceInfo {
    /// API group; `""` for the legacy core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Plural, lower-case resource name used in URLs (`deployments`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// OpenAPI definition name of the kind (`io.k8s.api.apps.v1.Deployment`).
    pub definition: &'static str,
    /// Whether `metadata.generation` tracks changes outside metadata and status.
    pub tracks_generation: bool,
    /// Whether the resource is writable with the usual verbs (false for read-only
    /// virtual resources).
    pub deletecollection: bool,
}

impl ResourceInfo {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key prefix for every object of this resource, ending in `/`.
    /// Namespaced objects live under `{prefix}{namespace}/{name}`,
    /// cluster-scoped ones under `{prefix}{name}`.
    pub fn key_prefix(&self) -> String {
        // events.k8s.io Events share storage with core Events (see `convert`).
        if crate::convert::stored_as_core_event(self) {
            return "/registry/core/events/".into();
        }
        let group = if self.group.is_empty() { "core" } else { self.group };
        format!("/registry/{}/{}/", group, self.plural)
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{}/{}", self.key_prefix(), ns, name),
            _ => format!("{}{}", self.key_prefix(), name),
        }
    }

    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The kind of the list object (`PodList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

use Subresource::*;

macro_rules! res {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $ns:expr,
     short = [$($short:expr),*], cats = [$($cat:expr),*], subs = [$($sub:expr),*],
     def = $def:expr, generation = $gen:expr) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$($sub),*],
            definition: $def,
            tracks_generation: $gen,
            deletecollection: true,
        }
    };
}

/// Every resource Skiff serves, in discovery order.
pub static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    res!("", "v1", "Namespace", "namespaces", "namespace", false, short = ["ns"], cats = [], subs = [Status, Finalize], def = "io.k8s.api.core.v1.Namespace", generation = false),
    res!("", "v1", "Pod", "pods", "pod", true, short = ["po"], cats = ["all"], subs = [Status, Binding, Eviction, Log, Exec, Attach, PortForward], def = "io.k8s.api.core.v1.Pod", generation = false),
    res!("", "v1", "Service", "services", "service", true, short = ["svc"], cats = ["all"], subs = [Status], def = "io.k8s.api.core.v1.Service", generation = false),
    res!("", "v1", "Endpoints", "endpoints", "endpoints", true, short = ["ep"], cats = [], subs = [], def = "io.k8s.api.core.v1.Endpoints", generation = false),
    res!("", "v1", "ConfigMap", "configmaps", "configmap", true, short = ["cm"], cats = [], subs = [], def = "io.k8s.api.core.v1.ConfigMap", generation = false),
    res!("", "v1", "Secret", "secrets", "secret", true, short = [], cats = [], subs = [], def = "io.k8s.api.core.v1.Secret", generation = false),
    res!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, short = ["sa"], cats = [], subs = [Token], def = "io.k8s.api.core.v1.ServiceAccount", generation = false),
    res!("", "v1", "Node", "nodes", "node", false, short = ["no"], cats = [], subs = [Status], def = "io.k8s.api.core.v1.Node", generation = false),
    res!("", "v1", "Event", "events", "event", true, short = ["ev"], cats = [], subs = [], def = "io.k8s.api.core.v1.Event", generation = false),
    res!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false, short = ["pv"], cats = [], subs = [Status], def = "io.k8s.api.core.v1.PersistentVolume", generation = false),
    res!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, short = ["pvc"], cats = [], subs = [Status], def = "io.k8s.api.core.v1.PersistentVolumeClaim", generation = false),
    res!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true, short = ["quota"], cats = [], subs = [Status], def = "io.k8s.api.core.v1.ResourceQuota", generation = false),
    res!("", "v1", "LimitRange", "limitranges", "limitrange", true, short = ["limits"], cats = [], subs = [], def = "io.k8s.api.core.v1.LimitRange", generation = false),
    // apps/v1
    res!("apps", "v1", "Deployment", "deployments", "deployment", true, short = ["deploy"], cats = ["all"], subs = [Status, Scale], def = "io.k8s.api.apps.v1.Deployment", generation = true),
    res!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, short = ["rs"], cats = ["all"], subs = [Status, Scale], def = "io.k8s.api.apps.v1.ReplicaSet", generation = true),
    res!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, short = ["sts"], cats = ["all"], subs = [Status, Scale], def = "io.k8s.api.apps.v1.StatefulSet", generation = true),
    res!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, short = ["ds"], cats = ["all"], subs = [Status], def = "io.k8s.api.apps.v1.DaemonSet", generation = true),
    res!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true, short = [], cats = [], subs = [], def = "io.k8s.api.apps.v1.ControllerRevision", generation = false),
    // batch/v1
    res!("batch", "v1", "Job", "jobs", "job", true, short = [], cats = ["all"], subs = [Status], def = "io.k8s.api.batch.v1.Job", generation = true),
    res!("batch", "v1", "CronJob", "cronjobs", "cronjob", true, short = ["cj"], cats = ["all"], subs = [Status], def = "io.k8s.api.batch.v1.CronJob", generation = true),
    // discovery.k8s.io/v1
    res!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, short = [], cats = [], subs = [], def = "io.k8s.api.discovery.v1.EndpointSlice", generation = false),
    // coordination.k8s.io/v1
    res!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, short = [], cats = [], subs = [], def = "io.k8s.api.coordination.v1.Lease", generation = false),
    // events.k8s.io/v1
    res!("events.k8s.io", "v1", "Event", "events", "event", true, short = ["ev"], cats = [], subs = [], def = "io.k8s.api.events.v1.Event", generation = false),
    // node.k8s.io/v1
    res!("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass", false, short = [], cats = [], subs = [], def = "io.k8s.api.node.v1.RuntimeClass", generation = false),
    // networking.k8s.io/v1
    res!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, short = ["ing"], cats = [], subs = [Status], def = "io.k8s.api.networking.v1.Ingress", generation = true),
    res!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false, short = [], cats = [], subs = [], def = "io.k8s.api.networking.v1.IngressClass", generation = true),
    res!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, short = ["netpol"], cats = [], subs = [], def = "io.k8s.api.networking.v1.NetworkPolicy", generation = true),
    // policy/v1
    res!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, short = ["pdb"], cats = [], subs = [Status], def = "io.k8s.api.policy.v1.PodDisruptionBudget", generation = true),
    // scheduling.k8s.io/v1
    res!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false, short = ["pc"], cats = [], subs = [], def = "io.k8s.api.scheduling.v1.PriorityClass", generation = false),
    // storage.k8s.io/v1
    res!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false, short = ["sc"], cats = [], subs = [], def = "io.k8s.api.storage.v1.StorageClass", generation = false),
];

/// Looks a resource up by group, version and plural name.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks a resource up by group and kind (any served version).
pub fn lookup_kind(group: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.group == group && r.kind == kind)
}

/// The API groups (other than core), each with its versions, in discovery order.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version)
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resources of one group version.
pub fn in_group_version<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_unique_per_group_version() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "{} listed twice",
                    a.plural
                );
            }
        }
    }

    #[test]
    fn cluster_scoped_kinds_are_the_upstream_ones() {
        let cluster: Vec<_> = RESOURCES.iter().filter(|r| !r.namespaced).map(|r| r.kind).collect();
        assert_eq!(cluster, ["Namespace", "Node", "PersistentVolume", "RuntimeClass", "IngressClass", "PriorityClass", "StorageClass"]);
    }

    #[test]
    fn keys_separate_namespaces_and_groups() {
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "web"), "/registry/core/pods/default/web");
        let nodes = lookup("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/core/nodes/n1");
        assert_eq!(lookup("apps", "v1", "deployments").unwrap().api_version(), "apps/v1");
    }
}
