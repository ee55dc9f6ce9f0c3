//! The cronjob controller (upstream's `cronjob_controllerv2`): creates a Job for each
//! time a CronJob's schedule comes due, honours the concurrency policy, the
//! starting deadline and suspension, keeps `status.active`, `lastScheduleTime` and
//! `lastSuccessfulTime`, deletes finished Jobs beyond the history limits, and
//! requeues each CronJob for its next scheduled time.
//!
//! Schedules are `robfig/cron`'s standard dialect ([`Schedule`]), evaluated in
//! `spec.timeZone` (the controller's own zone, UTC, when unset). Jobs are named
//! `{cronjob}-{scheduled time in unix minutes}`, so a retried sync can never create
//! the same run twice.

use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use skiff_client::{Api, DeleteParams, EventRecorder, EventType, InformerEvent, WorkQueue};

use crate::podutil::{controller_ref, enqueue_object_key, new_controller_ref, run_workers, split_key};
use crate::Context;

/// The annotation that carries the scheduled time of a Job a CronJob created.
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Upstream requeues a little after the next scheduled time, so the sync that runs
/// then sees the time as passed.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// More missed start times than this are not all worth listing (upstream's 100).
const MANY_MISSED: i64 = 100;

const WORKERS: usize = 2;

// === cron schedules ===

/// The schedule parser lives in skiff-api, where validation uses the same one; it is
/// re-exported so the controller's callers keep reaching it here.
pub use skiff_api::cron::{load_location, Schedule, ScheduleError};

// === schedule arithmetic ===

/// How many start times were missed since the last one handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    /// More than upstream's 100: a clock or controller problem worth an event.
    Many,
}

/// The schedule a CronJob runs on, with `spec.timeZone` applied as upstream's
/// `formatSchedule` does (a `TZ=` prefix).
pub fn cron_job_schedule(cj: &CronJob) -> Result<Schedule, ScheduleError> {
    let spec = cj.spec.as_ref().map(|s| s.schedule.as_str()).unwrap_or("");
    match cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()) {
        Some(tz) if !spec.contains("TZ") && load_location(tz).is_some() => Schedule::parse(&format!("TZ={tz} {spec}")),
        _ => Schedule::parse(spec),
    }
}

fn creation_time(meta: &ObjectMeta) -> Timestamp {
    meta.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Upstream's `mostRecentScheduleTime`: the time from which to look for start
/// times (the last scheduled time, else creation; no earlier than the starting
/// deadline when `include_deadline`), the latest start time at or before `now`
/// after it, and how many were missed. Errs for schedules that fire less than a
/// second apart or never.
pub fn most_recent_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    schedule: &Schedule,
    include_deadline: bool,
) -> Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let mut earliest = cj.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).map(|t| t.0).unwrap_or_else(|| creation_time(&cj.metadata));
    if include_deadline {
        if let Some(deadline) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
            let scheduling_deadline = now.checked_sub(deadline.seconds()).unwrap_or(now);
            if scheduling_deadline > earliest {
                earliest = scheduling_deadline;
            }
        }
    }
    let local = TimeZone::UTC;
    let t1 = schedule.next(earliest, &local);
    let t2 = t1.and_then(|t| schedule.next(t, &local));
    match t1 {
        Some(t1) if now < t1 => return Ok((earliest, None, Missed::None)),
        Some(t1) if t2.is_some_and(|t2| now < t2) => return Ok((earliest, Some(t1), Missed::Few)),
        _ => {}
    }
    let (Some(t1), Some(t2)) = (t1, t2) else {
        return Err("time difference between two schedules is less than 1 second".into());
    };
    let between = (t2.as_millisecond() - t1.as_millisecond() + 500) / 1000;
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    // Count the missed times roughly from the interval, then walk the last few
    // precisely: schedules need not be regular (`30 6-16/4 * * 1-5`).
    let elapsed = now.as_second() - t1.as_second();
    let missed = elapsed / between + 1;
    let potential_earliest = t1.checked_add(((missed - 2) * between).seconds()).unwrap_or(t1);
    let mut most_recent = None;
    let mut t = schedule.next(potential_earliest, &local);
    while let Some(x) = t {
        if x > now {
            break;
        }
        most_recent = Some(x);
        t = schedule.next(x, &local);
    }
    Ok((earliest, most_recent, if missed > MANY_MISSED { Missed::Many } else { Missed::Few }))
}

