//! The cron dialect CronJobs accept: `robfig/cron`'s standard parser (five fields,
//! month and weekday names, `@hourly`-style descriptors, `@every <duration>`), with
//! its error texts, which upstream returns verbatim.

/// The bounds and names of one field.
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

/// Checks a schedule; the error is the upstream message.
pub(crate) fn parse_standard(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        let end = spec.find(' ').unwrap_or(spec.len());
        let loc = &spec[eq + 1..end];
        if !time_zone_exists(loc) {
            return Err(format!("provided bad location {loc}: unknown time zone {loc}"));
        }
        spec = spec[end..].trim();
    }
    if let Some(d) = spec.strip_prefix('@') {
        return descriptor(d, spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
    }
    for (field, bounds) in fields.iter().zip([MINUTES, HOURS, DOM, MONTHS, DOW]) {
        for expr in field.split(',').filter(|e| !e.is_empty()) {
            range(expr, &bounds)?;
        }
    }
    Ok(())
}

fn descriptor(d: &str, spec: &str) -> Result<(), String> {
    match d {
        "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => Ok(()),
        _ => match spec.strip_prefix("@every ") {
            Some(dur) => go_duration(dur).map(|_| ()).map_err(|e| format!("failed to parse duration {spec}: {e}")),
            None => Err(format!("unrecognized descriptor: {spec}")),
        },
    }
}

/// `getRange`: `*`, `?`, `N`, `N-M`, each with an optional `/step`.
fn range(expr: &str, b: &Bounds) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (b.min, b.max)
    } else {
        let start = int_or_name(low_high[0], b)?;
        let end = match low_high.len() {
            1 => start,
            2 => int_or_name(low_high[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
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
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!("beginning of range ({start}) below minimum ({}): {expr}", b.min));
    }
    if end > b.max {
        return Err(format!("end of range ({end}) above maximum ({}): {expr}", b.max));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

fn int_or_name(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_lowercase();
    if let Some((_, v)) = b.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    must_parse_int(s)
}

/// `mustParseInt`, with Go's `strconv.Atoi` error text.
fn must_parse_int(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    let n: i64 = s.parse().map_err(|_| format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: value out of range"))?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {s}"));
    }
    u32::try_from(n).map_err(|_| format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: value out of range"))
}

/// Go's `time.ParseDuration`, returning nanoseconds or its error text.
pub(crate) fn go_duration(s: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let mut rest = s;
    let neg = rest.starts_with('-');
    rest = rest.strip_prefix(['-', '+']).unwrap_or(rest);
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
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

/// Whether a time zone name is known, as `time.LoadLocation` decides.
pub(crate) fn time_zone_exists(name: &str) -> bool {
    matches!(name, "UTC" | "Local" | "") || jiff::tz::db().get(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_schedules_parse() {
        for s in
            ["*/5 * * * *", "0 0 1 jan,Jul *", "15 3 * * mon-fri", "@hourly", "@every 1h30m", "0-59/15 * * * ?", "CRON_TZ=UTC 0 * * * *"]
        {
            assert_eq!(parse_standard(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn bad_schedules_explain_themselves() {
        assert_eq!(parse_standard("foo"), Err("expected exactly 5 fields, found 1: [foo]".into()));
        assert_eq!(parse_standard("60 * * * *"), Err("end of range (60) above maximum (59): 60".into()));
        assert_eq!(parse_standard("* * 0 * *"), Err("beginning of range (0) below minimum (1): 0".into()));
        assert_eq!(parse_standard("x * * * *"), Err("failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax".into()));
        assert_eq!(parse_standard("@often"), Err("unrecognized descriptor: @often".into()));
        assert_eq!(
            parse_standard("@every 5d"),
            Err("failed to parse duration @every 5d: time: unknown unit \"d\" in duration \"5d\"".into())
        );
        assert_eq!(parse_standard("5-1 * * * *"), Err("beginning of range (5) beyond end of range (1): 5-1".into()));
        assert_eq!(parse_standard("*/0 * * * *"), Err("step of range should be a positive number: */0".into()));
    }

    #[test]
    fn zones_come_from_the_database() {
        assert!(time_zone_exists("Europe/Berlin"));
        assert!(time_zone_exists("UTC"));
        assert!(!time_zone_exists("Mars/Olympus"));
    }
}
