use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `LOG_FORMAT=json|text`; without it, JSON unless stdout is a terminal (so containers get JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    pub fn from_env() -> Self {
        match std::env::var("LOG_FORMAT").as_deref().map(str::trim) {
            Ok("json") => Self::Json,
            Ok("text") | Ok("pretty") => Self::Text,
            _ => {
                if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    Self::Text
                } else {
                    Self::Json
                }
            }
        }
    }
}

/// One line per event carrying `trace_id` and `span_id` of the current span, so a log line
/// leads straight to its trace: a JSON object, or `time LEVEL message key=value…` as text.
pub struct WithTraceIds(pub LogFormat);

#[derive(Default)]
struct JsonVisitor(Map<String, Value>);

impl Visit for JsonVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_string()));
    }
}

impl<S, N> FormatEvent<S, N> for WithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut visitor = JsonVisitor::default();
        event.record(&mut visitor);
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(humantime_now()));
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        line.insert(
            "target".into(),
            Value::String(event.metadata().target().to_owned()),
        );
        if let Some(message) = visitor.0.remove("message") {
            line.insert("message".into(), message);
        }
        if !visitor.0.is_empty() {
            line.insert("fields".into(), Value::Object(visitor.0));
        }
        // The current span as the registry knows it (`current_span` is not filtered by this
        // layer's filter): the log layer sees events only, so it does no per-span work.
        let current = ctx.current_span();
        if let (Some(id), Some(meta)) = (current.id().cloned(), current.metadata()) {
            line.insert("span".into(), Value::String(meta.name().to_owned()));
            let cx = tracing::dispatcher::get_default(|dispatch| {
                tracing_opentelemetry::get_otel_context(&id, dispatch)
            });
            if let Some(cx) = cx {
                let sc = cx.span().span_context().clone();
                if sc.is_valid() {
                    line.insert("trace_id".into(), Value::String(sc.trace_id().to_string()));
                    line.insert("span_id".into(), Value::String(sc.span_id().to_string()));
                }
            }
        }
        if self.0 == LogFormat::Json {
            return writeln!(writer, "{}", Value::Object(line));
        }
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut out = format!(
            "{} {:>5} {}",
            line.get("timestamp").map(text).unwrap_or_default(),
            event.metadata().level(),
            line.get("message").map(text).unwrap_or_default()
        );
        if let Some(Value::Object(fields)) = line.get("fields") {
            for (k, v) in fields {
                out.push_str(&format!(" {k}={}", text(v)));
            }
        }
        for key in ["trace_id", "span_id"] {
            if let Some(v) = line.get(key) {
                out.push_str(&format!(" {key}={}", text(v)));
            }
        }
        writeln!(writer, "{out}")
    }
}

fn humantime_now() -> String {
    use tracing_subscriber::fmt::time::FormatTime as _;
    let mut out = String::new();
    let _ = tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut out));
    out
}