/// How long until the sync after the next start time (upstream's
/// `nextScheduleTimeDuration`); `None` when the schedule never fires again.
pub fn next_schedule_time_duration(cj: &CronJob, now: Timestamp, schedule: &Schedule) -> Option<Duration> {
    let (earliest, most_recent, missed) = match most_recent_schedule_time(cj, now, schedule, false) {
        Ok(r) => r,
        Err(_) => return Some(NEXT_SCHEDULE_DELTA),
    };
    let base = most_recent.unwrap_or(if missed == Missed::None { earliest } else { now });
    let next = schedule.next(base, &TimeZone::UTC)?;
    let millis = next.as_millisecond() - now.as_millisecond();
    Some(Duration::from_millis(millis.max(0) as u64) + NEXT_SCHEDULE_DELTA)
}

/// The name of the Job for one scheduled time: deterministic, so a retried sync
/// finds the Job it already created.
pub fn job_name(cron_job_name: &str, scheduled: Timestamp) -> String {
    format!("{cron_job_name}-{}", scheduled.as_second().div_euclid(60))
}

/// RFC 3339 in the CronJob's zone, as Go formats it (`Z` for UTC).
fn rfc3339_in(ts: Timestamp, zone: &TimeZone) -> String {
    let z = ts.to_zoned(zone.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The Job a CronJob creates for `scheduled` (upstream `getJobFromTemplate2`): the
/// template's labels, annotations and spec, the scheduled-time annotation, the
/// deterministic name and the controller reference.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp) -> Job {
    let template = cj.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let zone = load_location(cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()).unwrap_or("")).unwrap_or(TimeZone::UTC);
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP_ANNOTATION.to_string(), rfc3339_in(scheduled, &zone));
    let name = cj.metadata.name.clone().unwrap_or_default();
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![new_controller_ref("CronJob", "batch/v1", &name, cj.metadata.uid.as_deref().unwrap_or(""))]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// `Complete` or `Failed`, when the Job has finished.
pub fn job_finished_condition(job: &Job) -> Option<&str> {
    job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True").map(|c| c.type_.as_str())
}

/// Finished Jobs beyond the history limits, oldest first (by start time, then
/// name; Jobs that never started count as newest).
pub fn jobs_beyond_history(cj: &CronJob, jobs: &[Arc<Job>]) -> Vec<Arc<Job>> {
    let spec = cj.spec.as_ref();
    let mut out = Vec::new();
    for (kind, limit) in [("Complete", spec.and_then(|s| s.successful_jobs_history_limit)), ("Failed", spec.and_then(|s| s.failed_jobs_history_limit))] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<Arc<Job>> = jobs.iter().filter(|j| job_finished_condition(j) == Some(kind)).cloned().collect();
        let excess = finished.len().saturating_sub(limit.max(0) as usize);
        if excess == 0 {
            continue;
        }
        finished.sort_by(|a, b| {
            let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            match (start(a), start(b)) {
                (Some(x), Some(y)) if x != y => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => a.metadata.name.cmp(&b.metadata.name),
            }
        });
        out.extend(finished.into_iter().take(excess));
    }
    out
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

fn in_active_list(cj: &CronJob, uid: &str) -> bool {
    cj.status.as_ref().and_then(|s| s.active.as_ref()).is_some_and(|a| a.iter().any(|r| r.uid.as_deref() == Some(uid)))
}

fn delete_from_active_list(cj: &mut CronJob, uid: &str) {
    if let Some(active) = cj.status.as_mut().and_then(|s| s.active.as_mut()) {
        active.retain(|r| r.uid.as_deref() != Some(uid));
    }
}

fn status_mut(cj: &mut CronJob) -> &mut CronJobStatus {
    cj.status.get_or_insert_with(CronJobStatus::default)
}

// === the controller ===

/// What a sync can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] skiff_client::Error),
    #[error("job {0} already exists and is not controlled by this CronJob")]
    NotControlled(String),
    #[error("could not delete job {0}")]
    DeleteFailed(String),
}

struct CronJobController {
    ctx: Context,
    queue: WorkQueue<String>,
    recorder: EventRecorder,
}

