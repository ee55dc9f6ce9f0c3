//! The node IPAM controller (upstream `pkg/controller/nodeipam`, the range
//! allocator): every Node gets a pod CIDR from the cluster CIDR.
//!
//! - A Node without `spec.podCIDR` gets the lowest free block of the configured
//!   size (`--node-cidr-mask-size`, a /24 by default) in `spec.podCIDR` and
//!   `spec.podCIDRs`, written in one patch. The API server refuses to change a pod
//!   CIDR once set, so a Node never gets two.
//! - Nodes that already carry a pod CIDR (the simulated nodes pick their own, an
//!   agent may ask for one with `--pod-cidr`) keep it; blocks they overlap count as
//!   used. CIDRs outside the cluster CIDR are left alone and ignored.
//! - The part of the service CIDR that overlaps the cluster CIDR is never handed
//!   out, as upstream filters it.
//! - A deleted Node's block is free again: which blocks are used is worked out
//!   from the Nodes in the informer (plus the writes this controller made that the
//!   informer has not shown yet), so nothing has to be released by hand.
//! - When the range is full the Node gets upstream's `CIDRNotAvailable` event and
//!   is tried again when a Node goes away (and every minute).
//!
//! IPv4 only: one pod CIDR per Node.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use serde_json::json;
use skiff_client::{Api, EventType, InformerEvent, PatchType, Store, WorkQueue};

use crate::podutil::run_workers;
use crate::Context;

/// The event source, as upstream's range allocator names it.
pub const COMPONENT: &str = "cidrAllocator";
/// `--cluster-cidr`'s default.
pub const DEFAULT_CLUSTER_CIDR: Cidr = Cidr { base: Ipv4Addr::new(10, 244, 0, 0), prefix: 16 };
/// `--node-cidr-mask-size`'s default.
pub const DEFAULT_NODE_CIDR_MASK: u8 = 24;
/// Upstream's limit on how many blocks one cluster CIDR may be cut into
/// (mask size minus cluster prefix at most 16).
pub const MAX_MASK_DIFFERENCE: u8 = 16;
/// The event reasons (upstream's `RecordNodeStatusChange` statuses).
pub const REASON_CIDR_NOT_AVAILABLE: &str = "CIDRNotAvailable";
pub const REASON_CIDR_ASSIGNMENT_FAILED: &str = "CIDRAssignmentFailed";
/// How often a Node that found the range full is tried again, besides whenever
/// a Node goes away.
const FULL_RETRY: Duration = Duration::from_secs(60);
/// One worker: allocation reads and updates one shared picture of the range, so
/// two syncs must never pick at once.
const WORKERS: usize = 1;

// === impl Cidr ===

/// An IPv4 CIDR block, normalised to its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

/// Why a CIDR or an allocator setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an IPv4 CIDR (a.b.c.d/n)")]
    Syntax(String),
    #[error("the node CIDR mask /{mask} must be at least the cluster CIDR's /{cluster} and at most /30")]
    MaskOutOfRange { mask: u8, cluster: u8 },
    #[error("the node CIDR mask /{mask} cuts the cluster CIDR /{cluster} into too many blocks (at most 2^{MAX_MASK_DIFFERENCE})")]
    TooManyBlocks { mask: u8, cluster: u8 },
}

impl Cidr {
    /// A block from any address inside it.
    pub fn new(ip: Ipv4Addr, prefix: u8) -> Cidr {
        let prefix = prefix.min(32);
        Cidr { base: Ipv4Addr::from(u32::from(ip) & mask(prefix)), prefix }
    }

    /// How many addresses the block holds.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The first address.
    pub fn first(&self) -> u32 {
        u32::from(self.base)
    }

    /// The last address.
    pub fn last(&self) -> u32 {
        self.first() | !mask(self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.first()
    }

    /// Whether the two blocks share an address (one then holds the other).
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        self.first() & m == other.first() & m
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let bad = || CidrError::Syntax(s.to_string());
        let (ip, bits) = s.trim().split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = bits.parse().ok().filter(|b| *b <= 32).ok_or_else(bad)?;
        Ok(Cidr::new(ip, prefix))
    }
}

impl From<(Ipv4Addr, u8)> for Cidr {
    fn from((ip, prefix): (Ipv4Addr, u8)) -> Cidr {
        Cidr::new(ip, prefix)
    }
}

// === impl CidrSet ===

/// The blocks of one size in the cluster CIDR, and which are taken (upstream's
/// `cidrset`, handing out the lowest free block rather than the next in turn).
#[derive(Debug, Clone)]
pub struct CidrSet {
    cluster: Cidr,
    mask: u8,
    /// Indexes of the used blocks.
    used: BTreeSet<u32>,
}

