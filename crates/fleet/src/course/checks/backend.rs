//! Step 2 (the backend is up, says its version, and serves a fresh trace by id) and step 3
//! (new spans carry a resource attribute set in the Collector or the SDK).

use serde_json::Value;

use super::{
    CARD_OK, Ctx, Outcome, checkout, missing_services, new_traceparent, not_yet, spans_of,
};
use crate::course::CourseError;
use crate::traces::model::{Span, any_value};

/// `/ready` must answer 200.
pub fn ready_verdict(base: &str, status: u16, body: &str) -> Result<(), CourseError> {
    if status == 200 {
        Ok(())
    } else {
        Err(not_yet(format!(
            "{base}/ready answered {status} ({}): the backend is not ready to serve queries",
            body.trim()
        )))
    }
}

/// `/api/status/buildinfo` must answer 200 with a JSON `version`; returns it.
pub fn buildinfo_verdict(base: &str, status: u16, body: &str) -> Result<String, CourseError> {
    if status != 200 {
        return Err(not_yet(format!(
            "{base}/api/status/buildinfo answered {status} ({}): is this a Tempo?",
            body.trim()
        )));
    }
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|j| j["version"].as_str().map(str::to_owned))
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            not_yet(format!(
                "{base}/api/status/buildinfo has no `version` in its answer: {}",
                body.trim()
            ))
        })
}

/// A trace sent through the whole fleet: its id, and its JSON once every service's spans are in.
async fn fresh_trace(ctx: &Ctx) -> Result<(String, Option<Value>), CourseError> {
    let (trace, _, header) = new_traceparent();
    // Sampled on purpose: under a head sampler (step 7) the check's own trace is still kept.
    let (status, _) = checkout(&ctx.gateway, CARD_OK, &[("traceparent", &header)]).await?;
    if status != 201 {
        return Err(not_yet(format!(
            "the checkout the check sent to {} answered {status}, not 201: is the fleet healthy?",
            ctx.gateway
        )));
    }
    let json = ctx
        .backend
        .wait_trace(&trace, |s| missing_services(s).is_empty())
        .await?;
    Ok((trace, json))
}

pub async fn check_ready(ctx: &Ctx) -> Result<Outcome, CourseError> {
    let base = &ctx.backend.base;
    let (status, body) = ctx.backend.get("/ready", &[]).await?;
    ready_verdict(base, status, &body)?;
    let (status, body) = ctx.backend.get("/api/status/buildinfo", &[]).await?;
    let version = buildinfo_verdict(base, status, &body)?;
    let (trace, json) = fresh_trace(ctx).await?;
    let Some(json) = json else {
        return Err(not_yet(format!(
            "the check sent a checkout (trace {trace}) but {base}/api/traces/{trace} did not find it within {} s: \
             are the services exporting to this backend (OTEL_EXPORTER_OTLP_ENDPOINT)?",
            ctx.backend.wait.as_secs()
        )));
    };
    let spans = spans_of(&json);
    Ok(Outcome::done(format!(
        "{base} is ready, follows Tempo {version}, and served trace {trace} by id ({} spans).",
        spans.len()
    )))
}

