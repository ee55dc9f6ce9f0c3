//! NetworkPolicy enforcement (networking.k8s.io/v1) in `table ip skiff`.
//!
//! The node agent feeds [`PolicyEngine`] every Pod, Namespace and NetworkPolicy of the
//! cluster and calls [`PolicyEngine::sync`]; the engine enforces the policies for the pods
//! of its own node.
//!
//! # Semantics
//!
//! Upstream's: a pod is isolated for ingress (egress) when a policy of its namespace selects
//! it and has `Ingress` (`Egress`) among its policyTypes — a policy without policyTypes
//! counts as the API server defaults it. An isolated pod accepts (sends) only what at least
//! one rule of one of those policies allows; pods nobody selects are not restricted at all.
//! Peers are pods (by podSelector and/or namespaceSelector, with their IPv4 addresses from
//! `status.podIPs`) and ipBlocks with their excepts; ports are numbers, ranges (`endPort`)
//! and names, resolved against the destination pod's container ports. Pods without an
//! address, finished pods and hostNetwork pods are neither peers nor enforced.
//!
//! # Where it is enforced
//!
//! Two filter base chains at hook `forward`, priority `filter`, one per direction. Bridged
//! traffic between pods of the same node passes that hook too (`br_netfilter`), and the
//! service proxy's DNAT happens earlier (priority `dstnat`), so policy sees the pod behind a
//! Service address, as upstream requires. Traffic from the node itself (probes, the
//! gateway's DNS server, hostNetwork pods) leaves through `output` and traffic to it arrives
//! through `input`: neither is filtered, which is upstream's rule that a pod's own node
//! always reaches it. Packets of established connections pass before any check, so replies
//! are never judged. What is refused is dropped (no ICMP or TCP reset): the sender sees a
//! timeout, as with most upstream implementations, and nothing is sent back on behalf of a
//! pod that may not want to be seen.
//!
//! Connections that were established before a policy started to forbid them go on until
//! they end (conntrack keeps them); new ones are refused.
//!
//! See `policy/compile.rs` for the objects and `policy/ruleset.rs` for how one state is
//! moved to the next in a single transaction. IPv4 only.

mod compile;
mod model;
mod ruleset;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::nft::{Nft, NftError};
use model::{Labels, PodInfo, PolicyInfo};
use ruleset::Ruleset;

/// What the engine needs to know about its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// This node's name: pods with this `spec.nodeName` are the ones enforced here.
    pub node_name: String,
}

// === impl PolicyEngine ===

/// Keeps the policy objects of `table ip skiff` in line with the cluster's NetworkPolicies.
///
/// `apply_*`/`delete_*` only record the change; [`sync`](Self::sync) writes whatever changed
/// since the last successful sync as one nftables transaction.
pub struct PolicyEngine {
    cfg: PolicyConfig,
    nft: Arc<dyn Nft>,
    pods: BTreeMap<(String, String), PodInfo>,
    policies: BTreeMap<(String, String), PolicyInfo>,
    namespaces: BTreeMap<String, Labels>,
    /// What the kernel holds, as of the last successful transaction.
    applied: Ruleset,
    /// The inputs changed since the last successful sync.
    dirty: bool,
    /// The base chains and maps exist.
    initialized: bool,
    /// The kernel's state is uncertain (a transaction failed): the next sync rewrites every object instead of sending a difference.
    resync: bool,
}

impl PolicyEngine {
    pub fn new(cfg: PolicyConfig, nft: Arc<dyn Nft>) -> Self {
        PolicyEngine {
            cfg,
            nft,
            pods: BTreeMap::new(),
            policies: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            applied: Ruleset::default(),
            dirty: true,
            initialized: false,
            resync: false,
        }
    }

    /// Creates the base chains and the two verdict maps (or empties the maps if they exist).
    /// Until the next [`sync`](Self::sync) no pod is isolated.
    pub async fn init(&mut self) -> Result<(), NftError> {
        self.nft.apply(&ruleset::base_script()).await?;
        self.initialized = true;
        // The maps are empty now; the chains and sets are as they were.
        self.applied.ingress_pods.clear();
        self.applied.egress_pods.clear();
        self.dirty = true;
        Ok(())
    }

    /// Records a NetworkPolicy (created or changed).
    pub fn apply_policy(&mut self, p: &NetworkPolicy) {
        let info = PolicyInfo::from_policy(p);
        let key = (info.namespace.clone(), info.name.clone());
        if self.policies.get(&key) != Some(&info) {
            self.policies.insert(key, info);
            self.dirty = true;
        }
    }

    pub fn delete_policy(&mut self, namespace: &str, name: &str) {
        if self.policies.remove(&(namespace.to_string(), name.to_string())).is_some() {
            self.dirty = true;
        }
    }

    /// Records a pod of any node: pods elsewhere are peers, pods of this node are also
    /// enforced.
    pub fn apply_pod(&mut self, pod: &Pod) {
        let info = PodInfo::from_pod(pod);
        let key = (info.namespace.clone(), pod.metadata.name.clone().unwrap_or_default());
        if self.pods.get(&key) != Some(&info) {
            self.pods.insert(key, info);
            self.dirty = true;
        }
    }

    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        if self.pods.remove(&(namespace.to_string(), name.to_string())).is_some() {
            self.dirty = true;
        }
    }

    /// Records a namespace's labels, which namespaceSelectors match.
    pub fn apply_namespace(&mut self, ns: &Namespace) {
        let Some(name) = ns.metadata.name.clone() else { return };
        let labels = model::namespace_labels(ns);
        if self.namespaces.get(&name) != Some(&labels) {
            self.namespaces.insert(name, labels);
            self.dirty = true;
        }
    }

    pub fn delete_namespace(&mut self, name: &str) {
        if self.namespaces.remove(name).is_some() {
            self.dirty = true;
        }
    }

    /// Whether anything changed since the last successful [`sync`](Self::sync).
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Brings the kernel in line with what was recorded, in one transaction holding only what
    /// changed (none at all when nothing did). Calls [`init`](Self::init) first if it has not
    /// run. After a failure the next sync rewrites every policy object.
    pub async fn sync(&mut self) -> Result<(), NftError> {
        if !self.initialized {
            self.init().await?;
        }
        if !self.dirty && !self.resync {
            return Ok(());
        }
        let desired = compile::compile(&compile::Inputs {
            node: &self.cfg.node_name,
            pods: &self.pods,
            policies: &self.policies,
            namespaces: &self.namespaces,
        });
        let script = if self.resync {
            ruleset::resync_script(&self.applied, &desired)
        } else {
            ruleset::update_script(&self.applied, &desired)
        };
        if !script.is_empty() {
            if let Err(err) = self.nft.apply(&script).await {
                // Nothing of the script was applied, but keep the next attempt independent of
                // what the kernel holds.
                self.resync = true;
                return Err(err);
            }
            tracing::debug!(
                node = %self.cfg.node_name,
                ingress_isolated = desired.ingress_pods.len(),
                egress_isolated = desired.egress_pods.len(),
                "network policy synced"
            );
        }
        self.applied = desired;
        self.resync = false;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
