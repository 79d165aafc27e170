//! The Tempo-compatible API and OTLP/HTTP intake, with hand-made spans.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message as _;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn basic_endpoints() {
    let desk = desk(100).await;
    let r = get(&desk, "/ready").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ready");
    let r = get(&desk, "/api/echo").await;
    assert_eq!(r.text().await.unwrap(), "echo");
    let info = get_json(&desk, "/api/status/buildinfo").await;
    assert!(info["version"].is_string());
    assert_eq!(get(&desk, "/api/nope").await.status(), 404);
    assert_eq!(get(&desk, "/").await.status(), 200, "the web UI");
    let api = desk.api_addr();
    let started = std::time::Instant::now();
    desk.shutdown().await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        tokio::net::TcpStream::connect(api).await.is_err(),
        "api closed after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_json_intake_and_errors() {
    let desk = desk(100).await;
    let url = format!("http://{}/v1/traces", desk.otlp_http_addr());
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"json-svc"}}]},
      "scopeSpans":[{"scope":{"name":"manual"},"spans":[{
        "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
        "name":"POST /checkout","kind":2,
        "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000250000000",
        "attributes":[{"key":"http.response.status_code","value":{"intValue":"500"}}],
        "status":{"code":2}}]}]}]}"#;
    let r = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({}));

    let v = get_json(&desk, "/api/traces/5b8efff798038103d269b633813fc60c").await;
    let span = &all_spans(&v["batches"])[0];
    assert_eq!(span["name"], "POST /checkout");
    assert_eq!(span["kind"], "SPAN_KIND_SERVER");
    assert_eq!(span["startTimeUnixNano"], "1700000000000000000");
    assert_eq!(
        span["spanId"],
        b64(&hex::decode("eee19b7ec3c1b174").unwrap())
    );
    assert_eq!(span["status"], json!({"code": "STATUS_CODE_ERROR"}));
    assert_eq!(
        span["attributes"][0],
        json!({"key": "http.response.status_code", "value": {"intValue": "500"}})
    );

    // Malformed bodies: 400 with a status message.
    for (ct, body) in [
        ("application/json", b"{not json".to_vec()),
        (
            "application/json",
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#.to_vec(),
        ),
        ("application/x-protobuf", vec![0xff, 0xff, 0xff, 0xff]),
    ] {
        let r = client()
            .post(&url)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{ct}");
        if ct == "application/json" {
            let v: Value = r.json().await.unwrap();
            assert!(v["message"].as_str().unwrap().contains("invalid"), "{v}");
        }
    }
    // Unsupported media type.
    let r = client()
        .post(&url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Invalid ids are rejected as a partial success.
    let mut req = request("bad", &[Sp::new(1, 1, "x")]);
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1, 2, 3];
    let r = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&req).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1");
    assert_eq!(desk.store().stats().spans_received, 1);
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_protobuf_intake() {
    use std::io::Write as _;
    let desk = desk(100).await;
    let req = request("gz", &[Sp::new(7, 1, "zipped")]);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&req.encode_to_vec()).unwrap();
    let r = client()
        .post(format!("http://{}/v1/traces", desk.otlp_http_addr()))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(enc.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    wait_for_trace(&desk, &hex_trace(7), 1).await;
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_ids_in_urls() {
    let desk = desk(100).await;
    // A trace id with leading zero bytes, readable by a short id.
    let mut req = request("short", &[Sp::new(1, 1, "short-id")]);
    let mut id = vec![0u8; 16];
    id[14] = 0x0a;
    id[15] = 0xbc;
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = id.clone();
    post_protobuf(&desk, &req).await;
    for path in [
        "/api/traces/abc",
        "/api/traces/ABC",
        "/api/traces/00000abc",
        "/api/v2/traces/aBc",
    ] {
        let r = get(&desk, path).await;
        assert_eq!(r.status(), 200, "{path}");
    }
    let v = get_json(&desk, "/api/traces/abc").await;
    assert_eq!(all_spans(&v["batches"])[0]["traceId"], b64(&id));

    let r = get(&desk, "/api/traces/0123456789abcdef0123456789abcdef").await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("trace not found"));
    assert_eq!(get(&desk, "/api/v2/traces/123").await.status(), 404);
    assert_eq!(get(&desk, "/api/traces/xyz").await.status(), 400);
    assert_eq!(get(&desk, "/api/v2/traces/not-hex").await.status(), 400);
    let too_long = "1".repeat(33);
    assert_eq!(
        get(&desk, &format!("/api/traces/{too_long}"))
            .await
            .status(),
        400
    );
    // start/end window (unix seconds): the trace starts at 1700000000.
    assert_eq!(
        get(&desk, "/api/traces/abc?start=1699999990&end=1700000010")
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&desk, "/api/traces/abc?start=1800000000&end=1800000010")
            .await
            .status(),
        404
    );
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn protobuf_accept_decodes_to_same_spans() {
    let desk = desk(100).await;
    let spans = [
        Sp::new(3, 1, "root").at(0, 100),
        Sp::new(3, 2, "child")
            .parent(1)
            .at(10, 20)
            .kind(3)
            .attr("n", Av::IntValue(5)),
    ];
    let req = request("proto-svc", &spans);
    post_protobuf(&desk, &req).await;
    for path in [
        format!("/api/traces/{}", hex_trace(3)),
        format!("/api/v2/traces/{}", hex_trace(3)),
    ] {
        let r = client()
            .get(format!("http://{}{path}", desk.api_addr()))
            .header("accept", "application/protobuf")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/protobuf");
        let bytes = r.bytes().await.unwrap();
        let data = if path.contains("/v2/") {
            #[derive(Clone, PartialEq, prost::Message)]
            struct ByIdResponse {
                #[prost(message, optional, tag = "1")]
                trace: Option<TracesData>,
            }
            ByIdResponse::decode(bytes).unwrap().trace.unwrap()
        } else {
            TracesData::decode(bytes).unwrap()
        };
        assert_eq!(data.resource_spans, req.resource_spans, "{path}");
    }
    desk.shutdown().await;
}