impl CidrSet {
    pub fn new(cluster: Cidr, mask: u8) -> Result<CidrSet, CidrError> {
        if mask < cluster.prefix || mask > 30 {
            return Err(CidrError::MaskOutOfRange { mask, cluster: cluster.prefix });
        }
        if mask - cluster.prefix > MAX_MASK_DIFFERENCE {
            return Err(CidrError::TooManyBlocks { mask, cluster: cluster.prefix });
        }
        Ok(CidrSet { cluster, mask, used: BTreeSet::new() })
    }

    pub fn cluster(&self) -> Cidr {
        self.cluster
    }

    /// How many blocks the range holds.
    pub fn capacity(&self) -> u32 {
        1u32 << (self.mask - self.cluster.prefix)
    }

    pub fn used(&self) -> usize {
        self.used.len()
    }

    fn block(&self, index: u32) -> Cidr {
        let step = 1u32.checked_shl(32 - u32::from(self.mask)).unwrap_or(0);
        Cidr { base: Ipv4Addr::from(self.cluster.first() + index * step), prefix: self.mask }
    }

    /// The indexes of the blocks `cidr` overlaps, if it overlaps the range.
    fn indexes(&self, cidr: &Cidr) -> Option<std::ops::RangeInclusive<u32>> {
        if !self.cluster.overlaps(cidr) {
            return None;
        }
        let shift = 32 - u32::from(self.mask);
        let lo = cidr.first().max(self.cluster.first());
        let hi = cidr.last().min(self.cluster.last());
        let index = |ip: u32| (ip - self.cluster.first()).checked_shr(shift).unwrap_or(0);
        Some(index(lo)..=index(hi))
    }

    /// Marks every block `cidr` overlaps as used. False when it lies outside the
    /// range (and nothing is marked).
    pub fn occupy(&mut self, cidr: &Cidr) -> bool {
        match self.indexes(cidr) {
            Some(range) => {
                self.used.extend(range);
                true
            }
            None => false,
        }
    }

    /// Frees every block `cidr` overlaps.
    pub fn release(&mut self, cidr: &Cidr) {
        if let Some(range) = self.indexes(cidr) {
            for i in range {
                self.used.remove(&i);
            }
        }
    }

    /// Takes the lowest free block.
    pub fn allocate_next(&mut self) -> Option<Cidr> {
        let free = (0..self.capacity()).find(|i| !self.used.contains(i))?;
        self.used.insert(free);
        Some(self.block(free))
    }
}

// === the controller ===

/// The allocator's configuration, from `skiff server`'s flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpamConfig {
    pub cluster_cidr: Cidr,
    pub node_cidr_mask: u8,
    /// Blocks overlapping it are never handed out.
    pub service_cidr: Option<Cidr>,
}

/// The pod CIDRs a Node carries (`spec.podCIDRs`, or `spec.podCIDR` alone).
pub fn node_pod_cidrs(node: &Node) -> Vec<String> {
    let Some(spec) = node.spec.as_ref() else { return Vec::new() };
    match (&spec.pod_cidrs, &spec.pod_cidr) {
        (Some(cs), _) if !cs.is_empty() => cs.clone(),
        (_, Some(c)) if !c.is_empty() => vec![c.clone()],
        _ => Vec::new(),
    }
}

/// The range as the Nodes (and `pending` writes) use it. Unparsable and
/// out-of-range CIDRs are ignored.
pub fn range_in_use<'a>(config: &IpamConfig, nodes: impl IntoIterator<Item = &'a Node>, pending: impl IntoIterator<Item = Cidr>) -> Result<CidrSet, CidrError> {
    let mut set = CidrSet::new(config.cluster_cidr, config.node_cidr_mask)?;
    if let Some(service) = &config.service_cidr {
        set.occupy(service);
    }
    for node in nodes {
        for cidr in node_pod_cidrs(node) {
            if let Ok(c) = cidr.parse::<Cidr>() {
                set.occupy(&c);
            }
        }
    }
    for c in pending {
        set.occupy(&c);
    }
    Ok(set)
}

/// Pod CIDRs this controller wrote that the informer may not show yet, by Node
/// name. std Mutex: nothing async happens while it is held.
#[derive(Default)]
struct Pending(Mutex<HashMap<String, Cidr>>);

impl Pending {
    /// Forgets what the informer now shows (or what is gone) and returns the rest.
    fn settle(&self, nodes: &Store<Node>) -> Vec<Cidr> {
        let mut pending = self.0.lock().unwrap();
        pending.retain(|name, _| nodes.get("", name).is_some_and(|n| node_pod_cidrs(&n).is_empty()));
        pending.values().copied().collect()
    }

