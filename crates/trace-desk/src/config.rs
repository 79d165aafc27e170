//! Process configuration read from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use crate::limits::AttributeLimits;
use crate::persist::PersistConfig;

/// Default address of the Tempo-compatible HTTP API.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:3200";
/// Default address of the OTLP gRPC receiver.
pub const DEFAULT_OTLP_GRPC_ADDR: &str = "127.0.0.1:4317";
/// Default address of the OTLP HTTP receiver.
pub const DEFAULT_OTLP_HTTP_ADDR: &str = "127.0.0.1:4318";
/// Default bound on the number of spans held in memory.
pub const DEFAULT_MAX_SPANS: usize = 200_000;
pub use crate::store::DEFAULT_MAX_BYTES;

/// Default time budget of one search (`DESK_QUERY_TIMEOUT`): past it the search answers with
/// the traces it has and marks the answer partial.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of searches evaluated at once (`DESK_MAX_CONCURRENT_SEARCHES`); more wait
/// (within their time budget) so searches cannot take every core from intake.
pub const DEFAULT_MAX_CONCURRENT_SEARCHES: usize = 2;

/// Where the desk listens and how much it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskConfig {
    /// Tempo-compatible HTTP API (also `/metrics`).
    pub api_addr: SocketAddr,
    /// OTLP gRPC receiver (`TraceService/Export`).
    pub otlp_grpc_addr: SocketAddr,
    /// OTLP HTTP receiver (`POST /v1/traces`).
    pub otlp_http_addr: SocketAddr,
    /// Maximum spans held; whole traces are evicted oldest first beyond it.
    pub max_spans: usize,
    /// Maximum estimated bytes held (see [`crate::store::estimated_span_bytes`]); whole
    /// traces are evicted oldest first beyond it.
    pub max_bytes: u64,
    /// Time budget of one search, from its arrival (waiting for a turn included).
    pub query_timeout: Duration,
    /// Searches evaluated at once, off the async workers.
    pub max_concurrent_searches: usize,
    /// OpenTelemetry attribute limits applied at intake (`DESK_MAX_ATTRIBUTES`,
    /// `DESK_MAX_EVENTS`, `DESK_MAX_LINKS`, `DESK_MAX_VALUE_BYTES`; see [`crate::limits`]).
    pub attribute_limits: AttributeLimits,
    /// Persistence (`DESK_DATA_DIR`, `DESK_RETENTION`, `DESK_COMPACT_INTERVAL`,
    /// `DESK_WAL_MAX_BYTES`; see [`crate::persist`]); `None` keeps everything in memory only.
    pub persist: Option<PersistConfig>,
}

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// An address variable did not parse as `host:port`.
    #[error("{var}={value:?} is not a socket address (expected e.g. 127.0.0.1:3200): {reason}")]
    BadAddr {
        var: &'static str,
        value: String,
        reason: String,
    },
    /// The span bound did not parse as a positive integer.
    #[error("{var}={value:?} is not a positive integer: {reason}")]
    BadNumber {
        var: &'static str,
        value: String,
        reason: String,
    },
    /// The byte bound did not parse as a positive size.
    #[error(
        "{var}={value:?} is not a size (expected e.g. 268435456, 256MiB, 1GiB, 500MB): {reason}"
    )]
    BadSize {
        var: &'static str,
        value: String,
        reason: String,
    },
    /// A time budget did not parse as a positive duration.
    #[error("{var}={value:?} is not a positive duration (expected e.g. 10s, 500ms, 1m): {reason}")]
    BadDuration {
        var: &'static str,
        value: String,
        reason: String,
    },
}

impl Default for DeskConfig {
    fn default() -> Self {
        Self {
            api_addr: SocketAddr::from(([127, 0, 0, 1], 3200)),
            otlp_grpc_addr: SocketAddr::from(([127, 0, 0, 1], 4317)),
            otlp_http_addr: SocketAddr::from(([127, 0, 0, 1], 4318)),
            max_spans: DEFAULT_MAX_SPANS,
            max_bytes: DEFAULT_MAX_BYTES,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            max_concurrent_searches: DEFAULT_MAX_CONCURRENT_SEARCHES,
            attribute_limits: AttributeLimits::default(),
            persist: None,
        }
    }
}

