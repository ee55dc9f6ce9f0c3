//! The node lifecycle controller (upstream `pkg/controller/nodelifecycle`) and the
//! taint eviction controller (`pkg/controller/tainteviction`).
//!
//! - **Health.** Kubelets (here: the simulated agent) renew a Lease in
//!   `kube-node-lease` and post node status. A node whose Lease and status have
//!   not moved for `node_monitor_grace_period` gets its `Ready` (and pressure)
//!   conditions set to `Unknown` ("Kubelet stopped posting node status."), and
//!   its pods are marked not ready.
//! - **Taints.** Conditions become taints: `Ready=False` gives
//!   `node.kubernetes.io/not-ready`, `Ready=Unknown` gives
//!   `node.kubernetes.io/unreachable`, each as NoSchedule at once and as
//!   NoExecute through a per-zone rate limiter (0.1 nodes/s, stopped entirely when
//!   every zone is down, as upstream); pressure conditions give their NoSchedule
//!   taints and `spec.unschedulable` (cordon) gives
//!   `node.kubernetes.io/unschedulable:NoSchedule`. Healthy nodes lose them again.
//! - **Eviction.** Pods on a node with NoExecute taints they do not tolerate are
//!   deleted at once; pods that tolerate them for `tolerationSeconds` are deleted
//!   after that long. Each gets the `DisruptionTarget` condition first.
//!
//! Timing comes from [`NodeLifecycleConfig`], which reads overrides from the
//! environment so tests can shorten the grace period.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{json, Value};
use skiff_client::{Api, DeleteParams, EventRecorder, EventType, InformerEvent, PatchType, WorkQueue};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::podutil::{key_of, split_key};
use crate::Context;

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// How often the NoExecute tainting pass drains the zone queues.
const NODE_EVICTION_PERIOD: Duration = Duration::from_millis(100);
/// Clusters larger than this use the secondary eviction rate in partly
/// disrupted zones; smaller ones stop evicting there.
const LARGE_CLUSTER_SIZE_THRESHOLD: usize = 50;
const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;

// === configuration ===

/// The node lifecycle controller's timing (kube-controller-manager's flags).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLifecycleConfig {
    /// How often node health is checked (`--node-monitor-period`, 5 s).
    pub node_monitor_period: Duration,
    /// How long a node may go without renewing its Lease or status before it is
    /// considered unreachable (`--node-monitor-grace-period`, 50 s since 1.32).
    pub node_monitor_grace_period: Duration,
    /// The same for a node that never posted status (`--node-startup-grace-period`, 60 s).
    pub node_startup_grace_period: Duration,
    /// Nodes per second that get the NoExecute taint in a healthy zone
    /// (`--node-eviction-rate`, 0.1).
    pub node_eviction_rate: f64,
    /// The same in a partly disrupted zone of a large cluster
    /// (`--secondary-node-eviction-rate`, 0.01).
    pub secondary_node_eviction_rate: f64,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(50),
            node_startup_grace_period: Duration::from_secs(60),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
        }
    }
}

/// A malformed override.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

impl NodeLifecycleConfig {
    /// The defaults, overridden by `SKIFF_NODE_MONITOR_PERIOD`,
    /// `SKIFF_NODE_MONITOR_GRACE_PERIOD`, `SKIFF_NODE_STARTUP_GRACE_PERIOD`
    /// (durations such as `5s`, `500ms`, `1m`, or plain seconds),
    /// `SKIFF_NODE_EVICTION_RATE` and `SKIFF_SECONDARY_NODE_EVICTION_RATE`
    /// (nodes per second).
    pub fn from_env() -> Result<NodeLifecycleConfig, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// [`NodeLifecycleConfig::from_env`] over any source of variables.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<NodeLifecycleConfig, ConfigError> {
        let mut c = NodeLifecycleConfig::default();
        let duration = |var: &'static str, slot: &mut Duration| -> Result<(), ConfigError> {
            if let Some(v) = get(var).filter(|v| !v.trim().is_empty()) {
                *slot = parse_duration(v.trim()).map_err(|reason| ConfigError { var, value: v.clone(), reason })?;
            }
            Ok(())
        };
        duration("SKIFF_NODE_MONITOR_PERIOD", &mut c.node_monitor_period)?;
        duration("SKIFF_NODE_MONITOR_GRACE_PERIOD", &mut c.node_monitor_grace_period)?;
        duration("SKIFF_NODE_STARTUP_GRACE_PERIOD", &mut c.node_startup_grace_period)?;
        let rate = |var: &'static str, slot: &mut f64| -> Result<(), ConfigError> {
            if let Some(v) = get(var).filter(|v| !v.trim().is_empty()) {
                let r: f64 = v.trim().parse().map_err(|_| ConfigError { var, value: v.clone(), reason: "not a number".into() })?;
                if !(r >= 0.0 && r.is_finite()) {
                    return Err(ConfigError { var, value: v.clone(), reason: "must be zero or more".into() });
                }
                *slot = r;
            }
            Ok(())
        };
        rate("SKIFF_NODE_EVICTION_RATE", &mut c.node_eviction_rate)?;
        rate("SKIFF_SECONDARY_NODE_EVICTION_RATE", &mut c.secondary_node_eviction_rate)?;
        if c.node_monitor_period.is_zero() {
            return Err(ConfigError { var: "SKIFF_NODE_MONITOR_PERIOD", value: "0".into(), reason: "must be positive".into() });
        }
        Ok(c)
    }
}

/// `5s`, `250ms`, `2m`, `1h`, or a plain number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = number.parse().map_err(|_| "not a duration (use e.g. 5s, 500ms, 1m)".to_string())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?}")),
    };
    Ok(Duration::from_secs_f64(secs))
}

// === node health ===

/// What the controller remembers of a node between passes.
#[derive(Debug, Clone)]
pub struct NodeHealth {
    /// The Ready condition as last seen.
    pub ready: Option<NodeCondition>,
    /// When the node last showed a sign of life (status heartbeat or Lease).
    pub probe: Instant,
    pub ready_transition: Instant,
    /// The Lease's renew time as last seen.
    pub lease_renew: Option<Timestamp>,
}

/// The outcome of one health check (upstream `tryUpdateNodeHealth`).
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub health: NodeHealth,
    /// The Ready condition as the node had it before this check.
    pub observed: NodeCondition,
    /// The Ready condition after it (`None` when the node never posted one and
    /// is still starting).
    pub current: Option<NodeCondition>,
    /// The status to write: conditions turned `Unknown`.
    pub update: Option<NodeStatus>,
}

