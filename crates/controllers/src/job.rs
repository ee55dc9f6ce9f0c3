//! The job controller (upstream `pkg/controller/job`, v1.33): runs a Job's pods to
//! completion.
//!
//! - **Counting.** Every pod the controller creates carries the
//!   `batch.kubernetes.io/job-tracking` finalizer. A finished pod is first written
//!   into `status.uncountedTerminatedPods`, then its finalizer is removed, and only
//!   then does it move into `succeeded`/`failed`; so a pod is counted exactly once
//!   even if the pod object disappears or the controller restarts in between.
//! - **Creating.** `parallelism` pods at most, no more than the completions still
//!   missing; Indexed Jobs give each pod a completion index (annotation, label,
//!   hostname `{job}-{index}` and `JOB_COMPLETION_INDEX`). After failures, new pods
//!   wait out an exponential back-off (10 s doubling, at most 6 min).
//! - **Finishing.** `backoffLimit`, `activeDeadlineSeconds` and `podFailurePolicy`
//!   fail a Job; enough successes complete it. As in 1.33 the interim conditions
//!   `FailureTarget` / `SuccessCriteriaMet` are written first, the remaining pods
//!   are stopped, and `Failed` / `Complete` follow once no pod is left terminating.
//! - **Cleaning up.** Finished Jobs with `ttlSecondsAfterFinished` are deleted
//!   once it has passed (upstream's TTL-after-finished controller, also here).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

use serde_json::{json, Value};
use skiff_client::{Api, DeleteParams, EventRecorder, EventType, InformerEvent, PatchType, WorkQueue};

use crate::podutil::{
    controller_ref, is_namespace_terminating, is_pod_active, is_pod_ready, is_pod_terminating, key_of, label_selector_matches, new_controller_ref, pod_from_template, pod_phase,
    run_workers, selector_is_empty, split_key, Expectations,
};
use crate::Context;

/// The finalizer that keeps a finished pod around until the Job has counted it.
pub const JOB_TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The completion index of a pod of an Indexed Job (annotation and label).
pub const JOB_COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// How often the pods of an index failed before this one (`backoffLimitPerIndex`).
pub const JOB_INDEX_FAILURE_COUNT_ANNOTATION: &str = "batch.kubernetes.io/job-index-failure-count";
/// How often they failed in ways the pod failure policy ignores.
pub const JOB_INDEX_IGNORED_FAILURE_COUNT_ANNOTATION: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
/// The environment variable through which containers learn their index.
pub const JOB_COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// `spec.managedBy` of the Jobs this controller owns (also the default).
pub const JOB_CONTROLLER_NAME: &str = "kubernetes.io/job-controller";

/// The first delay before replacing a failed pod; it doubles per consecutive
/// failure up to [`MAX_POD_FAILURE_BACKOFF`].
pub const DEFAULT_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(360);

/// At most this many UIDs wait in `uncountedTerminatedPods` (keeps the status
/// small and big Jobs from starving small ones).
const MAX_UNCOUNTED_PODS: usize = 500;
/// At most this many pods are created or deleted in one sync.
const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;

// === job state ===

fn spec_i32(v: Option<i32>, default: i32) -> i32 {
    v.unwrap_or(default)
}

pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

fn completions(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.completions)
}

fn backoff_limit(job: &Job) -> i32 {
    spec_i32(job.spec.as_ref().and_then(|s| s.backoff_limit), 6)
}

/// A Job whose pods are replaced only once they have failed, not already while
/// terminating: `podReplacementPolicy: Failed`, implied by a pod failure policy.
fn only_replace_failed_pods(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed") || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

pub fn find_condition<'a>(conditions: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn conditions(job: &Job) -> &[JobCondition] {
    job.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or(&[])
}

fn has_true_condition(job: &Job, type_: &str) -> bool {
    find_condition(conditions(job), type_).is_some_and(|c| c.status == "True")
}

/// `Complete` or `Failed` is true: nothing more to do but clean up.
pub fn is_job_finished(job: &Job) -> bool {
    has_true_condition(job, "Complete") || has_true_condition(job, "Failed")
}

pub fn new_condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition (upstream `ensureJobConditionStatus`); a `False` condition is
/// not added when absent. Returns whether anything changed.
fn ensure_condition(list: &mut Vec<JobCondition>, type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> bool {
    if let Some(c) = list.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status || c.reason.as_deref() != Some(reason) || c.message.as_deref() != Some(message) {
            *c = new_condition(type_, status, reason, message, now);
            return true;
        }
        return false;
    }
    if status != "False" {
        list.push(new_condition(type_, status, reason, message, now));
        return true;
    }
    false
}

// === pod state ===

pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|f| f == JOB_TRACKING_FINALIZER))
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// The completion index a pod carries (annotation, else label), if valid.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let from = |m: &Option<std::collections::BTreeMap<String, String>>| m.as_ref()?.get(JOB_COMPLETION_INDEX_ANNOTATION)?.parse::<i32>().ok().filter(|i| *i >= 0);
    from(&pod.metadata.annotations).or_else(|| from(&pod.metadata.labels))
}

/// Whether a pod counts as failed (upstream `isPodFailed`): phase `Failed`, or —
/// unless pods are replaced only once failed — deleted before it succeeded, so
/// orphaned pods that never reach a phase are counted too.
pub fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    if pod_phase(pod) == "Failed" {
        return true;
    }
    if only_replace_failed_pods(job) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && pod_phase(pod) != "Succeeded"
}

/// When a pod finished: its last container termination, else its Ready
/// condition turning false, else its deletion, else its start.
pub fn pod_finished_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let from_containers = status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()))
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max();
    from_containers
        .or_else(|| {
            status?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready" && c.status == "False")?.last_transition_time.as_ref().map(|t| t.0)
        })
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| status?.start_time.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

// === pod failure policy ===

/// What a pod failure policy rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    FailJob,
    FailIndex,
    Ignore,
    Count,
}

/// The outcome of matching a failed pod against the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMatch {
    /// Set when a `FailJob` rule matched: the Job's failure message.
    pub fail_job_message: Option<String>,
    /// Whether the failure counts against `backoffLimit`.
    pub count_failed: bool,
    /// The matching rule's action, if any rule matched.
    pub action: Option<FailureAction>,
}

/// Upstream `matchPodFailurePolicy`: the first rule whose exit codes or pod
/// conditions match decides; without a match the failure counts.
pub fn match_pod_failure_policy(policy: Option<&PodFailurePolicy>, pod: &Pod) -> PolicyMatch {
    let counted = PolicyMatch { fail_job_message: None, count_failed: true, action: None };
    let Some(policy) = policy else { return counted };
    let status = pod.status.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    for (index, rule) in policy.rules.iter().enumerate() {
        let action = match rule.action.as_str() {
            "FailJob" => FailureAction::FailJob,
            "FailIndex" => FailureAction::FailIndex,
            "Ignore" => FailureAction::Ignore,
            "Count" => FailureAction::Count,
            _ => continue,
        };
        let message = if let Some(req) = &rule.on_exit_codes {
            let matched = matching_container(status.container_statuses.as_deref().unwrap_or(&[]), req)
                .or_else(|| matching_container(status.init_container_statuses.as_deref().unwrap_or(&[]), req));
            let Some(c) = matched else { continue };
            let code = c.state.as_ref().and_then(|s| s.terminated.as_ref()).map_or(0, |t| t.exit_code);
            format!("Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}", c.name, rule.action)
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let matched = status.conditions.iter().flatten().find(|c| {
                patterns.iter().any(|p| p.type_ == c.type_ && p.status == c.status)
            });
            let Some(c) = matched else { continue };
            format!("Pod {ns}/{name} has condition {} matching {} rule at index {index}", c.type_, rule.action)
        } else {
            continue;
        };
        return match action {
            FailureAction::Ignore => PolicyMatch { fail_job_message: None, count_failed: false, action: Some(action) },
            FailureAction::FailJob => PolicyMatch { fail_job_message: Some(message), count_failed: true, action: Some(action) },
            FailureAction::FailIndex | FailureAction::Count => PolicyMatch { fail_job_message: None, count_failed: true, action: Some(action) },
        };
    }
    counted
}

fn matching_container<'a>(statuses: &'a [ContainerStatus], req: &PodFailurePolicyOnExitCodesRequirement) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|c| {
        let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) else { return false };
        if req.container_name.as_ref().is_some_and(|n| *n != c.name) || t.exit_code == 0 {
            return false;
        }
        match req.operator.as_str() {
            "In" => req.values.contains(&t.exit_code),
            "NotIn" => !req.values.contains(&t.exit_code),
            _ => false,
        }
    })
}

/// The message of the first failed pod a `FailJob` rule matches.
pub fn fail_job_message(job: &Job, pods: &[Arc<Pod>]) -> Option<String> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    pods.iter().filter(|p| is_pod_failed(p, job)).find_map(|p| match_pod_failure_policy(Some(policy), p).fail_job_message)
}

// === back-off ===

/// Failures since the last success, and when the last of them happened
/// (upstream's backoff record, rebuilt from the pods each sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackoffRecord {
    pub failures_after_last_success: u32,
    pub last_failure: Option<Timestamp>,
}

impl BackoffRecord {
    pub fn from_pods(job: &Job, pods: &[Arc<Pod>]) -> BackoffRecord {
        let last_success = pods.iter().filter(|p| pod_phase(p) == "Succeeded").map(|p| pod_finished_time(p)).max();
        let mut record = BackoffRecord::default();
        for p in pods.iter().filter(|p| is_pod_failed(p, job)) {
            let at = pod_finished_time(p);
            if last_success.is_some_and(|s| at <= s) {
                continue;
            }
            record.failures_after_last_success += 1;
            record.last_failure = record.last_failure.max(Some(at));
        }
        record
    }

    /// How long new pods must still wait at `now`.
    pub fn remaining(&self, now: Timestamp, base: Duration, max: Duration) -> Duration {
        let Some(last) = self.last_failure else { return Duration::ZERO };
        if self.failures_after_last_success == 0 {
            return Duration::ZERO;
        }
        let exp = self.failures_after_last_success.saturating_sub(1).min(32);
        let backoff = base.saturating_mul(1u32 << exp.min(31)).min(max);
        let elapsed = Duration::from_millis(u64::try_from(now.as_millisecond() - last.as_millisecond()).unwrap_or(0));
        backoff.saturating_sub(elapsed)
    }
}

/// `restartPolicy: OnFailure` pods restart in place; their container restarts
/// count against `backoffLimit` instead.
fn past_backoff_limit_on_failure(job: &Job, pods: &[Arc<Pod>]) -> bool {
    let restart_policy = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|s| s.restart_policy.as_deref());
    if restart_policy != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(pod_phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()))
        .map(|c| c.restart_count)
        .sum();
    let limit = backoff_limit(job);
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

// === completion indexes ===

/// Sorted, disjoint, non-adjacent inclusive intervals of indexes, printed as
/// `status.completedIndexes` is (`1,3-5,7`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderedIntervals(pub Vec<(i32, i32)>);

