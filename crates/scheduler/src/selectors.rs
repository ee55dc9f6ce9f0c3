//! Label and node selectors, compiled once per pod so that matching them against
//! thousands of nodes or pods allocates nothing.
//!
//! Label selectors are skiff-api's (upstream's validation and semantics); node
//! selectors (`In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt` on labels,
//! `In`/`NotIn` on `metadata.name`) follow `component-helpers/scheduling/corev1/nodeaffinity`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use skiff_api::selector::LabelSelector as Parsed;

/// The empty label map, for objects without labels.
pub static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

// === impl Selector ===

/// A compiled `metav1.LabelSelector`.
#[derive(Debug, Clone)]
pub struct Selector(Parsed);

impl Selector {
    /// `metav1.LabelSelectorAsSelector`: `None` selects nothing, `{}` everything. A
    /// selector that does not parse selects nothing too (the API validated it, so
    /// this is only defensive).
    pub fn compile(sel: Option<&LabelSelector>) -> Selector {
        let Some(sel) = sel else { return Selector(Parsed::nothing()) };
        let json = serde_json::to_value(sel).unwrap_or(serde_json::Value::Null);
        Selector(Parsed::from_json(&json).unwrap_or_else(|_| Parsed::nothing()))
    }

    /// Like [`compile`](Self::compile), with extra `key In (value)` / `key NotIn
    /// (value)` requirements for `matchLabelKeys` / `mismatchLabelKeys` taken from the
    /// pod's own labels (keys the pod does not carry are ignored, as upstream).
    pub fn compile_with_label_keys(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>, match_keys: &[String], mismatch_keys: &[String]) -> Selector {
        if match_keys.is_empty() && mismatch_keys.is_empty() {
            return Selector::compile(sel);
        }
        let Some(sel) = sel else { return Selector(Parsed::nothing()) };
        let mut sel = sel.clone();
        let exprs = sel.match_expressions.get_or_insert_with(Vec::new);
        for (keys, op) in [(match_keys, "In"), (mismatch_keys, "NotIn")] {
            for key in keys {
                if let Some(v) = labels.get(key) {
                    exprs.push(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                        key: key.clone(),
                        operator: op.into(),
                        values: Some(vec![v.clone()]),
                    });
                }
            }
        }
        Selector::compile(Some(&sel))
    }

    /// Selects everything.
    pub fn everything() -> Selector {
        Selector(Parsed::from_set(std::iter::empty()))
    }

    /// A stable identity of what the selector selects, for memoizing counts.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.is_nothing().hash(&mut h);
        self.0.to_string().hash(&mut h);
        h.finish()
    }

    pub fn is_nothing(&self) -> bool {
        !self.0.is_empty() && self.0.requirements().is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.is_nothing() {
            return false;
        }
        self.0.requirements().iter().all(|r| r.matches(labels.get(r.key()).map(String::as_str)))
    }
}

/// Labels of a pod (empty if it has none).
pub fn pod_labels(pod: &Pod) -> &BTreeMap<String, String> {
    pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

// === impl NodeSelectorTerms ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    /// `nodeSelectorRequirementsAsSelector`'s checks: `In`/`NotIn` need values,
    /// `Exists`/`DoesNotExist` none, `Gt`/`Lt` exactly one integer.
    fn label(r: &NodeSelectorRequirement) -> Option<Requirement> {
        let values = r.values.clone().unwrap_or_default();
        let op = match r.operator.as_str() {
            "In" if !values.is_empty() => Op::In,
            "NotIn" if !values.is_empty() => Op::NotIn,
            "Exists" if values.is_empty() => Op::Exists,
            "DoesNotExist" if values.is_empty() => Op::DoesNotExist,
            "Gt" | "Lt" if values.len() == 1 => {
                let v = values[0].parse::<i64>().ok()?;
                if r.operator == "Gt" {
                    Op::Gt(v)
                } else {
                    Op::Lt(v)
                }
            }
            _ => return None,
        };
        Some(Requirement { key: r.key.clone(), op, values })
    }

    /// Field requirements: only `metadata.name`, with `In` or `NotIn` and exactly one value.
    fn field(r: &NodeSelectorRequirement) -> Option<Requirement> {
        let values = r.values.clone().unwrap_or_default();
        if r.key != "metadata.name" || values.len() != 1 {
            return None;
        }
        let op = match r.operator.as_str() {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            _ => return None,
        };
        Some(Requirement { key: r.key.clone(), op, values })
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match self.op {
            Op::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotIn => !value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::Gt(want) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > want),
            Op::Lt(want) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < want),
        }
    }
}

/// One compiled `NodeSelectorTerm`: its label and field requirements all hold. A
/// term that is empty or does not parse matches no node.
#[derive(Debug, Clone)]
pub struct NodeTerm {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
    valid: bool,
}

impl NodeTerm {
    pub fn compile(term: &NodeSelectorTerm) -> NodeTerm {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        let labels: Option<Vec<_>> = exprs.iter().map(Requirement::label).collect();
        let fields: Option<Vec<_>> = fields.iter().map(Requirement::field).collect();
        match (labels, fields) {
            (Some(labels), Some(fields)) => {
                let valid = !labels.is_empty() || !fields.is_empty();
                NodeTerm { labels, fields, valid }
            }
            _ => NodeTerm { labels: Vec::new(), fields: Vec::new(), valid: false },
        }
    }

    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.valid
            && self.labels.iter().all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches(Some(node_name)))
    }
}