impl DeskConfig {
    /// Configuration for tests: every listener on `127.0.0.1:0`.
    pub fn ephemeral(max_spans: usize) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            api_addr: any,
            otlp_grpc_addr: any,
            otlp_http_addr: any,
            max_spans,
            max_bytes: DEFAULT_MAX_BYTES,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            max_concurrent_searches: DEFAULT_MAX_CONCURRENT_SEARCHES,
            attribute_limits: AttributeLimits::default(),
            persist: None,
        }
    }

    /// The same configuration, persisting as `persist` says.
    pub fn with_persist(mut self, persist: PersistConfig) -> Self {
        self.persist = Some(persist);
        self
    }

    /// The same configuration with other attribute limits.
    pub fn with_attribute_limits(mut self, limits: AttributeLimits) -> Self {
        self.attribute_limits = limits;
        self
    }

    /// The same configuration with another search time budget.
    pub fn with_query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// The same configuration with another bound on concurrent searches (at least 1).
    pub fn with_max_concurrent_searches(mut self, n: usize) -> Self {
        self.max_concurrent_searches = n.max(1);
        self
    }

    /// The same configuration with another byte bound.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Reads `DESK_API_ADDR`, `DESK_OTLP_GRPC_ADDR`, `DESK_OTLP_HTTP_ADDR`,
    /// `DESK_MAX_SPANS`, `DESK_MAX_BYTES`, `DESK_QUERY_TIMEOUT` (Go duration, default `10s`) and
    /// `DESK_MAX_CONCURRENT_SEARCHES` (default 2), and the attribute limits `DESK_MAX_ATTRIBUTES`,
    /// `DESK_MAX_EVENTS`, `DESK_MAX_LINKS` (default 128 each, at least 1) and
    /// `DESK_MAX_VALUE_BYTES` (a size, default `4KiB`), and persistence: `DESK_DATA_DIR` (unset
    /// or empty: memory only), `DESK_RETENTION` (default `24h`), `DESK_COMPACT_INTERVAL`
    /// (default `1m`) and `DESK_WAL_MAX_BYTES` (default `64MiB`); unset or empty variables take
    /// their defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`DeskConfig::from_env`] but reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        Ok(Self {
            api_addr: addr(get("DESK_API_ADDR"), "DESK_API_ADDR", DEFAULT_API_ADDR)?,
            otlp_grpc_addr: addr(
                get("DESK_OTLP_GRPC_ADDR"),
                "DESK_OTLP_GRPC_ADDR",
                DEFAULT_OTLP_GRPC_ADDR,
            )?,
            otlp_http_addr: addr(
                get("DESK_OTLP_HTTP_ADDR"),
                "DESK_OTLP_HTTP_ADDR",
                DEFAULT_OTLP_HTTP_ADDR,
            )?,
            max_spans: match get("DESK_MAX_SPANS") {
                None => DEFAULT_MAX_SPANS,
                Some(value) => parse_max_spans(&value)?,
            },
            max_bytes: match get("DESK_MAX_BYTES") {
                None => DEFAULT_MAX_BYTES,
                Some(value) => parse_size(&value).map_err(|reason| ConfigError::BadSize {
                    var: "DESK_MAX_BYTES",
                    value,
                    reason,
                })?,
            },
            query_timeout: match get("DESK_QUERY_TIMEOUT") {
                None => DEFAULT_QUERY_TIMEOUT,
                Some(value) => parse_budget(&value).map_err(|reason| ConfigError::BadDuration {
                    var: "DESK_QUERY_TIMEOUT",
                    value,
                    reason,
                })?,
            },
            max_concurrent_searches: match get("DESK_MAX_CONCURRENT_SEARCHES") {
                None => DEFAULT_MAX_CONCURRENT_SEARCHES,
                Some(value) => positive_count("DESK_MAX_CONCURRENT_SEARCHES", &value)?,
            },
            attribute_limits: {
                let d = AttributeLimits::default();
                let count = |var: &'static str, default: usize| match get(var) {
                    None => Ok(default),
                    Some(value) => positive_count(var, &value),
                };
                AttributeLimits {
                    max_attributes: count("DESK_MAX_ATTRIBUTES", d.max_attributes)?,
                    max_events: count("DESK_MAX_EVENTS", d.max_events)?,
                    max_links: count("DESK_MAX_LINKS", d.max_links)?,
                    max_value_bytes: match get("DESK_MAX_VALUE_BYTES") {
                        None => d.max_value_bytes,
                        Some(value) => parse_size(&value)
                            .and_then(|n| usize::try_from(n).map_err(|e| e.to_string()))
                            .map_err(|reason| ConfigError::BadSize {
                                var: "DESK_MAX_VALUE_BYTES",
                                value,
                                reason,
                            })?,
                    },
                }
            },
            persist: {
                let duration = |var: &'static str, default: Duration| match get(var) {
                    None => Ok(default),
                    Some(value) => parse_budget(&value)
                        .map_err(|reason| ConfigError::BadDuration { var, value, reason }),
                };
                // Checked even without a data dir, so a typo does not wait for the day it is used.
                let retention = duration("DESK_RETENTION", crate::persist::DEFAULT_RETENTION)?;
                let compact_interval = duration(
                    "DESK_COMPACT_INTERVAL",
                    crate::persist::DEFAULT_COMPACT_INTERVAL,
                )?;
                let wal_max_bytes = match get("DESK_WAL_MAX_BYTES") {
                    None => crate::persist::DEFAULT_WAL_MAX_BYTES,
                    Some(value) => parse_size(&value).map_err(|reason| ConfigError::BadSize {
                        var: "DESK_WAL_MAX_BYTES",
                        value,
                        reason,
                    })?,
                };
                get("DESK_DATA_DIR").map(|dir| PersistConfig {
                    dir: dir.into(),
                    retention,
                    compact_interval,
                    wal_max_bytes,
                })
            },
        })
    }
}

