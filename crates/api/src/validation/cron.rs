//! CronJob schedule checks for validation. The parser itself is [`crate::cron`],
//! shared with the CronJob controller; validation only needs its verdict and its
//! error text, which upstream returns verbatim.

use crate::cron::{load_location, Schedule};

/// Checks a schedule; the error is the upstream message.
pub(crate) fn parse_standard(spec: &str) -> Result<(), String> {
    Schedule::parse(spec).map(|_| ()).map_err(|e| e.to_string())
}

/// Whether a time zone name is known, as `time.LoadLocation` decides.
pub(crate) fn time_zone_exists(name: &str) -> bool {
    load_location(name).is_some()
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