fn condition<'a>(status: Option<&'a NodeStatus>, type_: &str) -> Option<&'a NodeCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// The instant a wall-clock time corresponds to, given that `now` is `now_ts`.
fn instant_of(ts: Timestamp, now: Instant, now_ts: Timestamp) -> Instant {
    let ago = now_ts.as_millisecond() - ts.as_millisecond();
    if ago <= 0 {
        return now;
    }
    now.checked_sub(Duration::from_millis(ago as u64)).unwrap_or(now)
}

/// Judges a node's health from its status, its Lease and what was seen before.
/// A node is alive while either its Ready heartbeat or its Lease moves; after
/// the grace period without either, its conditions become `Unknown`.
pub fn check_node_health(
    node: &Node,
    saved: Option<&NodeHealth>,
    lease: Option<&Lease>,
    config: &NodeLifecycleConfig,
    now: Instant,
    now_ts: Timestamp,
) -> HealthCheck {
    let created = node.metadata.creation_timestamp.clone().unwrap_or(Time(Timestamp::UNIX_EPOCH));
    let current_ready = condition(node.status.as_ref(), "Ready").cloned();
    let (observed, grace) = match &current_ready {
        None => (
            NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                last_heartbeat_time: Some(created.clone()),
                last_transition_time: Some(created.clone()),
                ..Default::default()
            },
            config.node_startup_grace_period,
        ),
        Some(c) => (c.clone(), config.node_monitor_grace_period),
    };
    let fresh = |ready: Option<NodeCondition>| NodeHealth { ready, probe: now, ready_transition: now, lease_renew: saved.and_then(|s| s.lease_renew) };
    let mut health = match (saved, &current_ready) {
        (None, None) => {
            let at = instant_of(created.0, now, now_ts);
            NodeHealth { ready: None, probe: at, ready_transition: at, lease_renew: None }
        }
        (None, Some(_)) => fresh(current_ready.clone()),
        // First sight of a Ready condition (say, after a restart), or the
        // condition vanished: start counting from now.
        (Some(s), Some(_)) if s.ready.is_none() => fresh(current_ready.clone()),
        (Some(s), None) if s.ready.is_some() => fresh(None),
        (Some(s), Some(c)) => {
            let old = s.ready.as_ref().expect("checked above");
            if old.last_heartbeat_time != c.last_heartbeat_time {
                let transition = if old.last_transition_time != c.last_transition_time { now } else { s.ready_transition };
                NodeHealth { ready: Some(c.clone()), probe: now, ready_transition: transition, lease_renew: s.lease_renew }
            } else {
                NodeHealth { ready: Some(c.clone()), ..s.clone() }
            }
        }
        (Some(s), None) => s.clone(),
    };
    // A renewed Lease is a sign of life too.
    let renewed = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref()).map(|t| t.0);
    if let Some(renewed) = renewed {
        if health.lease_renew.is_none_or(|seen| seen < renewed) {
            health.lease_renew = Some(renewed);
            health.probe = now;
        }
    }

    let mut current = current_ready;
    let mut update = None;
    if now > health.probe + grace {
        let mut status = node.status.clone().unwrap_or_default();
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        // NetworkUnavailable is the network plugin's, not the kubelet's.
        for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            match conditions.iter_mut().find(|c| c.type_ == type_) {
                None => conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: Some(created.clone()),
                    last_transition_time: Some(Time(now_ts)),
                }),
                Some(c) if c.status != "Unknown" => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(Time(now_ts));
                }
                Some(_) => {}
            }
        }
        let ready = condition(Some(&status), "Ready").cloned();
        if ready.as_ref() != Some(&observed) {
            health = NodeHealth { ready: ready.clone(), probe: health.probe, ready_transition: now, lease_renew: health.lease_renew };
            current = ready;
            update = Some(status);
        }
    }
    HealthCheck { health, observed, current, update }
}

// === taints ===

fn taint(key: &str, effect: &str) -> Taint {
    Taint { key: key.into(), effect: effect.into(), value: None, time_added: None }
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|ts| ts.iter().any(|t| t.key == key && t.effect == effect))
}

/// The NoSchedule taints a node's conditions and cordon call for (upstream
/// `doNoScheduleTaintingPass`).
pub fn desired_no_schedule_taints(node: &Node) -> Vec<Taint> {
    let mut out = Vec::new();
    for c in node.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten() {
        let key = match (c.type_.as_str(), c.status.as_str()) {
            ("Ready", "False") => TAINT_NOT_READY,
            ("Ready", "Unknown") => TAINT_UNREACHABLE,
            ("MemoryPressure", "True") => TAINT_MEMORY_PRESSURE,
            ("DiskPressure", "True") => TAINT_DISK_PRESSURE,
            ("NetworkUnavailable", "True") => TAINT_NETWORK_UNAVAILABLE,
            ("PIDPressure", "True") => TAINT_PID_PRESSURE,
            _ => continue,
        };
        out.push(taint(key, "NoSchedule"));
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        out.push(taint(TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    out
}

/// The NoSchedule taints the controller manages that the node has now.
fn managed_no_schedule_taints(node: &Node) -> Vec<Taint> {
    let managed = [TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_MEMORY_PRESSURE, TAINT_DISK_PRESSURE, TAINT_NETWORK_UNAVAILABLE, TAINT_PID_PRESSURE, TAINT_UNSCHEDULABLE];
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" && managed.contains(&t.key.as_str()))
        .cloned()
        .collect()
}

/// Taints to add and remove to get from `have` to `want` (by key and effect).
pub fn taint_diff(want: &[Taint], have: &[Taint]) -> (Vec<Taint>, Vec<Taint>) {
    let same = |a: &Taint, b: &Taint| a.key == b.key && a.effect == b.effect;
    let add = want.iter().filter(|w| !have.iter().any(|h| same(w, h))).cloned().collect();
    let remove = have.iter().filter(|h| !want.iter().any(|w| same(w, h))).cloned().collect();
    (add, remove)
}

/// The node's taints with `add` added (stamped `timeAdded`) and `remove`
/// removed, or `None` when nothing changes.
pub fn swapped_taints(node: &Node, add: &[Taint], remove: &[Taint], now: Timestamp) -> Option<Vec<Taint>> {
    let before = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let mut taints: Vec<Taint> = before.iter().filter(|t| !remove.iter().any(|r| r.key == t.key && r.effect == t.effect)).cloned().collect();
    for a in add {
        if !taints.iter().any(|t| t.key == a.key && t.effect == a.effect) {
            taints.push(Taint { time_added: Some(Time(now)), ..a.clone() });
        }
    }
    (taints != before).then_some(taints)
}

// === zones and rate limits ===

/// Upstream `GetZoneKey`: region and zone labels, `""` without them.
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let get = |a: &str, b: &str| labels.get(a).or_else(|| labels.get(b)).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\x00:{zone}")
    }
}

/// How disrupted a zone is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Initial,
    Normal,
    FullDisruption,
    PartialDisruption,
}