    fn insert(&self, name: &str, cidr: Cidr) {
        self.0.lock().unwrap().insert(name.to_string(), cidr);
    }
}

/// Runs the controller until the future is dropped; does nothing without a
/// cluster CIDR.
pub async fn run(ctx: Context) {
    let Some(cluster_cidr) = ctx.config.cluster_cidr else {
        tracing::info!("no cluster CIDR configured: nodes get no pod CIDRs from the server");
        return;
    };
    let config = IpamConfig {
        cluster_cidr: cluster_cidr.into(),
        node_cidr_mask: ctx.config.node_cidr_mask,
        service_cidr: ctx.config.service_cidr.map(Cidr::from),
    };
    if let Err(e) = CidrSet::new(config.cluster_cidr, config.node_cidr_mask) {
        tracing::error!(error = %e, cluster_cidr = %config.cluster_cidr, "node IPAM is off");
        return;
    }
    let queue: WorkQueue<String> = WorkQueue::new();
    let q = queue.clone();
    let nodes = ctx.nodes.store();
    ctx.nodes.on_event(Arc::new(move |ev: &InformerEvent<Node>| match ev {
        InformerEvent::Applied { new, .. } => {
            if node_pod_cidrs(new).is_empty() {
                q.add(new.metadata.name.clone().unwrap_or_default());
            }
        }
        InformerEvent::Deleted(_) => {
            // A block may have come free: Nodes waiting for one try again.
            for n in nodes.list() {
                if node_pod_cidrs(&n).is_empty() {
                    q.add(n.metadata.name.clone().unwrap_or_default());
                }
            }
        }
    }));
    ctx.nodes.wait_synced().await;
    let pending = Arc::new(Pending::default());
    let recorder = ctx.recorder(COMPONENT);
    run_workers(COMPONENT, queue, WORKERS, move |name| {
        let (ctx, pending, recorder) = (ctx.clone(), pending.clone(), recorder.clone());
        async move { sync(&ctx, &config, &pending, &recorder, &name).await }
    })
    .await;
}

