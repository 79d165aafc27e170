//! OTLP trace intake: gRPC `TraceService/Export` and HTTP `POST /v1/traces`.

use std::io::Read as _;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;

use crate::persist::{Intake, PersistError};
use crate::store::IngestOutcome;

/// Largest accepted request body (HTTP, after decompression) and gRPC message.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The gRPC `TraceService` implementation backed by an [`Intake`].
#[derive(Debug, Clone)]
pub struct GrpcIntake {
    intake: Intake,
}

impl GrpcIntake {
    /// An intake writing through `intake`.
    pub fn new(intake: Intake) -> Self {
        Self { intake }
    }

    /// The tonic service, with gzip accepted and a 16 MiB decode limit.
    pub fn into_server(self) -> TraceServiceServer<Self> {
        TraceServiceServer::new(self)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_BODY_BYTES)
    }
}

fn response_for(outcome: &IngestOutcome) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (outcome.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(outcome.rejected).unwrap_or(i64::MAX),
            error_message: outcome.error.clone().unwrap_or_default(),
        }),
    }
}

#[tonic::async_trait]
impl TraceService for GrpcIntake {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let outcome = self
            .intake
            .accept(request.into_inner(), None)
            .await
            .map_err(|e| tonic::Status::unavailable(unavailable_message(&e)))?;
        tracing::debug!(
            accepted = outcome.accepted,
            rejected = outcome.rejected,
            "otlp grpc export"
        );
        Ok(tonic::Response::new(response_for(&outcome)))
    }
}

/// The message of a retryable refusal: the export was not kept.
fn unavailable_message(e: &PersistError) -> String {
    format!("the export was not stored, retry: {e}")
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Human-readable message.
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The OTLP/HTTP router (`POST /v1/traces`).
pub fn http_router(intake: Intake) -> Router {
    Router::new()
        .route("/v1/traces", post(export_http))
        // The handler reads the body with its own limit, to answer 413 in OTLP's shape and count it.
        .layer(DefaultBodyLimit::disable())
        .with_state(intake)
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn error_response(status: StatusCode, encoding: Encoding, message: String) -> Response {
    // gRPC code 3 = INVALID_ARGUMENT (the OTLP spec's choice for bad payloads), 14 = UNAVAILABLE
    // (retryable, with 503).
    let code = if status == StatusCode::SERVICE_UNAVAILABLE {
        14
    } else {
        3
    };
    let rpc = RpcStatus { code, message };
    match encoding {
        Encoding::Protobuf => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF))],
            rpc.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
            serde_json::json!({"code": rpc.code, "message": rpc.message}).to_string(),
        )
            .into_response(),
    }
}

/// Why a body could not be read.
enum BodyError {
    /// Over [`MAX_BODY_BYTES`] (413).
    TooLarge(String),
    /// Not decodable (400).
    Invalid(String),
}

/// Decompresses at most [`MAX_BODY_BYTES`] + 1 bytes: a gzip bomb costs that much memory at
/// most before it is refused.
fn gunzip(body: &[u8]) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    let limit = u64::try_from(MAX_BODY_BYTES).unwrap_or(u64::MAX) + 1;
    flate2::read::MultiGzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Invalid(format!("invalid gzip body: {e}")))?;
    if out.len() > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge(format!(
            "the decompressed body exceeds {MAX_BODY_BYTES} bytes"
        )));
    }
    Ok(out)
}

async fn export_http(State(intake): State<Intake>, headers: HeaderMap, body: Body) -> Response {
    let store = intake.store();
    let encoding = match media_type(&headers).as_str() {
        PROTOBUF | "application/protobuf" => Encoding::Protobuf,
        JSON => Encoding::Json,
        other => {
            return error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Encoding::Json,
                format!("unsupported content type {other:?}: use {PROTOBUF} or {JSON}"),
            );
        }
    };
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let too_large = |msg: String| {
        store.count_too_large();
        error_response(StatusCode::PAYLOAD_TOO_LARGE, encoding, msg)
    };
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            // Over the limit, or the connection failed while reading; both end the request.
            let msg = format!(
                "the request body exceeds {MAX_BODY_BYTES} bytes or could not be read: {e}"
            );
            return too_large(msg);
        }
    };
    let decompressed;
    let raw: &[u8] = match content_encoding.as_str() {
        "" | "identity" => &body,
        "gzip" => match gunzip(&body) {
            Ok(b) => {
                decompressed = b;
                &decompressed
            }
            Err(BodyError::TooLarge(msg)) => return too_large(msg),
            Err(BodyError::Invalid(msg)) => {
                return error_response(StatusCode::BAD_REQUEST, encoding, msg);
            }
        },
        other => {
            return error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                encoding,
                format!("unsupported content encoding {other:?}: use gzip or none"),
            );
        }
    };
    let request = match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(raw)
            .map_err(|e| format!("invalid protobuf ExportTraceServiceRequest: {e}")),
        Encoding::Json => serde_json::from_slice::<ExportTraceServiceRequest>(raw)
            .map_err(|e| format!("invalid OTLP/JSON ExportTraceServiceRequest: {e}")),
    };
    let request = match request {
        Ok(r) => r,
        Err(msg) => return error_response(StatusCode::BAD_REQUEST, encoding, msg),
    };
    // Protobuf bodies go to the WAL as received instead of being encoded again.
    let encoded = (encoding == Encoding::Protobuf).then(|| raw.to_vec());
    let outcome = match intake.accept(request, encoded).await {
        Ok(outcome) => outcome,
        Err(e) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                encoding,
                unavailable_message(&e),
            );
        }
    };
    tracing::debug!(
        accepted = outcome.accepted,
        rejected = outcome.rejected,
        "otlp http export"
    );
    let response = response_for(&outcome);
    match encoding {
        Encoding::Protobuf => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF))],
            response.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => {
            let body = match &response.partial_success {
                Some(p) => serde_json::json!({"partialSuccess": {
                    "rejectedSpans": p.rejected_spans.to_string(),
                    "errorMessage": p.error_message,
                }}),
                None => serde_json::json!({}),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
                body.to_string(),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_json_deserializes() {
        let body = r#"{"resourceSpans":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"order-api"}},
            {"key":"n","value":{"intValue":"42"}}]},
          "scopeSpans":[{"scope":{"name":"s","version":"1"},"spans":[{
            "traceId":"5B8EFFF798038103D269B633813FC60C",
            "spanId":"EEE19B7EC3C1B174",
            "parentSpanId":"",
            "name":"GET /",
            "kind":2,
            "startTimeUnixNano":"1700000000000000000",
            "endTimeUnixNano":1700000000100000000,
            "attributes":[{"key":"b","value":{"boolValue":true}}],
            "status":{"code":2,"message":"boom"}}]}]}]}"#;
        let req: ExportTraceServiceRequest = match serde_json::from_str(body) {
            Ok(r) => r,
            Err(e) => panic!("OTLP/JSON did not parse: {e}"),
        };
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            hex::encode(&span.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(span.span_id.len(), 8);
        assert!(span.parent_span_id.is_empty());
        assert_eq!(span.kind, 2);
        assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_700_000_000_100_000_000);
        assert_eq!(span.status.as_ref().map(|s| s.code), Some(2));
    }
}