/// Upstream `ComputeZoneState` over the zone's current Ready conditions.
pub fn compute_zone_state(ready: &[Option<&str>]) -> (usize, ZoneState) {
    let ready_nodes = ready.iter().filter(|s| **s == Some("True")).count();
    let not_ready = ready.len() - ready_nodes;
    let state = if ready_nodes == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / (not_ready + ready_nodes) as f64 >= UNHEALTHY_ZONE_THRESHOLD {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (not_ready, state)
}

/// A token bucket with a burst of one, starting full (client-go's
/// `NewTokenBucketRateLimiter(qps, 1)`); a rate of zero never lets anything by.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    qps: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(qps: f64, now: Instant) -> TokenBucket {
        TokenBucket { qps, tokens: 1.0, last: now }
    }

    pub fn try_accept(&mut self, now: Instant) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(1.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Nodes waiting for their NoExecute taint, per zone, each zone rate limited.
#[derive(Debug)]
pub struct ZoneTainter {
    queue: VecDeque<String>,
    limiter: TokenBucket,
}

impl ZoneTainter {
    pub fn new(qps: f64, now: Instant) -> ZoneTainter {
        ZoneTainter { queue: VecDeque::new(), limiter: TokenBucket::new(qps, now) }
    }

    pub fn add(&mut self, node: &str) {
        if !self.queue.iter().any(|n| n == node) {
            self.queue.push_back(node.to_string());
        }
    }

    pub fn remove(&mut self, node: &str) {
        self.queue.retain(|n| n != node);
    }

    pub fn swap_limiter(&mut self, qps: f64, now: Instant) {
        if (self.limiter.qps - qps).abs() > f64::EPSILON {
            self.limiter = TokenBucket::new(qps, now);
        }
    }

    /// The nodes the limiter lets through now, in order.
    pub fn take(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        while !self.queue.is_empty() && self.limiter.try_accept(now) {
            out.extend(self.queue.pop_front());
        }
        out
    }
}

// === taint-based eviction ===

/// Upstream `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    if t.key.as_deref().is_some_and(|k| !k.is_empty() && k != taint.key) {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Upstream `GetMatchingTolerations`: the toleration used for each taint, or
/// `None` when some taint is not tolerated.
pub fn matching_tolerations(taints: &[Taint], tolerations: &[Toleration]) -> Option<Vec<Toleration>> {
    taints.iter().map(|taint| tolerations.iter().find(|t| tolerates(t, taint)).cloned()).collect()
}

/// How long the pod may stay (upstream `getMinTolerationTime`): the smallest
/// `tolerationSeconds` of the tolerations used; `None` means forever.
pub fn min_toleration_time(used: &[Toleration]) -> Option<Duration> {
    if used.is_empty() {
        return Some(Duration::ZERO);
    }
    let mut min: Option<i64> = None;
    for t in used {
        if let Some(s) = t.toleration_seconds {
            if s <= 0 {
                return Some(Duration::ZERO);
            }
            min = Some(min.map_or(s, |m| m.min(s)));
        }
    }
    min.map(|s| Duration::from_secs(s as u64))
}

fn no_execute_taints(node: &Node) -> Vec<Taint> {
    node.spec.as_ref().and_then(|s| s.taints.as_ref()).into_iter().flatten().filter(|t| t.effect == "NoExecute").cloned().collect()
}

/// A scheduled pod deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Work {
    created: Instant,
    fire_at: Instant,
    /// Fired already: kept so the pod is not scheduled again while it goes.
    fired: bool,
}

/// What processing a pod decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionDecision {
    /// Nothing to do (already scheduled no later, or tolerated forever without
    /// anything pending).
    Unchanged,
    /// A pending deletion was cancelled (an event is due).
    Cancelled,
    /// Deletion scheduled at this instant (now when not tolerated at all).
    Scheduled(Instant),
}

/// Upstream's timed eviction queue: pods due for deletion, keyed `namespace/name`.
#[derive(Debug, Default)]
pub struct EvictionQueue {
    works: HashMap<String, Work>,
}

impl EvictionQueue {
    /// Adds work unless the pod already has some.
    fn add(&mut self, key: &str, created: Instant, fire_at: Instant) -> bool {
        if self.works.contains_key(key) {
            return false;
        }
        self.works.insert(key.to_string(), Work { created, fire_at, fired: false });
        true
    }

    /// Forgets the pod; true when a deletion was still pending.
    pub fn cancel(&mut self, key: &str) -> bool {
        self.works.remove(key).is_some_and(|w| !w.fired)
    }

    /// Upstream `processPodOnNode`: schedules, keeps or cancels the pod's
    /// deletion given the node's NoExecute taints.
    pub fn process_pod(&mut self, key: &str, tolerations: &[Toleration], taints: &[Taint], now: Instant) -> Vec<EvictionDecision> {
        let mut out = Vec::new();
        if taints.is_empty() {
            if self.cancel(key) {
                out.push(EvictionDecision::Cancelled);
            }
            return out;
        }
        let Some(used) = matching_tolerations(taints, tolerations) else {
            if self.cancel(key) {
                out.push(EvictionDecision::Cancelled);
            }
            if self.add(key, now, now) {
                out.push(EvictionDecision::Scheduled(now));
            }
            return out;
        };
        let Some(wait) = min_toleration_time(&used) else {
            if self.cancel(key) {
                out.push(EvictionDecision::Cancelled);
            }
            return out;
        };
        let mut start = now;
        if let Some(w) = self.works.get(key).copied() {
            // A deletion scheduled earlier keeps its start: the toleration time
            // counts from when the taint was first seen.
            if w.fired || w.created < now {
                return vec![EvictionDecision::Unchanged];
            }
            start = w.created;
            if self.cancel(key) {
                out.push(EvictionDecision::Cancelled);
            }
        }
        let at = start + wait;
        if self.add(key, start, at) {
            out.push(EvictionDecision::Scheduled(at));
        }
        out
    }

    /// The pods due at `now`, marked fired.
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut due: Vec<(Instant, String)> = self.works.iter().filter(|(_, w)| !w.fired && w.fire_at <= now).map(|(k, w)| (w.fire_at, k.clone())).collect();
        due.sort();
        for (_, k) in &due {
            if let Some(w) = self.works.get_mut(k) {
                w.fired = true;
            }
        }
        due.into_iter().map(|(_, k)| k).collect()
    }

    /// When the next pending deletion is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.works.values().filter(|w| !w.fired).map(|w| w.fire_at).min()
    }

    /// A deletion that failed may be scheduled again.
    fn forget_fired(&mut self, key: &str) {
        if self.works.get(key).is_some_and(|w| w.fired) {
            self.works.remove(key);
        }
    }
}

