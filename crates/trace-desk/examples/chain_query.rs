//! Times a structural query on one trace of N spans in a parent→child chain (default 3,000):
//! `cargo run -p trace-desk --example chain_query [--release] -- [N]`. A benchmark to run by
//! hand, not a test: the tests count work instead of timing it.

use std::collections::HashMap;
use std::time::Instant;

use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use trace_desk::Store;
use trace_desk::search::{self, SearchParams};

fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(3_000);
    let trace_id = vec![7u8; 16];
    let spans: Vec<Span> = (1..=n)
        .map(|i| Span {
            trace_id: trace_id.clone(),
            span_id: i.to_be_bytes().to_vec(),
            parent_span_id: if i == 1 {
                Vec::new()
            } else {
                (i - 1).to_be_bytes().to_vec()
            },
            name: format!("s{i}"),
            start_time_unix_nano: 1_700_000_000_000_000_000 + i,
            end_time_unix_nano: 1_700_000_000_000_000_000 + 2 * n - i,
            ..Default::default()
        })
        .collect();
    let store = Store::new(1_000_000);
    store.ingest(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(Av::StringValue("x".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }]);
    for q in [
        r#"{ resource.service.name = "x" } >> { }"#,
        r#"{ } > { }"#,
        r#"{ } << { }"#,
        r#"{ } ~ { }"#,
    ] {
        let mut params = HashMap::new();
        params.insert("q".to_string(), q.to_string());
        let p = SearchParams::from_query(&params)?;
        let began = Instant::now();
        let v = search::search(&store, &p);
        let matched = v["traces"][0]["spanSets"][0]["matched"].clone();
        println!("{n} spans, {q}: {:?} (matched {matched})", began.elapsed());
    }
    Ok(())
}