impl OrderedIntervals {
    /// Parses `status.completedIndexes`, dropping what is malformed or not below
    /// `completions`.
    pub fn parse(s: &str, completions: i32) -> OrderedIntervals {
        let mut out = OrderedIntervals::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
                None => (part.parse::<i32>(), part.parse::<i32>()),
            };
            let (Ok(first), Ok(last)) = (first, last) else { continue };
            if first < 0 || first >= completions || last < first {
                continue;
            }
            let last = last.min(completions - 1);
            out = out.merge(&OrderedIntervals(vec![(first, last)]));
        }
        out
    }

    pub fn has(&self, ix: i32) -> bool {
        self.0.iter().any(|(a, b)| *a <= ix && ix <= *b)
    }

    pub fn total(&self) -> i32 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    /// Both sets together.
    pub fn merge(&self, other: &OrderedIntervals) -> OrderedIntervals {
        let mut all: Vec<(i32, i32)> = self.0.iter().chain(other.0.iter()).copied().collect();
        all.sort();
        let mut out: Vec<(i32, i32)> = Vec::new();
        for (a, b) in all {
            match out.last_mut() {
                Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        OrderedIntervals(out)
    }

    pub fn with_indexes(&self, indexes: &[i32]) -> OrderedIntervals {
        self.merge(&OrderedIntervals(indexes.iter().map(|i| (*i, *i)).collect()))
    }
}

impl std::fmt::Display for OrderedIntervals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Two adjacent indexes print as a list, longer runs as a range.
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(a, b)| match b - a {
                0 => a.to_string(),
                1 => format!("{a},{b}"),
                _ => format!("{a}-{b}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The lowest `count` indexes below `completions` that are neither done nor
/// running (upstream `firstPendingIndexes`).
pub fn first_pending_indexes(non_pending: &OrderedIntervals, count: usize, completions: i32) -> Vec<i32> {
    let mut result = Vec::new();
    let mut candidate = 0;
    for (first, last) in &non_pending.0 {
        while candidate < completions && result.len() < count && candidate < *first {
            result.push(candidate);
            candidate += 1;
        }
        if candidate < last + 1 {
            candidate = last + 1;
        }
    }
    while candidate < completions && result.len() < count {
        result.push(candidate);
        candidate += 1;
    }
    result
}

// === failures per index ===

/// An Indexed Job whose indexes fail on their own (`backoffLimitPerIndex`).
pub fn has_backoff_limit_per_index(job: &Job) -> bool {
    is_indexed(job) && job.spec.as_ref().is_some_and(|s| s.backoff_limit_per_index.is_some())
}

fn annotation_count(pod: &Pod, key: &str) -> i32 {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(key)).and_then(|v| v.parse::<i32>().ok()).filter(|v| *v >= 0).unwrap_or(0)
}

/// Upstream `isIndexFailed`: a failed pod whose index has used up its
/// back-off, or that a `FailIndex` rule matches.
pub fn is_index_failed(job: &Job, pod: &Pod) -> bool {
    if !is_pod_failed(pod, job) {
        return false;
    }
    let m = match_pod_failure_policy(job.spec.as_ref().and_then(|s| s.pod_failure_policy.as_ref()), pod);
    if m.action == Some(FailureAction::FailIndex) {
        return true;
    }
    let limit = job.spec.as_ref().and_then(|s| s.backoff_limit_per_index).unwrap_or(0);
    m.count_failed && annotation_count(pod, JOB_INDEX_FAILURE_COUNT_ANNOTATION) >= limit
}

/// `status.failedIndexes` plus the indexes that failed since (upstream
/// `calculateFailedIndexes`).
pub fn failed_indexes(job: &Job, pods: &[Arc<Pod>]) -> OrderedIntervals {
    let limit = completions(job).unwrap_or(0);
    let prev = OrderedIntervals::parse(job.status.as_ref().and_then(|s| s.failed_indexes.as_deref()).unwrap_or(""), limit);
    let mut new: Vec<i32> = pods
        .iter()
        .filter(|p| has_tracking_finalizer(p) && is_index_failed(job, p))
        .filter_map(|p| completion_index(p).filter(|i| *i < limit))
        .collect();
    new.sort_unstable();
    new.dedup();
    prev.with_indexes(&new)
}

/// The failure counts a replacement for `replaced` starts with (upstream
/// `getNewIndexFailureCounts`): its own, plus its failure.
pub fn new_index_failure_counts(job: &Job, replaced: Option<&Pod>) -> (i32, i32) {
    let Some(p) = replaced else { return (0, 0) };
    let mut failures = annotation_count(p, JOB_INDEX_FAILURE_COUNT_ANNOTATION);
    let mut ignored = annotation_count(p, JOB_INDEX_IGNORED_FAILURE_COUNT_ANNOTATION);
    if match_pod_failure_policy(job.spec.as_ref().and_then(|s| s.pod_failure_policy.as_ref()), p).count_failed {
        failures += 1;
    } else {
        ignored += 1;
    }
    (failures, ignored)
}

/// Failed pods whose finalizer stays until their index has a replacement, so
/// the replacement can inherit their failure count (upstream
/// `getPodsWithDelayedDeletionPerIndex`): the latest failed pod of each index
/// that is neither done, failed nor running.
fn pods_with_delayed_deletion(
    job: &Job,
    pods: &[Arc<Pod>],
    active: &[Arc<Pod>],
    succeeded: &OrderedIntervals,
    failed: &OrderedIntervals,
    expected_rm: &HashSet<String>,
) -> std::collections::BTreeMap<i32, Arc<Pod>> {
    let limit = completions(job).unwrap_or(0);
    let running: HashSet<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
    let absolute = |p: &Pod| annotation_count(p, JOB_INDEX_FAILURE_COUNT_ANNOTATION) + annotation_count(p, JOB_INDEX_IGNORED_FAILURE_COUNT_ANNOTATION);
    let mut out: std::collections::BTreeMap<i32, Arc<Pod>> = Default::default();
    for p in pods {
        if !has_tracking_finalizer(p) || expected_rm.contains(uid(p)) || !is_pod_failed(p, job) {
            continue;
        }
        let Some(ix) = completion_index(p).filter(|i| *i < limit) else { continue };
        if succeeded.has(ix) || failed.has(ix) || running.contains(&ix) {
            continue;
        }
        match out.get(&ix) {
            Some(last) if !(absolute(last) <= absolute(p) && pod_finished_time(p) >= pod_finished_time(last)) => {}
            _ => {
                out.insert(ix, p.clone());
            }
        }
    }
    out
}

/// How long the replacement for an index must wait after `last_failed`
/// (upstream `getRemainingTimePerIndex`).
fn remaining_for_index(last_failed: Option<&Arc<Pod>>, now: Timestamp) -> Duration {
    let Some(p) = last_failed else { return Duration::ZERO };
    let failures = annotation_count(p, JOB_INDEX_FAILURE_COUNT_ANNOTATION) + annotation_count(p, JOB_INDEX_IGNORED_FAILURE_COUNT_ANNOTATION) + 1;
    let record = BackoffRecord { failures_after_last_success: failures as u32, last_failure: Some(pod_finished_time(p)) };
    record.remaining(now, DEFAULT_POD_FAILURE_BACKOFF, MAX_POD_FAILURE_BACKOFF)
}

// === choosing pods ===

/// Upstream's `ActivePods` order: the pods cheapest to lose first (unscheduled,
/// pending, not ready, ready for less time, restarted more, newer).
fn removal_order(a: &Pod, b: &Pod) -> Ordering {
    let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let (na, nb) = (node(a), node(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() { Ordering::Less } else { Ordering::Greater };
    }
    let phase = |p: &Pod| match pod_phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let ord = phase(a).cmp(&phase(b));
    if ord != Ordering::Equal {
        return ord;
    }
    let (ra, rb) = (is_pod_ready(a), is_pod_ready(b));
    if ra != rb {
        return if ra { Ordering::Greater } else { Ordering::Less };
    }
    if ra && rb {
        // Ready more recently sorts first.
        let since = |p: &Pod| crate::podutil::pod_ready_since(p);
        let ord = since(b).cmp(&since(a));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    let restarts = |p: &Pod| p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.iter().map(|c| c.restart_count).max()).unwrap_or(0);
    let ord = restarts(b).cmp(&restarts(a));
    if ord != Ordering::Equal {
        return ord;
    }
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(b).cmp(&created(a))
}

/// The active pods to delete to get down by `rm_at_least` (upstream
/// `activePodsForRemoval`): for Indexed Jobs, pods with an invalid or duplicated
/// index go first.
pub fn active_pods_for_removal(job: &Job, active: &[Arc<Pod>], rm_at_least: usize) -> Vec<Arc<Pod>> {
    let mut rm: Vec<Arc<Pod>> = Vec::new();
    let mut left: Vec<Arc<Pod>> = Vec::new();
    if is_indexed(job) {
        let limit = completions(job).unwrap_or(0);
        let mut by_index: std::collections::BTreeMap<i32, Vec<Arc<Pod>>> = Default::default();
        for p in active {
            match completion_index(p).filter(|i| *i < limit) {
                Some(i) => by_index.entry(i).or_default().push(p.clone()),
                None => rm.push(p.clone()),
            }
        }
        for (_, mut group) in by_index {
            // Keep the most valuable pod of each index.
            group.sort_by(|a, b| removal_order(a, b));
            let keep = group.pop();
            rm.extend(group);
            left.extend(keep);
        }
    } else {
        left = active.to_vec();
    }
    if rm.len() < rm_at_least {
        left.sort_by(|a, b| removal_order(a, b));
        let n = rm_at_least - rm.len();
        rm.extend(left.into_iter().take(n));
    }
    rm
}

/// How many pods should be running (upstream `manageJob`): `parallelism` at
/// most, and no more than the completions still missing. Without `completions`,
/// once one pod has succeeded no new ones start.
pub fn want_active(job: &Job, active: i32, succeeded: i32) -> i32 {
    let parallelism = spec_i32(job.spec.as_ref().and_then(|s| s.parallelism), 1);
    match completions(job) {
        None => {
            if succeeded > 0 {
                active
            } else {
                parallelism
            }
        }
        Some(c) => (c - succeeded).min(parallelism).max(0),
    }
}

// === pods from the template ===

/// The template a Job's pods are made from: the tracking finalizer added, and for
/// Indexed Jobs the `JOB_COMPLETION_INDEX` variable in every container.
pub fn pod_template_for(job: &Job) -> PodTemplateSpec {
    let mut template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == JOB_TRACKING_FINALIZER) {
        finalizers.push(JOB_TRACKING_FINALIZER.to_string());
    }
    if is_indexed(job) {
        if let Some(spec) = template.spec.as_mut() {
            for c in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
                let env = c.env.get_or_insert_with(Vec::new);
                if !env.iter().any(|e| e.name == JOB_COMPLETION_INDEX_ENV) {
                    env.push(EnvVar {
                        name: JOB_COMPLETION_INDEX_ENV.to_string(),
                        value: None,
                        value_from: Some(EnvVarSource {
                            field_ref: Some(ObjectFieldSelector {
                                api_version: None,
                                // The label, since PodIndexLabel went GA (1.32).
                                field_path: format!("metadata.labels['{JOB_COMPLETION_INDEX_ANNOTATION}']"),
                            }),
                            ..EnvVarSource::default()
                        }),
                    });
                }
            }
        }
    }
    template
}

/// The template of the pod for one completion index: annotation, label and
/// hostname `{job}-{index}`; and the `generateName` for it.
pub fn indexed_template(job_name: &str, template: &PodTemplateSpec, index: i32) -> (PodTemplateSpec, String) {
    let mut t = template.clone();
    let meta = t.metadata.get_or_insert_with(Default::default);
    meta.annotations.get_or_insert_with(Default::default).insert(JOB_COMPLETION_INDEX_ANNOTATION.to_string(), index.to_string());
    meta.labels.get_or_insert_with(Default::default).insert(JOB_COMPLETION_INDEX_ANNOTATION.to_string(), index.to_string());
    if let Some(spec) = t.spec.as_mut() {
        spec.hostname = Some(format!("{job_name}-{index}"));
    }
    // Generated names are at most 58 characters before the random suffix.
    let appendix = format!("-{index}-");
    let keep = 58usize.saturating_sub(appendix.len());
    let base: String = job_name.chars().take(keep).collect();
    (t, format!("{base}{appendix}"))
}

fn selector(job: &Job) -> Option<&LabelSelector> {
    job.spec.as_ref()?.selector.as_ref()
}

/// Uncounted pod UIDs already in the status.
#[derive(Debug, Clone, Default)]
struct Uncounted {
    succeeded: HashSet<String>,
    failed: HashSet<String>,
}

impl Uncounted {
    fn of(job: &Job) -> Uncounted {
        let u = job.status.as_ref().and_then(|s| s.uncounted_terminated_pods.as_ref());
        let set = |v: Option<&Vec<String>>| v.map(|v| v.iter().cloned().collect()).unwrap_or_default();
        Uncounted { succeeded: set(u.and_then(|u| u.succeeded.as_ref())), failed: set(u.and_then(|u| u.failed.as_ref())) }
    }
}

/// Upstream `matchSuccessPolicy`: the first rule whose indexes (or count) have
/// succeeded.
pub fn match_success_policy(job: &Job, completions: i32, succeeded: &OrderedIntervals) -> Option<String> {
    let policy = job.spec.as_ref()?.success_policy.as_ref()?;
    if succeeded.0.is_empty() {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let matched = match &rule.succeeded_indexes {
            Some(indexes) => {
                let required = OrderedIntervals::parse(indexes, completions);
                if required.0.is_empty() {
                    continue;
                }
                let contained: i32 = required
                    .0
                    .iter()
                    .flat_map(|(a, b)| succeeded.0.iter().map(move |(c, d)| ((*b).min(*d) - (*a).max(*c) + 1).max(0)))
                    .sum();
                contained == required.total() || rule.succeeded_count.is_some_and(|n| contained >= n)
            }
            None => rule.succeeded_count.is_some_and(|n| succeeded.total() >= n),
        };
        if matched {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

// === deciding ===

/// What to do with the pods in one sync.
#[derive(Debug, Clone, Default)]
pub enum PodOp {
    #[default]
    Nothing,
    /// Create pods, one per entry: its completion index (Indexed Jobs) or `None`.
    Create(Vec<Option<i32>>),
    /// Delete surplus pods (scale-down, suspension); their finalizers go first,
    /// since they are not counted.
    Delete(Vec<Arc<Pod>>),
    /// The Job is finishing: delete every active pod, keeping finalizers so the
    /// pods are counted as failed.
    DeleteActive(Vec<Arc<Pod>>),
}

/// Everything a sync decides from the Job and its pods before it touches the API
/// (upstream `syncJob` and `manageJob`, assuming every pod operation succeeds).
#[derive(Debug, Clone)]
pub struct Plan {
    /// The status to aim for: start time, suspension condition, and the active,
    /// ready and terminating counts after the pod operation.
    pub status: JobStatus,
    /// Whether the status differs in what upstream flushes on its own.
    pub status_changed: bool,
    pub op: PodOp,
    /// The condition the Job is finishing with (`FailureTarget`, `Failed`,
    /// `SuccessCriteriaMet`), if it is.
    pub finished: Option<JobCondition>,
    pub requeue_after: Option<Duration>,
    /// Normal events to record (`Suspended`, `Resumed`).
    pub events: Vec<(&'static str, &'static str)>,
    /// Indexed Jobs: completed indexes before and after this sync's pods.
    pub prev_succeeded_indexes: OrderedIntervals,
    pub succeeded_indexes: OrderedIntervals,
    /// Jobs with `backoffLimitPerIndex`: the failed indexes, the failed pods
    /// kept until their index is replaced, and the failure counts each new
    /// pod starts with.
    pub failed_indexes: Option<OrderedIntervals>,
    pub delayed_deletion: std::collections::BTreeMap<i32, Arc<Pod>>,
    pub index_failure_counts: std::collections::BTreeMap<i32, (i32, i32)>,
}

fn ready_count(pods: &[Arc<Pod>]) -> i32 {
    pods.iter().filter(|p| is_pod_ready(p)).count() as i32
}

/// Decides one sync of `job`: `satisfied` says whether the controller's own pod
/// creations and deletions have all been seen, `expected_rm` holds pods whose
/// finalizer removal is still in flight.
pub fn plan(job: &Job, pods: &[Arc<Pod>], now: Timestamp, satisfied: bool, expected_rm: &HashSet<String>) -> Plan {
    let mut status = job.status.clone().unwrap_or_default();
    let active_pods: Vec<Arc<Pod>> = pods.iter().filter(|p| is_pod_active(p)).cloned().collect();
    let mut active = active_pods.len() as i32;
    let mut ready = ready_count(&active_pods);
    let mut terminating = pods.iter().filter(|p| is_pod_terminating(p)).count() as i32;
    let uncounted = Uncounted::of(job);
    let indexed = is_indexed(job);
    let limit = completions(job).unwrap_or(0);
    let valid = |p: &Pod| has_tracking_finalizer(p) && !expected_rm.contains(uid(p)) && (!indexed || completion_index(p).is_some_and(|i| i < limit));
    let new_succeeded = pods.iter().filter(|p| valid(p) && !uncounted.succeeded.contains(uid(p)) && pod_phase(p) == "Succeeded").count() as i32;
    let policy = job.spec.as_ref().and_then(|s| s.pod_failure_policy.as_ref());
    let new_failed = pods
        .iter()
        .filter(|p| valid(p) && !uncounted.failed.contains(uid(p)) && is_pod_failed(p, job))
        .filter(|p| match_pod_failure_policy(policy, p).count_failed)
        .count() as i32;
    let mut succeeded = status.succeeded.unwrap_or(0) + new_succeeded + uncounted.succeeded.len() as i32;
    let failed = status.failed.unwrap_or(0) + new_failed + uncounted.failed.len() as i32;
    let suspended = is_suspended(job);
    if status.start_time.is_none() && !suspended {
        status.start_time = Some(Time(now));
    }
    let backoff = BackoffRecord::from_pods(job, pods);
    let mut requeue_after = None;

    let conds = status.conditions.clone().unwrap_or_default();
    let mut finished = find_condition(&conds, "SuccessCriteriaMet").filter(|c| c.status == "True").cloned();
    if finished.is_none() {
        if let Some(target) = find_condition(&conds, "FailureTarget").filter(|c| c.status == "True") {
            finished = Some(new_condition("Failed", "True", target.reason.as_deref().unwrap_or(""), target.message.as_deref().unwrap_or(""), now));
        } else if let Some(msg) = fail_job_message(job, pods) {
            finished = Some(new_condition("FailureTarget", "True", "PodFailurePolicy", &msg, now));
        }
    }
    if finished.is_none() {
        let deadline = job.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        let started = status.start_time.as_ref().map(|t| t.0);
        if failed > backoff_limit(job) || past_backoff_limit_on_failure(job, pods) {
            finished = Some(new_condition("FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", now));
        } else if let (Some(deadline), Some(start), false) = (deadline, started, suspended) {
            let elapsed_ms = now.as_millisecond() - start.as_millisecond();
            if elapsed_ms >= deadline.saturating_mul(1000) {
                finished = Some(new_condition("FailureTarget", "True", "DeadlineExceeded", "Job was active longer than specified deadline", now));
            } else {
                requeue_after = Some(Duration::from_millis((deadline * 1000 - elapsed_ms) as u64));
            }
        }
    }

    let mut prev_succeeded_indexes = OrderedIntervals::default();
    let mut succeeded_indexes = OrderedIntervals::default();
    let mut failed_index_set: Option<OrderedIntervals> = None;
    let mut delayed_deletion = std::collections::BTreeMap::new();
    let mut index_failure_counts = std::collections::BTreeMap::new();
    let per_index = has_backoff_limit_per_index(job);
    if indexed {
        prev_succeeded_indexes = OrderedIntervals::parse(status.completed_indexes.as_deref().unwrap_or(""), limit);
        let mut new: Vec<i32> = pods
            .iter()
            .filter(|p| pod_phase(p) == "Succeeded" && has_tracking_finalizer(p))
            .filter_map(|p| completion_index(p).filter(|i| *i < limit))
            .collect();
        new.sort_unstable();
        succeeded_indexes = prev_succeeded_indexes.with_indexes(&new);
        succeeded = succeeded_indexes.total();
        if has_backoff_limit_per_index(job) {
            let failed = failed_indexes(job, pods);
            if finished.is_none() {
                let max = job.spec.as_ref().and_then(|s| s.max_failed_indexes);
                if max.is_some_and(|m| failed.total() > m) {
                    let msg = "Job has exceeded the specified maximal number of failed indexes";
                    finished = Some(new_condition("FailureTarget", "True", "MaxFailedIndexesExceeded", msg, now));
                } else if failed.total() > 0 && failed.total() + succeeded_indexes.total() >= limit {
                    finished = Some(new_condition("FailureTarget", "True", "FailedIndexes", "Job has failed indexes", now));
                }
            }
            delayed_deletion = pods_with_delayed_deletion(job, pods, &active_pods, &succeeded_indexes, &failed, expected_rm);
            failed_index_set = Some(failed);
        }
        if finished.is_none() {
            if let Some(msg) = match_success_policy(job, limit, &succeeded_indexes) {
                finished = Some(new_condition("SuccessCriteriaMet", "True", "SuccessPolicy", &msg, now));
            }
        }
    }

    let mut op = PodOp::Nothing;
    let mut status_changed = false;
    let mut events = Vec::new();
    if finished.is_some() {
        if !satisfied {
            // Pods may exist that the cache has not shown yet.
            finished = None;
        }
        active = 0;
        terminating += active_pods.len() as i32;
        ready -= ready_count(&active_pods);
        if !active_pods.is_empty() {
            op = PodOp::DeleteActive(active_pods);
        }
    } else {
        let mut managed = false;
        if satisfied && job.metadata.deletion_timestamp.is_none() {
            managed = true;
            if suspended {
                let rm = active_pods_for_removal(job, &active_pods, active_pods.len());
                active -= rm.len() as i32;
                terminating += rm.len() as i32;
                ready -= ready_count(&rm);
                if !rm.is_empty() {
                    op = PodOp::Delete(rm);
                }
            } else {
                let want = want_active(job, active, succeeded);
                let rm_at_least = (active - want).max(0) as usize;
                let mut rm = active_pods_for_removal(job, &active_pods, rm_at_least);
                rm.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
                if !rm.is_empty() {
                    active -= rm.len() as i32;
                    terminating += rm.len() as i32;
                    ready -= ready_count(&rm);
                    op = PodOp::Delete(rm);
                } else {
                    let replacing = if only_replace_failed_pods(job) { terminating } else { 0 };
                    let diff = (want - replacing - active).max(0) as usize;
                    if diff > 0 {
                        // Indexes with their own back-off wait each on their own.
                        let wait = if per_index { Duration::ZERO } else { backoff.remaining(now, DEFAULT_POD_FAILURE_BACKOFF, MAX_POD_FAILURE_BACKOFF) };
                        if !wait.is_zero() {
                            requeue_after = Some(requeue_after.map_or(wait, |r: Duration| r.min(wait)));
                        } else {
                            let diff = diff.min(MAX_POD_CREATE_DELETE_PER_SYNC);
                            let create: Vec<Option<i32>> = if indexed {
                                let mut busy: Vec<i32> = active_pods.iter().filter_map(|p| completion_index(p)).collect();
                                if only_replace_failed_pods(job) {
                                    busy.extend(pods.iter().filter(|p| is_pod_terminating(p)).filter_map(|p| completion_index(p)));
                                }
                                busy.sort_unstable();
                                let mut non_pending = succeeded_indexes.with_indexes(&busy);
                                if let Some(failed) = &failed_index_set {
                                    non_pending = non_pending.merge(failed);
                                }
                                let mut indexes = first_pending_indexes(&non_pending, diff, limit);
                                if per_index {
                                    let (now_ok, waiting): (Vec<i32>, Vec<i32>) =
                                        indexes.iter().partition(|i| remaining_for_index(delayed_deletion.get(*i), now).is_zero());
                                    if let Some(wait) = waiting.iter().map(|i| remaining_for_index(delayed_deletion.get(i), now)).min() {
                                        requeue_after = Some(requeue_after.map_or(wait, |r: Duration| r.min(wait)));
                                    }
                                    indexes = now_ok;
                                    for i in &indexes {
                                        index_failure_counts.insert(*i, new_index_failure_counts(job, delayed_deletion.get(i).map(|p| &**p)));
                                    }
                                }
                                indexes.into_iter().map(Some).collect()
                            } else {
                                vec![None; diff]
                            };
                            active += create.len() as i32;
                            if !create.is_empty() {
                                op = PodOp::Create(create);
                            }
                        }
                    }
                }
            }
        }
        let complete = match completions(job) {
            None => succeeded > 0 && active == 0,
            Some(c) => succeeded >= c && active == 0,
        };
        if complete {
            finished = Some(new_condition("SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods", now));
        } else if managed {
            let list = status.conditions.get_or_insert_with(Vec::new);
            if suspended {
                if ensure_condition(list, "Suspended", "True", "JobSuspended", "Job suspended", now) {
                    status_changed = true;
                    events.push(("Suspended", "Job suspended"));
                }
            } else if ensure_condition(list, "Suspended", "False", "JobResumed", "Job resumed", now) {
                status_changed = true;
                events.push(("Resumed", "Job resumed"));
                // The active deadline counts from the resumption.
                status.start_time = Some(Time(now));
            }
            if list.is_empty() {
                status.conditions = None;
            }
        }
    }
    let old = job.status.clone().unwrap_or_default();
    status_changed |= old.active.unwrap_or(0) != active || old.ready != Some(ready) || old.terminating != Some(terminating) || old.start_time != status.start_time;
    status.active = Some(active);
    status.ready = Some(ready);
    status.terminating = Some(terminating);
    Plan {
        status,
        status_changed,
        op,
        finished,
        requeue_after,
        events,
        prev_succeeded_indexes,
        succeeded_indexes,
        failed_indexes: failed_index_set,
        delayed_deletion,
        index_failure_counts,
    }
}

/// The first half of upstream's `trackJobStatusAndRemoveFinalizers`: which
/// finished pods to record as uncounted and release, and the status to flush
/// before their finalizers go.
#[derive(Debug, Clone)]
pub struct Tracking {
    pub status: JobStatus,
    pub needs_flush: bool,
    pub remove_finalizers: Vec<Arc<Pod>>,
    /// Pods still holding the finalizer (and not expected to lose it).
    pub uids_with_finalizer: HashSet<String>,
    /// The terminal condition (`Complete` or `Failed`) to set once nothing is
    /// uncounted or terminating.
    pub finished: Option<JobCondition>,
    pub reached_max_uncounted: bool,
}

/// Decides what to count: `plan` is this sync's [`plan`] (with its status
/// adjusted to what the pod operations achieved).
pub fn track(job: &Job, pods: &[Arc<Pod>], plan: &Plan, expected_rm: &HashSet<String>, now: Timestamp) -> Tracking {
    let mut status = plan.status.clone();
    let mut needs_flush = plan.status_changed;
    let indexed = is_indexed(job);
    let limit = completions(job).unwrap_or(0);
    let uncounted = Uncounted::of(job);
    let mut pods: Vec<Arc<Pod>> = pods.to_vec();
    if indexed {
        pods.sort_by_key(|p| completion_index(p).unwrap_or(i32::MAX));
    }
    let uids_with_finalizer: HashSet<String> =
        pods.iter().filter(|p| has_tracking_finalizer(p) && !expected_rm.contains(uid(p))).map(|p| uid(p).to_string()).collect();
    needs_flush |= clean_uncounted(&mut status, &uids_with_finalizer);
    let mut list = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut new_succeeded_indexes = Vec::new();
    let mut remove = Vec::new();
    let mut reached_max = false;
    let finishing_failed = plan.finished.as_ref().is_some_and(|c| c.type_ != "SuccessCriteriaMet");
    let policy = job.spec.as_ref().and_then(|s| s.pod_failure_policy.as_ref());
    for p in &pods {
        if !has_tracking_finalizer(p) || expected_rm.contains(uid(p)) {
            continue;
        }
        let failed = is_pod_failed(p, job);
        let delayed = completion_index(p).and_then(|i| plan.delayed_deletion.get(&i)).is_some_and(|d| uid(d) == uid(p));
        let can_remove = job.metadata.deletion_timestamp.is_some() || plan.finished.is_some() || pod_phase(p) == "Succeeded" || (failed && !delayed);
        if !can_remove {
            continue;
        }
        remove.push(p.clone());
        let id = uid(p).to_string();
        if pod_phase(p) == "Succeeded" && !uncounted.failed.contains(&id) {
            if indexed {
                if let Some(ix) = completion_index(p).filter(|i| *i < limit && !plan.prev_succeeded_indexes.has(*i)) {
                    new_succeeded_indexes.push(ix);
                    needs_flush = true;
                }
            } else if !uncounted.succeeded.contains(&id) {
                list.succeeded.get_or_insert_with(Vec::new).push(id);
                needs_flush = true;
            }
        } else if failed || finishing_failed {
            // A finishing Job counts every pod that did not succeed as failed.
            let index_ok = !indexed || completion_index(p).is_some_and(|i| i < limit);
            if !uncounted.failed.contains(&id) && index_ok && match_pod_failure_policy(policy, p).count_failed {
                list.failed.get_or_insert_with(Vec::new).push(id);
                needs_flush = true;
            }
        }
        let pending = new_succeeded_indexes.len() + list.succeeded.as_ref().map_or(0, Vec::len) + list.failed.as_ref().map_or(0, Vec::len);
        if pending >= MAX_UNCOUNTED_PODS {
            reached_max = true;
            break;
        }
    }
    status.uncounted_terminated_pods = Some(list);
    if indexed {
        let mut new_succeeded_indexes = new_succeeded_indexes;
        new_succeeded_indexes.sort_unstable();
        let all = plan.succeeded_indexes.with_indexes(&new_succeeded_indexes);
        let text = all.to_string();
        if Some(text.as_str()) != job.status.as_ref().and_then(|s| s.completed_indexes.as_deref()).or(Some("")) {
            needs_flush = true;
        }
        status.succeeded = Some(all.total());
        status.completed_indexes = (!text.is_empty()).then_some(text);
        if let Some(failed) = &plan.failed_indexes {
            let text = failed.to_string();
            if job.status.as_ref().and_then(|s| s.failed_indexes.as_deref()) != Some(text.as_str()) {
                needs_flush = true;
            }
            status.failed_indexes = Some(text);
        }
    }
    let mut finished = plan.finished.clone();
    if let Some(c) = finished.clone() {
        if c.type_ == "FailureTarget" {
            status.conditions.get_or_insert_with(Vec::new).push(c.clone());
            needs_flush = true;
            finished = Some(new_condition("Failed", "True", c.reason.as_deref().unwrap_or(""), c.message.as_deref().unwrap_or(""), now));
        } else if c.type_ == "SuccessCriteriaMet" {
            let conds = status.conditions.get_or_insert_with(Vec::new);
            if find_condition(conds, "SuccessCriteriaMet").is_none() {
                conds.push(c.clone());
                needs_flush = true;
            }
            finished = Some(new_condition("Complete", "True", c.reason.as_deref().unwrap_or(""), c.message.as_deref().unwrap_or(""), now));
        }
    }
    Tracking { status, needs_flush, remove_finalizers: remove, uids_with_finalizer, finished, reached_max_uncounted: reached_max }
}

/// Moves uncounted UIDs whose pods no longer hold the finalizer into the
/// counters. Returns whether anything moved.
pub fn clean_uncounted(status: &mut JobStatus, uids_with_finalizer: &HashSet<String>) -> bool {
    let Some(list) = status.uncounted_terminated_pods.as_mut() else { return false };
    let mut changed = false;
    for (uids, counter) in [(&mut list.succeeded, &mut status.succeeded), (&mut list.failed, &mut status.failed)] {
        if let Some(uids) = uids.as_mut() {
            let before = uids.len();
            uids.retain(|u| uids_with_finalizer.contains(u));
            let moved = (before - uids.len()) as i32;
            if moved > 0 {
                *counter = Some(counter.unwrap_or(0) + moved);
                changed = true;
            }
        }
        // Empty lists are left out, as upstream's omitempty does.
        if uids.as_ref().is_some_and(Vec::is_empty) {
            *uids = None;
        }
    }
    changed
}

/// Sets the terminal condition once nothing is uncounted and no pod is still
/// terminating (upstream `enactJobFinished`). Returns whether it did.
pub fn enact_finished(status: &mut JobStatus, finished: Option<&JobCondition>, now: Timestamp) -> bool {
    let Some(c) = finished else { return false };
    let uncounted = status.uncounted_terminated_pods.as_ref().map_or(0, |u| u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len));
    if uncounted > 0 || status.terminating.unwrap_or(0) > 0 {
        return false;
    }
    let list = status.conditions.get_or_insert_with(Vec::new);
    ensure_condition(list, &c.type_, &c.status, c.reason.as_deref().unwrap_or(""), c.message.as_deref().unwrap_or(""), now);
    if c.type_ == "Complete" {
        status.completion_time = c.last_transition_time.clone();
    }
    true
}

// === the controller ===

/// What a sync can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] skiff_client::Error),
    /// Some pod creations, deletions or finalizer removals failed.
    #[error("{failed} pod operation(s) failed, first: {first}")]
    Pods { failed: usize, first: skiff_client::Error },
}

const WORKERS: usize = 4;

/// Pods whose finalizer removal was sent but not yet seen, per Job key: until
/// the informer shows it, such a pod must not be counted again.
#[derive(Clone, Default)]
struct FinalizerExpectations(Arc<Mutex<HashMap<String, HashSet<String>>>>);

impl FinalizerExpectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        // std Mutex: nothing async happens while it is held.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn expect(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        self.lock().entry(key.to_string()).or_default().extend(uids);
    }
    fn observed(&self, key: &str, uid: &str) {
        let mut map = self.lock();
        if let Some(set) = map.get_mut(key) {
            set.remove(uid);
            if set.is_empty() {
                map.remove(key);
            }
        }
    }
    fn get(&self, key: &str) -> HashSet<String> {
        self.lock().get(key).cloned().unwrap_or_default()
    }
    fn delete(&self, key: &str) {
        self.lock().remove(key);
    }
}

