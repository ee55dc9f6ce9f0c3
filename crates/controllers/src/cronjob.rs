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
use jiff::{Timestamp, ToSpan, Zoned};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use skiff_client::{Api, DeleteParams, EventRecorder, EventType, InformerEvent, WorkQueue};

use crate::podutil::{controller_ref, key_of, new_controller_ref, split_key};
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

/// What parsing a schedule can fail with; the texts are upstream's, which kubectl
/// users see in events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("empty spec string")]
    Empty,
    #[error("provided bad location {0}: unknown time zone {0}")]
    BadLocation(String),
    #[error("expected exactly 5 fields, found {found}: [{fields}]")]
    FieldCount { found: usize, fields: String },
    #[error("{0}")]
    Field(String),
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    #[error("failed to parse duration {spec}: {reason}")]
    Duration { spec: String, reason: String },
}

/// A parsed cron schedule: five fields (minute, hour, day of month, month, day of
/// week) with ranges, steps, lists and names, or a descriptor (`@hourly`, `@daily`,
/// `@every 90m`, ...), optionally prefixed by `TZ=zone` / `CRON_TZ=zone`.
///
/// Matching follows `robfig/cron` v3, the library kube-controller-manager uses:
/// when both day fields are restricted a day matches if either does, times
/// skipped by a daylight-saving jump do not run that day, and times repeated by one
/// run at each occurrence.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: ScheduleKind,
    /// Where the fields are read; `None` is the caller's zone.
    zone: Option<TimeZone>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ScheduleKind {
    Fields(Fields),
    /// `@every`: a fixed delay in whole seconds (at least one).
    Every(i64),
}

/// One bit per allowed value; [`STAR`] marks a field written as `*` or `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    second: u64,
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

const STAR: u64 = 1 << 63;

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOURS: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DOM: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds { min: 0, max: 6, names: &[("sun", 0), ("mon", 1), ("tue", 2), ("wed", 3), ("thu", 4), ("fri", 5), ("sat", 6)] };

fn bits(min: u32, max: u32, step: u32) -> u64 {
    let mut b = 0;
    let mut i = min;
    while i <= max {
        b |= 1 << i;
        i += step;
    }
    b
}

fn all(b: &Bounds) -> u64 {
    bits(b.min, b.max, 1) | STAR
}

impl Schedule {
    /// Parses `spec` as `cron.ParseStandard` does.
    pub fn parse(spec: &str) -> Result<Schedule, ScheduleError> {
        if spec.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let mut spec = spec;
        let mut zone = None;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let eq = spec.find('=').unwrap_or(0);
            let end = spec.find(' ').unwrap_or(spec.len());
            let name = &spec[eq + 1..end];
            zone = Some(load_location(name).ok_or_else(|| ScheduleError::BadLocation(name.to_string()))?);
            spec = spec[end..].trim();
        }
        if spec.starts_with('@') {
            return Ok(Schedule { kind: descriptor(spec)?, zone });
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ScheduleError::FieldCount { found: fields.len(), fields: fields.join(" ") });
        }
        let field = |f: &str, b: &Bounds| -> Result<u64, ScheduleError> {
            f.split(',').filter(|e| !e.is_empty()).try_fold(0, |acc, e| Ok(acc | range(e, b)?))
        };
        let fields = Fields {
            second: 1,
            minute: field(fields[0], &MINUTES)?,
            hour: field(fields[1], &HOURS)?,
            dom: field(fields[2], &DOM)?,
            month: field(fields[3], &MONTHS)?,
            dow: field(fields[4], &DOW)?,
        };
        Ok(Schedule { kind: ScheduleKind::Fields(fields), zone })
    }

    /// The zone this schedule names (`TZ=`), if any.
    pub fn zone(&self) -> Option<&TimeZone> {
        self.zone.as_ref()
    }

    /// The first time strictly after `after` (at least one second later) that the
    /// schedule fires, evaluated in the schedule's zone or else `local`. `None`
    /// when nothing matches within five years (e.g. `0 0 30 2 *`).
    pub fn next(&self, after: Timestamp, local: &TimeZone) -> Option<Timestamp> {
        match &self.kind {
            ScheduleKind::Every(secs) => {
                let nanos = i64::from(after.subsec_nanosecond());
                after.checked_add((secs * 1_000_000_000 - nanos).nanoseconds()).ok()
            }
            ScheduleKind::Fields(f) => next_matching(f, self.zone.as_ref().unwrap_or(local), after),
        }
    }
}