// === the controllers ===

/// What the controllers' API calls can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] skiff_client::Error),
    #[error("the taints of node {0} kept changing under us")]
    TaintConflict(String),
}

/// State shared by the lifecycle loops; std Mutexes, since nothing async happens
/// while they are held.
struct NodeLifecycle {
    ctx: Context,
    config: NodeLifecycleConfig,
    recorder: EventRecorder,
    health: Mutex<HashMap<String, NodeHealth>>,
    zones: Mutex<Zones>,
    /// Nodes whose NoSchedule taints need a look.
    no_schedule: WorkQueue<String>,
}

#[derive(Default)]
struct Zones {
    states: HashMap<String, ZoneState>,
    tainters: BTreeMap<String, ZoneTainter>,
}

/// Runs the node lifecycle and taint eviction controllers until dropped, with
/// the configuration from the environment (defaults when it is malformed).
pub async fn run(ctx: Context) {
    let config = NodeLifecycleConfig::from_env().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring a malformed node lifecycle setting; using the defaults");
        NodeLifecycleConfig::default()
    });
    run_with(ctx, config).await
}

/// Runs both controllers with `config`.
pub async fn run_with(ctx: Context, config: NodeLifecycleConfig) {
    let lifecycle = Arc::new(NodeLifecycle {
        recorder: ctx.recorder("node-controller"),
        config,
        health: Mutex::new(HashMap::new()),
        zones: Mutex::new(Zones::default()),
        no_schedule: WorkQueue::new(),
        ctx: ctx.clone(),
    });
    let queue = lifecycle.no_schedule.clone();
    ctx.nodes.on_event(Arc::new(move |ev: &InformerEvent<Node>| {
        if let InformerEvent::Applied { new, .. } = ev {
            queue.add(new.metadata.name.clone().unwrap_or_default());
        }
    }));
    let eviction = TaintEviction::new(ctx.clone());
    eviction.register();
    ctx.nodes.wait_synced().await;
    ctx.pods.wait_synced().await;
    ctx.node_leases.wait_synced().await;
    tokio::join!(lifecycle.clone().monitor(), lifecycle.clone().no_execute_pass(), lifecycle.clone().no_schedule_worker(), eviction.run());
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl NodeLifecycle {
    async fn monitor(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.node_monitor_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.monitor_node_health().await;
        }
    }

    /// One pass of upstream `monitorNodeHealth`.
    async fn monitor_node_health(&self) {
        let nodes = self.ctx.nodes.store().list();
        let leases = self.ctx.node_leases.store();
        let now = Instant::now();
        let mut seen = Vec::new();
        let mut zone_conditions: HashMap<String, Vec<Option<String>>> = HashMap::new();
        {
            let mut health = lock(&self.health);
            let names: Vec<String> = nodes.iter().filter_map(|n| n.metadata.name.clone()).collect();
            let gone: Vec<String> = health.keys().filter(|k| !names.contains(k)).cloned().collect();
            for name in gone {
                health.remove(&name);
                let mut zones = lock(&self.zones);
                for t in zones.tainters.values_mut() {
                    t.remove(&name);
                }
            }
        }
        for node in &nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let zone = zone_key(node);
            let saved = lock(&self.health).get(&name).cloned();
            if saved.is_none() {
                let msg = format!("Node {name} event: Registered Node {name} in Controller");
                self.recorder.record(&**node, EventType::Normal, "RegisteredNode", &msg);
                let mut zones = lock(&self.zones);
                if !zones.tainters.contains_key(&zone) {
                    zones.tainters.insert(zone.clone(), ZoneTainter::new(self.config.node_eviction_rate, now));
                    zones.states.insert(zone.clone(), ZoneState::Initial);
                }
            }
            let lease = leases.get("kube-node-lease", &name);
            let check = check_node_health(node, saved.as_ref(), lease.as_deref(), &self.config, Instant::now(), Timestamp::now());
            let mut node_now = (**node).clone();
            if let Some(status) = &check.update {
                node_now.status = Some(status.clone());
                if let Err(e) = Api::<Node>::all(&self.ctx.client).replace_status(&name, &node_now).await {
                    tracing::debug!(node = %name, error = %e, "updating node status failed; trying again next pass");
                    zone_conditions.entry(zone).or_default().push(check.observed.status.clone().into());
                    continue;
                }
            }
            lock(&self.health).insert(name.clone(), check.health.clone());
            seen.push(node_now.clone());
            zone_conditions.entry(zone).or_default().push(check.current.as_ref().map(|c| c.status.clone()));
            let Some(current) = &check.current else { continue };
            self.process_taint_based_eviction(&node_now, &check.observed, now).await;
            if current.status != "True" && check.observed.status == "True" {
                let msg = format!("Node {name} status is now: NodeNotReady");
                self.recorder.record(&node_now, EventType::Normal, "NodeNotReady", &msg);
                self.mark_pods_not_ready(&name).await;
            }
        }
        self.handle_disruption(&seen, &zone_conditions, now).await;
    }

    /// Upstream `processTaintBaseEviction`, on the Ready condition as observed
    /// before this pass.
    async fn process_taint_based_eviction(&self, node: &Node, observed: &NodeCondition, now: Instant) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let zone = zone_key(node);
        let (want, other) = match observed.status.as_str() {
            "False" => (TAINT_NOT_READY, TAINT_UNREACHABLE),
            "Unknown" => (TAINT_UNREACHABLE, TAINT_NOT_READY),
            "True" => {
                if let Some(t) = lock(&self.zones).tainters.get_mut(&zone) {
                    t.remove(&name);
                }
                let remove = [taint(TAINT_NOT_READY, "NoExecute"), taint(TAINT_UNREACHABLE, "NoExecute")];
                if let Err(e) = self.swap_taints(&name, &[], &remove).await {
                    tracing::debug!(node = %name, error = %e, "removing NoExecute taints failed");
                }
                return;
            }
            _ => return,
        };
        if has_taint(node, other, "NoExecute") {
            // Swapped at once, without waiting for the limiter.
            if let Err(e) = self.swap_taints(&name, &[taint(want, "NoExecute")], &[taint(other, "NoExecute")]).await {
                tracing::debug!(node = %name, error = %e, "swapping NoExecute taints failed");
            }
        } else if !has_taint(node, want, "NoExecute") {
            let mut zones = lock(&self.zones);
            let rate = self.config.node_eviction_rate;
            zones.tainters.entry(zone).or_insert_with(|| ZoneTainter::new(rate, now)).add(&name);
        }
    }

    /// The NoExecute tainting pass (upstream `doNoExecuteTaintingPass`), every
    /// 100 ms.
    async fn no_execute_pass(self: Arc<Self>) {
        let mut tick = tokio::time::interval(NODE_EVICTION_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let due: Vec<(String, String)> = {
                let mut zones = lock(&self.zones);
                zones.tainters.iter_mut().flat_map(|(zone, t)| t.take(now).into_iter().map(move |n| (zone.clone(), n))).collect()
            };
            for (zone, name) in due {
                let Some(node) = self.ctx.nodes.store().get("", &name) else { continue };
                let ready = condition(node.status.as_ref(), "Ready").map(|c| c.status.clone());
                let result = match ready.as_deref() {
                    Some("False") => self.swap_taints(&name, &[taint(TAINT_NOT_READY, "NoExecute")], &[taint(TAINT_UNREACHABLE, "NoExecute")]).await,
                    Some("Unknown") => self.swap_taints(&name, &[taint(TAINT_UNREACHABLE, "NoExecute")], &[taint(TAINT_NOT_READY, "NoExecute")]).await,
                    // Ready again: nothing to taint.
                    _ => Ok(false),
                };
                if let Err(e) = result {
                    tracing::debug!(node = %name, error = %e, "NoExecute tainting failed; queued again");
                    if let Some(t) = lock(&self.zones).tainters.get_mut(&zone) {
                        t.add(&name);
                    }
                }
            }
        }
    }

    /// Upstream `handleDisruption`: zone states decide the tainting rates; when
    /// every zone is down, the fault is more likely ours than the nodes', so
    /// NoExecute taints are lifted and tainting stops.
    async fn handle_disruption(&self, nodes: &[Node], zone_conditions: &HashMap<String, Vec<Option<String>>>, now: Instant) {
        let mut new_states = HashMap::new();
        let mut all_fully_disrupted = true;
        for (zone, conds) in zone_conditions {
            let statuses: Vec<Option<&str>> = conds.iter().map(|c| c.as_deref()).collect();
            let (_, state) = compute_zone_state(&statuses);
            if state != ZoneState::FullDisruption {
                all_fully_disrupted = false;
            }
            new_states.insert(zone.clone(), state);
        }
        let enter_full = {
            let mut zones = lock(&self.zones);
            zones.states.retain(|z, _| zone_conditions.contains_key(z));
            for z in zone_conditions.keys() {
                zones.states.entry(z.clone()).or_insert(ZoneState::Initial);
            }
            let all_were_fully_disrupted = zones.states.values().all(|s| *s == ZoneState::FullDisruption);
            if all_fully_disrupted && all_were_fully_disrupted {
                return;
            }
            if all_fully_disrupted {
                for t in zones.tainters.values_mut() {
                    t.swap_limiter(0.0, now);
                }
                for s in zones.states.values_mut() {
                    *s = ZoneState::FullDisruption;
                }
                true
            } else {
                let exiting = all_were_fully_disrupted;
                let zone_names: Vec<String> = zones.states.keys().cloned().collect();
                for z in zone_names {
                    let new = new_states.get(&z).copied().unwrap_or(ZoneState::Normal);
                    if !exiting && zones.states.get(&z) == Some(&new) {
                        continue;
                    }
                    let size = zone_conditions.get(&z).map_or(0, Vec::len);
                    let qps = match new {
                        ZoneState::PartialDisruption if size > LARGE_CLUSTER_SIZE_THRESHOLD => self.config.secondary_node_eviction_rate,
                        ZoneState::PartialDisruption => 0.0,
                        _ => self.config.node_eviction_rate,
                    };
                    let rate = self.config.node_eviction_rate;
                    zones.tainters.entry(z.clone()).or_insert_with(|| ZoneTainter::new(rate, now)).swap_limiter(qps, now);
                    zones.states.insert(z, new);
                }
                if exiting {
                    // Everyone gets a fresh grace period.
                    for h in lock(&self.health).values_mut() {
                        h.probe = now;
                        h.ready_transition = now;
                    }
                }
                false
            }
        };
        if enter_full {
            tracing::warn!("every node is not ready; lifting NoExecute taints and stopping evictions until some node is ready again");
            for node in nodes {
                let name = node.metadata.name.clone().unwrap_or_default();
                let remove = [taint(TAINT_NOT_READY, "NoExecute"), taint(TAINT_UNREACHABLE, "NoExecute")];
                if let Err(e) = self.swap_taints(&name, &[], &remove).await {
                    tracing::debug!(node = %name, error = %e, "removing NoExecute taints failed");
                }
            }
        }
    }

    async fn no_schedule_worker(self: Arc<Self>) {
        while let Some(name) = self.no_schedule.next().await {
            match self.sync_no_schedule(&name).await {
                Ok(()) => self.no_schedule.forget(&name),
                Err(e) => {
                    tracing::debug!(node = %name, error = %e, "NoSchedule tainting failed; retrying");
                    self.no_schedule.add_rate_limited(name.clone());
                }
            }
            self.no_schedule.done(&name);
        }
    }

    async fn sync_no_schedule(&self, name: &str) -> Result<(), Error> {
        let Some(node) = self.ctx.nodes.store().get("", name) else { return Ok(()) };
        let (add, remove) = taint_diff(&desired_no_schedule_taints(&node), &managed_no_schedule_taints(&node));
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        self.swap_taints(name, &add, &remove).await.map(|_| ())
    }

    /// Upstream `SwapNodeControllerTaint`: adds and removes taints on the latest
    /// version of the node, retrying on conflicts. Returns whether it changed.
    async fn swap_taints(&self, name: &str, add: &[Taint], remove: &[Taint]) -> Result<bool, Error> {
        let api = Api::<Node>::all(&self.ctx.client);
        for attempt in 0..5 {
            let node = match (attempt, self.ctx.nodes.store().get("", name)) {
                (0, Some(cached)) => (*cached).clone(),
                _ => match api.get_opt(name).await? {
                    Some(n) => n,
                    None => return Ok(false),
                },
            };
            let Some(taints) = swapped_taints(&node, add, remove, Timestamp::now()) else { return Ok(false) };
            let patch = json!({
                "metadata": {"resourceVersion": node.metadata.resource_version},
                "spec": {"taints": if taints.is_empty() { Value::Null } else { json!(taints) }},
            });
            match api.patch(name, PatchType::Merge, &patch).await {
                Ok(_) => return Ok(true),
                Err(e) if e.is_conflict() => continue,
                Err(e) if e.is_not_found() => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::TaintConflict(name.to_string()))
    }

    /// Upstream `MarkPodsNotReady`: the node's pods stop being ready, so
    /// Services stop sending them traffic.
    async fn mark_pods_not_ready(&self, node: &str) {
        let now = Timestamp::now();
        for pod in self.ctx.pods.store().list() {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
                continue;
            }
            let ready = pod.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            if ready.is_none_or(|c| c.status == "False") {
                continue;
            }
            let ns = pod.metadata.namespace.as_deref().unwrap_or("");
            let name = pod.metadata.name.as_deref().unwrap_or("");
            let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": Time(now)}]}});
            match Api::<Pod>::namespaced(&self.ctx.client, ns).patch_status(name, PatchType::StrategicMerge, &patch).await {
                Ok(_) => self.recorder.record(&*pod, EventType::Warning, "NodeNotReady", "Node is not ready"),
                Err(e) if e.is_not_found() => {}
                Err(e) => tracing::debug!(pod = %key_of(&pod.metadata), error = %e, "marking a pod not ready failed"),
            }
        }
    }
}