struct JobController {
    ctx: Context,
    queue: WorkQueue<String>,
    /// Pods (`namespace/name`) that may hold the tracking finalizer although no
    /// unfinished Job owns them any more.
    orphans: WorkQueue<String>,
    recorder: EventRecorder,
    expectations: Expectations,
    finalizers: FinalizerExpectations,
}

/// Runs the job controller and the TTL-after-finished controller until dropped.
pub async fn run(ctx: Context) {
    tokio::join!(run_job_controller(ctx.clone()), run_ttl_controller(ctx));
}

async fn run_job_controller(ctx: Context) {
    let c = Arc::new(JobController {
        queue: WorkQueue::new(),
        orphans: WorkQueue::new(),
        recorder: ctx.recorder("job-controller"),
        expectations: Expectations::new(),
        finalizers: FinalizerExpectations::default(),
        ctx,
    });
    let handler = c.clone();
    c.ctx.jobs.on_event(Arc::new(move |ev: &InformerEvent<Job>| handler.on_job(ev)));
    let handler = c.clone();
    c.ctx.pods.on_event(Arc::new(move |ev: &InformerEvent<Pod>| handler.on_pod(ev)));
    c.ctx.jobs.wait_synced().await;
    c.ctx.pods.wait_synced().await;
    let jobs = Arc::clone(&c);
    let orphans = Arc::clone(&c);
    tokio::join!(
        run_workers("job", c.queue.clone(), WORKERS, move |key| {
            let c = Arc::clone(&jobs);
            async move { c.sync(&key).await }
        }),
        run_workers("job-orphans", c.orphans.clone(), 1, move |key| {
            let c = Arc::clone(&orphans);
            async move { c.sync_orphan(&key).await.map(|()| None) }
        }),
    );
}