/// `Location` lookup as Go's `time.LoadLocation`: `""` and `UTC` are UTC, `Local`
/// is the controller's zone (UTC), anything else comes from the tz database.
pub fn load_location(name: &str) -> Option<TimeZone> {
    match name {
        "" | "UTC" | "Local" => Some(TimeZone::UTC),
        _ => TimeZone::get(name).ok(),
    }
}

fn descriptor(spec: &str) -> Result<ScheduleKind, ScheduleError> {
    let once = |b: &Bounds| 1u64 << b.min;
    let f = match spec {
        "@yearly" | "@annually" => {
            Fields { second: 1, minute: once(&MINUTES), hour: once(&HOURS), dom: once(&DOM), month: once(&MONTHS), dow: all(&DOW) }
        }
        "@monthly" => Fields { second: 1, minute: once(&MINUTES), hour: once(&HOURS), dom: once(&DOM), month: all(&MONTHS), dow: all(&DOW) },
        "@weekly" => Fields { second: 1, minute: once(&MINUTES), hour: once(&HOURS), dom: all(&DOM), month: all(&MONTHS), dow: once(&DOW) },
        "@daily" | "@midnight" => {
            Fields { second: 1, minute: once(&MINUTES), hour: once(&HOURS), dom: all(&DOM), month: all(&MONTHS), dow: all(&DOW) }
        }
        "@hourly" => Fields { second: 1, minute: once(&MINUTES), hour: all(&HOURS), dom: all(&DOM), month: all(&MONTHS), dow: all(&DOW) },
        _ => {
            let Some(dur) = spec.strip_prefix("@every ") else {
                return Err(ScheduleError::Descriptor(spec.to_string()));
            };
            let nanos = go_duration(dur).map_err(|reason| ScheduleError::Duration { spec: spec.to_string(), reason })?;
            // `cron.Every`: at least a second, whole seconds only.
            let secs = (nanos / 1_000_000_000).max(1) as i64;
            return Ok(ScheduleKind::Every(secs));
        }
    };
    Ok(ScheduleKind::Fields(f))
}

/// One comma-separated term: `*`, `?`, `N`, `N-M`, each with an optional `/step`
/// (`N/step` means `N-max/step`).
fn range(expr: &str, b: &Bounds) -> Result<u64, ScheduleError> {
    let err = |m: String| ScheduleError::Field(m);
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let mut extra = 0;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        extra = STAR;
        (b.min, b.max)
    } else {
        let start = int_or_name(low_high[0], b)?;
        let end = match low_high.len() {
            1 => start,
            2 => int_or_name(low_high[1], b)?,
            _ => return Err(err(format!("too many hyphens: {expr}"))),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = must_parse_int(range_and_step[1])?;
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(err(format!("too many slashes: {expr}"))),
    };
    if start < b.min {
        return Err(err(format!("beginning of range ({start}) below minimum ({}): {expr}", b.min)));
    }
    if end > b.max {
        return Err(err(format!("end of range ({end}) above maximum ({}): {expr}", b.max)));
    }
    if start > end {
        return Err(err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}")));
    }
    if step == 0 {
        return Err(err(format!("step of range should be a positive number: {expr}")));
    }
    Ok(bits(start, end, step) | extra)
}

fn int_or_name(s: &str, b: &Bounds) -> Result<u32, ScheduleError> {
    let lower = s.to_lowercase();
    if let Some((_, v)) = b.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    must_parse_int(s)
}