/// The node constraints a pod must meet: `spec.nodeSelector` and the required node
/// affinity terms (ORed), as `nodeaffinity.GetRequiredNodeAffinity`.
#[derive(Debug, Clone, Default)]
pub struct RequiredNodeAffinity {
    node_selector: Vec<(String, String)>,
    /// `None` when the pod has no required node affinity.
    terms: Option<Vec<NodeTerm>>,
}

impl RequiredNodeAffinity {
    pub fn of(pod: &Pod) -> RequiredNodeAffinity {
        let Some(spec) = pod.spec.as_ref() else { return RequiredNodeAffinity::default() };
        let node_selector = spec.node_selector.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
        let terms = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|ns| ns.node_selector_terms.iter().map(NodeTerm::compile).collect());
        RequiredNodeAffinity { node_selector, terms }
    }

    /// Whether the pod constrains nodes at all.
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.terms.is_none()
    }

    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        if !self.node_selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
        match &self.terms {
            None => true,
            Some(terms) => terms.iter().any(|t| t.matches(node_name, labels)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{field_term, selector, selector_expr, term, MakePod};

    fn labels(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_missing_selector_selects_nothing_and_an_empty_one_everything() {
        let l = labels(&[("app", "web")]);
        assert!(!Selector::compile(None).matches(&l));
        assert!(Selector::compile(Some(&LabelSelector::default())).matches(&l));
        assert!(Selector::compile(Some(&selector(&[("app", "web")]))).matches(&l));
        assert!(!Selector::compile(Some(&selector(&[("app", "db")]))).matches(&l));
        assert!(Selector::compile(Some(&selector_expr("app", "NotIn", &["db"]))).matches(&l));
        assert!(Selector::compile(Some(&selector_expr("tier", "DoesNotExist", &[]))).matches(&l));
    }

    #[test]
    fn match_label_keys_pin_the_pods_own_values() {
        let own = labels(&[("app", "web"), ("rev", "2")]);
        let sel = Selector::compile_with_label_keys(Some(&selector(&[("app", "web")])), &own, &["rev".into(), "absent".into()], &[]);
        assert!(sel.matches(&labels(&[("app", "web"), ("rev", "2")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("rev", "1")])));
        let sel = Selector::compile_with_label_keys(Some(&LabelSelector::default()), &own, &[], &["rev".into()]);
        assert!(sel.matches(&labels(&[("rev", "1")])));
        assert!(!sel.matches(&labels(&[("rev", "2")])));
    }

    #[test]
    fn node_terms_follow_operator_semantics() {
        let l = labels(&[("zone", "a"), ("gen", "5")]);
        assert!(NodeTerm::compile(&term(&[("zone", "In", &["a", "b"])])).matches("n1", &l));
        assert!(!NodeTerm::compile(&term(&[("zone", "NotIn", &["a"])])).matches("n1", &l));
        assert!(NodeTerm::compile(&term(&[("missing", "NotIn", &["a"])])).matches("n1", &l));
        assert!(NodeTerm::compile(&term(&[("zone", "Exists", &[])])).matches("n1", &l));
        assert!(!NodeTerm::compile(&term(&[("zone", "DoesNotExist", &[])])).matches("n1", &l));
        assert!(NodeTerm::compile(&term(&[("gen", "Gt", &["4"])])).matches("n1", &l));
        assert!(!NodeTerm::compile(&term(&[("gen", "Lt", &["4"])])).matches("n1", &l));
        assert!(!NodeTerm::compile(&term(&[("zone", "Gt", &["4"])])).matches("n1", &l), "a non-integer label never compares");
        // Invalid requirements make the whole term match nothing.
        assert!(!NodeTerm::compile(&term(&[("zone", "In", &[])])).matches("n1", &l));
        assert!(!NodeTerm::compile(&term(&[("gen", "Gt", &["x"])])).matches("n1", &l));
        assert!(!NodeTerm::compile(&NodeSelectorTerm::default()).matches("n1", &l), "an empty term matches nothing");
        assert!(NodeTerm::compile(&field_term(&[("metadata.name", "In", &["n1"])])).matches("n1", &l));
        assert!(!NodeTerm::compile(&field_term(&[("metadata.name", "In", &["n1"])])).matches("n2", &l));
        assert!(NodeTerm::compile(&field_term(&[("metadata.name", "NotIn", &["n1"])])).matches("n2", &l));
        assert!(!NodeTerm::compile(&field_term(&[("metadata.labels", "In", &["n1"])])).matches("n1", &l));
    }

    #[test]
    fn required_affinity_needs_the_node_selector_and_any_term() {
        let l = labels(&[("zone", "a"), ("disk", "ssd")]);
        let pod = MakePod::new("p").node_selector("disk", "ssd").required_node_affinity(vec![term(&[("zone", "In", &["b"])]), term(&[("zone", "In", &["a"])])]).obj();
        assert!(RequiredNodeAffinity::of(&pod).matches("n", &l));
        let pod = MakePod::new("p").node_selector("disk", "hdd").obj();
        assert!(!RequiredNodeAffinity::of(&pod).matches("n", &l));
        let pod = MakePod::new("p").required_node_affinity(vec![]).obj();
        assert!(!RequiredNodeAffinity::of(&pod).matches("n", &l), "no terms at all match no node");
        assert!(RequiredNodeAffinity::of(&MakePod::new("p").obj()).is_empty());
    }
}
