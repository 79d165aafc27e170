use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::baggage::BaggageExt as _;
use rand::Rng as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use fleet_server_kit::Metrics;
use fleet_server_kit::metrics::Counter;

use crate::spec::{FaultError, FaultPoint, FaultSpec, Limits, parse_faults};

/// The baggage entry that arms faults for one request (and everything downstream of it).
pub const BAGGAGE_KEY: &str = "fleet.fault";

/// One service's fault points and what is armed on them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Faults {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: String,
    points: &'static [FaultPoint],
    armed: RwLock<BTreeMap<String, FaultSpec>>,
    baggage_enabled: bool,
    quiz: bool,
    /// Quiz mode switched on at run time (`PUT /admin/faults?quiz=true`), until the next change.
    quiz_now: std::sync::atomic::AtomicBool,
    admin_token: Option<String>,
    /// `PUT /admin/faults` bodies refused (see [`Faults::count_in`]).
    refused: Counter,
    /// Checks that ignored a `fleet.fault` baggage entry that does not parse or is past a limit.
    baggage_ignored: Counter,
}

/// A fault that fired for this request.
#[derive(Debug, Clone)]
pub struct Injection {
    pub point: String,
    pub spec: FaultSpec,
    /// `latency` plus a uniform share of `jitter`, drawn once.
    pub delay: Duration,
}

impl Injection {
    pub fn mode(&self) -> Option<&str> {
        self.spec.mode.as_deref()
    }

    /// Waits out the latency, if any.
    pub async fn delay(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

fn truthy(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes"))
}

impl Faults {
    /// `FLEET_FAULTS` (points this service does not own are left to their owners),
    /// `FLEET_BAGGAGE_FAULTS`, `FLEET_QUIZ_MODE`, `FLEET_ADMIN_TOKEN`.
    pub fn from_env(service: &str, points: &'static [FaultPoint]) -> Result<Self, FaultError> {
        let faults = Self::new(
            service,
            points,
            truthy("FLEET_BAGGAGE_FAULTS"),
            truthy("FLEET_QUIZ_MODE"),
            std::env::var("FLEET_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        );
        let text = std::env::var("FLEET_FAULTS").unwrap_or_default();
        let mine = parse_faults(&text)?
            .into_iter()
            .filter(|(p, _)| faults.owns(p))
            .collect::<BTreeMap<_, _>>();
        faults.replace(mine)?;
        Ok(faults)
    }

    pub fn new(
        service: &str,
        points: &'static [FaultPoint],
        baggage_enabled: bool,
        quiz: bool,
        admin_token: Option<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                service: service.to_owned(),
                points,
                armed: RwLock::new(BTreeMap::new()),
                baggage_enabled,
                quiz,
                quiz_now: std::sync::atomic::AtomicBool::new(false),
                admin_token,
                refused: Counter::default(),
                baggage_ignored: Counter::default(),
            }),
        }
    }

    pub fn service(&self) -> &str {
        &self.inner.service
    }

    pub fn admin_token(&self) -> Option<&str> {
        self.inner.admin_token.as_deref()
    }

    pub fn owns(&self, point: &str) -> bool {
        self.inner.points.iter().any(|p| p.name == point)
    }

    /// The points this service declared, in its order.
    pub fn points(&self) -> &'static [FaultPoint] {
        self.inner.points
    }