async fn seed_search(desk: &trace_desk::RunningDesk) {
    // Trace 1: order-api -> payment-api, 500 on checkout, 300ms, oldest.
    post_protobuf(
        desk,
        &request(
            "order-api",
            &[Sp::new(1, 1, "POST /checkout")
                .at(0, 300)
                .attr("http.response.status_code", Av::IntValue(500))
                .attr("http.route", s("/checkout"))
                .error()],
        ),
    )
    .await;
    post_protobuf(
        desk,
        &request(
            "payment-api",
            &[Sp::new(1, 2, "charge")
                .parent(1)
                .at(50, 100)
                .error()
                .kind(3)],
        ),
    )
    .await;
    // Trace 2: order-api GET, 50ms, 200.
    post_protobuf(
        desk,
        &request(
            "order-api",
            &[Sp::new(2, 3, "GET /orders")
                .at(1000, 50)
                .attr("http.response.status_code", Av::IntValue(200))
                .attr("ratio", Av::DoubleValue(0.5))
                .attr("cached", Av::BoolValue(true))],
        ),
    )
    .await;
    // Trace 3: newest, root not received (parent absent) -> orphan becomes root.
    post_protobuf(
        desk,
        &request(
            "notification",
            &[Sp::new(3, 4, "send email")
                .parent(99)
                .at(2000, 2000)
                .kind(1)],
        ),
    )
    .await;
}

fn ids(v: &Value) -> Vec<String> {
    v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_string())
        .collect()
}