fn must_parse_int(s: &str) -> Result<u32, ScheduleError> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(ScheduleError::Field(format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")));
    }
    let out_of_range = || ScheduleError::Field(format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: value out of range"));
    let n: i64 = s.parse().map_err(|_| out_of_range())?;
    if n < 0 {
        return Err(ScheduleError::Field(format!("negative number ({n}) not allowed: {s}")));
    }
    u32::try_from(n).map_err(|_| out_of_range())
}

/// Go's `time.ParseDuration`, in nanoseconds, or its error text.
fn go_duration(s: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let neg = s.starts_with('-');
    let mut rest = s.strip_prefix(['-', '+']).unwrap_or(s);
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: f64 = match unit {
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => return Err(format!("time: unknown unit {other:?} in duration {s:?}")),
        };
        total += num.parse::<f64>().map_err(|_| invalid())? * scale;
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(if neg { -(total as i128) } else { total as i128 })
}

/// A wall-clock time in `zone`; times in a daylight-saving gap move forward and
/// repeated times take the earlier instant, as Go's `time.Date` does.
fn wall(zone: &TimeZone, y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8) -> Option<Zoned> {
    jiff::civil::date(y, mo, d).at(h, mi, s, 0).to_zoned(zone.clone()).ok()
}

fn has(bits: u64, v: i8) -> bool {
    bits & (1u64 << v as u32) != 0
}

fn day_matches(f: &Fields, t: &Zoned) -> bool {
    let dom = has(f.dom, t.day());
    let dow = has(f.dow, t.weekday().to_sunday_zero_offset());
    if f.dom & STAR != 0 || f.dow & STAR != 0 {
        dom && dow
    } else {
        dom || dow
    }
}

/// `SpecSchedule.Next`: walk month, day, hour, minute and second forward until
/// each matches, starting over from the month whenever a field wraps.
fn next_matching(f: &Fields, zone: &TimeZone, after: Timestamp) -> Option<Timestamp> {
    // Start at the upcoming whole second.
    let start = after.as_second().checked_add(1)?;
    let mut t = Timestamp::from_second(start).ok()?.to_zoned(zone.clone());
    let mut added = false;
    let year_limit = t.year() + 5;
    'wrap: loop {
        if t.year() > year_limit {
            return None;
        }
        while !has(f.month, t.month()) {
            if !added {
                added = true;
                t = wall(zone, t.year(), t.month(), 1, 0, 0, 0)?;
            }
            let next = t.date().first_of_month().checked_add(1.month()).ok()?;
            t = wall(zone, next.year(), next.month(), 1, t.hour(), t.minute(), t.second())?;
            if t.month() == 1 {
                continue 'wrap;
            }
        }
        while !day_matches(f, &t) {
            if !added {
                added = true;
                t = wall(zone, t.year(), t.month(), t.day(), 0, 0, 0)?;
            }
            let next = t.date().tomorrow().ok()?;
            t = wall(zone, next.year(), next.month(), next.day(), t.hour(), t.minute(), t.second())?;
            // Midnight may not exist on a daylight-saving day; get back to it.
            if t.hour() != 0 {
                let h = i64::from(t.hour());
                t = if h > 12 { t.checked_add((24 - h).hours()).ok()? } else { t.checked_add((-h).hours()).ok()? };
            }
            if t.day() == 1 {
                continue 'wrap;
            }
        }
        while !has(f.hour, t.hour()) {
            if !added {
                added = true;
                t = wall(zone, t.year(), t.month(), t.day(), t.hour(), 0, 0)?;
            }
            t = t.checked_add(1.hour()).ok()?;
            if t.hour() == 0 {
                continue 'wrap;
            }
        }
        while !has(f.minute, t.minute()) {
            if !added {
                added = true;
                t = truncate(&t, 60)?;
            }
            t = t.checked_add(1.minute()).ok()?;
            if t.minute() == 0 {
                continue 'wrap;
            }
        }
        while !has(f.second, t.second()) {
            if !added {
                added = true;
                t = truncate(&t, 1)?;
            }
            t = t.checked_add(1.second()).ok()?;
            if t.second() == 0 {
                continue 'wrap;
            }
        }
        return Some(t.timestamp());
    }
}

