use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A place in a service's code where a fault can be injected. Each service declares its points
/// as constants next to the code that checks them and hands the list to [`crate::Faults`]; this
/// crate knows no service's points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPoint {
    /// `owner.place`, e.g. `order.db`: what `FLEET_FAULTS`, baggage and `/admin/faults` name.
    pub name: &'static str,
    /// What arming it does there (listed by `GET /admin/faults` and `fleet scenario points`).
    pub about: &'static str,
}

/// Largest magnitudes anyone may ask for, so a typo cannot wedge the fleet.
#[derive(Debug, Clone, Copy)]
pub struct Limits;

impl Limits {
    pub const MAX_DURATION: Duration = Duration::from_secs(60);
    pub const MAX_RETRIES: u32 = 10;
    pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
    /// All the backoff one call may wait through: `backoff × (2^retries − 1)`, doubling.
    pub const MAX_TOTAL_BACKOFF: Duration = Duration::from_secs(10);
    /// What payment-api uses when `mode=retry` names no `retries`/`backoff`.
    pub const DEFAULT_RETRIES: u32 = 3;
    pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(100);
    /// `max_in_flight` at least 1: a limit of 0 would shed every request, a dead service
    /// rather than an overloaded one. (It can only lower the start-up `MAX_IN_FLIGHT`.)
    pub const MIN_IN_FLIGHT: u32 = 1;
}

const MODES: &[&str] = &["sequential", "n_plus_one", "drop_context", "retry"];

/// One armed fault point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    pub latency: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    pub jitter: Option<Duration>,
    /// An HTTP status (400–599); gRPC services send the matching gRPC code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<u16>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration"
    )]
    pub backoff: Option<Duration>,
    /// A lower limit on requests in flight (a `*.shed` point): past it the service sheds,
    /// 503 `overloaded` (gRPC `UNAVAILABLE`), as it does past `MAX_IN_FLIGHT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Probability that a request is affected, 0–1 (default 1).
    #[serde(default = "one", rename = "p")]
    pub probability: f64,
}

fn one() -> f64 {
    1.0
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultError {
    #[error("fault {0:?}: expected POINT:SETTING[,SETTING…]")]
    Syntax(String),
    #[error("unknown fault point {point:?}; known points: {known}")]
    UnknownPoint { point: String, known: String },
    #[error("fault point {0:?}: a point is lowercase words joined by dots, e.g. order.db")]
    BadPoint(String),
    #[error(
        "{point}: unknown setting {key:?} (latency, jitter, error, timeout, mode, retries, backoff, max_in_flight, p)"
    )]
    UnknownSetting { point: String, key: String },
    #[error("{point}: {key}={value:?}: {reason}")]
    BadValue {
        point: String,
        key: String,
        value: String,
        reason: String,
    },
    #[error("{point}: arms nothing (give latency, error, timeout, mode or max_in_flight)")]
    Empty { point: String },
}