/// Gives one Node a pod CIDR if it has none.
async fn sync(
    ctx: &Context,
    config: &IpamConfig,
    pending: &Pending,
    recorder: &skiff_client::EventRecorder,
    name: &str,
) -> Result<Option<Duration>, skiff_client::Error> {
    let store = ctx.nodes.store();
    let Some(node) = store.get("", name) else { return Ok(None) };
    if !node_pod_cidrs(&node).is_empty() || node.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let in_flight = pending.settle(&store);
    let nodes = store.list();
    let mut range = range_in_use(config, nodes.iter().map(|n| n.as_ref()), in_flight).expect("validated at start");
    let Some(cidr) = range.allocate_next() else {
        tracing::warn!(node = %name, cluster_cidr = %config.cluster_cidr, used = range.used(), "no pod CIDR left for the node");
        recorder.record(node.as_ref(), EventType::Normal, REASON_CIDR_NOT_AVAILABLE, &format!("Node {name} status is now: {REASON_CIDR_NOT_AVAILABLE}"));
        return Ok(Some(FULL_RETRY));
    };
    let api: Api<Node> = Api::all(&ctx.client);
    let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    match api.patch(name, PatchType::Merge, &patch).await {
        Ok(_) => {
            pending.insert(name, cidr);
            tracing::info!(node = %name, pod_cidr = %cidr, "set node pod CIDR");
            Ok(None)
        }
        // Gone, or someone else set a pod CIDR meanwhile (which the API server
        // then keeps): the informer brings the outcome.
        Err(e) if e.is_not_found() || e.code() == Some(422) => Ok(None),
        Err(e) => {
            if !e.is_conflict() {
                recorder.record(node.as_ref(), EventType::Normal, REASON_CIDR_ASSIGNMENT_FAILED, &format!("Node {name} status is now: {REASON_CIDR_ASSIGNMENT_FAILED}"));
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn node(name: &str, pod_cidr: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(NodeSpec { pod_cidr: pod_cidr.map(String::from), pod_cidrs: pod_cidr.map(|c| vec![c.to_string()]), ..Default::default() }),
            status: None,
        }
    }

    fn config() -> IpamConfig {
        IpamConfig { cluster_cidr: DEFAULT_CLUSTER_CIDR, node_cidr_mask: 24, service_cidr: Some(cidr("10.96.0.0/12")) }
    }

    #[test]
    fn cidrs_parse_normalise_and_print() {
        assert_eq!(cidr("10.244.3.7/24").to_string(), "10.244.3.0/24");
        assert_eq!(cidr(" 10.0.0.0/8 ").prefix, 8);
        for bad in ["10.0.0.0", "10.0.0.0/33", "nope/8", "::1/64", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let c = cidr("10.244.0.0/16");
        assert!(c.contains(Ipv4Addr::new(10, 244, 255, 255)) && !c.contains(Ipv4Addr::new(10, 245, 0, 0)));
        assert!(c.overlaps(&cidr("10.244.7.0/24")) && cidr("10.244.7.0/24").overlaps(&c) && c.overlaps(&cidr("10.0.0.0/8")));
        assert!(!c.overlaps(&cidr("10.245.0.0/24")));
        assert_eq!(cidr("0.0.0.0/0").last(), u32::MAX);
    }

    #[test]
    fn blocks_come_lowest_free_first_and_are_reused_once_released() {
        let mut set = CidrSet::new(cidr("10.244.0.0/22"), 24).unwrap();
        assert_eq!(set.capacity(), 4);
        assert!(set.occupy(&cidr("10.244.1.0/24")));
        assert_eq!(set.allocate_next(), Some(cidr("10.244.0.0/24")));
        assert_eq!(set.allocate_next(), Some(cidr("10.244.2.0/24")));
        assert_eq!(set.allocate_next(), Some(cidr("10.244.3.0/24")));
        assert_eq!(set.allocate_next(), None, "the range is full");
        set.release(&cidr("10.244.1.0/24"));
        assert_eq!(set.allocate_next(), Some(cidr("10.244.1.0/24")));
    }

    #[test]
    fn a_wider_block_takes_every_block_inside_it_and_outsiders_are_ignored() {
        let mut set = CidrSet::new(cidr("10.244.0.0/16"), 24).unwrap();
        assert!(set.occupy(&cidr("10.244.0.0/23")));
        assert!(!set.occupy(&cidr("192.168.0.0/24")), "outside the range");
        assert_eq!(set.used(), 2);
        assert_eq!(set.allocate_next(), Some(cidr("10.244.2.0/24")));
        // A block wider than the whole range fills it.
        let mut small = CidrSet::new(cidr("10.244.0.0/23"), 24).unwrap();
        assert!(small.occupy(&cidr("10.0.0.0/8")));
        assert_eq!(small.allocate_next(), None);
    }

    #[test]
    fn masks_must_fit_the_cluster_cidr() {
        assert_eq!(CidrSet::new(cidr("10.244.0.0/16"), 15).unwrap_err(), CidrError::MaskOutOfRange { mask: 15, cluster: 16 });
        assert_eq!(CidrSet::new(cidr("10.244.0.0/16"), 31).unwrap_err(), CidrError::MaskOutOfRange { mask: 31, cluster: 16 });
        assert_eq!(CidrSet::new(cidr("10.0.0.0/8"), 25).unwrap_err(), CidrError::TooManyBlocks { mask: 25, cluster: 8 });
        assert_eq!(CidrSet::new(cidr("10.0.0.0/8"), 24).unwrap().capacity(), 65536);
        assert_eq!(CidrSet::new(cidr("10.244.0.0/24"), 24).unwrap().capacity(), 1);
    }

    #[test]
    fn the_range_in_use_counts_nodes_pending_writes_and_the_service_range() {
        let nodes = [node("a", Some("10.244.0.0/24")), node("b", None), node("c", Some("garbage")), node("d", Some("172.16.0.0/24"))];
        let mut range = range_in_use(&config(), &nodes, [cidr("10.244.1.0/24")]).unwrap();
        assert_eq!(range.allocate_next(), Some(cidr("10.244.2.0/24")));

        // A service range inside the cluster range is never handed out.
        let overlapping = IpamConfig { cluster_cidr: cidr("10.0.0.0/22"), node_cidr_mask: 24, service_cidr: Some(cidr("10.0.0.0/23")) };
        let mut range = range_in_use(&overlapping, &[], []).unwrap();
        assert_eq!(range.allocate_next(), Some(cidr("10.0.2.0/24")));
    }

    #[test]
    fn a_node_shows_its_pod_cidrs_from_either_field() {
        assert_eq!(node_pod_cidrs(&node("a", Some("10.244.0.0/24"))), ["10.244.0.0/24"]);
        let mut only_singular = node("a", None);
        only_singular.spec.as_mut().unwrap().pod_cidr = Some("10.244.9.0/24".into());
        assert_eq!(node_pod_cidrs(&only_singular), ["10.244.9.0/24"]);
        assert!(node_pod_cidrs(&node("a", None)).is_empty());
        assert!(node_pod_cidrs(&Node::default()).is_empty());
    }
}
