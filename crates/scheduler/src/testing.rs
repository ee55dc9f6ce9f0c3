//! Builders for test fixtures, as upstream's `st.MakePod().Name("p").Node("n").Obj()`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus, Pod,
    PodAffinity, PodAffinityTerm, PodAntiAffinity, PodSpec, PodStatus, PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration,
    TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta, Time};

fn list(items: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    items.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `matchLabels` selector.
pub fn selector(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector { match_labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()), match_expressions: None }
}

/// A `matchExpressions` selector of one requirement.
pub fn selector_expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
    LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement { key: key.into(), operator: op.into(), values: Some(strings(values)) }]),
    }
}

/// A node selector term of label expressions `(key, operator, values)`.
pub fn term(exprs: &[(&str, &str, &[&str])]) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(
            exprs.iter().map(|(k, op, vs)| NodeSelectorRequirement { key: k.to_string(), operator: op.to_string(), values: Some(strings(vs)) }).collect(),
        ),
        match_fields: None,
    }
}

/// A node selector term on fields (`metadata.name`).
pub fn field_term(exprs: &[(&str, &str, &[&str])]) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(
            exprs.iter().map(|(k, op, vs)| NodeSelectorRequirement { key: k.to_string(), operator: op.to_string(), values: Some(strings(vs)) }).collect(),
        ),
    }
}

// === impl MakePod ===

pub struct MakePod {
    pod: Pod,
}

impl MakePod {
    pub fn new(name: &str) -> MakePod {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("{name}-uid")),
                ..Default::default()
            },
            spec: Some(PodSpec { scheduler_name: Some("default-scheduler".into()), ..Default::default() }),
            status: Some(PodStatus::default()),
        };
        MakePod { pod }
    }

    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.as_mut().unwrap()
    }

    fn affinity(&mut self) -> &mut Affinity {
        self.spec().affinity.get_or_insert_with(Default::default)
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.pod.metadata.namespace = Some(ns.into());
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.pod.metadata.labels.get_or_insert_with(Default::default).insert(k.into(), v.into());
        self
    }

    pub fn container(mut self, requests: &[(&str, &str)]) -> Self {
        let n = self.spec().containers.len();
        self.spec().containers.push(Container {
            name: format!("c{n}"),
            resources: (!requests.is_empty()).then(|| ResourceRequirements { requests: Some(list(requests)), ..Default::default() }),
            ..Default::default()
        });
        self
    }

    pub fn init_container(mut self, requests: &[(&str, &str)]) -> Self {
        self.spec().init_containers.get_or_insert_with(Vec::new).push(Container {
            name: "init".into(),
            resources: Some(ResourceRequirements { requests: Some(list(requests)), ..Default::default() }),
            ..Default::default()
        });
        self
    }

    /// A restartable init container.
    pub fn sidecar(mut self, requests: &[(&str, &str)]) -> Self {
        self.spec().init_containers.get_or_insert_with(Vec::new).push(Container {
            name: "sidecar".into(),
            restart_policy: Some("Always".into()),
            resources: Some(ResourceRequirements { requests: Some(list(requests)), ..Default::default() }),
            ..Default::default()
        });
        self
    }

    pub fn overhead(mut self, overhead: &[(&str, &str)]) -> Self {
        self.spec().overhead = Some(list(overhead));
        self
    }

    pub fn host_port(mut self, port: i32, protocol: &str, host_ip: &str) -> Self {
        if self.spec().containers.is_empty() {
            self = self.container(&[]);
        }
        self.spec().containers[0].ports.get_or_insert_with(Vec::new).push(ContainerPort {
            container_port: port,
            host_port: Some(port),
            protocol: Some(protocol.into()),
            host_ip: (!host_ip.is_empty()).then(|| host_ip.into()),
            name: None,
        });
        self
    }

    pub fn priority(mut self, p: i32) -> Self {
        self.spec().priority = Some(p);
        self
    }

    pub fn preemption_never(mut self) -> Self {
        self.spec().preemption_policy = Some("Never".into());
        self
    }

    pub fn node(mut self, node: &str) -> Self {
        self.spec().node_name = Some(node.into());
        self
    }

    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.spec().node_selector.get_or_insert_with(Default::default).insert(k.into(), v.into());
        self
    }

    pub fn required_node_affinity(mut self, terms: Vec<NodeSelectorTerm>) -> Self {
        self.affinity().node_affinity.get_or_insert_with(NodeAffinity::default).required_during_scheduling_ignored_during_execution =
            Some(NodeSelector { node_selector_terms: terms });
        self
    }

    pub fn preferred_node_affinity(mut self, weight: i32, preference: NodeSelectorTerm) -> Self {
        self.affinity()
            .node_affinity
            .get_or_insert_with(NodeAffinity::default)
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(PreferredSchedulingTerm { weight, preference });
        self
    }

    pub fn toleration(mut self, key: &str, operator: &str, value: &str, effect: &str) -> Self {
        self.spec().tolerations.get_or_insert_with(Vec::new).push(Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: (!operator.is_empty()).then(|| operator.into()),
            value: (!value.is_empty()).then(|| value.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: None,
        });
        self
    }

    fn affinity_term(topology_key: &str, sel: LabelSelector) -> PodAffinityTerm {
        PodAffinityTerm { label_selector: Some(sel), topology_key: topology_key.into(), ..Default::default() }
    }

    pub fn pod_affinity(mut self, topology_key: &str, sel: LabelSelector) -> Self {
        self.affinity()
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(Self::affinity_term(topology_key, sel));
        self
    }

    pub fn pod_anti_affinity(mut self, topology_key: &str, sel: LabelSelector) -> Self {
        self.affinity()
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(Self::affinity_term(topology_key, sel));
        self
    }

    /// A pod affinity term that also selects namespaces by label.
    pub fn pod_affinity_in_namespaces(mut self, topology_key: &str, sel: LabelSelector, ns_selector: LabelSelector) -> Self {
        let mut term = Self::affinity_term(topology_key, sel);
        term.namespace_selector = Some(ns_selector);
        self.affinity()
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    pub fn preferred_pod_affinity(mut self, weight: i32, topology_key: &str, sel: LabelSelector) -> Self {
        self.affinity()
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm { weight, pod_affinity_term: Self::affinity_term(topology_key, sel) });
        self
    }

    pub fn preferred_pod_anti_affinity(mut self, weight: i32, topology_key: &str, sel: LabelSelector) -> Self {
        self.affinity()
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default)
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm { weight, pod_affinity_term: Self::affinity_term(topology_key, sel) });
        self
    }

    pub fn spread(mut self, max_skew: i32, topology_key: &str, when: &str, sel: LabelSelector) -> Self {
        self.spec().topology_spread_constraints.get_or_insert_with(Vec::new).push(TopologySpreadConstraint {
            max_skew,
            topology_key: topology_key.into(),
            when_unsatisfiable: when.into(),
            label_selector: Some(sel),
            ..Default::default()
        });
        self
    }

    /// Edits the last topology spread constraint.
    pub fn spread_with(mut self, f: impl FnOnce(&mut TopologySpreadConstraint)) -> Self {
        f(self.spec().topology_spread_constraints.as_mut().and_then(|v| v.last_mut()).expect("a spread constraint"));
        self
    }

    pub fn terminating(mut self) -> Self {
        self.pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        self
    }

    pub fn start_time(mut self, secs: i64) -> Self {
        self.pod.status.get_or_insert_with(Default::default).start_time = Some(Time(jiff::Timestamp::from_second(secs).unwrap()));
        self
    }

    pub fn nominated(mut self, node: &str) -> Self {
        self.pod.status.get_or_insert_with(Default::default).nominated_node_name = Some(node.into());
        self
    }

    pub fn scheduling_gate(mut self, name: &str) -> Self {
        self.spec()
            .scheduling_gates
            .get_or_insert_with(Vec::new)
            .push(k8s_openapi::api::core::v1::PodSchedulingGate { name: name.into() });
        self
    }

    pub fn obj(self) -> Pod {
        self.pod
    }
}