/// Rounds down to a multiple of `secs` in absolute time (Go's `Time.Truncate`).
fn truncate(t: &Zoned, secs: i64) -> Option<Zoned> {
    let s = t.timestamp().as_second();
    Some(Timestamp::from_second(s - s.rem_euclid(secs)).ok()?.to_zoned(t.time_zone().clone()))
}

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
    let queue = controller.queue.clone();
    controller.ctx.cron_jobs.on_event(Arc::new(move |ev: &InformerEvent<CronJob>| {
        let cj = match ev {
            InformerEvent::Applied { new, .. } => new,
            InformerEvent::Deleted(old) => old,
        };
        queue.add(key_of(&cj.metadata));
    }));
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
    let workers: Vec<_> = (0..WORKERS).map(|_| tokio::spawn(controller.clone().worker())).collect();
    futures::future::join_all(workers).await;
}

impl CronJobController {
    async fn worker(self: Arc<Self>) {
        while let Some(key) = self.queue.next().await {
            match self.sync(&key).await {
                Ok(requeue) => {
                    self.queue.forget(&key);
                    if let Some(after) = requeue {
                        self.queue.add_after(key.clone(), after);
                    }
                }
                Err(e) => {
                    tracing::debug!(cronjob = %key, error = %e, "cronjob sync failed; retrying");
                    self.queue.add_rate_limited(key.clone());
                }
            }
            self.queue.done(&key);
        }
    }

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

