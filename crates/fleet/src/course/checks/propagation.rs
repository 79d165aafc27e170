//! Step 1: the learner sent a checkout with a `traceparent` of their own; the gateway's server
//! span must be the child of their span id, in their trace.

use super::{Ctx, Outcome, not_yet, spans_of, usage};
use crate::course::CourseError;
use crate::topology;
use crate::traces::model::{Kind, Span};

/// The learner's ids from `00-TRACE-SPAN-FLAGS`, or from `TRACE SPAN`.
pub fn parse_args(args: &[String]) -> Result<(String, String, bool), CourseError> {
    let (trace, span, sampled) = match args {
        [tp] => {
            let parts: Vec<&str> = tp.trim().split('-').collect();
            let [version, trace, span, flags] = parts[..] else {
                return Err(usage(format!(
                    "{tp:?} is not a traceparent: it has four parts, 00-TRACE_ID-SPAN_ID-FLAGS"
                )));
            };
            if version != "00" {
                return Err(usage(format!(
                    "version {version:?}: the course uses version 00 of traceparent"
                )));
            }
            let sampled = u8::from_str_radix(flags, 16)
                .ok()
                .filter(|_| flags.len() == 2)
                .ok_or_else(|| usage(format!("flags {flags:?} are not two hex digits")))?
                & 1
                == 1;
            (trace.to_owned(), span.to_owned(), sampled)
        }
        [trace, span] => (trace.clone(), span.clone(), true),
        _ => {
            return Err(usage(
                "give your traceparent (00-TRACE_ID-SPAN_ID-01) or your trace id and span id",
            ));
        }
    };
    let trace = trace.to_ascii_lowercase();
    let span = span.to_ascii_lowercase();
    check_hex("trace id", &trace, 32)?;
    check_hex("span id", &span, 16)?;
    Ok((trace, span, sampled))
}

fn check_hex(what: &str, id: &str, len: usize) -> Result<(), CourseError> {
    if id.len() != len || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(usage(format!(
            "your {what} {id:?} is not {len} hex digits ({} bytes)",
            len / 2
        )));
    }
    if id.bytes().all(|b| b == b'0') {
        return Err(usage(format!(
            "your {what} is all zeros, which W3C Trace Context calls invalid: the gateway ignores such a header"
        )));
    }
    Ok(())
}

/// The gateway's server span in the learner's trace must have the learner's span as parent.
pub fn verdict(trace: &str, span: &str, spans: &[Span]) -> Result<Outcome, CourseError> {
    let Some(server) = spans
        .iter()
        .filter(|s| s.service == topology::GATEWAY && s.kind == Kind::Server)
        .min_by_key(|s| s.start)
    else {
        let services: Vec<&str> = spans.iter().map(|s| s.service.as_str()).collect();
        return Err(not_yet(format!(
            "trace {trace} has no server span of api-gateway (it has spans of: {}); send the checkout to the gateway",
            services.join(", ")
        )));
    };
    match server.parent_id.as_deref() {
        Some(parent) if parent == span => Ok(Outcome::done(format!(
            "Trace {trace}: the gateway's server span \"{}\" ({}) is the child of your span {span}.\n\
             You propagated context by hand: {} spans of {} services hang under it.",
            server.name,
            server.span_id,
            spans.len(),
            {
                let mut s: Vec<&str> = spans.iter().map(|s| s.service.as_str()).collect();
                s.sort_unstable();
                s.dedup();
                s.len()
            }
        ))),
        Some(parent) => Err(not_yet(format!(
            "the gateway's server span \"{}\" in trace {trace} has parent {parent}, not your span id {span}: \
             send the span id you put in traceparent's third part",
            server.name
        ))),
        None => Err(not_yet(format!(
            "the gateway's server span \"{}\" in trace {trace} is a root span: the gateway did not take \
             your traceparent as its parent",
            server.name
        ))),
    }
}

pub async fn check(ctx: &Ctx, args: &[String]) -> Result<Outcome, CourseError> {
    let (trace, span, sampled) = parse_args(args)?;
    let has_gateway = |spans: &[Span]| {
        spans
            .iter()
            .any(|s| s.service == topology::GATEWAY && s.kind == Kind::Server)
    };
    let Some(json) = ctx.backend.wait_trace(&trace, has_gateway).await? else {
        let hint = if sampled {
            format!(
                "send the checkout with the header `traceparent: 00-{trace}-{span}-01` first (Commands to run)"
            )
        } else {
            "your flags say \"not sampled\" (00), so the fleet dropped the trace: use flags 01"
                .to_owned()
        };
        return Err(not_yet(format!(
            "no trace {trace} at {} after {} s: {hint}",
            ctx.backend.base,
            ctx.backend.wait.as_secs()
        )));
    };
    verdict(&trace, &span, &spans_of(&json))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_recorded_checkout_passes_with_the_learners_span_id() {
        let spans = spans_of(&checkout_trace());
        let ok = verdict(CHECKOUT_ID, CHECKOUT_PARENT, &spans).unwrap();
        assert!(ok.done);
        assert!(
            ok.text
                .contains("is the child of your span 00f067aa0ba902b7"),
            "{}",
            ok.text
        );
        assert!(ok.text.contains("20 spans of 4 services"), "{}", ok.text);
    }

    #[test]
    fn another_span_id_fails_naming_the_actual_parent() {
        let spans = spans_of(&checkout_trace());
        let err = verdict(CHECKOUT_ID, "1111111111111111", &spans)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has parent 00f067aa0ba902b7, not your span id 1111111111111111"),
            "{err}"
        );
        let rootless = spans_of(&edit_spans(checkout_trace(), |service, span| {
            if service == "api-gateway" && span["kind"] == "SPAN_KIND_SERVER" {
                span["parentSpanId"] = "".into();
            }
        }));
        let err = verdict(CHECKOUT_ID, CHECKOUT_PARENT, &rootless)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a root span"), "{err}");
        let no_gateway = spans_of(&without_service(checkout_trace(), "api-gateway"));
        let err = verdict(CHECKOUT_ID, CHECKOUT_PARENT, &no_gateway)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no server span of api-gateway"), "{err}");
    }

    #[test]
    fn traceparents_are_read_and_bad_ones_named() {
        let (t, s, sampled) = parse_args(&args(&[
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ]))
        .unwrap();
        assert_eq!(
            (t.as_str(), s.as_str(), sampled),
            (CHECKOUT_ID, CHECKOUT_PARENT, true)
        );
        assert!(
            !parse_args(&args(&[&format!("00-{CHECKOUT_ID}-{CHECKOUT_PARENT}-00")]))
                .unwrap()
                .2
        );
        assert_eq!(
            parse_args(&args(&[CHECKOUT_ID, CHECKOUT_PARENT]))
                .unwrap()
                .1,
            CHECKOUT_PARENT
        );
        for (bad, says) in [
            (
                "00-abc-00f067aa0ba902b7-01",
                "trace id \"abc\" is not 32 hex digits",
            ),
            (
                &format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
                "all zeros",
            ),
            (
                &format!("01-{CHECKOUT_ID}-{CHECKOUT_PARENT}-01"),
                "version \"01\"",
            ),
            (&format!("00-{CHECKOUT_ID}-{CHECKOUT_PARENT}"), "four parts"),
            (&format!("00-{CHECKOUT_ID}-xyz-01"), "span id \"xyz\""),
        ] {
            let err = parse_args(&args(&[bad])).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(parse_args(&[]).is_err());
    }
}
