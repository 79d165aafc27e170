//! gRPC status codes by the names the RPC conventions record.

/// `rpc.status_code` value for a numeric gRPC status.
pub fn grpc_code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// On the server only codes that signal a server fault make the span an error.
pub fn grpc_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// The gRPC status of a response: `grpc-status` when the headers carry one, otherwise the
/// HTTP status mapped as the gRPC spec maps it (a 404 from a router is `UNIMPLEMENTED`).
pub fn grpc_status_of(
    status: http::StatusCode,
    headers: &http::HeaderMap,
) -> (i32, Option<String>) {
    if headers.contains_key("grpc-status") || status == http::StatusCode::OK {
        return grpc_status_from_headers(headers);
    }
    let code = match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    };
    (code, Some(format!("HTTP {status}")))
}

/// Status from response headers. A unary success sends `grpc-status` in trailers, so a
/// response with none in its headers is OK; an error is sent trailers-only, in the headers.
pub fn grpc_status_from_headers(headers: &http::HeaderMap) -> (i32, Option<String>) {
    match tonic::Status::from_header_map(headers) {
        Some(status) => {
            let message = status.message().to_owned();
            (
                status.code() as i32,
                (!message.is_empty()).then_some(message),
            )
        }
        None => (0, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_grpc_message() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "grpc-message",
            http::HeaderValue::from_static("card%20declined%3A%20x"),
        );
        h.insert("grpc-status", http::HeaderValue::from_static("9"));
        let (code, message) = grpc_status_from_headers(&h);
        assert_eq!((code, grpc_code_name(code)), (9, "FAILED_PRECONDITION"));
        assert_eq!(message.as_deref(), Some("card declined: x"));
        assert_eq!(grpc_status_from_headers(&http::HeaderMap::new()), (0, None));
    }
}
