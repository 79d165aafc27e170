//! Timing: the open model's arrival schedule and the `30s` / `500ms` durations of the flags.

use std::time::Duration;

/// When request `i` (0-based) is due, measured from the start: exactly `i / rate` seconds.
///
/// Computed from `i` every time, never by adding intervals, so rounding cannot drift, and never
/// from when earlier requests finished: a slow answer does not delay the next arrival (no
/// coordinated omission).
pub fn due_offset(i: u64, rate: f64) -> Duration {
    // Nanosecond arithmetic in f64 is exact far past any run's length at sane rates.
    Duration::from_nanos(((i as f64) * 1e9 / rate).round() as u64)
}

/// How many arrivals fall in `[0, duration)` at `rate`: the count `fleet load` plans to send.
pub fn planned_arrivals(rate: f64, duration: Duration) -> u64 {
    let mut n = (duration.as_secs_f64() * rate).ceil() as u64;
    // Guard the boundary against float rounding: arrival n must be at or past the end.
    while n > 0 && due_offset(n - 1, rate) >= duration {
        n -= 1;
    }
    while due_offset(n, rate) < duration {
        n += 1;
    }
    n
}

/// `30s`, `500ms`, `2m`, `1h`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration like 30s, 500ms, 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1e3,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// A positive, finite request rate.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{text:?}: the rate must be a number above 0")),
    }
}

/// A fraction in `[0, 1]`.
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{text:?}: must be between 0 and 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_evenly_spaced_from_the_start() {
        assert_eq!(due_offset(0, 40.0), Duration::ZERO);
        assert_eq!(due_offset(1, 40.0), Duration::from_millis(25));
        assert_eq!(due_offset(40, 40.0), Duration::from_secs(1));
        assert_eq!(due_offset(3, 3.0), Duration::from_secs(1));
        assert_eq!(due_offset(1, 0.5), Duration::from_secs(2));
    }

    #[test]
    fn no_drift_for_rates_that_are_not_exact_in_binary() {
        // 1/3 s is not representable; summing intervals would drift, i / rate does not.
        assert_eq!(due_offset(3_000_000, 3.0), Duration::from_secs(1_000_000));
        assert_eq!(due_offset(70, 7.0), Duration::from_secs(10));
        // Offsets are monotone and spaced by 1/rate within a nanosecond.
        let rate = 7.3;
        for i in 0..10_000u64 {
            let gap = due_offset(i + 1, rate) - due_offset(i, rate);
            let ideal = 1e9 / rate;
            assert!(
                (gap.as_nanos() as f64 - ideal).abs() <= 1.0,
                "gap {gap:?} at {i}"
            );
        }
    }

    #[test]
    fn planned_arrivals_is_rate_times_duration() {
        assert_eq!(planned_arrivals(40.0, Duration::from_secs(5)), 200);
        assert_eq!(planned_arrivals(20.0, Duration::from_secs(30)), 600);
        assert_eq!(planned_arrivals(3.0, Duration::from_secs(1)), 3);
        // Partial intervals round up: arrivals at 0, 0.4 and 0.8 s fall in the first second.
        assert_eq!(planned_arrivals(2.5, Duration::from_secs(1)), 3);
        assert_eq!(planned_arrivals(10.0, Duration::ZERO), 0);
        assert_eq!(planned_arrivals(1.0, Duration::from_millis(1)), 1);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("12").unwrap(), Duration::from_secs(12));
        for bad in ["", "s", "10d", "-1s", "ten"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rates_and_fractions_parse() {
        assert_eq!(parse_rate("20").unwrap(), 20.0);
        assert_eq!(parse_rate("0.5").unwrap(), 0.5);
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("inf").is_err());
        assert_eq!(parse_fraction("0.05").unwrap(), 0.05);
        assert!(parse_fraction("1.5").is_err());
    }
}