fn enc(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn search() {
    let desk = desk(100).await;
    seed_search(&desk).await;
    let t = |n| hex_trace(n).trim_start_matches('0').to_string();

    // Everything, newest first.
    let all = get_json(&desk, "/api/search").await;
    assert_eq!(ids(&all), vec![t(3), t(2), t(1)]);
    assert_eq!(all["metrics"]["inspectedTraces"], 3);
    assert_eq!(
        get_json(&desk, "/api/search?q=%7B%7D").await["traces"],
        all["traces"]
    );
    assert_eq!(
        get_json(&desk, "/api/search?q=").await["traces"],
        all["traces"]
    );

    // Trace summary.
    let first = &all["traces"][2];
    assert_eq!(first["rootServiceName"], "order-api");
    assert_eq!(first["rootTraceName"], "POST /checkout");
    assert_eq!(first["startTimeUnixNano"], T0.to_string());
    assert_eq!(first["durationMs"], 300);
    assert_eq!(
        first["serviceStats"]["order-api"],
        json!({"spanCount": 1, "errorCount": 1})
    );
    assert_eq!(
        first["serviceStats"]["payment-api"],
        json!({"spanCount": 1, "errorCount": 1})
    );
    assert_eq!(
        all["traces"][1]["serviceStats"]["order-api"],
        json!({"spanCount": 1})
    );
    assert_eq!(all["traces"][0]["rootServiceName"], "notification");
    assert_eq!(all["traces"][0]["rootTraceName"], "send email");
    assert_eq!(first["spanSets"][0]["matched"], 2);
    assert_eq!(first["spanSet"], first["spanSets"][0]);

    // Tags: all on one span (resource attributes count as the span's).
    let q = enc(r#"service.name=order-api http.response.status_code=500 name="POST /checkout""#);
    let v = get_json(&desk, &format!("/api/search?tags={q}")).await;
    assert_eq!(ids(&v), vec![t(1)]);
    let ss = &v["traces"][0]["spanSets"][0];
    assert_eq!(ss["matched"], 1);
    let span = &ss["spans"][0];
    assert_eq!(span["spanID"], hex::encode(span_id(1)));
    assert_eq!(span["name"], "POST /checkout");
    assert_eq!(span["durationNanos"], (300 * MS).to_string());
    assert_eq!(span["startTimeUnixNano"], T0.to_string());
    let attrs = span["attributes"].as_array().unwrap();
    assert!(attrs.contains(&json!({"key":"service.name","value":{"stringValue":"order-api"}})));
    assert!(attrs.contains(&json!({"key":"http.response.status_code","value":{"intValue":"500"}})));

    // Tags on different spans do not combine.
    let q = enc("service.name=payment-api http.route=/checkout");
    assert!(ids(&get_json(&desk, &format!("/api/search?tags={q}")).await).is_empty());
    let q = enc("status.code=error");
    assert_eq!(
        ids(&get_json(&desk, &format!("/api/search?tags={q}")).await),
        vec![t(1)]
    );
    let q = enc("service.name=nobody");
    assert!(ids(&get_json(&desk, &format!("/api/search?tags={q}")).await).is_empty());
    let q = enc("cached=true ratio=0.5");
    assert_eq!(
        ids(&get_json(&desk, &format!("/api/search?tags={q}")).await),
        vec![t(2)]
    );

    // Durations (trace duration).
    assert_eq!(
        ids(&get_json(&desk, "/api/search?minDuration=100ms").await),
        vec![t(3), t(1)]
    );
    assert_eq!(
        ids(&get_json(&desk, "/api/search?maxDuration=0.3s").await),
        vec![t(2), t(1)]
    );
    assert_eq!(
        ids(&get_json(&desk, "/api/search?minDuration=100ms&maxDuration=1s").await),
        vec![t(1)]
    );
    assert_eq!(
        ids(&get_json(&desk, "/api/search?minDuration=2m").await),
        Vec::<String>::new()
    );

    // Limit and spss.
    assert_eq!(
        ids(&get_json(&desk, "/api/search?limit=2").await),
        vec![t(3), t(2)]
    );
    let v = get_json(
        &desk,
        &format!("/api/search?spss=1&tags={}", enc("service.name=order-api")),
    )
    .await;
    assert_eq!(v["traces"].as_array().unwrap().len(), 2);

    // Window: trace 1 ends at T0+300ms; trace 3 starts at T0+2s.
    let base = T0 / 1_000_000_000;
    assert_eq!(
        ids(&get_json(
            &desk,
            &format!("/api/search?start={}&end={}", base + 1, base + 10)
        )
        .await),
        vec![t(3), t(2)]
    );
    assert_eq!(
        ids(&get_json(
            &desk,
            &format!("/api/search?start={}&end={}", base + 100, base + 200)
        )
        .await),
        Vec::<String>::new()
    );

    // Errors.
    for bad in [
        format!(
            "/api/search?q={}",
            enc(r#"{ span.http.route = "/checkout" } | rate()"#)
        ),
        "/api/search?minDuration=fast".to_string(),
        "/api/search?limit=-1".to_string(),
        format!("/api/search?tags={}", enc("novalue")),
        "/api/search?minDuration=2s&maxDuration=1s".to_string(),
    ] {
        let r = get(&desk, &bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        let text = r.text().await.unwrap();
        if bad.contains("?q=") {
            assert!(text.contains("TraceQL"), "{text}");
        }
    }
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn root_not_yet_received() {
    let desk = desk(100).await;
    // Two spans that name each other as parents: no root can be found.
    post_protobuf(
        &desk,
        &request(
            "loop",
            &[Sp::new(5, 1, "a").parent(2), Sp::new(5, 2, "b").parent(1)],
        ),
    )
    .await;
    let v = get_json(&desk, "/api/search").await;
    assert_eq!(
        v["traces"][0]["rootServiceName"],
        "<root span not yet received>"
    );
    assert!(v["traces"][0].get("rootTraceName").is_none());
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_and_values() {
    let desk = desk(100).await;
    seed_search(&desk).await;

    let v = get_json(&desk, "/api/search/tags").await;
    let names = v["tagNames"].as_array().unwrap();
    for want in [
        "service.name",
        "deployment.environment.name",
        "http.route",
        "http.response.status_code",
        "ratio",
    ] {
        assert!(names.contains(&json!(want)), "{want} in {v}");
    }
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    assert_eq!(&sorted, names);
    assert_eq!(
        get_json(&desk, "/api/search/tags?scope=resource").await,
        json!({"tagNames": ["deployment.environment.name", "service.name"]})
    );
    let span_tags = get_json(&desk, "/api/search/tags?scope=span").await;
    assert!(
        !span_tags["tagNames"]
            .as_array()
            .unwrap()
            .contains(&json!("service.name"))
    );
    let intrinsic = get_json(&desk, "/api/search/tags?scope=intrinsic").await;
    assert!(
        intrinsic["tagNames"]
            .as_array()
            .unwrap()
            .contains(&json!("rootServiceName"))
    );
    assert_eq!(
        get(&desk, "/api/search/tags?scope=bogus").await.status(),
        400
    );

    let v2 = get_json(&desk, "/api/v2/search/tags").await;
    let scopes = v2["scopes"].as_array().unwrap();
    let names: Vec<&str> = scopes.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["resource", "span", "intrinsic"]);
    assert_eq!(
        scopes[0]["tags"],
        json!(["deployment.environment.name", "service.name"])
    );
    let mut intrinsics: Vec<&str> = trace_desk::api::INTRINSIC_TAGS.to_vec();
    intrinsics.sort();
    assert_eq!(scopes[2]["tags"], json!(intrinsics));

    assert_eq!(
        get_json(&desk, "/api/search/tag/service.name/values").await,
        json!({"tagValues": ["notification", "order-api", "payment-api"]})
    );
    assert_eq!(
        get_json(&desk, "/api/search/tag/http.response.status_code/values").await,
        json!({"tagValues": ["200", "500"]})
    );
    assert_eq!(
        get_json(&desk, "/api/search/tag/unknown/values").await,
        json!({"tagValues": []})
    );

    let tv = |v: &[(&str, &str)]| json!({"tagValues": v.iter().map(|(t, v)| json!({"type": t, "value": v})).collect::<Vec<_>>()});
    assert_eq!(
        get_json(&desk, "/api/v2/search/tag/resource.service.name/values").await,
        tv(&[
            ("string", "notification"),
            ("string", "order-api"),
            ("string", "payment-api")
        ])
    );
    assert_eq!(
        get_json(
            &desk,
            "/api/v2/search/tag/span.http.response.status_code/values"
        )
        .await,
        tv(&[("int", "200"), ("int", "500")])
    );
    assert_eq!(
        get_json(&desk, "/api/v2/search/tag/.ratio/values").await,
        tv(&[("double", "0.5")])
    );
    assert_eq!(
        get_json(&desk, "/api/v2/search/tag/.cached/values").await,
        tv(&[("bool", "true")])
    );
    assert_eq!(
        get_json(&desk, "/api/v2/search/tag/span.service.name/values").await,
        tv(&[])
    );
    assert_eq!(
        get_json(&desk, "/api/v2/search/tag/status/values").await,
        tv(&[("keyword", "error"), ("keyword", "unset")])
    );
    assert_eq!(
        get_json(&desk, "/api/v2/search/tag/kind/values").await,
        tv(&[
            ("keyword", "client"),
            ("keyword", "internal"),
            ("keyword", "server")
        ])
    );
    assert_eq!(
        get_json(&desk, "/api/v2/search/tag/name/values").await,
        tv(&[
            ("string", "GET /orders"),
            ("string", "POST /checkout"),
            ("string", "charge"),
            ("string", "send email")
        ])
    );
    assert_eq!(
        get(&desk, "/api/v2/search/tag/bogus/values").await.status(),
        400
    );
    desk.shutdown().await;
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn eviction_keeps_newest_within_bound() {
    let desk = desk(10).await;
    let store = desk.store();
    // 12 traces of 3 spans each, one export per trace.
    for n in 1..=12u64 {
        let spans = [
            Sp::new(n, n * 10, "root").at(n * 1000, 30),
            Sp::new(n, n * 10 + 1, "a")
                .parent(n * 10)
                .at(n * 1000 + 1, 5),
            Sp::new(n, n * 10 + 2, "b")
                .parent(n * 10)
                .at(n * 1000 + 2, 5),
        ];
        post_protobuf(&desk, &request("evict", &spans)).await;
        let stats = store.stats();
        assert!(
            stats.spans_held <= 10,
            "held {} after trace {n}",
            stats.spans_held
        );
    }
    // 3 traces (9 spans) fit.
    for n in 1..=9u64 {
        let r = get(&desk, &format!("/api/traces/{}", hex_trace(n))).await;
        assert_eq!(r.status(), 404, "trace {n} should be evicted");
    }
    for n in 10..=12u64 {
        let v = get_json(&desk, &format!("/api/traces/{}", hex_trace(n))).await;
        assert_eq!(all_spans(&v["batches"]).len(), 3);
    }
    let stats = store.stats();
    assert_eq!(stats.spans_received, 36);
    assert_eq!(stats.spans_held, 9);
    assert_eq!(stats.traces_held, 3);
    assert_eq!(stats.traces_evicted, 9);
    assert_eq!(stats.spans_evicted, 27);

    let r = get(&desk, "/metrics").await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(metric(&text, "trace_desk_spans_received_total"), 36);
    assert_eq!(metric(&text, "trace_desk_spans_held"), 9);
    assert_eq!(metric(&text, "trace_desk_traces_held"), 3);
    assert_eq!(metric(&text, "trace_desk_traces_evicted_total"), 9);
    assert_eq!(metric(&text, "trace_desk_spans_evicted_total"), 27);
    assert_eq!(
        get_json(&desk, "/api/search").await["traces"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Late spans of a held trace join it; the oldest trace goes to make room.
    let late = [
        Sp::new(12, 500, "late").parent(120).at(12_010, 1),
        Sp::new(12, 501, "later").parent(120).at(12_011, 1),
    ];
    post_protobuf(&desk, &request("evict", &late)).await;
    assert_eq!(
        get(&desk, &format!("/api/traces/{}", hex_trace(10)))
            .await
            .status(),
        404
    );
    let v = get_json(&desk, &format!("/api/traces/{}", hex_trace(12))).await;
    assert_eq!(all_spans(&v["batches"]).len(), 5);
    assert!(store.stats().spans_held <= 10);
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grouping_by_resource_and_scope() {
    let desk = desk(100).await;
    post_protobuf(&desk, &request("svc-a", &[Sp::new(8, 1, "a1").at(0, 100)])).await;
    post_protobuf(
        &desk,
        &request("svc-b", &[Sp::new(8, 2, "b1").parent(1).at(10, 10)]),
    )
    .await;
    post_protobuf(
        &desk,
        &request("svc-a", &[Sp::new(8, 3, "a2").parent(2).at(20, 5)]),
    )
    .await;
    let v = get_json(&desk, &format!("/api/v2/traces/{}", hex_trace(8))).await;
    let rss = v["trace"]["resourceSpans"].as_array().unwrap();
    assert_eq!(rss.len(), 2);
    assert_eq!(
        resource_attr(&rss[0], "service.name"),
        Some(json!({"stringValue": "svc-a"}))
    );
    let a_spans = all_spans(&json!([rss[0].clone()]));
    let names: Vec<&str> = a_spans
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["a1", "a2"]);
    assert_eq!(
        rss[0]["scopeSpans"][0]["scope"],
        json!({"name": "hand-made", "version": "1.0"})
    );
    // Default values are omitted: unset status is an empty object, no flags.
    let a1 = &a_spans[0];
    assert_eq!(a1["status"], json!({}));
    assert!(a1.get("flags").is_none() && a1.get("droppedAttributesCount").is_none());
    desk.shutdown().await;
}