fn bad(point: &str, key: &str, value: &str, reason: impl Into<String>) -> FaultError {
    FaultError::BadValue {
        point: point.into(),
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn duration(point: &str, key: &str, value: &str, max: Duration) -> Result<Duration, FaultError> {
    let d = humantime::parse_duration(value).map_err(|e| bad(point, key, value, e.to_string()))?;
    if d > max {
        return Err(bad(
            point,
            key,
            value,
            format!("at most {}", humantime::format_duration(max)),
        ));
    }
    Ok(d)
}

impl FaultSpec {
    /// Checks every magnitude against [`Limits`] and the point's spelling; whether a service has
    /// the point is for [`crate::Faults`] (or the fleet's catalogue) to say.
    pub fn validate(&self, point: &str) -> Result<(), FaultError> {
        let well_formed = !point.is_empty()
            && point.split('.').all(|w| {
                !w.is_empty()
                    && w.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
        if !well_formed {
            return Err(FaultError::BadPoint(point.into()));
        }
        for (key, d, max) in [
            ("latency", self.latency, Limits::MAX_DURATION),
            ("jitter", self.jitter, Limits::MAX_DURATION),
            ("timeout", self.timeout, Limits::MAX_DURATION),
            ("backoff", self.backoff, Limits::MAX_BACKOFF),
        ] {
            if let Some(d) = d
                && d > max
            {
                return Err(bad(
                    point,
                    key,
                    &humantime::format_duration(d).to_string(),
                    format!("at most {}", humantime::format_duration(max)),
                ));
            }
        }
        // A fault's delay is latency plus up to jitter: together within the same 60 s.
        let delay = self.latency.unwrap_or_default() + self.jitter.unwrap_or_default();
        if delay > Limits::MAX_DURATION {
            return Err(bad(
                point,
                "latency+jitter",
                &humantime::format_duration(delay).to_string(),
                format!(
                    "at most {} together",
                    humantime::format_duration(Limits::MAX_DURATION)
                ),
            ));
        }
        if self.mode.as_deref() == Some("retry") || self.retries.is_some() || self.backoff.is_some()
        {
            let retries = self.retries.unwrap_or(Limits::DEFAULT_RETRIES).min(31);
            let first = self.backoff.unwrap_or(Limits::DEFAULT_BACKOFF);
            let total = first.saturating_mul((1u32 << retries) - 1);
            if total > Limits::MAX_TOTAL_BACKOFF {
                return Err(bad(
                    point,
                    "retries×backoff",
                    &humantime::format_duration(total).to_string(),
                    format!(
                        "at most {} of backoff in all (backoff doubles each retry)",
                        humantime::format_duration(Limits::MAX_TOTAL_BACKOFF)
                    ),
                ));
            }
        }
        if let Some(e) = self.error
            && !(400..=599).contains(&e)
        {
            return Err(bad(
                point,
                "error",
                &e.to_string(),
                "an HTTP status from 400 to 599",
            ));
        }
        if let Some(r) = self.retries
            && r > Limits::MAX_RETRIES
        {
            return Err(bad(
                point,
                "retries",
                &r.to_string(),
                format!("at most {}", Limits::MAX_RETRIES),
            ));
        }
        if let Some(m) = &self.mode
            && !MODES.contains(&m.as_str())
        {
            return Err(bad(
                point,
                "mode",
                m,
                format!("one of {}", MODES.join(", ")),
            ));
        }
        if let Some(n) = self.max_in_flight
            && n < Limits::MIN_IN_FLIGHT
        {
            return Err(bad(
                point,
                "max_in_flight",
                &n.to_string(),
                format!("at least {}", Limits::MIN_IN_FLIGHT),
            ));
        }
        if !(0.0..=1.0).contains(&self.probability) || self.probability.is_nan() {
            return Err(bad(
                point,
                "p",
                &self.probability.to_string(),
                "a probability from 0 to 1",
            ));
        }
        if self.latency.is_none()
            && self.error.is_none()
            && self.timeout.is_none()
            && self.mode.is_none()
            && self.max_in_flight.is_none()
        {
            return Err(FaultError::Empty {
                point: point.into(),
            });
        }
        Ok(())
    }
}

/// Parses the grammar in the crate docs; every fault is validated.
pub fn parse_faults(text: &str) -> Result<BTreeMap<String, FaultSpec>, FaultError> {
    let mut out = BTreeMap::new();
    for fault in text.split(';').map(str::trim).filter(|f| !f.is_empty()) {
        let (point, settings) = fault
            .split_once(':')
            .ok_or_else(|| FaultError::Syntax(fault.into()))?;
        let point = point.trim();
        let mut spec = FaultSpec {
            probability: 1.0,
            ..FaultSpec::default()
        };
        for setting in settings.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = setting
                .split_once('=')
                .ok_or_else(|| FaultError::Syntax(fault.into()))?;
            let (key, value) = (key.trim(), value.trim());
            match key {
                "latency" => {
                    spec.latency = Some(duration(point, key, value, Limits::MAX_DURATION)?)
                }
                "jitter" => spec.jitter = Some(duration(point, key, value, Limits::MAX_DURATION)?),
                "timeout" => {
                    spec.timeout = Some(duration(point, key, value, Limits::MAX_DURATION)?)
                }
                "backoff" => spec.backoff = Some(duration(point, key, value, Limits::MAX_BACKOFF)?),
                "error" => {
                    spec.error =
                        Some(value.parse().map_err(|_| {
                            bad(point, key, value, "an HTTP status from 400 to 599")
                        })?)
                }
                "retries" => {
                    spec.retries = Some(
                        value
                            .parse()
                            .map_err(|_| bad(point, key, value, "a whole number"))?,
                    )
                }
                "mode" => spec.mode = Some(value.to_owned()),
                "max_in_flight" => {
                    spec.max_in_flight = Some(
                        value
                            .parse()
                            .map_err(|_| bad(point, key, value, "a whole number of at least 1"))?,
                    )
                }
                "p" => {
                    spec.probability = value
                        .parse()
                        .map_err(|_| bad(point, key, value, "a probability from 0 to 1"))?
                }
                other => {
                    return Err(FaultError::UnknownSetting {
                        point: point.into(),
                        key: other.into(),
                    });
                }
            }
        }
        spec.validate(point)?;
        out.insert(point.to_owned(), spec);
    }
    Ok(out)
}

impl fmt::Display for FaultSpec {
    /// The settings part of the grammar, e.g. `latency=800ms,p=0.3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let d = |d: Duration| humantime::format_duration(d).to_string();
        if let Some(v) = self.latency {
            parts.push(format!("latency={}", d(v)));
        }
        if let Some(v) = self.jitter {
            parts.push(format!("jitter={}", d(v)));
        }
        if let Some(v) = self.error {
            parts.push(format!("error={v}"));
        }
        if let Some(v) = self.timeout {
            parts.push(format!("timeout={}", d(v)));
        }
        if let Some(v) = &self.mode {
            parts.push(format!("mode={v}"));
        }
        if let Some(v) = self.retries {
            parts.push(format!("retries={v}"));
        }
        if let Some(v) = self.backoff {
            parts.push(format!("backoff={}", d(v)));
        }
        if let Some(v) = self.max_in_flight {
            parts.push(format!("max_in_flight={v}"));
        }
        if self.probability < 1.0 {
            parts.push(format!("p={}", self.probability));
        }
        write!(f, "{}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let faults = parse_faults(
            "payment.provider:latency=800ms,jitter=200ms,p=0.3; order.db:error=500,p=0.1",
        )
        .unwrap();
        let p = &faults["payment.provider"];
        assert_eq!(p.latency, Some(Duration::from_millis(800)));
        assert_eq!(p.jitter, Some(Duration::from_millis(200)));
        assert_eq!(p.probability, 0.3);
        assert_eq!(faults["order.db"].error, Some(500));
        assert_eq!(p.to_string(), "latency=800ms,jitter=200ms,p=0.3");
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        assert!(matches!(
            parse_faults("Order DB:latency=1s"),
            Err(FaultError::BadPoint(_))
        ));
        assert!(matches!(
            parse_faults("order.db:latency=2h"),
            Err(FaultError::BadValue { .. })
        ));
        assert!(matches!(
            parse_faults("order.db:error=200"),
            Err(FaultError::BadValue { .. })
        ));
        assert!(matches!(
            parse_faults("order.db:p=1.5,latency=1s"),
            Err(FaultError::BadValue { .. })
        ));
        assert!(matches!(
            parse_faults("order.db:colour=red"),
            Err(FaultError::UnknownSetting { .. })
        ));
        assert!(matches!(
            parse_faults("order.db:p=0.5"),
            Err(FaultError::Empty { .. })
        ));
        assert!(matches!(
            parse_faults("order.db"),
            Err(FaultError::Syntax(_))
        ));
        assert!(matches!(
            parse_faults("order.lookup:mode=teleport"),
            Err(FaultError::BadValue { .. })
        ));
        assert!(
            parse_faults("payment.retry:mode=retry,retries=10,backoff=5s").is_err(),
            "5,115 s of backoff per charge is refused"
        );
        assert!(parse_faults("payment.retry:mode=retry,retries=6,backoff=100ms").is_ok());
        assert!(
            parse_faults("payment.retry:mode=retry,retries=7,backoff=100ms").is_err(),
            "12.7 s of backoff in all, over the 10 s bound"
        );
        assert!(parse_faults("payment.provider:latency=30s,jitter=30s").is_ok());
        assert!(
            parse_faults("payment.provider:latency=60s,jitter=60s").is_err(),
            "120 s of delay"
        );
        assert!(matches!(
            parse_faults("payment.retry:mode=retry,retries=99"),
            Err(FaultError::BadValue { .. })
        ));
        assert!(matches!(
            parse_faults("order.shed:max_in_flight=0"),
            Err(FaultError::BadValue { .. })
        ));
        assert!(matches!(
            parse_faults("order.shed:max_in_flight=-1"),
            Err(FaultError::BadValue { .. })
        ));
        let at_edge = parse_faults("order.shed:max_in_flight=1").unwrap();
        assert_eq!(at_edge["order.shed"].max_in_flight, Some(1));
        assert_eq!(at_edge["order.shed"].to_string(), "max_in_flight=1");
        assert!(parse_faults("").unwrap().is_empty());
    }
}
