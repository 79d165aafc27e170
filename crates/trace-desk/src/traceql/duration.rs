//! Go-style durations (`300ms`, `1h30m`), as TraceQL literals and Tempo's search
//! parameters write them.

/// Parses a Go duration (`300ms`, `1.5s`, `2m`, `1h30m`, `0`) into nanoseconds.
pub fn parse_go_duration(input: &str) -> Result<u64, String> {
    let s = input.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!("negative duration {input:?}"));
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("invalid duration {input:?}"));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {input:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("missing unit in duration {input:?}")),
            other => return Err(format!("unknown unit {other:?} in duration {input:?}")),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(format!("duration {input:?} out of range"));
    }
    Ok(total.round() as u64)
}