/// Runs the cronjob controller until dropped.
pub async fn run(ctx: Context) {
    let controller = Arc::new(CronJobController { queue: WorkQueue::new(), recorder: ctx.recorder("cronjob-controller"), ctx });
    controller.ctx.cron_jobs.on_event(enqueue_object_key(controller.queue.clone()));
    let queue = controller.queue.clone();
    controller.ctx.jobs.on_event(Arc::new(move |ev: &InformerEvent<Job>| {
        let enqueue = |job: &Job| {
            if let Some(r) = controller_ref(&job.metadata).filter(|r| r.kind == "CronJob") {
                queue.add(format!("{}/{}", job.metadata.namespace.as_deref().unwrap_or(""), r.name));
            }
        };
        match ev {
            InformerEvent::Applied { old, new } => {
                if let Some(old) = old {
                    if controller_ref(&old.metadata) != controller_ref(&new.metadata) {
                        enqueue(old);
                    }
                }
                enqueue(new);
            }
            InformerEvent::Deleted(old) => enqueue(old),
        }
    }));
    controller.ctx.cron_jobs.wait_synced().await;
    controller.ctx.jobs.wait_synced().await;
    let c = Arc::clone(&controller);
    run_workers("cronjob", controller.queue.clone(), WORKERS, move |key| {
        let c = Arc::clone(&c);
        async move { c.sync(&key).await }
    })
    .await;
}

