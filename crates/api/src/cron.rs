//! Cron schedules as CronJobs write them: `robfig/cron` v3's standard parser (five
//! fields, month and weekday names, `@hourly`-style descriptors, `@every <duration>`,
//! an optional `TZ=`/`CRON_TZ=` prefix) and its `Next` computation.
//!
//! One parser serves both sides: validation rejects what the CronJob controller
//! could not run, with the error texts upstream returns verbatim, and the controller
//! computes start times from the same parse.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

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

/// The values `min..=max` taken every `step`. Counts in `u64`, as robfig's `uint`
/// does, so a step near `u32::MAX` ends the walk instead of wrapping around.
fn bits(min: u32, max: u32, step: u32) -> u64 {
    let mut b = 0;
    let mut i = u64::from(min);
    while i <= u64::from(max) {
        b |= 1 << i;
        i += u64::from(step);
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
/// is the zone Skiff's components run in (UTC), anything else comes from the tz
/// database. Validation asks it whether a zone exists; the controller evaluates
/// schedules in what it returns.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str) -> Option<String> {
        Schedule::parse(spec).unwrap().next(ts(after), &TimeZone::UTC).map(|t| t.to_string())
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
    fn huge_steps_end_the_field_instead_of_wrapping() {
        assert_eq!(next("1/4294967295 * * * *", "2025-01-01T00:00:00Z").unwrap(), "2025-01-01T00:01:00Z");
    }
}