// === the taint eviction controller ===

/// Deletes pods from nodes whose NoExecute taints they do not tolerate (for
/// long enough).
struct TaintEviction {
    ctx: Context,
    recorder: EventRecorder,
    state: Mutex<EvictionState>,
    wake: Notify,
}

#[derive(Default)]
struct EvictionState {
    queue: EvictionQueue,
    /// NoExecute taints of each tainted node.
    tainted: HashMap<String, Vec<Taint>>,
}

impl TaintEviction {
    fn new(ctx: Context) -> Arc<TaintEviction> {
        Arc::new(TaintEviction { recorder: ctx.recorder("taint-eviction-controller"), ctx, state: Mutex::new(EvictionState::default()), wake: Notify::new() })
    }

    fn register(self: &Arc<Self>) {
        let me = self.clone();
        self.ctx.nodes.on_event(Arc::new(move |ev: &InformerEvent<Node>| match ev {
            InformerEvent::Applied { old, new } => {
                let taints = no_execute_taints(new);
                if old.as_ref().is_some_and(|o| no_execute_taints(o) == taints) {
                    return;
                }
                me.node_updated(new.metadata.name.as_deref().unwrap_or(""), taints);
            }
            InformerEvent::Deleted(old) => {
                lock(&me.state).tainted.remove(old.metadata.name.as_deref().unwrap_or(""));
            }
        }));
        let me = self.clone();
        self.ctx.pods.on_event(Arc::new(move |ev: &InformerEvent<Pod>| match ev {
            InformerEvent::Applied { old, new } => {
                let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
                let tolerations = |p: &Pod| p.spec.as_ref().and_then(|s| s.tolerations.clone());
                if old.as_ref().is_some_and(|o| node(o) == node(new) && tolerations(o) == tolerations(new)) {
                    return;
                }
                me.pod_updated(new);
            }
            InformerEvent::Deleted(old) => {
                let key = key_of(&old.metadata);
                if lock(&me.state).queue.cancel(&key) {
                    me.cancelled_event(old);
                }
            }
        }));
    }