/// Resource attributes of each service in a trace-by-id answer (v1 or v2).
pub fn resources(json: &Value) -> Vec<(String, Vec<(String, String)>)> {
    let batches = json
        .get("batches")
        .or_else(|| json.get("trace").and_then(|t| t.get("resourceSpans")))
        .or_else(|| json.get("resourceSpans"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    batches
        .iter()
        .map(|b| {
            let attrs: Vec<(String, String)> = b["resource"]["attributes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|kv| {
                            (
                                kv["key"].as_str().unwrap_or_default().to_owned(),
                                any_value(&kv["value"]),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let service = attrs
                .iter()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            (service, attrs)
        })
        .collect()
}

pub const ENV_KEY: &str = "deployment.environment.name";

/// Every service of the trace carries `deployment.environment.name = want`.
pub fn resource_verdict(trace: &str, json: &Value, want: &str) -> Result<Outcome, CourseError> {
    let spans: Vec<Span> = spans_of(json);
    let missing_svc = missing_services(&spans);
    if !missing_svc.is_empty() {
        return Err(not_yet(format!(
            "trace {trace} has no spans of {}: the check needs a whole checkout",
            missing_svc.join(", ")
        )));
    }
    let mut without = Vec::new();
    // Other value → the services that carry it.
    let mut other: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (service, attrs) in resources(json) {
        match attrs.iter().find(|(k, _)| k == ENV_KEY) {
            None => without.push(service),
            Some((_, v)) if v != want => other.entry(v.clone()).or_default().push(service),
            Some(_) => {}
        }
    }
    without.sort();
    without.dedup();
    let mut problems = Vec::new();
    if !without.is_empty() {
        problems.push(format!(
            "the spans of {} carry no {ENV_KEY} resource attribute (restart the fleet with \
             OTEL_RESOURCE_ATTRIBUTES={ENV_KEY}={want}, or add the Collector's resource processor)",
            without.join(", ")
        ));
    }
    for (value, mut services) in other {
        services.sort();
        services.dedup();
        problems.push(format!(
            "the spans of {} carry {ENV_KEY}={value:?}, not {want:?}",
            services.join(", ")
        ));
    }
    if !problems.is_empty() {
        return Err(not_yet(format!(
            "in the new trace {trace}, {}",
            problems.join("; and ")
        )));
    }
    Ok(Outcome::done(format!(
        "Every span of the new trace {trace} ({} spans, 4 services) carries {ENV_KEY}={want}.",
        spans.len()
    )))
}

pub async fn check_resource(ctx: &Ctx, args: &[String]) -> Result<Outcome, CourseError> {
    let want = args.first().map_or("course", String::as_str);
    let (trace, json) = fresh_trace(ctx).await?;
    let Some(json) = json else {
        return Err(not_yet(format!(
            "the check sent a checkout (trace {trace}) but {} did not return it within {} s",
            ctx.backend.base,
            ctx.backend.wait.as_secs()
        )));
    };
    resource_verdict(&trace, &json, want)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn ready_and_buildinfo_as_the_desk_answers_them() {
        ready_verdict("http://t", 200, "ready").unwrap();
        let err = ready_verdict("http://t", 503, "Ingester not ready")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/ready answered 503 (Ingester not ready)"),
            "{err}"
        );
        let v =
            buildinfo_verdict("http://t", 200, include_str!("fixtures/buildinfo.json")).unwrap();
        assert_eq!(v, "2.10.0");
        let err = buildinfo_verdict("http://t", 404, "404 page not found")
            .unwrap_err()
            .to_string();
        assert!(err.contains("buildinfo answered 404"), "{err}");
        let err = buildinfo_verdict("http://t", 200, "{}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `version`"), "{err}");
    }

    #[test]
    fn the_environment_attribute_on_every_service_passes() {
        let ok = resource_verdict(CHECKOUT_ID, &checkout_trace(), "course").unwrap();
        assert!(
            ok.done
                && ok
                    .text
                    .contains("carries deployment.environment.name=course")
        );
    }

    #[test]
    fn a_missing_or_different_attribute_fails_naming_the_service() {
        let err = resource_verdict(CHECKOUT_ID, &checkout_trace(), "staging")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the spans of api-gateway, notification, order-api, payment-api carry deployment.environment.name=\"course\", not \"staging\""),
            "{err}"
        );
        let mut json = checkout_trace();
        for b in json["batches"].as_array_mut().unwrap() {
            let attrs = b["resource"]["attributes"].as_array_mut().unwrap();
            let is_notification = attrs.iter().any(|kv| {
                kv["key"] == "service.name" && kv["value"]["stringValue"] == "notification"
            });
            if is_notification {
                attrs.retain(|kv| kv["key"] != ENV_KEY);
            }
        }
        let err = resource_verdict(CHECKOUT_ID, &json, "course")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the spans of notification carry no deployment.environment.name"),
            "{err}"
        );
        let err = resource_verdict(
            CHECKOUT_ID,
            &without_service(checkout_trace(), "payment-api"),
            "course",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no spans of payment-api"), "{err}");
    }
}