impl CronJobController {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(cached) = self.ctx.cron_jobs.store().get(ns, name) else { return Ok(None) };
        let jobs: Vec<Arc<Job>> = self
            .ctx
            .jobs
            .store()
            .list_namespace(ns)
            .into_iter()
            .filter(|j| controller_ref(&j.metadata).is_some_and(|r| r.kind == "CronJob" && r.name == name))
            .collect();
        let mut cj = (*cached).clone();
        let cleaned = self.cleanup_finished_jobs(&mut cj, &jobs).await;
        let synced = self.sync_cron_job(&mut cj, &jobs, Timestamp::now()).await;
        let updated = cleaned || synced.as_ref().map(|(_, u)| *u).unwrap_or(true);
        if updated && cj.status != cached.status {
            Api::<CronJob>::namespaced(&self.ctx.client, ns).replace_status(name, &cj).await?;
        }
        synced.map(|(requeue, _)| requeue)
    }

    /// Deletes finished Jobs beyond the history limits; true when the status changed.
    async fn cleanup_finished_jobs(&self, cj: &mut CronJob, jobs: &[Arc<Job>]) -> bool {
        let mut updated = false;
        for job in jobs_beyond_history(cj, jobs) {
            updated |= self.delete_job(cj, &job).await;
        }
        updated
    }

    async fn delete_job(&self, cj: &mut CronJob, job: &Job) -> bool {
        let name = job.metadata.name.as_deref().unwrap_or("");
        let api = Api::<Job>::namespaced(&self.ctx.client, job.metadata.namespace.as_deref().unwrap_or(""));
        let params = DeleteParams { propagation_policy: Some("Background".into()), ..DeleteParams::default() };
        match api.delete(name, &params).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                self.recorder.record(&*cj, EventType::Warning, "FailedDelete", &format!("Deleted job: {e}"));
                return false;
            }
        }
        delete_from_active_list(cj, job.metadata.uid.as_deref().unwrap_or(""));
        self.recorder.record(&*cj, EventType::Normal, "SuccessfulDelete", &format!("Deleted job {name}"));
        true
    }

    /// Upstream's `syncCronJob`: reconciles `status.active` with the Jobs, then
    /// starts the run that is due, if any. Returns when to look again and whether
    /// the status changed.
    async fn sync_cron_job(&self, cj: &mut CronJob, jobs: &[Arc<Job>], now: Timestamp) -> Result<(Option<Duration>, bool), Error> {
        let ns = cj.metadata.namespace.clone().unwrap_or_default();
        let cj_name = cj.metadata.name.clone().unwrap_or_default();
        let job_api = Api::<Job>::namespaced(&self.ctx.client, &ns);
        let mut updated = false;

        for job in jobs {
            let uid = job.metadata.uid.as_deref().unwrap_or("");
            let found = in_active_list(cj, uid);
            let finished = job_finished_condition(job);
            if !found && finished.is_none() {
                // Our cache of the CronJob may be behind its own status update.
                let fresh = Api::<CronJob>::namespaced(&self.ctx.client, &ns).get_opt(&cj_name).await?;
                if let Some(fresh) = fresh.filter(|f| in_active_list(f, uid)) {
                    *cj = fresh;
                    continue;
                }
                let msg = format!("Saw a job that the controller did not create or forgot: {}", job.metadata.name.as_deref().unwrap_or(""));
                self.recorder.record(&*cj, EventType::Warning, "UnexpectedJob", &msg);
            } else if let (true, Some(condition)) = (found, finished) {
                delete_from_active_list(cj, uid);
                let msg = format!("Saw completed job: {}, condition: {condition}", job.metadata.name.as_deref().unwrap_or(""));
                self.recorder.record(&*cj, EventType::Normal, "SawCompletedJob", &msg);
                updated = true;
            }
            if finished == Some("Complete") {
                // Any succeeded Job counts, in the active list or not.
                let completion = job.status.as_ref().and_then(|s| s.completion_time.clone());
                let last = cj.status.as_ref().and_then(|s| s.last_successful_time.clone());
                if completion.is_some() && (last.is_none() || completion > last) {
                    status_mut(cj).last_successful_time = completion;
                    updated = true;
                }
            }
        }

        // Active Jobs that no longer exist (asked of the API server: the cache may
        // simply not have seen them yet).
        let active: Vec<ObjectReference> = cj.status.as_ref().and_then(|s| s.active.clone()).unwrap_or_default();
        for r in active {
            let uid = r.uid.clone().unwrap_or_default();
            if jobs.iter().any(|j| j.metadata.uid.as_deref() == Some(uid.as_str())) {
                continue;
            }
            let name = r.name.clone().unwrap_or_default();
            if job_api.get_opt(&name).await?.is_none() {
                self.recorder.record(&*cj, EventType::Normal, "MissingJob", &format!("Active job went missing: {name}"));
                delete_from_active_list(cj, &uid);
                updated = true;
            }
        }

        if cj.metadata.deletion_timestamp.is_some() {
            return Ok((None, updated));
        }
        let spec = cj.spec.clone().unwrap_or_default();
        if let Some(tz) = &spec.time_zone {
            if load_location(tz).is_none() {
                self.recorder.record(&*cj, EventType::Warning, "UnknownTimeZone", &format!("invalid timeZone: {tz:?}: unknown time zone {tz}"));
                return Ok((None, updated));
            }
        }
        if spec.suspend == Some(true) {
            return Ok((None, updated));
        }
        if spec.schedule.contains("TZ") {
            let msg = format!(
                "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                spec.schedule
            );
            self.recorder.record(&*cj, EventType::Warning, "UnsupportedSchedule", &msg);
        }
        let schedule = match cron_job_schedule(cj) {
            Ok(s) => s,
            Err(e) => {
                self.recorder.record(&*cj, EventType::Warning, "UnparseableSchedule", &format!("unparseable schedule: {:?} : {e}", spec.schedule));
                return Ok((None, updated));
            }
        };
        let scheduled = match most_recent_schedule_time(cj, now, &schedule, true) {
            Err(e) => {
                self.recorder.record(&*cj, EventType::Warning, "InvalidSchedule", &format!("invalid schedule: {} : {e}", spec.schedule));
                return Ok((None, updated));
            }
            Ok((_, most_recent, missed)) => {
                if missed == Missed::Many {
                    let msg = "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew";
                    self.recorder.record(&*cj, EventType::Warning, "TooManyMissedTimes", msg);
                }
                most_recent.filter(|t| *t <= now)
            }
        };
        let requeue = |cj: &CronJob| next_schedule_time_duration(cj, now, &schedule);
        let Some(scheduled) = scheduled else {
            return Ok((requeue(cj), updated));
        };
        if let Some(deadline) = spec.starting_deadline_seconds {
            if scheduled.checked_add(deadline.seconds()).is_ok_and(|t| t < now) {
                let when = scheduled.to_zoned(TimeZone::UTC).strftime("%a, %d %b %Y %H:%M:%S %z").to_string();
                self.recorder.record(&*cj, EventType::Warning, "MissSchedule", &format!("Missed scheduled time to start a job: {when}"));
                return Ok((requeue(cj), updated));
            }
        }
        let name = job_name(&cj_name, scheduled);
        let already = cj.status.as_ref().is_some_and(|s| {
            s.active.iter().flatten().any(|r| r.name.as_deref() == Some(name.as_str())) || s.last_schedule_time.as_ref().map(|t| t.0) == Some(scheduled)
        });
        if already {
            return Ok((requeue(cj), updated));
        }
        let active_count = cj.status.as_ref().and_then(|s| s.active.as_ref()).map_or(0, Vec::len);
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && active_count > 0 {
            let msg = "Not starting job because prior execution is running and concurrency policy is Forbid";
            self.recorder.record(&*cj, EventType::Normal, "JobAlreadyActive", msg);
            return Ok((requeue(cj), updated));
        }
        if policy == "Replace" {
            let active: Vec<ObjectReference> = cj.status.as_ref().and_then(|s| s.active.clone()).unwrap_or_default();
            for r in active {
                let job_name = r.name.clone().unwrap_or_default();
                let job = job_api.get(&job_name).await?;
                if !self.delete_job(cj, &job).await {
                    return Err(Error::DeleteFailed(job_name));
                }
                updated = true;
            }
        }

        let request = job_from_template(cj, scheduled);
        let created = match job_api.create(&request).await {
            Ok(job) => {
                self.recorder.record(&*cj, EventType::Normal, "SuccessfulCreate", &format!("Created job {name}"));
                job
            }
            Err(e) if e.reason() == Some("AlreadyExists") => {
                // Created by an earlier sync whose status update was lost: take it
                // into the status if it is ours.
                let job = job_api.get(&name).await?;
                if controller_ref(&job.metadata).map(|r| r.uid.as_str()) != cj.metadata.uid.as_deref() {
                    return Err(Error::NotControlled(name));
                }
                if in_active_list(cj, job.metadata.uid.as_deref().unwrap_or("")) {
                    return Ok((requeue(cj), updated));
                }
                job
            }
            Err(e) => {
                self.recorder.record(&*cj, EventType::Warning, "FailedCreate", &format!("Error creating job: {e}"));
                return Err(e.into());
            }
        };
        if job_finished_condition(&created).is_none() {
            status_mut(cj).active.get_or_insert_with(Vec::new).push(job_ref(&created));
        }
        status_mut(cj).last_schedule_time = Some(Time(scheduled));
        Ok((requeue(cj), true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{CronJobSpec, JobCondition, JobSpec, JobStatus, JobTemplateSpec};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cron_job(schedule: &str, created: &str) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("nightly".into()),
                namespace: Some("default".into()),
                uid: Some("cj-uid".into()),
                creation_timestamp: Some(Time(ts(created))),
                ..ObjectMeta::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("team".to_string(), "a".to_string())].into()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(JobSpec { backoff_limit: Some(1), ..JobSpec::default() }),
                },
                ..CronJobSpec::default()
            }),
            status: None,
        }
    }

    fn finished_job(name: &str, kind: &str, started: &str) -> Arc<Job> {
        Arc::new(Job {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            spec: None,
            status: Some(JobStatus {
                start_time: Some(Time(ts(started))),
                conditions: Some(vec![JobCondition { type_: kind.into(), status: "True".into(), ..JobCondition::default() }]),
                ..JobStatus::default()
            }),
        })
    }

    #[test]
    fn spec_time_zone_becomes_the_schedule_zone() {
        let mut cj = cron_job("0 9 * * *", "2025-01-01T00:00:00Z");
        cj.spec.as_mut().unwrap().time_zone = Some("Asia/Tokyo".into());
        let s = cron_job_schedule(&cj).unwrap();
        assert_eq!(s.next(ts("2025-01-01T00:00:00Z"), &TimeZone::UTC).unwrap().to_string(), "2025-01-02T00:00:00Z");
    }

    #[test]
    fn nothing_is_due_before_the_first_start_time() {
        let cj = cron_job("0 * * * *", "2025-01-01T10:20:00Z");
        let s = cron_job_schedule(&cj).unwrap();
        let (earliest, most_recent, missed) = most_recent_schedule_time(&cj, ts("2025-01-01T10:59:00Z"), &s, true).unwrap();
        assert_eq!(earliest, ts("2025-01-01T10:20:00Z"));
        assert_eq!((most_recent, missed), (None, Missed::None));
        let wait = next_schedule_time_duration(&cj, ts("2025-01-01T10:59:00Z"), &s).unwrap();
        assert_eq!(wait, Duration::from_millis(60_100));
    }

    #[test]
    fn the_latest_missed_start_time_is_the_one_to_run() {
        let mut cj = cron_job("*/5 * * * *", "2025-01-01T00:00:00Z");
        let s = cron_job_schedule(&cj).unwrap();
        let now = ts("2025-01-01T00:17:30Z");
        let (_, most_recent, missed) = most_recent_schedule_time(&cj, now, &s, true).unwrap();
        assert_eq!(most_recent, Some(ts("2025-01-01T00:15:00Z")));
        assert_eq!(missed, Missed::Few);
        assert_eq!(next_schedule_time_duration(&cj, now, &s), Some(Duration::from_millis(150_100)));

        // Once that run is recorded, nothing is due until the next one.
        cj.status = Some(CronJobStatus { last_schedule_time: Some(Time(ts("2025-01-01T00:15:00Z"))), ..CronJobStatus::default() });
        let (_, most_recent, _) = most_recent_schedule_time(&cj, now, &s, true).unwrap();
        assert_eq!(most_recent, None);
    }

    #[test]
    fn the_starting_deadline_limits_how_far_back_runs_are_found() {
        let mut cj = cron_job("0 * * * *", "2025-01-01T00:00:00Z");
        cj.spec.as_mut().unwrap().starting_deadline_seconds = Some(600);
        let s = cron_job_schedule(&cj).unwrap();
        // 10:30: the 10:00 run is more than ten minutes late.
        let (_, most_recent, _) = most_recent_schedule_time(&cj, ts("2025-01-01T10:30:00Z"), &s, true).unwrap();
        assert_eq!(most_recent, None);
        // 10:05: it is still in its window.
        let (_, most_recent, _) = most_recent_schedule_time(&cj, ts("2025-01-01T10:05:00Z"), &s, true).unwrap();
        assert_eq!(most_recent, Some(ts("2025-01-01T10:00:00Z")));
    }

    #[test]
    fn years_of_missed_minutes_are_many() {
        let cj = cron_job("* * * * *", "2020-01-01T00:00:00Z");
        let s = cron_job_schedule(&cj).unwrap();
        let (_, most_recent, missed) = most_recent_schedule_time(&cj, ts("2025-01-01T00:00:30Z"), &s, true).unwrap();
        assert_eq!(most_recent, Some(ts("2025-01-01T00:00:00Z")));
        assert_eq!(missed, Missed::Many);
    }

    #[test]
    fn jobs_are_named_by_their_scheduled_minute_and_annotated() {
        let mut cj = cron_job("0 9 * * *", "2025-01-01T00:00:00Z");
        cj.spec.as_mut().unwrap().time_zone = Some("Europe/Berlin".into());
        let at = ts("2025-01-02T08:00:00Z");
        let job = job_from_template(&cj, at);
        assert_eq!(job.metadata.name.as_deref(), Some(format!("nightly-{}", at.as_second() / 60).as_str()));
        assert_eq!(job.metadata.name.as_deref(), Some("nightly-28930080"));
        let annotations = job.metadata.annotations.unwrap();
        assert_eq!(annotations[SCHEDULED_TIMESTAMP_ANNOTATION], "2025-01-02T09:00:00+01:00");
        assert_eq!(job.metadata.labels.unwrap()["team"], "a");
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str(), owner.controller), ("CronJob", "nightly", "cj-uid", Some(true)));
        assert_eq!(job.spec.unwrap().backoff_limit, Some(1));

        let utc = job_from_template(&cron_job("0 9 * * *", "2025-01-01T00:00:00Z"), at);
        assert_eq!(utc.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP_ANNOTATION], "2025-01-02T08:00:00Z");
    }

    #[test]
    fn history_limits_delete_the_oldest_finished_jobs() {
        let mut cj = cron_job("* * * * *", "2025-01-01T00:00:00Z");
        cj.spec.as_mut().unwrap().successful_jobs_history_limit = Some(2);
        cj.spec.as_mut().unwrap().failed_jobs_history_limit = Some(1);
        let jobs = vec![
            finished_job("s3", "Complete", "2025-01-01T00:03:00Z"),
            finished_job("s1", "Complete", "2025-01-01T00:01:00Z"),
            finished_job("s2", "Complete", "2025-01-01T00:02:00Z"),
            finished_job("f1", "Failed", "2025-01-01T00:01:30Z"),
            finished_job("f2", "Failed", "2025-01-01T00:02:30Z"),
        ];
        let names: Vec<_> = jobs_beyond_history(&cj, &jobs).iter().map(|j| j.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["s1", "f1"]);
        cj.spec.as_mut().unwrap().successful_jobs_history_limit = None;
        cj.spec.as_mut().unwrap().failed_jobs_history_limit = Some(0);
        let names: Vec<_> = jobs_beyond_history(&cj, &jobs).iter().map(|j| j.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["f1", "f2"]);
    }
}
