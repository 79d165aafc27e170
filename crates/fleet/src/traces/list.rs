//! `fleet traces`: Tempo's search answer as a table.

use std::fmt::Write as _;

use serde_json::Value;

use super::model::int;

/// One trace of a search answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// 32 hex digits (Tempo trims leading zeros in search results; padded back here).
    pub trace_id: String,
    pub start: u64,
    pub root_service: String,
    pub root_name: String,
    /// Whole milliseconds as Tempo reports them (`durationMs`, omitted when 0).
    pub duration_ms: u64,
    /// From `serviceStats`, when the server sends them.
    pub spans: Option<u64>,
    pub errors: u64,
}

/// The traces of a `GET /api/search` answer.
pub fn parse_search(json: &Value) -> anyhow::Result<Vec<Found>> {
    let Some(traces) = json["traces"].as_array() else {
        anyhow::bail!("the search answer has no `traces` array: {json}");
    };
    Ok(traces
        .iter()
        .map(|t| {
            let stats = t["serviceStats"].as_object();
            Found {
                trace_id: format!(
                    "{:0>32}",
                    t["traceID"]
                        .as_str()
                        .unwrap_or_default()
                        .to_ascii_lowercase()
                ),
                start: int(&t["startTimeUnixNano"]),
                root_service: t["rootServiceName"].as_str().unwrap_or_default().to_owned(),
                root_name: t["rootTraceName"].as_str().unwrap_or_default().to_owned(),
                duration_ms: int(&t["durationMs"]),
                spans: stats.map(|s| s.values().map(|v| int(&v["spanCount"])).sum()),
                errors: stats
                    .map(|s| s.values().map(|v| int(&v["errorCount"])).sum())
                    .unwrap_or(0),
            }
        })
        .collect())
}

/// Keeps the `n` longest traces, longest first (ties: newer first).
pub fn slowest(mut found: Vec<Found>, n: usize) -> Vec<Found> {
    found.sort_by(|a, b| {
        b.duration_ms
            .cmp(&a.duration_ms)
            .then(b.start.cmp(&a.start))
    });
    found.truncate(n);
    found
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) for unix nanoseconds.
pub fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let ms = (ns / 1_000_000) % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{ms:03}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The table, with a header line and no trailing hint.
pub fn table(found: &[Found]) -> String {
    let header = [
        "TRACE ID",
        "START (UTC)",
        "ROOT SERVICE",
        "ROOT NAME",
        "DURATION",
        "SPANS",
        "ERRORS",
    ];
    let rows: Vec<[String; 7]> = found
        .iter()
        .map(|f| {
            [
                f.trace_id.clone(),
                utc(f.start),
                if f.root_service.is_empty() {
                    "-".into()
                } else {
                    f.root_service.clone()
                },
                if f.root_name.is_empty() {
                    "-".into()
                } else {
                    f.root_name.clone()
                },
                if f.duration_ms == 0 {
                    "<1 ms".into()
                } else {
                    format!("{} ms", f.duration_ms)
                },
                f.spans.map_or("-".into(), |n| n.to_string()),
                if f.errors > 0 {
                    format!("✗ {}", f.errors)
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 7]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            let fill = " ".repeat(w.saturating_sub(c.chars().count()));
            // Durations and counts right-aligned.
            if i == 4 || i == 5 {
                let _ = write!(l, "{fill}{c}  ");
            } else {
                let _ = write!(l, "{c}{fill}  ");
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(header);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]]);
    }
    out
}

/// `15m`, `2h`, `1h30m`, `45s`, `7d`, `1w` as seconds.
pub fn parse_since(s: &str) -> anyhow::Result<u64> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    let bad = || anyhow::anyhow!("--since {s:?}: expected a duration like 15m, 2h, 1h30m, 45s, 7d");
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn search_answers_become_rows() {
        let found = parse_search(&json!({"traces": [
            {"traceID": "abc", "rootServiceName": "gw", "rootTraceName": "GET /", "startTimeUnixNano": "1795596127644269693",
             "durationMs": 47, "serviceStats": {"gw": {"spanCount": 3, "errorCount": 1}, "db": {"spanCount": 2}}},
            {"traceID": "00ff00ff00ff00ff00ff00ff00ff00ff", "startTimeUnixNano": "1000000000"},
        ]}))
        .unwrap();
        assert_eq!(found[0].trace_id, format!("{}abc", "0".repeat(29)));
        assert_eq!(
            (found[0].spans, found[0].errors, found[0].duration_ms),
            (Some(5), 1, 47)
        );
        assert_eq!((found[1].spans, found[1].duration_ms), (None, 0));
        let t = table(&found);
        assert!(t.contains("2026-11-25 08:42:07.644"), "{t}");
        assert!(t.contains("47 ms      5  ✗ 1"), "{t}");
        assert!(t.contains("<1 ms      -"), "{t}");
        assert_eq!(slowest(found, 1)[0].duration_ms, 47);
        assert!(parse_search(&json!({"x": 1})).is_err());
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(utc(951_782_400_123_000_000), "2000-02-29 00:00:00.123");
        assert_eq!(utc(1_700_000_000_000_000_000), "2023-11-14 22:13:20.000");
    }

    #[test]
    fn since() {
        assert_eq!(parse_since("15m").unwrap(), 900);
        assert_eq!(parse_since("1h30m").unwrap(), 5400);
        assert_eq!(parse_since("2d").unwrap(), 172_800);
        for bad in ["", "15", "m", "0s", "3x", "-5m"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