// === impl MakeNode ===

pub struct MakeNode {
    node: Node,
}

impl MakeNode {
    /// A node with the `kubernetes.io/hostname` label and no allocatable resources.
    pub fn new(name: &str) -> MakeNode {
        let mut labels = BTreeMap::new();
        labels.insert("kubernetes.io/hostname".to_string(), name.to_string());
        MakeNode {
            node: Node {
                metadata: ObjectMeta { name: Some(name.into()), uid: Some(format!("{name}-uid")), labels: Some(labels), ..Default::default() },
                spec: Some(NodeSpec::default()),
                status: Some(NodeStatus::default()),
            },
        }
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.node.metadata.labels.get_or_insert_with(Default::default).insert(k.into(), v.into());
        self
    }

    pub fn zone(self, zone: &str) -> Self {
        self.label("topology.kubernetes.io/zone", zone)
    }

    pub fn allocatable(mut self, resources: &[(&str, &str)]) -> Self {
        self.node.status.as_mut().unwrap().allocatable = Some(list(resources));
        self
    }

    /// The common shape: cpu, memory and 110 pods.
    pub fn capacity(self, cpu: &str, memory: &str) -> Self {
        self.allocatable(&[("cpu", cpu), ("memory", memory), ("pods", "110")])
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.node.spec.as_mut().unwrap().taints.get_or_insert_with(Vec::new).push(Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            time_added: None,
        });
        self
    }

    pub fn unschedulable(mut self) -> Self {
        self.node.spec.as_mut().unwrap().unschedulable = Some(true);
        self
    }

    pub fn obj(self) -> Node {
        self.node
    }
}