fn addr(
    value: Option<String>,
    var: &'static str,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let value = value.unwrap_or_else(|| default.to_string());
    value
        .trim()
        .parse::<SocketAddr>()
        .map_err(|e| ConfigError::BadAddr {
            var,
            value: value.clone(),
            reason: e.to_string(),
        })
}

/// A positive Go duration (`10s`, `1m30s`, `250ms`); zero is refused.
fn parse_budget(value: &str) -> Result<Duration, String> {
    let ns = crate::traceql::parse_go_duration(value)?;
    if ns == 0 {
        return Err("must be longer than zero".to_string());
    }
    Ok(Duration::from_nanos(ns))
}

fn parse_max_spans(value: &str) -> Result<usize, ConfigError> {
    positive_count("DESK_MAX_SPANS", value)
}

fn positive_count(var: &'static str, value: &str) -> Result<usize, ConfigError> {
    let bad = |reason: String| ConfigError::BadNumber {
        var,
        value: value.to_string(),
        reason,
    };
    let n = value
        .trim()
        .replace('_', "")
        .parse::<usize>()
        .map_err(|e| bad(e.to_string()))?;
    if n == 0 {
        return Err(bad("must be at least 1".to_string()));
    }
    Ok(n)
}

/// Parses a byte size: a plain number of bytes (`_` separators allowed), or a number with a
/// unit, case-insensitive, optionally separated by a space: `B`; `KiB`/`Ki`, `MiB`/`Mi`,
/// `GiB`/`Gi`, `TiB`/`Ti` (powers of 1024); `KB`/`K`, `MB`/`M`, `GB`/`G`, `TB`/`T` (powers of
/// 1000). Fractions are allowed with a unit (`1.5GiB`). Zero is refused.
pub fn parse_size(value: &str) -> Result<u64, String> {
    let v = value.trim().replace('_', "");
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        other => return Err(format!("unknown unit {other:?}")),
    };
    if number.is_empty() {
        return Err("a number is missing".to_string());
    }
    let bytes = if number.contains('.') {
        let n: f64 = number.parse().map_err(|e| format!("{e}"))?;
        let b = n * multiplier as f64;
        if !b.is_finite() || b >= u64::MAX as f64 {
            return Err("too large".to_string());
        }
        b as u64
    } else {
        number
            .parse::<u64>()
            .map_err(|e| e.to_string())?
            .checked_mul(multiplier)
            .ok_or_else(|| "too large".to_string())?
    };
    if bytes == 0 {
        return Err("must be at least 1 byte".to_string());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<DeskConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DeskConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        assert_eq!(with(&[]), Ok(DeskConfig::default()));
    }

    #[test]
    fn overrides_and_errors() {
        let c = with(&[("DESK_API_ADDR", "0.0.0.0:9"), ("DESK_MAX_SPANS", "10_000")]);
        assert!(matches!(c, Ok(ref c) if c.api_addr.port() == 9 && c.max_spans == 10_000));
        let e = with(&[("DESK_OTLP_GRPC_ADDR", "nope")]);
        assert!(matches!(
            e,
            Err(ConfigError::BadAddr {
                var: "DESK_OTLP_GRPC_ADDR",
                ..
            })
        ));
        let e = with(&[("DESK_MAX_SPANS", "-1")]);
        assert!(matches!(e, Err(ConfigError::BadNumber { .. })));
        let e = with(&[("DESK_MAX_SPANS", "0")]);
        assert!(matches!(e, Err(ConfigError::BadNumber { .. })));
    }

    #[test]
    fn max_bytes() {
        assert_eq!(DeskConfig::default().max_bytes, 256 << 20);
        let c = with(&[("DESK_MAX_BYTES", "64MiB")]);
        assert!(matches!(c, Ok(ref c) if c.max_bytes == 64 << 20));
        for bad in ["0", "-1", "12XB", "MiB", "1.2.3GiB", "99999999999TiB"] {
            let e = with(&[("DESK_MAX_BYTES", bad)]);
            assert!(
                matches!(
                    e,
                    Err(ConfigError::BadSize {
                        var: "DESK_MAX_BYTES",
                        ..
                    })
                ),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn attribute_limits() {
        let d = DeskConfig::default().attribute_limits;
        assert_eq!(
            (
                d.max_attributes,
                d.max_events,
                d.max_links,
                d.max_value_bytes
            ),
            (128, 128, 128, 4096)
        );
        let c = with(&[
            ("DESK_MAX_ATTRIBUTES", "64"),
            ("DESK_MAX_VALUE_BYTES", "1KiB"),
        ]);
        assert!(
            matches!(c, Ok(ref c) if c.attribute_limits.max_attributes == 64
            && c.attribute_limits.max_value_bytes == 1024
            && c.attribute_limits.max_events == 128)
        );
        let e = with(&[("DESK_MAX_LINKS", "many")]);
        assert!(matches!(
            e,
            Err(ConfigError::BadNumber {
                var: "DESK_MAX_LINKS",
                ..
            })
        ));
        let e = with(&[("DESK_MAX_VALUE_BYTES", "0")]);
        assert!(matches!(
            e,
            Err(ConfigError::BadSize {
                var: "DESK_MAX_VALUE_BYTES",
                ..
            })
        ));
    }

    #[test]
    fn query_budget() {
        assert_eq!(DeskConfig::default().query_timeout, Duration::from_secs(10));
        let c = with(&[
            ("DESK_QUERY_TIMEOUT", "1m30s"),
            ("DESK_MAX_CONCURRENT_SEARCHES", "3"),
        ]);
        assert!(
            matches!(c, Ok(ref c) if c.query_timeout == Duration::from_secs(90) && c.max_concurrent_searches == 3)
        );
        for bad in ["0", "10", "-1s", "soon", "5x"] {
            let e = with(&[("DESK_QUERY_TIMEOUT", bad)]);
            assert!(
                matches!(
                    e,
                    Err(ConfigError::BadDuration {
                        var: "DESK_QUERY_TIMEOUT",
                        ..
                    })
                ),
                "{bad}: {e:?}"
            );
            assert!(e.is_err_and(|e| e.to_string().contains("e.g. 10s")));
        }
        let e = with(&[("DESK_MAX_CONCURRENT_SEARCHES", "0")]);
        assert!(matches!(
            e,
            Err(ConfigError::BadNumber {
                var: "DESK_MAX_CONCURRENT_SEARCHES",
                ..
            })
        ));
    }

    #[test]
    fn persistence() {
        assert_eq!(DeskConfig::default().persist, None);
        assert_eq!(with(&[("DESK_DATA_DIR", " ")]).map(|c| c.persist), Ok(None));
        let c = with(&[
            ("DESK_DATA_DIR", "/tmp/desk"),
            ("DESK_RETENTION", "2h"),
            ("DESK_WAL_MAX_BYTES", "8MiB"),
        ]);
        let p = c.map(|c| c.persist);
        assert_eq!(
            p,
            Ok(Some(PersistConfig {
                dir: "/tmp/desk".into(),
                retention: Duration::from_secs(7200),
                compact_interval: Duration::from_secs(60),
                wal_max_bytes: 8 << 20,
            }))
        );
        let d = with(&[("DESK_DATA_DIR", "d")]).map(|c| c.persist);
        assert!(
            matches!(d, Ok(Some(ref p)) if p.retention == Duration::from_secs(86_400) && p.wal_max_bytes == 64 << 20)
        );
        for (var, bad) in [
            ("DESK_RETENTION", "0"),
            ("DESK_RETENTION", "1d"),
            ("DESK_COMPACT_INTERVAL", "soon"),
        ] {
            let e = with(&[(var, bad)]);
            assert!(
                matches!(e, Err(ConfigError::BadDuration { var: v, .. }) if v == var),
                "{var}={bad}: {e:?}"
            );
        }
        let e = with(&[("DESK_WAL_MAX_BYTES", "0")]);
        assert!(matches!(
            e,
            Err(ConfigError::BadSize {
                var: "DESK_WAL_MAX_BYTES",
                ..
            })
        ));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1_000"), Ok(1000));
        assert_eq!(parse_size("512 KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2gb"), Ok(2_000_000_000));
        assert_eq!(parse_size("10M"), Ok(10_000_000));
        assert_eq!(parse_size("7b"), Ok(7));
    }
}
