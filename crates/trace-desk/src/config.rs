//! Process configuration read from the environment.

use std::net::SocketAddr;

/// Default address of the Tempo-compatible HTTP API.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:3200";
/// Default address of the OTLP gRPC receiver.
pub const DEFAULT_OTLP_GRPC_ADDR: &str = "127.0.0.1:4317";
/// Default address of the OTLP HTTP receiver.
pub const DEFAULT_OTLP_HTTP_ADDR: &str = "127.0.0.1:4318";
/// Default bound on the number of spans held in memory.
pub const DEFAULT_MAX_SPANS: usize = 200_000;

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
}

impl Default for DeskConfig {
    fn default() -> Self {
        Self {
            api_addr: SocketAddr::from(([127, 0, 0, 1], 3200)),
            otlp_grpc_addr: SocketAddr::from(([127, 0, 0, 1], 4317)),
            otlp_http_addr: SocketAddr::from(([127, 0, 0, 1], 4318)),
            max_spans: DEFAULT_MAX_SPANS,
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
        }
    }

    /// Reads `DESK_API_ADDR`, `DESK_OTLP_GRPC_ADDR`, `DESK_OTLP_HTTP_ADDR` and
    /// `DESK_MAX_SPANS`; unset or empty variables take their defaults.
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

fn parse_max_spans(value: &str) -> Result<usize, ConfigError> {
    let bad = |reason: String| ConfigError::BadNumber {
        var: "DESK_MAX_SPANS",
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
}