    pub fn owned_points(&self) -> Vec<&'static str> {
        self.inner.points.iter().map(|p| p.name).collect()
    }

    /// Replaces everything armed here; nothing changes if any fault is invalid or not ours.
    pub fn replace(&self, faults: BTreeMap<String, FaultSpec>) -> Result<(), FaultError> {
        for (point, spec) in &faults {
            spec.validate(point)?;
            if !self.owns(point) {
                return Err(FaultError::UnknownPoint {
                    point: point.clone(),
                    known: format!(
                        "{} (on {})",
                        self.owned_points().join(", "),
                        self.inner.service
                    ),
                });
            }
        }
        *self.inner.armed.write().unwrap_or_else(|p| p.into_inner()) = faults;
        Ok(())
    }

    /// Counts the refusals of fault specs (past [`crate::Limits`], malformed, or not this
    /// service's points) in the service's `metrics`.
    pub fn count_in(&self, metrics: &Metrics) {
        let limits = format!(
            "latency, jitter and timeout at most {}, retries at most {}, backoff at most {}, \
             all backoff at most {}",
            humantime::format_duration(Limits::MAX_DURATION),
            Limits::MAX_RETRIES,
            humantime::format_duration(Limits::MAX_BACKOFF),
            humantime::format_duration(Limits::MAX_TOTAL_BACKOFF),
        );
        metrics.register_counter(
            "fault_specs_refused",
            &format!(
                "PUT /admin/faults bodies refused: malformed, naming another service's point, \
                 or past a limit ({limits})"
            ),
            &self.inner.refused,
        );
        metrics.register_counter(
            "fault_baggage_ignored",
            &format!(
                "Fault point checks that ignored a fleet.fault baggage entry that was malformed \
                 or past a limit ({limits})"
            ),
            &self.inner.baggage_ignored,
        );
    }

    /// A `PUT /admin/faults` was refused.
    pub(crate) fn note_refused(&self) {
        self.inner.refused.inc();
    }

    /// Hide `fault.injected` events from now on (until the next `replace`), for `fleet quiz`.
    pub fn set_quiz(&self, on: bool) {
        self.inner
            .quiz_now
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn hides_evidence(&self) -> bool {
        self.inner.quiz
            || self
                .inner
                .quiz_now
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn armed(&self) -> BTreeMap<String, FaultSpec> {
        self.inner
            .armed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Decides whether `point` misbehaves for the current request. A baggage fault (when enabled)
    /// wins over an armed one. When it fires, the current span gets a `fault.injected` event,
    /// unless quiz mode hides the evidence.
    pub fn check(&self, point: FaultPoint) -> Option<Injection> {
        self.check_in(point.name, &tracing::Span::current().context())
    }

    fn check_in(&self, point: &str, cx: &opentelemetry::Context) -> Option<Injection> {
        let (spec, source) = self
            .baggage_fault(point, cx)
            .map(|s| (s, "baggage"))
            .or_else(|| {
                // Every request asks several points: read one entry, don't copy the whole map.
                let armed = self.inner.armed.read().unwrap_or_else(|p| p.into_inner());
                armed.get(point).cloned().map(|s| (s, "armed"))
            })?;
        let mut rng = rand::rng();
        if spec.probability < 1.0 && rng.random::<f64>() >= spec.probability {
            return None;
        }
        let jitter = spec
            .jitter
            .map(|j| j.mul_f64(rng.random::<f64>()))
            .unwrap_or_default();
        let delay = spec.latency.unwrap_or_default() + jitter;
        if !self.hides_evidence() {
            tracing::Span::current().add_event(
                "fault.injected",
                vec![
                    KeyValue::new("fault.point", point.to_owned()),
                    KeyValue::new("fault.spec", spec.to_string()),
                    KeyValue::new("fault.source", source),
                ],
            );
        }
        Some(Injection {
            point: point.to_owned(),
            spec,
            delay,
        })
    }

    /// The per-request hook for [`fleet_server_kit::InFlightLimit::lowered_by`]: `point`'s
    /// `max_in_flight` when it fires for this request (armed or from baggage), so arming
    /// `order.shed:max_in_flight=2` makes order-api shed past two requests in flight. Asked
    /// from inside the server span, so a request it applied to carries `fault.injected`.
    pub fn in_flight_limit(
        &self,
        point: FaultPoint,
    ) -> impl Fn() -> Option<usize> + Send + Sync + use<> {
        let faults = self.clone();
        move || {
            let limit = faults.check(point)?.spec.max_in_flight?;
            usize::try_from(limit).ok()
        }
    }

    /// Like [`Faults::check`], for a process that keeps no trace context (the external
    /// provider): the baggage is read straight from the request headers.
    pub fn check_headers(&self, point: FaultPoint, headers: &http::HeaderMap) -> Option<Injection> {
        use opentelemetry::propagation::TextMapPropagator as _;
        let cx = opentelemetry_sdk::propagation::BaggagePropagator::new()
            .extract(&opentelemetry_http::HeaderExtractor(headers));
        self.check_in(point.name, &cx)
    }

    fn baggage_fault(&self, point: &str, cx: &opentelemetry::Context) -> Option<FaultSpec> {
        if !self.inner.baggage_enabled {
            return None;
        }
        let text = cx.baggage().get(BAGGAGE_KEY)?.as_str().to_owned();
        match parse_faults(&text) {
            Ok(mut faults) => faults.remove(point),
            Err(e) => {
                self.inner.baggage_ignored.inc();
                tracing::warn!(error = %e, "ignoring malformed fleet.fault baggage");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: FaultPoint = FaultPoint {
        name: "order.db",
        about: "test point",
    };
    const LOOKUP: FaultPoint = FaultPoint {
        name: "order.lookup",
        about: "test point",
    };
    const POINTS: &[FaultPoint] = &[DB, LOOKUP];

    #[test]
    fn ownership_is_enforced_and_failures_change_nothing() {
        let faults = Faults::new("order-api", POINTS, false, false, None);
        let ok = parse_faults("order.db:latency=1s").unwrap();
        faults.replace(ok.clone()).unwrap();
        let theirs = parse_faults("payment.provider:latency=1s").unwrap();
        assert!(matches!(
            faults.replace(theirs),
            Err(FaultError::UnknownPoint { .. })
        ));
        assert_eq!(
            faults.armed(),
            ok,
            "a refused change leaves the armed set alone"
        );
        assert!(faults.owned_points().contains(&"order.lookup"));
    }

    #[test]
    fn in_flight_limit_is_the_armed_max_in_flight_and_nothing_else() {
        let faults = Faults::new("order-api", POINTS, false, false, None);
        let limit = faults.in_flight_limit(DB);
        assert_eq!(limit(), None, "not armed");
        faults
            .replace(parse_faults("order.db:latency=1s").unwrap())
            .unwrap();
        assert_eq!(limit(), None, "armed without max_in_flight");
        faults
            .replace(parse_faults("order.db:max_in_flight=2").unwrap())
            .unwrap();
        assert_eq!(limit(), Some(2));
        faults
            .replace(parse_faults("order.db:max_in_flight=2,p=0").unwrap())
            .unwrap();
        assert_eq!(limit(), None, "p=0 never applies it");
    }

    #[test]
    fn probability_zero_never_fires_and_one_always_does() {
        let faults = Faults::new("order-api", POINTS, false, true, None);
        faults
            .replace(parse_faults("order.db:latency=10ms,p=0").unwrap())
            .unwrap();
        assert!((0..100).all(|_| faults.check(DB).is_none()));
        faults
            .replace(parse_faults("order.db:latency=10ms,jitter=5ms").unwrap())
            .unwrap();
        let hit = faults.check(DB).unwrap();
        assert!(hit.delay >= Duration::from_millis(10) && hit.delay <= Duration::from_millis(15));
        assert!(faults.check(LOOKUP).is_none());
    }

    #[test]
    fn baggage_past_a_limit_is_ignored_and_counted_and_at_the_limit_fires() {
        let faults = Faults::new("order-api", POINTS, true, false, None);
        let metrics = Metrics::new("order-api");
        faults.count_in(&metrics);
        let ignored = || {
            fleet_server_kit::metrics::sample(
                &metrics.render(),
                "fleet_fault_baggage_ignored_total",
                None,
            )
            .unwrap()
        };
        let baggage = |latency: &str| {
            let mut headers = http::HeaderMap::new();
            let value = format!("{BAGGAGE_KEY}=order.db%3Alatency%3D{latency}");
            headers.insert("baggage", value.parse().unwrap());
            headers
        };
        let hit = faults.check_headers(DB, &baggage("60s")).unwrap();
        assert_eq!(hit.delay, Limits::MAX_DURATION);
        assert_eq!(ignored(), 0, "at the limit");
        assert!(faults.check_headers(DB, &baggage("61s")).is_none());
        assert_eq!(ignored(), 1, "one second past");
    }
}