    fn next(spec: &str, after: &str) -> Option<String> {
        Schedule::parse(spec).unwrap().next(ts(after), &TimeZone::UTC).map(|t| t.to_string())
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
    fn fields_accept_ranges_steps_lists_and_names() {
        assert_eq!(next("*/15 * * * *", "2025-01-01T00:07:00Z").unwrap(), "2025-01-01T00:15:00Z");
        assert_eq!(next("5-10/2 * * * *", "2025-01-01T00:07:00Z").unwrap(), "2025-01-01T00:09:00Z");
        assert_eq!(next("0 9 * * MON-fri", "2025-01-03T10:00:00Z").unwrap(), "2025-01-06T09:00:00Z");
        assert_eq!(next("0 0 1 jan,JUL *", "2025-01-02T00:00:00Z").unwrap(), "2025-07-01T00:00:00Z");
        assert_eq!(next("30 4 1,15 * *", "2025-02-01T05:00:00Z").unwrap(), "2025-02-15T04:30:00Z");
        assert_eq!(next("10/20 * * * ?", "2025-01-01T00:31:00Z").unwrap(), "2025-01-01T00:50:00Z");
    }

    #[test]
    fn next_is_strictly_after_the_given_time() {
        assert_eq!(next("* * * * *", "2025-01-01T00:00:00Z").unwrap(), "2025-01-01T00:01:00Z");
        assert_eq!(next("* * * * *", "2025-01-01T00:00:59.5Z").unwrap(), "2025-01-01T00:01:00Z");
        assert_eq!(next("0 * * * *", "2025-12-31T23:30:00Z").unwrap(), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn restricted_day_of_month_and_weekday_match_either() {
        // The 13th or any Friday: 2025-06-06 is a Friday before the 13th.
        assert_eq!(next("0 0 13 * 5", "2025-06-01T00:00:00Z").unwrap(), "2025-06-06T00:00:00Z");
        // With one of them `*`, both must match: only Fridays.
        assert_eq!(next("0 0 * * 5", "2025-06-07T00:00:00Z").unwrap(), "2025-06-13T00:00:00Z");
        // A stepped star restricts the field, so either matches again.
        assert_eq!(next("0 0 */2 * 1", "2025-06-01T12:00:00Z").unwrap(), "2025-06-02T00:00:00Z");
    }

    #[test]
    fn descriptors_and_every_durations() {
        assert_eq!(next("@hourly", "2025-01-01T10:20:00Z").unwrap(), "2025-01-01T11:00:00Z");
        assert_eq!(next("@daily", "2025-01-01T10:20:00Z").unwrap(), "2025-01-02T00:00:00Z");
        assert_eq!(next("@midnight", "2025-01-01T10:20:00Z").unwrap(), "2025-01-02T00:00:00Z");
        assert_eq!(next("@weekly", "2025-01-01T10:20:00Z").unwrap(), "2025-01-05T00:00:00Z");
        assert_eq!(next("@monthly", "2025-01-01T10:20:00Z").unwrap(), "2025-02-01T00:00:00Z");
        assert_eq!(next("@yearly", "2025-01-01T10:20:00Z").unwrap(), "2026-01-01T00:00:00Z");
        assert_eq!(next("@annually", "2025-01-01T10:20:00Z").unwrap(), "2026-01-01T00:00:00Z");
        assert_eq!(next("@every 1h30m", "2025-01-01T10:20:00.250Z").unwrap(), "2025-01-01T11:50:00Z");
        assert_eq!(next("@every 10ms", "2025-01-01T10:20:00Z").unwrap(), "2025-01-01T10:20:01Z");
    }

    #[test]
    fn impossible_dates_never_fire() {
        assert_eq!(next("0 0 30 2 *", "2025-01-01T00:00:00Z"), None);
    }

    #[test]
    fn bad_schedules_fail_with_upstream_messages() {
        let err = |s: &str| Schedule::parse(s).unwrap_err().to_string();
        assert_eq!(err(""), "empty spec string");
        assert_eq!(err("* * * *"), "expected exactly 5 fields, found 4: [* * * *]");
        assert_eq!(err("60 * * * *"), "end of range (60) above maximum (59): 60");
        assert_eq!(err("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(err("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(err("*/0 * * * *"), "step of range should be a positive number: */0");
        assert_eq!(err("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert_eq!(err("@every 2d"), "failed to parse duration @every 2d: time: unknown unit \"d\" in duration \"2d\"");
        assert_eq!(err("TZ=Mars/Base 0 * * * *"), "provided bad location Mars/Base: unknown time zone Mars/Base");
    }

    #[test]
    fn time_zone_prefixes_are_honoured() {
        // 09:00 in Berlin in winter is 08:00 UTC.
        assert_eq!(next("CRON_TZ=Europe/Berlin 0 9 * * *", "2025-01-10T12:00:00Z").unwrap(), "2025-01-11T08:00:00Z");
        assert_eq!(next("TZ=Europe/Berlin 0 9 * * *", "2025-07-10T12:00:00Z").unwrap(), "2025-07-11T07:00:00Z");
    }

    #[test]
    fn a_time_skipped_by_spring_forward_does_not_run_that_day() {
        // New York jumps from 02:00 EST to 03:00 EDT on 2025-03-09.
        let s = Schedule::parse("TZ=America/New_York 30 2 * * *").unwrap();
        let first = s.next(ts("2025-03-08T12:00:00Z"), &TimeZone::UTC).unwrap();
        assert_eq!(first.to_string(), "2025-03-10T06:30:00Z");
        let daily = Schedule::parse("TZ=America/New_York 0 9 * * *").unwrap();
        // 09:00 EST before the switch, 09:00 EDT after it.
        assert_eq!(daily.next(ts("2025-03-08T00:00:00Z"), &TimeZone::UTC).unwrap().to_string(), "2025-03-08T14:00:00Z");
        assert_eq!(daily.next(ts("2025-03-08T15:00:00Z"), &TimeZone::UTC).unwrap().to_string(), "2025-03-09T13:00:00Z");
    }

    #[test]
    fn a_time_repeated_by_fall_back_runs_at_both_instants() {
        // New York repeats 01:00-02:00 on 2025-11-02 (EDT, then EST).
        let s = Schedule::parse("TZ=America/New_York 30 1 * * *").unwrap();
        let first = s.next(ts("2025-11-01T12:00:00Z"), &TimeZone::UTC).unwrap();
        assert_eq!(first.to_string(), "2025-11-02T05:30:00Z");
        let second = s.next(first, &TimeZone::UTC).unwrap();
        assert_eq!(second.to_string(), "2025-11-02T06:30:00Z");
        assert_eq!(s.next(second, &TimeZone::UTC).unwrap().to_string(), "2025-11-03T06:30:00Z");
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