fn job_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl JobController {
    // --- event handlers: they only enqueue and settle expectations ---

    fn on_job(&self, ev: &InformerEvent<Job>) {
        match ev {
            InformerEvent::Applied { new, .. } => {
                if is_job_finished(new) {
                    self.enqueue_orphans_of(new);
                }
                self.queue.add(key_of(&new.metadata));
            }
            InformerEvent::Deleted(old) => {
                self.enqueue_orphans_of(old);
                self.queue.add(key_of(&old.metadata));
            }
        }
    }

    /// Pods of a finished or deleted Job that still hold the finalizer.
    fn enqueue_orphans_of(&self, job: &Job) {
        let ns = job.metadata.namespace.as_deref().unwrap_or("");
        for p in self.ctx.pods.store().list_namespace(ns) {
            if has_tracking_finalizer(&p) && controller_ref(&p.metadata).is_some_and(|r| Some(r.uid.as_str()) == job.metadata.uid.as_deref()) {
                self.orphans.add(key_of(&p.metadata));
            }
        }
    }

    /// The key of the Job controlling `pod`, if it exists with that uid.
    fn owner_key(&self, pod: &Pod) -> Option<String> {
        let r = controller_ref(&pod.metadata).filter(|r| r.kind == "Job")?;
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let job = self.ctx.jobs.store().get(ns, &r.name)?;
        (job.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| job_key(ns, &r.name))
    }

    /// A pod with the finalizer whose Job is gone or finished needs releasing.
    fn check_orphan(&self, pod: &Pod) {
        if !has_tracking_finalizer(pod) {
            return;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let owner = controller_ref(&pod.metadata).and_then(|r| self.ctx.jobs.store().get(ns, &r.name).filter(|j| j.metadata.uid.as_deref() == Some(r.uid.as_str())));
        if owner.is_none_or(|j| is_job_finished(&j)) {
            self.orphans.add(key_of(&pod.metadata));
        }
    }

    /// Orphan pods matching a Job's selector may be adopted: wake those Jobs.
    fn enqueue_selecting_jobs(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        for job in self.ctx.jobs.store().list_namespace(ns) {
            if selector(&job).is_some_and(|s| !selector_is_empty(s) && label_selector_matches(s, &labels)) {
                self.queue.add(key_of(&job.metadata));
            }
        }
    }

    fn on_pod(&self, ev: &InformerEvent<Pod>) {
        match ev {
            InformerEvent::Applied { old: None, new } => {
                if new.metadata.deletion_timestamp.is_some() {
                    self.pod_gone(new);
                    return;
                }
                match self.owner_key(new) {
                    Some(key) => {
                        self.expectations.creation_observed(&key);
                        self.queue.add(key);
                    }
                    None if controller_ref(&new.metadata).is_none() => self.enqueue_selecting_jobs(new),
                    None => {}
                }
                self.check_orphan(new);
            }
            InformerEvent::Applied { old: Some(old), new } => {
                let key = self.owner_key(new);
                if let Some(key) = &key {
                    if has_tracking_finalizer(old) && !has_tracking_finalizer(new) {
                        self.finalizers.observed(key, uid(new));
                    }
                    if new.metadata.deletion_timestamp.is_some() && old.metadata.deletion_timestamp.is_none() {
                        self.expectations.pod_deletion_observed(key, uid(new));
                    }
                    self.queue.add(key.clone());
                }
                if controller_ref(&old.metadata) != controller_ref(&new.metadata) {
                    if let Some(old_key) = self.owner_key(old) {
                        self.queue.add(old_key);
                    }
                }
                if key.is_none() && controller_ref(&new.metadata).is_none() {
                    self.enqueue_selecting_jobs(new);
                }
                self.check_orphan(new);
            }
            InformerEvent::Deleted(old) => self.pod_gone(old),
        }
    }

    fn pod_gone(&self, pod: &Pod) {
        if let Some(key) = self.owner_key(pod) {
            self.expectations.pod_deletion_observed(&key, uid(pod));
            if pod.metadata.deletion_timestamp.is_some() && !has_tracking_finalizer(pod) {
                self.finalizers.observed(&key, uid(pod));
            }
            self.queue.add(key);
        } else if let Some(r) = controller_ref(&pod.metadata).filter(|r| r.kind == "Job") {
            // The Job may already be gone from the cache; let its sync settle.
            self.queue.add(job_key(pod.metadata.namespace.as_deref().unwrap_or(""), &r.name));
        }
        self.check_orphan(pod);
    }

    // --- workers ---

    /// Removes the finalizer from a pod no unfinished Job owns.
    async fn sync_orphan(&self, key: &str) -> Result<(), Error> {
        let (ns, name) = split_key(key);
        let Some(pod) = self.ctx.pods.store().get(ns, name) else { return Ok(()) };
        if !has_tracking_finalizer(&pod) {
            return Ok(());
        }
        if let Some(r) = controller_ref(&pod.metadata) {
            if let Some(job) = self.ctx.jobs.store().get(ns, &r.name).filter(|j| j.metadata.uid.as_deref() == Some(r.uid.as_str())) {
                if job.spec.as_ref().and_then(|s| s.managed_by.as_deref()).is_some_and(|m| m != JOB_CONTROLLER_NAME) || !is_job_finished(&job) {
                    return Ok(());
                }
            }
        }
        match self.remove_finalizer(&pod).await {
            Err(e) if !e.is_not_found() => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn remove_finalizer(&self, pod: &Pod) -> Result<(), skiff_client::Error> {
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [JOB_TRACKING_FINALIZER]}});
        let api = Api::<Pod>::namespaced(&self.ctx.client, pod.metadata.namespace.as_deref().unwrap_or(""));
        api.patch(pod.metadata.name.as_deref().unwrap_or(""), PatchType::StrategicMerge, &patch).await.map(|_| ())
    }

    // --- the sync ---

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(shared) = self.ctx.jobs.store().get(ns, name) else {
            self.expectations.delete(key);
            self.finalizers.delete(key);
            return Ok(None);
        };
        if shared.spec.as_ref().and_then(|s| s.managed_by.as_deref()).is_some_and(|m| m != JOB_CONTROLLER_NAME) || is_job_finished(&shared) {
            return Ok(None);
        }
        let mode = shared.spec.as_ref().and_then(|s| s.completion_mode.as_deref()).unwrap_or("NonIndexed");
        if mode != "NonIndexed" && mode != "Indexed" {
            self.recorder.record(&*shared, EventType::Warning, "UnknownCompletionMode", "Skipped Job sync because completion mode is unknown");
            return Ok(None);
        }
        let job = (*shared).clone();
        // Expectations first: a pod created after the listing below would
        // otherwise slip past them.
        let satisfied = self.expectations.satisfied(key);
        let pods = self.pods_for_job(&job).await?;
        let expected_rm = self.finalizers.get(key);
        let now = Timestamp::now();
        let mut plan = plan(&job, &pods, now, satisfied, &expected_rm);
        for (reason, message) in &plan.events {
            self.recorder.record(&job, EventType::Normal, reason, message);
        }

        let mut op_error = None;
        match std::mem::take(&mut plan.op) {
            PodOp::Nothing => {}
            PodOp::DeleteActive(pods) => {
                // The pods keep their finalizers: the tracking below counts them
                // as failed. The Job cannot finish while some could not be deleted.
                let (failed, err) = self.delete_pods(&job, &pods, false, None).await;
                if !failed.is_empty() {
                    plan.finished = None;
                    undo_removals(&mut plan.status, &failed);
                }
                op_error = err;
            }
            PodOp::Delete(pods) => {
                let uids: Vec<String> = pods.iter().map(|p| uid(p).to_string()).collect();
                self.expectations.expect_pod_deletions(key, &uids);
                let (failed, err) = self.delete_pods(&job, &pods, true, Some(key)).await;
                if !failed.is_empty() {
                    undo_removals(&mut plan.status, &failed);
                    if matches!(plan.finished.as_ref(), Some(c) if c.type_ == "SuccessCriteriaMet") && plan.status.active.unwrap_or(0) > 0 {
                        plan.finished = None;
                    }
                }
                op_error = err;
            }
            PodOp::Create(indexes) => {
                self.expectations.expect_creations(key, indexes.len() as i64);
                let (not_created, err) = self.create_pods(&job, key, &indexes, &plan.index_failure_counts).await;
                if not_created > 0 {
                    let active = plan.status.active.unwrap_or(0) - not_created as i32;
                    plan.status.active = Some(active.max(0));
                }
                op_error = err;
            }
        }
        plan.status_changed |= plan.status.active != job.status.as_ref().and_then(|s| s.active).or(Some(0));

        self.track_and_flush(&job, &pods, &plan, &expected_rm, key, now).await?;
        match op_error {
            Some(e) => Err(e),
            None => Ok(plan.requeue_after),
        }
    }

    /// Writes the status, removes finalizers from counted pods, then moves them
    /// into the counters and finishes the Job when it can.
    async fn track_and_flush(&self, job: &Job, pods: &[Arc<Pod>], plan: &Plan, expected_rm: &HashSet<String>, key: &str, now: Timestamp) -> Result<(), Error> {
        let t = track(job, pods, plan, expected_rm, now);
        let api = Api::<Job>::namespaced(&self.ctx.client, job.metadata.namespace.as_deref().unwrap_or(""));
        let name = job.metadata.name.as_deref().unwrap_or("");
        let mut current = job.clone();
        current.status = Some(t.status.clone());
        if t.needs_flush {
            current = api.replace_status(name, &current).await?;
        }
        let mut status = current.status.clone().unwrap_or_default();
        let mut uids_with_finalizer = t.uids_with_finalizer.clone();
        let mut rm_error = None;
        if !t.remove_finalizers.is_empty() {
            self.finalizers.expect(key, t.remove_finalizers.iter().map(|p| uid(p).to_string()));
            let results = futures::future::join_all(t.remove_finalizers.iter().map(|p| self.remove_finalizer(p))).await;
            let mut failures = 0;
            for (p, r) in t.remove_finalizers.iter().zip(results) {
                match r {
                    Ok(()) => {
                        uids_with_finalizer.remove(uid(p));
                    }
                    Err(e) if e.is_not_found() => {
                        self.finalizers.observed(key, uid(p));
                        uids_with_finalizer.remove(uid(p));
                    }
                    Err(e) => {
                        self.finalizers.observed(key, uid(p));
                        failures += 1;
                        rm_error.get_or_insert(Error::Pods { failed: 0, first: e });
                    }
                }
            }
            if let Some(Error::Pods { failed, .. }) = rm_error.as_mut() {
                *failed = failures;
            }
        }
        let mut needs_flush = clean_uncounted(&mut status, &uids_with_finalizer);
        if let Some(e) = rm_error {
            if needs_flush {
                current.status = Some(status);
                api.replace_status(name, &current).await?;
            }
            return Err(e);
        }
        let finished = !t.reached_max_uncounted && enact_finished(&mut status, t.finished.as_ref(), now);
        needs_flush |= finished;
        if needs_flush {
            current.status = Some(status);
            let written = api.replace_status(name, &current).await?;
            if finished {
                self.record_finished(&written, t.finished.as_ref());
            }
        }
        Ok(())
    }

    fn record_finished(&self, job: &Job, finished: Option<&JobCondition>) {
        let Some(c) = finished else { return };
        if c.type_ == "Complete" {
            let succeeded = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
            if completions(job).is_some_and(|n| succeeded > n) {
                self.recorder.record(job, EventType::Warning, "TooManySucceededPods", "Too many succeeded pods running after completion count reached");
            }
            self.recorder.record(job, EventType::Normal, "Completed", "Job completed");
        } else {
            self.recorder.record(job, EventType::Warning, c.reason.as_deref().unwrap_or(""), c.message.as_deref().unwrap_or(""));
        }
    }

    /// The Job's pods: those it controls that its selector still matches, plus
    /// orphans it adopts (with the finalizer); pods it controls that no longer
    /// match are released.
    async fn pods_for_job(&self, job: &Job) -> Result<Vec<Arc<Pod>>, Error> {
        let ns = job.metadata.namespace.as_deref().unwrap_or("");
        let job_uid = job.metadata.uid.clone().unwrap_or_default();
        let Some(sel) = selector(job).filter(|s| !selector_is_empty(s)) else { return Ok(Vec::new()) };
        let api = Api::<Pod>::namespaced(&self.ctx.client, ns);
        let mut out = Vec::new();
        let mut adoption_checked = false;
        for pod in self.ctx.pods.store().list_namespace(ns) {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let matches = label_selector_matches(sel, &labels);
            match controller_ref(&pod.metadata) {
                Some(r) if r.uid == job_uid => {
                    if matches {
                        out.push(pod);
                    } else if job.metadata.deletion_timestamp.is_none() {
                        let owners: Vec<_> = pod.metadata.owner_references.iter().flatten().filter(|o| o.uid != job_uid).cloned().collect();
                        let finalizers: Vec<_> = pod.metadata.finalizers.iter().flatten().filter(|f| *f != JOB_TRACKING_FINALIZER).cloned().collect();
                        let patch = json!({"metadata": {
                            "ownerReferences": if owners.is_empty() { Value::Null } else { json!(owners) },
                            "finalizers": if finalizers.is_empty() { Value::Null } else { json!(finalizers) },
                            "resourceVersion": pod.metadata.resource_version,
                        }});
                        match api.patch(pod.metadata.name.as_deref().unwrap_or(""), PatchType::Merge, &patch).await {
                            Ok(_) => {}
                            Err(e) if e.is_not_found() => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Some(_) => {}
                None => {
                    if !matches || job.metadata.deletion_timestamp.is_some() || pod.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    if !adoption_checked {
                        // A fresh read: never adopt for a Job that is going away.
                        let fresh = Api::<Job>::namespaced(&self.ctx.client, ns).get(job.metadata.name.as_deref().unwrap_or("")).await?;
                        if fresh.metadata.uid.as_deref() != Some(job_uid.as_str()) || fresh.metadata.deletion_timestamp.is_some() {
                            return Ok(out);
                        }
                        adoption_checked = true;
                    }
                    let mut owners = pod.metadata.owner_references.clone().unwrap_or_default();
                    owners.push(new_controller_ref("Job", "batch/v1", job.metadata.name.as_deref().unwrap_or(""), &job_uid));
                    let mut finalizers = pod.metadata.finalizers.clone().unwrap_or_default();
                    if !finalizers.iter().any(|f| f == JOB_TRACKING_FINALIZER) {
                        finalizers.push(JOB_TRACKING_FINALIZER.to_string());
                    }
                    let patch = json!({"metadata": {"ownerReferences": owners, "finalizers": finalizers, "resourceVersion": pod.metadata.resource_version}});
                    match api.patch(pod.metadata.name.as_deref().unwrap_or(""), PatchType::Merge, &patch).await {
                        Ok(adopted) => out.push(Arc::new(adopted)),
                        Err(e) if e.is_not_found() || e.is_conflict() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Creates pods in slow-start batches (1, 2, 4, ...), stopping after a batch
    /// with failures. Returns how many were not created and the first error.
    async fn create_pods(
        &self,
        job: &Job,
        key: &str,
        indexes: &[Option<i32>],
        failure_counts: &std::collections::BTreeMap<i32, (i32, i32)>,
    ) -> (usize, Option<Error>) {
        let ns = job.metadata.namespace.as_deref().unwrap_or("");
        let name = job.metadata.name.as_deref().unwrap_or("");
        let template = pod_template_for(job);
        let owner = new_controller_ref("Job", "batch/v1", name, job.metadata.uid.as_deref().unwrap_or(""));
        let api = Api::<Pod>::namespaced(&self.ctx.client, ns);
        let mut done = 0;
        let mut batch = 1;
        let mut failures = 0;
        let mut first = None;
        while done < indexes.len() {
            let chunk = &indexes[done..(done + batch).min(indexes.len())];
            let creates = chunk.iter().map(|ix| {
                let (mut t, generate_name) = match ix {
                    Some(i) => indexed_template(name, &template, *i),
                    None => (template.clone(), format!("{name}-")),
                };
                if let Some((failures, ignored)) = ix.and_then(|i| failure_counts.get(&i)) {
                    let annotations = t.metadata.get_or_insert_with(Default::default).annotations.get_or_insert_with(Default::default);
                    annotations.insert(JOB_INDEX_FAILURE_COUNT_ANNOTATION.to_string(), failures.to_string());
                    if *ignored > 0 {
                        annotations.insert(JOB_INDEX_IGNORED_FAILURE_COUNT_ANNOTATION.to_string(), ignored.to_string());
                    }
                }
                let pod = pod_from_template(&t, ns, &generate_name, Some(owner.clone()));
                let api = api.clone();
                async move { api.create(&pod).await }
            });
            let results = futures::future::join_all(creates).await;
            let mut batch_failed = false;
            for r in results {
                match r {
                    Ok(pod) => self.recorder.record(job, EventType::Normal, "SuccessfulCreate", &format!("Created pod: {}", pod.metadata.name.as_deref().unwrap_or(""))),
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        if is_namespace_terminating(&e) {
                            continue;
                        }
                        self.recorder.record(job, EventType::Warning, "FailedCreate", &format!("Error creating: {e}"));
                        failures += 1;
                        batch_failed = true;
                        first.get_or_insert(e);
                    }
                }
            }
            done += chunk.len();
            if batch_failed {
                // The rest will not be attempted this time.
                for _ in done..indexes.len() {
                    self.expectations.creation_observed(key);
                }
                failures += indexes.len() - done;
                break;
            }
            batch *= 2;
        }
        (failures, first.map(|first| Error::Pods { failed: failures, first }))
    }

    /// Deletes pods (removing the tracking finalizer first when `release`).
    /// Returns the pods that could not be deleted and the first error.
    async fn delete_pods(&self, job: &Job, pods: &[Arc<Pod>], release: bool, expectation_key: Option<&str>) -> (Vec<Arc<Pod>>, Option<Error>) {
        let api = Api::<Pod>::namespaced(&self.ctx.client, job.metadata.namespace.as_deref().unwrap_or(""));
        let deletes = pods.iter().map(|p| {
            let api = api.clone();
            async move {
                if release && has_tracking_finalizer(p) {
                    self.remove_finalizer(p).await?;
                }
                api.delete(p.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await
            }
        });
        let results = futures::future::join_all(deletes).await;
        let mut failed = Vec::new();
        let mut first = None;
        for (p, r) in pods.iter().zip(results) {
            let pod_name = p.metadata.name.as_deref().unwrap_or("");
            match r {
                Ok(()) => self.recorder.record(job, EventType::Normal, "SuccessfulDelete", &format!("Deleted pod: {pod_name}")),
                Err(e) if e.is_not_found() => {
                    if let Some(key) = expectation_key {
                        self.expectations.pod_deletion_observed(key, uid(p));
                    }
                }
                Err(e) => {
                    if let Some(key) = expectation_key {
                        self.expectations.pod_deletion_observed(key, uid(p));
                    }
                    self.recorder.record(job, EventType::Warning, "FailedDelete", &format!("Error deleting: {e}"));
                    failed.push(p.clone());
                    first.get_or_insert(e);
                }
            }
        }
        let n = failed.len();
        (failed, first.map(|first| Error::Pods { failed: n, first }))
    }
}

/// Puts pods that could not be deleted back into the counts.
fn undo_removals(status: &mut JobStatus, failed: &[Arc<Pod>]) {
    let n = failed.len() as i32;
    status.active = Some(status.active.unwrap_or(0) + n);
    status.terminating = Some((status.terminating.unwrap_or(0) - n).max(0));
    status.ready = Some(status.ready.unwrap_or(0) + ready_count(failed));
}

// === TTL after finished ===

/// When a finished Job with `ttlSecondsAfterFinished` is due for deletion.
pub fn ttl_expiry(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = conditions(job).iter().find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    let at = finished.last_transition_time.as_ref()?.0;
    at.checked_add(i64::from(ttl).seconds()).ok()
}

struct TtlController {
    ctx: Context,
    queue: WorkQueue<String>,
}

async fn run_ttl_controller(ctx: Context) {
    let c = Arc::new(TtlController { queue: WorkQueue::new(), ctx });
    let queue = c.queue.clone();
    c.ctx.jobs.on_event(Arc::new(move |ev: &InformerEvent<Job>| {
        if let InformerEvent::Applied { new, .. } = ev {
            if ttl_expiry(new).is_some() {
                queue.add(key_of(&new.metadata));
            }
        }
    }));
    c.ctx.jobs.wait_synced().await;
    let queue = c.queue.clone();
    run_workers("ttl-after-finished", queue, 1, move |key| {
        let c = Arc::clone(&c);
        async move { c.sync(&key).await }
    })
    .await;
}

impl TtlController {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, skiff_client::Error> {
        let (ns, name) = split_key(key);
        let Some(job) = self.ctx.jobs.store().get(ns, name) else { return Ok(None) };
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let Some(expiry) = ttl_expiry(&job) else { return Ok(None) };
        let now = Timestamp::now();
        if expiry > now {
            return Ok(Some(Duration::from_millis((expiry.as_millisecond() - now.as_millisecond()) as u64)));
        }
        // The TTL may have been changed since the cache saw the Job: check the
        // latest version before deleting it.
        let api = Api::<Job>::namespaced(&self.ctx.client, ns);
        let Some(fresh) = api.get_opt(name).await? else { return Ok(None) };
        match ttl_expiry(&fresh) {
            Some(at) if at <= now && fresh.metadata.deletion_timestamp.is_none() => {}
            Some(at) if at > now => return Ok(Some(Duration::from_millis((at.as_millisecond() - now.as_millisecond()) as u64))),
            _ => return Ok(None),
        }
        let params = DeleteParams {
            propagation_policy: Some("Background".into()),
            precondition_resource_version: fresh.metadata.resource_version.clone(),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{
        JobSpec, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule, SuccessPolicy, SuccessPolicyRule, UncountedTerminatedPods,
    };
    use k8s_openapi::api::core::v1::{Container, ContainerState, ContainerStateTerminated, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    /// A Job in the builder style of upstream's tests.
    struct MakeJob(Job);

    impl MakeJob {
        fn new(completions: Option<i32>, parallelism: i32) -> MakeJob {
            MakeJob(Job {
                metadata: ObjectMeta { name: Some("pi".into()), namespace: Some("default".into()), uid: Some("job-uid".into()), ..Default::default() },
                spec: Some(JobSpec {
                    completions,
                    parallelism: Some(parallelism),
                    backoff_limit: Some(6),
                    template: PodTemplateSpec {
                        metadata: None,
                        spec: Some(PodSpec {
                            restart_policy: Some("Never".into()),
                            containers: vec![Container { name: "main".into(), ..Default::default() }],
                            ..Default::default()
                        }),
                    },
                    ..Default::default()
                }),
                status: None,
            })
        }
        fn spec(mut self, f: impl FnOnce(&mut JobSpec)) -> Self {
            f(self.0.spec.as_mut().unwrap());
            self
        }
        fn status(mut self, f: impl FnOnce(&mut JobStatus)) -> Self {
            f(self.0.status.get_or_insert_with(Default::default));
            self
        }
        fn started(self, secs: i64) -> Self {
            self.status(|s| s.start_time = Some(Time(at(secs))))
        }
        fn obj(self) -> Job {
            self.0
        }
    }

    /// A pod of the Job, with the tracking finalizer.
    struct MakePod(Pod);

    impl MakePod {
        fn new(name: &str, phase: &str) -> MakePod {
            MakePod(Pod {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("default".into()),
                    uid: Some(format!("uid-{name}")),
                    finalizers: Some(vec![JOB_TRACKING_FINALIZER.into()]),
                    creation_timestamp: Some(Time(at(0))),
                    ..Default::default()
                },
                spec: Some(PodSpec { node_name: Some("node-a".into()), ..Default::default() }),
                status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
            })
        }
        fn no_finalizer(mut self) -> Self {
            self.0.metadata.finalizers = None;
            self
        }
        fn index(mut self, i: i32) -> Self {
            self.0.metadata.annotations.get_or_insert_with(Default::default).insert(JOB_COMPLETION_INDEX_ANNOTATION.into(), i.to_string());
            self
        }
        fn exit(mut self, container: &str, code: i32, finished: i64) -> Self {
            let term = ContainerStateTerminated { exit_code: code, finished_at: Some(Time(at(finished))), ..Default::default() };
            self.0.status.as_mut().unwrap().container_statuses.get_or_insert_with(Vec::new).push(ContainerStatus {
                name: container.into(),
                state: Some(ContainerState { terminated: Some(term), ..Default::default() }),
                ..Default::default()
            });
            self
        }
        fn condition(mut self, type_: &str) -> Self {
            self.0.status.as_mut().unwrap().conditions.get_or_insert_with(Vec::new).push(PodCondition {
                type_: type_.into(),
                status: "True".into(),
                ..Default::default()
            });
            self
        }
        fn ready(self) -> Self {
            self.condition("Ready")
        }
        fn unscheduled(mut self) -> Self {
            self.0.spec.as_mut().unwrap().node_name = None;
            self
        }
        fn deleting(mut self) -> Self {
            self.0.metadata.deletion_timestamp = Some(Time(at(1)));
            self
        }
        fn obj(self) -> Arc<Pod> {
            Arc::new(self.0)
        }
    }

    fn none() -> HashSet<String> {
        HashSet::new()
    }

    fn creates(p: &Plan) -> Vec<Option<i32>> {
        match &p.op {
            PodOp::Create(c) => c.clone(),
            other => panic!("expected creations, got {other:?}"),
        }
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
    }

    /// Runs the tracking half as if every finalizer removal succeeded.
    fn settle(job: &Job, pods: &[Arc<Pod>], p: &Plan, now: Timestamp) -> (JobStatus, bool) {
        let t = track(job, pods, p, &none(), now);
        let mut status = t.status.clone();
        let mut remaining = t.uids_with_finalizer.clone();
        for pod in &t.remove_finalizers {
            remaining.remove(uid(pod));
        }
        clean_uncounted(&mut status, &remaining);
        let finished = enact_finished(&mut status, t.finished.as_ref(), now);
        (status, finished)
    }

    #[test]
    fn a_new_job_starts_parallelism_pods() {
        let job = MakeJob::new(Some(5), 2).obj();
        let p = plan(&job, &[], at(0), true, &none());
        assert_eq!(creates(&p), vec![None, None]);
        assert_eq!(p.status.active, Some(2));
        assert_eq!(p.status.start_time, Some(Time(at(0))));
        assert!(p.status_changed);
        assert!(p.finished.is_none());
    }

    #[test]
    fn no_more_pods_start_than_completions_are_missing() {
        let job = MakeJob::new(Some(5), 3).started(0).status(|s| s.succeeded = Some(4)).obj();
        let p = plan(&job, &[], at(10), true, &none());
        assert_eq!(creates(&p).len(), 1);
        let running = [MakePod::new("a", "Running").obj()];
        let p = plan(&job, &running, at(10), true, &none());
        assert!(matches!(p.op, PodOp::Nothing));
        assert_eq!(p.status.active, Some(1));
    }

    #[test]
    fn nothing_is_created_while_expectations_are_pending() {
        let job = MakeJob::new(Some(5), 2).obj();
        let p = plan(&job, &[], at(0), false, &none());
        assert!(matches!(p.op, PodOp::Nothing));
    }

    #[test]
    fn a_lowered_parallelism_deletes_the_cheapest_pods_first() {
        let job = MakeJob::new(Some(10), 1).started(0).obj();
        let pods = [MakePod::new("ready", "Running").ready().obj(), MakePod::new("pending", "Pending").unscheduled().obj(), MakePod::new("running", "Running").obj()];
        let p = plan(&job, &pods, at(5), true, &none());
        match &p.op {
            PodOp::Delete(rm) => assert_eq!(names(rm), ["pending", "running"]),
            other => panic!("expected deletions, got {other:?}"),
        }
        assert_eq!((p.status.active, p.status.terminating, p.status.ready), (Some(1), Some(2), Some(1)));
    }

    #[test]
    fn finished_pods_are_counted_once_through_uncounted_uids() {
        let job = MakeJob::new(Some(3), 1).started(0).obj();
        let pods = [MakePod::new("done", "Succeeded").exit("main", 0, 3).obj()];
        let p = plan(&job, &pods, at(4), true, &none());
        let t = track(&job, &pods, &p, &none(), at(4));
        assert!(t.needs_flush);
        assert_eq!(names(&t.remove_finalizers), ["done"]);
        let uncounted = t.status.uncounted_terminated_pods.clone().unwrap();
        assert_eq!(uncounted.succeeded, Some(vec!["uid-done".to_string()]));
        assert_eq!(t.status.succeeded, None, "not counted before the finalizer is gone");

        // The finalizer removal went through: the UID moves into the counter.
        let mut status = t.status.clone();
        assert!(clean_uncounted(&mut status, &HashSet::new()));
        assert_eq!(status.succeeded, Some(1));
        assert_eq!(status.uncounted_terminated_pods.unwrap().succeeded, None);

        // A pod whose finalizer removal is still in flight is not counted again.
        let job = MakeJob::new(Some(3), 1).started(0).status(|s| s.succeeded = Some(1)).obj();
        let expected_rm: HashSet<String> = ["uid-done".to_string()].into();
        let p = plan(&job, &pods, at(5), true, &expected_rm);
        let t = track(&job, &pods, &p, &expected_rm, at(5));
        assert!(t.remove_finalizers.is_empty());
        assert_eq!(t.status.uncounted_terminated_pods.unwrap().succeeded, None);
        assert_eq!(creates(&p).len(), 1, "two completions still missing, one slot");
    }

    #[test]
    fn enough_successes_complete_the_job_after_success_criteria_met() {
        let job = MakeJob::new(Some(2), 2).started(0).status(|s| s.succeeded = Some(1)).obj();
        let pods = [MakePod::new("b", "Succeeded").exit("main", 0, 7).obj()];
        let p = plan(&job, &pods, at(8), true, &none());
        let finished = p.finished.clone().unwrap();
        assert_eq!((finished.type_.as_str(), finished.reason.as_deref()), ("SuccessCriteriaMet", Some("CompletionsReached")));

        // While the pod is still uncounted, only the interim condition is set.
        let t = track(&job, &pods, &p, &none(), at(8));
        let types: Vec<_> = t.status.conditions.iter().flatten().map(|c| c.type_.clone()).collect();
        assert_eq!(types, ["SuccessCriteriaMet"]);
        let mut pending = t.status.clone();
        assert!(!enact_finished(&mut pending, t.finished.as_ref(), at(8)));

        let (status, finished) = settle(&job, &pods, &p, at(8));
        assert!(finished);
        assert_eq!(status.succeeded, Some(2));
        let complete = find_condition(status.conditions.as_deref().unwrap(), "Complete").unwrap();
        assert_eq!((complete.status.as_str(), complete.message.as_deref()), ("True", Some("Reached expected number of succeeded pods")));
        assert_eq!(status.completion_time, Some(Time(at(8))));
    }

    #[test]
    fn without_completions_one_success_ends_the_job_once_the_rest_finish() {
        let job = MakeJob::new(None, 2).started(0).obj();
        let pods = [MakePod::new("a", "Succeeded").obj(), MakePod::new("b", "Running").obj()];
        let p = plan(&job, &pods, at(5), true, &none());
        assert!(matches!(p.op, PodOp::Nothing), "the running pod stays, no new ones");
        assert!(p.finished.is_none());
        let pods = [MakePod::new("a", "Succeeded").obj(), MakePod::new("b", "Succeeded").obj()];
        let p = plan(&job, &pods, at(6), true, &none());
        assert_eq!(p.finished.unwrap().type_, "SuccessCriteriaMet");
    }

    #[test]
    fn exceeding_the_backoff_limit_fails_the_job_through_failure_target() {
        let job = MakeJob::new(Some(1), 1).spec(|s| s.backoff_limit = Some(2)).started(0).status(|s| s.failed = Some(2)).obj();
        let pods = [MakePod::new("third", "Failed").exit("main", 1, 30).obj()];
        let p = plan(&job, &pods, at(31), true, &none());
        let target = p.finished.clone().unwrap();
        assert_eq!((target.type_.as_str(), target.reason.as_deref()), ("FailureTarget", Some("BackoffLimitExceeded")));
        assert!(matches!(p.op, PodOp::Nothing));

        let t = track(&job, &pods, &p, &none(), at(31));
        assert_eq!(t.status.conditions.as_ref().unwrap()[0].type_, "FailureTarget");
        assert_eq!(t.finished.as_ref().unwrap().type_, "Failed");
        let (status, finished) = settle(&job, &pods, &p, at(31));
        assert!(finished);
        assert_eq!(status.failed, Some(3));
        let failed = find_condition(status.conditions.as_deref().unwrap(), "Failed").unwrap();
        assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(failed.message.as_deref(), Some("Job has reached the specified backoff limit"));
        assert_eq!(status.completion_time, None);
    }

    #[test]
    fn a_failing_job_deletes_its_active_pods_and_waits_for_them() {
        let job = MakeJob::new(Some(4), 2).spec(|s| s.backoff_limit = Some(0)).started(0).obj();
        let pods = [MakePod::new("bad", "Failed").exit("main", 1, 3).obj(), MakePod::new("busy", "Running").ready().obj()];
        let p = plan(&job, &pods, at(4), true, &none());
        match &p.op {
            PodOp::DeleteActive(rm) => assert_eq!(names(rm), ["busy"]),
            other => panic!("expected the active pods deleted, got {other:?}"),
        }
        assert_eq!((p.status.active, p.status.terminating, p.status.ready), (Some(0), Some(1), Some(0)));
        let (status, finished) = settle(&job, &pods, &p, at(4));
        assert!(!finished, "a pod is still terminating");
        assert_eq!(status.failed, Some(2), "the running pod counts as failed too");
        assert_eq!(status.conditions.unwrap()[0].type_, "FailureTarget");

        // Next sync: FailureTarget recorded, the pod is gone.
        let job = MakeJob::new(Some(4), 2)
            .spec(|s| s.backoff_limit = Some(0))
            .started(0)
            .status(|s| {
                s.failed = Some(2);
                s.conditions = Some(vec![new_condition("FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", at(4))]);
            })
            .obj();
        let pods = [MakePod::new("bad", "Failed").no_finalizer().obj()];
        let p = plan(&job, &pods, at(6), true, &none());
        assert_eq!(p.finished.as_ref().unwrap().type_, "Failed");
        let (status, finished) = settle(&job, &pods, &p, at(6));
        assert!(finished);
        assert_eq!(status.failed, Some(2));
        assert!(has_true(&status, "Failed"));
    }

    fn has_true(status: &JobStatus, type_: &str) -> bool {
        find_condition(status.conditions.as_deref().unwrap_or(&[]), type_).is_some_and(|c| c.status == "True")
    }

    #[test]
    fn replacements_wait_out_an_exponential_backoff() {
        let job = MakeJob::new(Some(1), 1).started(0).status(|s| s.failed = Some(1)).obj();
        let one = [MakePod::new("f1", "Failed").no_finalizer().exit("main", 1, 10).obj()];
        let p = plan(&job, &one, at(13), true, &none());
        assert!(matches!(p.op, PodOp::Nothing));
        assert_eq!(p.requeue_after, Some(Duration::from_secs(7)));
        let p = plan(&job, &one, at(20), true, &none());
        assert_eq!(creates(&p).len(), 1);

        let two = [one[0].clone(), MakePod::new("f2", "Failed").no_finalizer().exit("main", 1, 25).obj()];
        let p = plan(&job, &two, at(30), true, &none());
        assert_eq!(p.requeue_after, Some(Duration::from_secs(15)), "20 s after the second failure");

        let record = BackoffRecord { failures_after_last_success: 12, last_failure: Some(at(0)) };
        assert_eq!(record.remaining(at(0), DEFAULT_POD_FAILURE_BACKOFF, MAX_POD_FAILURE_BACKOFF), MAX_POD_FAILURE_BACKOFF);
    }

    #[test]
    fn a_success_resets_the_backoff() {
        let job = MakeJob::new(Some(3), 1).obj();
        let pods = [MakePod::new("f", "Failed").exit("main", 1, 10).obj(), MakePod::new("s", "Succeeded").exit("main", 0, 20).obj()];
        assert_eq!(BackoffRecord::from_pods(&job, &pods), BackoffRecord::default());
    }

    #[test]
    fn the_active_deadline_fails_a_running_job_and_is_awaited_before() {
        let job = MakeJob::new(Some(1), 1).spec(|s| s.active_deadline_seconds = Some(60)).started(0).obj();
        let pods = [MakePod::new("a", "Running").obj()];
        let p = plan(&job, &pods, at(10), true, &none());
        assert!(p.finished.is_none());
        assert_eq!(p.requeue_after, Some(Duration::from_secs(50)));
        let p = plan(&job, &pods, at(60), true, &none());
        let c = p.finished.unwrap();
        assert_eq!((c.reason.as_deref(), c.message.as_deref()), (Some("DeadlineExceeded"), Some("Job was active longer than specified deadline")));
    }

    #[test]
    fn restarts_of_on_failure_pods_count_against_the_backoff_limit() {
        let job = MakeJob::new(Some(1), 1)
            .spec(|s| {
                s.backoff_limit = Some(2);
                s.template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
            })
            .started(0)
            .obj();
        let mut pod = MakePod::new("a", "Running").0;
        pod.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus { name: "main".into(), restart_count: 2, ..Default::default() }]);
        let p = plan(&job, &[Arc::new(pod)], at(5), true, &none());
        assert_eq!(p.finished.unwrap().reason.as_deref(), Some("BackoffLimitExceeded"));
    }

    fn policy(rules: Vec<PodFailurePolicyRule>) -> PodFailurePolicy {
        PodFailurePolicy { rules }
    }

    fn exit_rule(action: &str, container: Option<&str>, operator: &str, values: Vec<i32>) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement { container_name: container.map(Into::into), operator: operator.into(), values }),
            on_pod_conditions: None,
        }
    }

    fn condition_rule(action: &str, type_: &str) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: None,
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern { type_: type_.into(), status: "True".into() }]),
        }
    }

    #[test]
    fn failure_policy_rules_match_exit_codes_and_conditions_in_order() {
        let pfp = policy(vec![condition_rule("Ignore", "DisruptionTarget"), exit_rule("FailJob", Some("main"), "In", vec![42]), exit_rule("Count", None, "NotIn", vec![1])]);
        let fatal = MakePod::new("p", "Failed").exit("main", 42, 1).obj();
        let m = match_pod_failure_policy(Some(&pfp), &fatal);
        assert_eq!(m.action, Some(FailureAction::FailJob));
        assert_eq!(m.fail_job_message.as_deref(), Some("Container main for pod default/p failed with exit code 42 matching FailJob rule at index 1"));

        let disrupted = MakePod::new("p", "Failed").exit("main", 42, 1).condition("DisruptionTarget").obj();
        assert_eq!(match_pod_failure_policy(Some(&pfp), &disrupted), PolicyMatch { fail_job_message: None, count_failed: false, action: Some(FailureAction::Ignore) });

        let sidecar = MakePod::new("p", "Failed").exit("sidecar", 42, 1).obj();
        assert_eq!(match_pod_failure_policy(Some(&pfp), &sidecar).action, Some(FailureAction::Count), "42 is not 1, but the FailJob rule is for main only");

        let one = MakePod::new("p", "Failed").exit("main", 1, 1).obj();
        assert_eq!(match_pod_failure_policy(Some(&pfp), &one), PolicyMatch { fail_job_message: None, count_failed: true, action: None });

        // Exit code 0 never matches, even NotIn.
        let zero = MakePod::new("p", "Failed").exit("main", 0, 1).obj();
        assert_eq!(match_pod_failure_policy(Some(&pfp), &zero).action, None);

        let cond = policy(vec![condition_rule("FailJob", "ConfigIssue")]);
        let m = match_pod_failure_policy(Some(&cond), &MakePod::new("q", "Failed").condition("ConfigIssue").obj());
        assert_eq!(m.fail_job_message.as_deref(), Some("Pod default/q has condition ConfigIssue matching FailJob rule at index 0"));
        assert!(match_pod_failure_policy(None, &fatal).count_failed);
    }

    #[test]
    fn a_fail_job_rule_fails_the_job_with_its_message() {
        let job = MakeJob::new(Some(3), 1).spec(|s| s.pod_failure_policy = Some(policy(vec![exit_rule("FailJob", None, "In", vec![3])]))).started(0).obj();
        let pods = [MakePod::new("p", "Failed").exit("main", 3, 2).obj()];
        let p = plan(&job, &pods, at(3), true, &none());
        let c = p.finished.unwrap();
        assert_eq!((c.type_.as_str(), c.reason.as_deref()), ("FailureTarget", Some("PodFailurePolicy")));
        assert_eq!(c.message.as_deref(), Some("Container main for pod default/p failed with exit code 3 matching FailJob rule at index 0"));
    }

    #[test]
    fn ignored_failures_do_not_count_against_the_backoff_limit() {
        let job = MakeJob::new(Some(1), 1)
            .spec(|s| {
                s.backoff_limit = Some(0);
                s.pod_failure_policy = Some(policy(vec![condition_rule("Ignore", "DisruptionTarget")]));
            })
            .started(0)
            .obj();
        let pods = [MakePod::new("evicted", "Failed").condition("DisruptionTarget").obj()];
        let p = plan(&job, &pods, at(3), true, &none());
        assert!(p.finished.is_none(), "backoffLimit 0, yet the Job goes on");
        // An ignored failure still delays its replacement, as upstream's back-off
        // record holds every failed pod.
        assert_eq!(p.requeue_after, Some(Duration::from_secs(7)));
        let (status, _) = settle(&job, &pods, &p, at(3));
        assert_eq!(status.failed, None);
        let p = plan(&job, &pods, at(20), true, &none());
        assert_eq!(creates(&p).len(), 1);
        // With a pod failure policy, a pod that is only being deleted is not failed yet.
        assert!(!is_pod_failed(&MakePod::new("x", "Running").deleting().obj(), &job));
        assert!(is_pod_failed(&MakePod::new("x", "Running").deleting().obj(), &MakeJob::new(Some(1), 1).obj()));
    }

    #[test]
    fn indexed_jobs_fill_the_lowest_pending_indexes() {
        let job = MakeJob::new(Some(5), 3).spec(|s| s.completion_mode = Some("Indexed".into())).started(0).status(|s| s.completed_indexes = Some("0".into())).obj();
        let pods = [MakePod::new("p2", "Succeeded").index(2).obj(), MakePod::new("p1", "Running").index(1).obj()];
        let p = plan(&job, &pods, at(5), true, &none());
        assert_eq!(creates(&p), vec![Some(3), Some(4)]);
        assert_eq!(p.succeeded_indexes.to_string(), "0,2");
        let t = track(&job, &pods, &p, &none(), at(5));
        assert_eq!(t.status.completed_indexes.as_deref(), Some("0,2"));
        assert_eq!(t.status.succeeded, Some(2));
        assert!(t.needs_flush);
    }

    #[test]
    fn duplicate_and_invalid_indexes_are_removed_first() {
        let job = MakeJob::new(Some(3), 3).spec(|s| s.completion_mode = Some("Indexed".into())).obj();
        let pods = [
            MakePod::new("a", "Running").index(0).ready().obj(),
            MakePod::new("b", "Pending").index(0).obj(),
            MakePod::new("c", "Running").index(7).obj(),
            MakePod::new("d", "Running").index(1).obj(),
        ];
        let rm = active_pods_for_removal(&job, &pods, 0);
        assert_eq!(names(&rm), ["c", "b"]);
    }

    #[test]
    fn indexed_pods_carry_their_index_everywhere() {
        let job = MakeJob::new(Some(3), 3).spec(|s| s.completion_mode = Some("Indexed".into())).obj();
        let template = pod_template_for(&job);
        assert_eq!(template.metadata.as_ref().unwrap().finalizers.as_deref(), Some(&[JOB_TRACKING_FINALIZER.to_string()][..]));
        let env = &template.spec.as_ref().unwrap().containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, JOB_COMPLETION_INDEX_ENV);
        assert_eq!(env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "metadata.labels['batch.kubernetes.io/job-completion-index']");
        let (t, generate_name) = indexed_template("pi", &template, 2);
        assert_eq!(generate_name, "pi-2-");
        assert_eq!(t.spec.as_ref().unwrap().hostname.as_deref(), Some("pi-2"));
        let meta = t.metadata.unwrap();
        assert_eq!(meta.annotations.unwrap()[JOB_COMPLETION_INDEX_ANNOTATION], "2");
        assert_eq!(meta.labels.unwrap()[JOB_COMPLETION_INDEX_ANNOTATION], "2");
        let (_, long) = indexed_template(&"x".repeat(70), &template, 12);
        assert_eq!(long.len(), 58);
        assert!(long.ends_with("-12-"));
        // Non-indexed Jobs get no variable.
        assert!(pod_template_for(&MakeJob::new(Some(1), 1).obj()).spec.unwrap().containers[0].env.is_none());
    }

    fn per_index(limit: i32) -> MakeJob {
        MakeJob::new(Some(3), 3).spec(|s| {
            s.completion_mode = Some("Indexed".into());
            s.backoff_limit_per_index = Some(limit);
            s.backoff_limit = Some(i32::MAX);
        })
    }

    fn failures(mut p: MakePod, n: i32) -> MakePod {
        p.0.metadata.annotations.get_or_insert_with(Default::default).insert(JOB_INDEX_FAILURE_COUNT_ANNOTATION.into(), n.to_string());
        p
    }

    #[test]
    fn a_failed_index_is_replaced_after_its_own_backoff_and_inherits_the_count() {
        let job = per_index(1).started(0).status(|s| s.completed_indexes = Some("0".into())).obj();
        let failed = failures(MakePod::new("p1", "Failed").index(1).exit("main", 1, 10), 0).obj();
        let pods = [failed.clone(), MakePod::new("p2", "Running").index(2).obj()];
        let p = plan(&job, &pods, at(12), true, &none());
        assert!(matches!(p.op, PodOp::Nothing));
        assert_eq!(p.requeue_after, Some(Duration::from_secs(8)));
        assert_eq!(p.failed_indexes.as_ref().map(|f| f.to_string()), Some(String::new()));
        // The failed pod keeps its finalizer until its index is replaced.
        let t = track(&job, &pods, &p, &none(), at(12));
        assert!(t.remove_finalizers.is_empty());
        assert_eq!(t.status.failed_indexes.as_deref(), Some(""));

        let p = plan(&job, &pods, at(21), true, &none());
        assert_eq!(creates(&p), vec![Some(1)]);
        assert_eq!(p.index_failure_counts.get(&1), Some(&(1, 0)));

        // Once the replacement runs, the failed pod is counted.
        let pods = [failed, failures(MakePod::new("p1b", "Running").index(1), 1).obj(), MakePod::new("p2", "Running").index(2).obj()];
        let p = plan(&job, &pods, at(22), true, &none());
        let t = track(&job, &pods, &p, &none(), at(22));
        assert_eq!(names(&t.remove_finalizers), ["p1"]);
        assert_eq!(t.status.uncounted_terminated_pods.unwrap().failed, Some(vec!["uid-p1".to_string()]));
    }

    #[test]
    fn an_index_out_of_retries_fails_and_the_job_with_it() {
        let job = per_index(1).started(0).status(|s| s.completed_indexes = Some("0,2".into())).obj();
        let pods = [failures(MakePod::new("p1b", "Failed").index(1).exit("main", 1, 30), 1).obj()];
        let p = plan(&job, &pods, at(31), true, &none());
        assert_eq!(p.failed_indexes.as_ref().unwrap().to_string(), "1");
        let c = p.finished.clone().unwrap();
        assert_eq!((c.type_.as_str(), c.reason.as_deref(), c.message.as_deref()), ("FailureTarget", Some("FailedIndexes"), Some("Job has failed indexes")));
        let (status, finished) = settle(&job, &pods, &p, at(31));
        assert!(finished);
        assert_eq!(status.failed_indexes.as_deref(), Some("1"));
        assert_eq!(status.failed, Some(1));
        assert!(has_true(&status, "Failed"));
    }

    #[test]
    fn fail_index_rules_and_max_failed_indexes() {
        let fail_index = policy(vec![exit_rule("FailIndex", None, "In", vec![42])]);
        let job = per_index(5)
            .spec(|s| {
                s.pod_failure_policy = Some(fail_index);
                s.max_failed_indexes = Some(0);
            })
            .started(0)
            .obj();
        let pods = [failures(MakePod::new("p0", "Failed").index(0).exit("main", 42, 3), 0).obj(), MakePod::new("p1", "Running").index(1).obj()];
        assert!(is_index_failed(&job, &pods[0]));
        let p = plan(&job, &pods, at(4), true, &none());
        let c = p.finished.unwrap();
        assert_eq!(c.reason.as_deref(), Some("MaxFailedIndexesExceeded"));
        assert_eq!(c.message.as_deref(), Some("Job has exceeded the specified maximal number of failed indexes"));
        assert!(matches!(&p.op, PodOp::DeleteActive(rm) if names(rm) == ["p1"]));
        // Without the rule, one failure of five allowed does not fail the index.
        let lenient = per_index(5).obj();
        assert!(!is_index_failed(&lenient, &pods[0]));
    }

    #[test]
    fn completed_indexes_parse_merge_and_print_as_upstream() {
        let i = OrderedIntervals::parse("1,3-5,7,9-12,x,4-2", 11);
        assert_eq!(i.to_string(), "1,3-5,7,9,10");
        assert_eq!(OrderedIntervals::parse("0,1", 3).0, vec![(0, 1)]);
        assert_eq!(OrderedIntervals::parse("0-2,5,7-8", 10).to_string(), "0-2,5,7,8");
        assert_eq!(i.total(), 7);
        assert_eq!(i.with_indexes(&[2, 6, 8]).to_string(), "1-10");
        assert!(i.has(4) && !i.has(6));
        assert_eq!(first_pending_indexes(&i, 4, 11), vec![0, 2, 6, 8]);
        assert_eq!(first_pending_indexes(&OrderedIntervals::parse("0-3", 4), 2, 4), Vec::<i32>::new());
    }

    #[test]
    fn success_policies_match_indexes_or_counts() {
        let job = MakeJob::new(Some(10), 1)
            .spec(|s| {
                s.success_policy = Some(SuccessPolicy {
                    rules: vec![
                        SuccessPolicyRule { succeeded_indexes: Some("0-2".into()), succeeded_count: Some(2) },
                        SuccessPolicyRule { succeeded_indexes: None, succeeded_count: Some(5) },
                    ],
                })
            })
            .obj();
        assert_eq!(match_success_policy(&job, 10, &OrderedIntervals::parse("0,5", 10)), None);
        assert_eq!(match_success_policy(&job, 10, &OrderedIntervals::parse("0,2", 10)).as_deref(), Some("Matched rules at index 0"));
        assert_eq!(match_success_policy(&job, 10, &OrderedIntervals::parse("5-9", 10)).as_deref(), Some("Matched rules at index 1"));
    }

    #[test]
    fn suspending_deletes_the_pods_and_resuming_restarts_the_clock() {
        let job = MakeJob::new(Some(4), 2).spec(|s| s.suspend = Some(true)).started(0).obj();
        let pods = [MakePod::new("a", "Running").obj(), MakePod::new("b", "Pending").obj()];
        let p = plan(&job, &pods, at(10), true, &none());
        assert!(matches!(&p.op, PodOp::Delete(rm) if rm.len() == 2));
        assert_eq!(p.events, vec![("Suspended", "Job suspended")]);
        let c = find_condition(p.status.conditions.as_deref().unwrap(), "Suspended").unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_deref()), ("True", Some("JobSuspended")));

        let resumed = MakeJob::new(Some(4), 2).started(0).status(|s| s.conditions = p.status.conditions.clone()).obj();
        let p = plan(&resumed, &[], at(100), true, &none());
        assert_eq!(p.events, vec![("Resumed", "Job resumed")]);
        assert_eq!(p.status.start_time, Some(Time(at(100))));
        assert_eq!(creates(&p).len(), 2);
        // A Job that was never suspended gets no Suspended condition.
        let fresh = plan(&MakeJob::new(Some(1), 1).obj(), &[], at(0), true, &none());
        assert!(fresh.status.conditions.is_none() && fresh.events.is_empty());
    }

    #[test]
    fn uncounted_uids_move_into_counters_once_their_finalizers_are_gone() {
        let mut status = JobStatus {
            succeeded: Some(2),
            uncounted_terminated_pods: Some(UncountedTerminatedPods { succeeded: Some(vec!["a".into(), "b".into()]), failed: Some(vec!["c".into()]) }),
            ..Default::default()
        };
        let still_held: HashSet<String> = ["b".to_string()].into();
        assert!(clean_uncounted(&mut status, &still_held));
        assert_eq!((status.succeeded, status.failed), (Some(3), Some(1)));
        assert!(!clean_uncounted(&mut status, &still_held));
    }

    #[test]
    fn finished_jobs_expire_after_their_ttl() {
        let mut job = MakeJob::new(Some(1), 1).spec(|s| s.ttl_seconds_after_finished = Some(30)).obj();
        assert_eq!(ttl_expiry(&job), None, "not finished");
        job.status = Some(JobStatus { conditions: Some(vec![new_condition("Complete", "True", "", "", at(100))]), ..Default::default() });
        assert_eq!(ttl_expiry(&job), Some(at(130)));
        job.spec.as_mut().unwrap().ttl_seconds_after_finished = None;
        assert_eq!(ttl_expiry(&job), None);
    }
}