    fn cancelled_event(&self, pod: &Pod) {
        self.recorder.record(pod, EventType::Normal, "TaintManagerEviction", &format!("Cancelling deletion of Pod {}", key_of(&pod.metadata)));
    }

    fn pods_on(&self, node: &str) -> Vec<Arc<Pod>> {
        self.ctx.pods.store().list().into_iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)).collect()
    }

    fn node_updated(&self, node: &str, taints: Vec<Taint>) {
        {
            let mut state = lock(&self.state);
            if taints.is_empty() {
                state.tainted.remove(node);
            } else {
                state.tainted.insert(node.to_string(), taints.clone());
            }
        }
        let now = Instant::now();
        for pod in self.pods_on(node) {
            self.process(&pod, &taints, now);
        }
    }

    fn pod_updated(&self, pod: &Pod) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) else { return };
        let Some(taints) = lock(&self.state).tainted.get(&node).cloned() else { return };
        self.process(pod, &taints, Instant::now());
    }

    fn process(&self, pod: &Pod, taints: &[Taint], now: Instant) {
        let key = key_of(&pod.metadata);
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
        let decisions = lock(&self.state).queue.process_pod(&key, &tolerations, taints, now);
        for d in decisions {
            match d {
                EvictionDecision::Cancelled => self.cancelled_event(pod),
                EvictionDecision::Scheduled(_) => self.wake.notify_one(),
                EvictionDecision::Unchanged => {}
            }
        }
    }

    /// Fires due deletions; sleeps until the next one or until new work comes.
    async fn run(self: Arc<Self>) {
        loop {
            let (due, next) = {
                let mut state = lock(&self.state);
                let due = state.queue.take_due(Instant::now());
                (due, state.queue.next_deadline())
            };
            for key in due {
                let me = self.clone();
                tokio::spawn(async move { me.evict(&key).await });
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    /// Upstream `deletePodHandler` and `addConditionAndDeletePod`: an event, the
    /// `DisruptionTarget` condition, then the deletion; retried a few times.
    async fn evict(&self, key: &str) {
        let (ns, name) = split_key(key);
        if let Some(pod) = self.ctx.pods.store().get(ns, name) {
            self.recorder.record(&*pod, EventType::Normal, "TaintManagerEviction", &format!("Marking for deletion Pod {key}"));
        }
        let mut last = None;
        for _ in 0..5 {
            match self.add_condition_and_delete(ns, name).await {
                Ok(()) => return,
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        if let Some(e) = last {
            tracing::warn!(pod = %key, error = %e, "taint-based eviction failed");
            // Let a later update of the pod or node schedule it again.
            lock(&self.state).queue.forget_fired(key);
        }
    }

    async fn add_condition_and_delete(&self, ns: &str, name: &str) -> Result<(), skiff_client::Error> {
        let api = Api::<Pod>::namespaced(&self.ctx.client, ns);
        let Some(pod) = api.get_opt(name).await? else { return Ok(()) };
        let has = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "DisruptionTarget" && c.status == "True" && c.reason.as_deref() == Some("DeletionByTaintManager")));
        if !has {
            let patch = json!({"status": {"conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": Time(Timestamp::now()),
            }]}});
            match api.patch_status(name, PatchType::StrategicMerge, &patch).await {
                Err(e) if e.is_not_found() => return Ok(()),
                other => {
                    other?;
                }
            }
        }
        let params = DeleteParams { precondition_uid: pod.metadata.uid.clone(), ..DeleteParams::default() };
        match api.delete(name, &params).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn ready_condition(status: &str, heartbeat: i64) -> NodeCondition {
        NodeCondition {
            type_: "Ready".into(),
            status: status.into(),
            reason: Some("KubeletReady".into()),
            message: Some("kubelet is posting ready status".into()),
            last_heartbeat_time: Some(Time(at(heartbeat))),
            last_transition_time: Some(Time(at(0))),
        }
    }

    fn node(conditions: Vec<NodeCondition>) -> Node {
        Node {
            metadata: ObjectMeta { name: Some("n1".into()), creation_timestamp: Some(Time(at(0))), ..Default::default() },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus { conditions: Some(conditions), ..Default::default() }),
        }
    }

    fn lease(renewed: i64) -> Lease {
        Lease { metadata: ObjectMeta::default(), spec: Some(LeaseSpec { renew_time: Some(MicroTime(at(renewed))), ..Default::default() }) }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration { key: Some(key.into()), operator: Some("Exists".into()), effect: Some("NoExecute".into()), toleration_seconds: seconds, value: None }
    }

    fn config() -> NodeLifecycleConfig {
        NodeLifecycleConfig { node_monitor_grace_period: Duration::from_secs(40), ..NodeLifecycleConfig::default() }
    }

    #[test]
    fn settings_come_from_the_environment() {
        let vars: HashMap<&str, &str> = [("SKIFF_NODE_MONITOR_GRACE_PERIOD", "4s"), ("SKIFF_NODE_MONITOR_PERIOD", "500ms"), ("SKIFF_NODE_EVICTION_RATE", "2")].into();
        let c = NodeLifecycleConfig::from_lookup(|v| vars.get(v).map(|s| s.to_string())).unwrap();
        assert_eq!(c.node_monitor_grace_period, Duration::from_secs(4));
        assert_eq!(c.node_monitor_period, Duration::from_millis(500));
        assert_eq!(c.node_eviction_rate, 2.0);
        assert_eq!(c.node_startup_grace_period, Duration::from_secs(60));
        let c = NodeLifecycleConfig::from_lookup(|_| None).unwrap();
        assert_eq!(c, NodeLifecycleConfig::default());
        assert_eq!(c.node_monitor_grace_period, Duration::from_secs(50));
        let e = NodeLifecycleConfig::from_lookup(|v| (v == "SKIFF_NODE_MONITOR_GRACE_PERIOD").then(|| "soon".to_string())).unwrap_err();
        assert_eq!(e.var, "SKIFF_NODE_MONITOR_GRACE_PERIOD");
        assert_eq!(NodeLifecycleConfig::from_lookup(|v| (v == "SKIFF_NODE_MONITOR_GRACE_PERIOD").then(|| "90".to_string())).unwrap().node_monitor_grace_period, Duration::from_secs(90));
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_whose_lease_stops_becomes_unknown_after_the_grace_period() {
        let c = config();
        let t0 = Instant::now();
        let n = node(vec![ready_condition("True", 0)]);
        let first = check_node_health(&n, None, Some(&lease(0)), &c, t0, at(0));
        assert!(first.update.is_none());
        assert_eq!(first.current.as_ref().unwrap().status, "True");

        // The Lease keeps moving although the status heartbeat does not: alive.
        tokio::time::advance(Duration::from_secs(30)).await;
        let renewed = check_node_health(&n, Some(&first.health), Some(&lease(30)), &c, Instant::now(), at(30));
        assert!(renewed.update.is_none());
        assert_eq!(renewed.health.probe, Instant::now());

        // Then nothing for 40 s: still within the grace period.
        tokio::time::advance(Duration::from_secs(40)).await;
        let quiet = check_node_health(&n, Some(&renewed.health), Some(&lease(30)), &c, Instant::now(), at(70));
        assert!(quiet.update.is_none(), "exactly at the grace period is not past it");

        tokio::time::advance(Duration::from_secs(1)).await;
        let late = check_node_health(&n, Some(&quiet.health), Some(&lease(30)), &c, Instant::now(), at(71));
        let status = late.update.expect("the conditions turn Unknown");
        let ready = status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
        assert_eq!(ready.last_transition_time, Some(Time(at(71))));
        assert_eq!(ready.last_heartbeat_time, Some(Time(at(0))), "the heartbeat stays the kubelet's");
        assert_eq!(late.observed.status, "True");
        assert_eq!(late.current.as_ref().unwrap().status, "Unknown");
        let pressure = status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!((pressure.status.as_str(), pressure.reason.as_deref()), ("Unknown", Some("NodeStatusNeverUpdated")));

        // Once Unknown, nothing more is written.
        let marked = node(status.conditions.clone().unwrap());
        tokio::time::advance(Duration::from_secs(5)).await;
        let again = check_node_health(&marked, Some(&late.health), Some(&lease(30)), &c, Instant::now(), at(76));
        assert!(again.update.is_none());
        assert_eq!(again.observed.status, "Unknown");
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_never_posted_status_gets_the_startup_grace_period() {
        let c = config();
        let n = node(vec![]);
        // Created 61 s ago without any status: past the 60 s startup grace.
        let check = check_node_health(&n, None, None, &c, Instant::now(), at(61));
        let status = check.update.unwrap();
        let ready = status.conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("Unknown", Some("NodeStatusNeverUpdated")));
        assert_eq!(ready.message.as_deref(), Some("Kubelet never posted node status."));
        let young = check_node_health(&n, None, None, &c, Instant::now(), at(30));
        assert!(young.update.is_none() && young.current.is_none());
    }

    #[test]
    fn conditions_and_cordon_become_no_schedule_taints() {
        let mut n = node(vec![ready_condition("Unknown", 0), NodeCondition { type_: "DiskPressure".into(), status: "True".into(), ..Default::default() }]);
        n.spec.as_mut().unwrap().unschedulable = Some(true);
        let want: Vec<String> = desired_no_schedule_taints(&n).iter().map(|t| format!("{}:{}", t.key, t.effect)).collect();
        assert_eq!(want, [format!("{TAINT_UNREACHABLE}:NoSchedule"), format!("{TAINT_DISK_PRESSURE}:NoSchedule"), format!("{TAINT_UNSCHEDULABLE}:NoSchedule")]);

        // A healthy, uncordoned node loses the managed taints but keeps others.
        let mut healthy = node(vec![ready_condition("True", 0)]);
        healthy.spec.as_mut().unwrap().taints = Some(vec![taint(TAINT_UNSCHEDULABLE, "NoSchedule"), taint(TAINT_NOT_READY, "NoSchedule"), taint("dedicated", "NoSchedule")]);
        let (add, remove) = taint_diff(&desired_no_schedule_taints(&healthy), &managed_no_schedule_taints(&healthy));
        assert!(add.is_empty());
        assert_eq!(remove.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(), [TAINT_UNSCHEDULABLE, TAINT_NOT_READY]);
        let left = swapped_taints(&healthy, &add, &remove, at(5)).unwrap();
        assert_eq!(left.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(), ["dedicated"]);

        let added = swapped_taints(&healthy, &[taint(TAINT_UNREACHABLE, "NoExecute")], &[], at(5)).unwrap();
        assert_eq!(added.last().unwrap().time_added, Some(Time(at(5))));
        assert_eq!(swapped_taints(&healthy, &[taint("dedicated", "NoSchedule")], &[], at(5)), None, "nothing to change");
    }

    #[test]
    fn zones_are_disrupted_when_most_of_their_nodes_are_down() {
        assert_eq!(compute_zone_state(&[Some("True"), Some("True"), Some("Unknown")]), (1, ZoneState::Normal));
        assert_eq!(compute_zone_state(&[Some("Unknown"), None]), (2, ZoneState::FullDisruption));
        assert_eq!(compute_zone_state(&[Some("False"), Some("Unknown"), Some("Unknown"), Some("True")]), (3, ZoneState::PartialDisruption));
        assert_eq!(compute_zone_state(&[Some("False"), Some("Unknown"), Some("True"), Some("True")]), (2, ZoneState::Normal));
        let mut labelled = node(vec![]);
        labelled.metadata.labels = Some([("topology.kubernetes.io/zone".to_string(), "a".to_string()), ("topology.kubernetes.io/region".to_string(), "r".to_string())].into());
        assert_eq!(zone_key(&labelled), "r:\u{0}:a");
        assert_eq!(zone_key(&node(vec![])), "");
    }

    #[tokio::test(start_paused = true)]
    async fn no_execute_tainting_is_rate_limited_per_zone() {
        let start = Instant::now();
        let mut zone = ZoneTainter::new(0.1, start);
        zone.add("a");
        zone.add("b");
        zone.add("a");
        assert_eq!(zone.take(Instant::now()), ["a"], "the first node goes at once");
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(zone.take(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(zone.take(Instant::now()), ["b"], "then one every ten seconds");
        zone.add("c");
        zone.swap_limiter(0.0, Instant::now());
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(zone.take(Instant::now()).is_empty(), "a stopped zone taints nothing");
        zone.remove("c");
        zone.swap_limiter(0.1, Instant::now());
        assert!(zone.take(Instant::now()).is_empty());
    }

    #[test]
    fn tolerations_match_taints_as_upstream() {
        let unreachable = taint(TAINT_UNREACHABLE, "NoExecute");
        assert!(tolerates(&toleration(TAINT_UNREACHABLE, Some(300)), &unreachable));
        assert!(!tolerates(&toleration(TAINT_NOT_READY, Some(300)), &unreachable));
        assert!(tolerates(&Toleration { operator: Some("Exists".into()), ..Default::default() }, &unreachable));
        let equal = Toleration { key: Some("k".into()), value: Some("v".into()), ..Default::default() };
        assert!(tolerates(&equal, &Taint { key: "k".into(), value: Some("v".into()), effect: "NoExecute".into(), time_added: None }));
        assert!(!tolerates(&equal, &Taint { key: "k".into(), value: Some("w".into()), effect: "NoExecute".into(), time_added: None }));
        let no_schedule_only = Toleration { effect: Some("NoSchedule".into()), operator: Some("Exists".into()), ..Default::default() };
        assert!(!tolerates(&no_schedule_only, &unreachable));

        let both = [taint(TAINT_UNREACHABLE, "NoExecute"), taint(TAINT_NOT_READY, "NoExecute")];
        let tols = [toleration(TAINT_NOT_READY, Some(60)), toleration(TAINT_UNREACHABLE, Some(20))];
        let used = matching_tolerations(&both, &tols).unwrap();
        assert_eq!(min_toleration_time(&used), Some(Duration::from_secs(20)));
        assert_eq!(matching_tolerations(&both, &tols[..1]), None);
        assert_eq!(min_toleration_time(&[toleration(TAINT_UNREACHABLE, None)]), None, "forever");
        assert_eq!(min_toleration_time(&[toleration(TAINT_UNREACHABLE, Some(-5))]), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn pods_are_evicted_when_their_toleration_seconds_run_out() {
        let taints = [taint(TAINT_UNREACHABLE, "NoExecute")];
        let mut q = EvictionQueue::default();
        let start = Instant::now();
        let short = [toleration(TAINT_UNREACHABLE, Some(2))];
        assert_eq!(q.process_pod("default/short", &short, &taints, start), [EvictionDecision::Scheduled(start + Duration::from_secs(2))]);
        assert_eq!(q.process_pod("default/intolerant", &[], &taints, start), [EvictionDecision::Scheduled(start)]);
        assert!(q.process_pod("default/forever", &[toleration(TAINT_UNREACHABLE, None)], &taints, start).is_empty());
        assert_eq!(q.take_due(Instant::now()), ["default/intolerant"]);

        tokio::time::advance(Duration::from_millis(1900)).await;
        assert!(q.take_due(Instant::now()).is_empty());
        // Seeing the taint again does not restart the clock.
        assert_eq!(q.process_pod("default/short", &short, &taints, Instant::now()), [EvictionDecision::Unchanged]);
        let next = q.next_deadline().unwrap();
        assert_eq!(next - start, Duration::from_secs(2));
        tokio::time::sleep_until(next).await;
        assert_eq!(q.take_due(Instant::now()), ["default/short"]);
        assert_eq!(q.next_deadline(), None);
        // A fired pod is not scheduled again while it goes.
        assert_eq!(q.process_pod("default/short", &short, &taints, Instant::now()), [EvictionDecision::Unchanged]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_taint_removed_in_time_cancels_the_eviction() {
        let taints = [taint(TAINT_NOT_READY, "NoExecute")];
        let mut q = EvictionQueue::default();
        let tols = [toleration(TAINT_NOT_READY, Some(300))];
        q.process_pod("default/web", &tols, &taints, Instant::now());
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(q.process_pod("default/web", &tols, &[], Instant::now()), [EvictionDecision::Cancelled]);
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(q.take_due(Instant::now()).is_empty());
        assert!(!q.cancel("default/web"), "nothing left to cancel");
    }

    #[test]
    fn wall_clock_times_map_onto_instants() {
        let now = Instant::now();
        assert_eq!(instant_of(at(100), now, at(100)), now);
        assert_eq!(instant_of(at(200), now, at(100)), now, "future times are now");
    }
}
