//! The trace desk's web UI: a search page and a trace waterfall, written in plain
//! HTML, CSS and JavaScript modules and embedded in the binary (no build step).
//!
//! [`router`] serves `/` (search), `/trace/{id}` and `/services` (the same page;
//! the script reads the view from the URL) and the assets under `/ui/`. The pages
//! talk only to the Tempo HTTP API (`/api/search`,
//! `/api/search/tag/service.name/values`, `/api/traces/{id}`, and
//! `/api/metrics/query[_range]` for the services overview), so they work against
//! the desk and against Tempo behind a proxy alike.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Path under `/ui/`.
    pub name: &'static str,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The file's bytes.
    pub body: &'static [u8],
    /// Strong ETag (FNV-1a of the bytes, computed at compile time).
    pub etag: &'static str,
}

/// FNV-1a, 64 bits: a cheap content hash for ETags.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"` + 16 hex digits + `"`.
const fn etag_bytes(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = fnv1a(bytes);
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($name:literal, $ct:expr) => {{
        const BODY: &[u8] = include_bytes!(concat!("assets/", $name));
        const TAG: [u8; 18] = etag_bytes(BODY);
        const ETAG: &str = match std::str::from_utf8(&TAG) {
            Ok(s) => s,
            Err(_) => panic!("etag is ascii"),
        };
        Asset {
            name: $name,
            content_type: $ct,
            body: BODY,
            etag: ETAG,
        }
    }};
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the UI serves.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("model.js", JS),
    asset!("dom.js", JS),
    asset!("search.js", JS),
    asset!("trace.js", JS),
    asset!("services.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Looks an embedded file up by its path under `/ui/`.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The UI's routes: `/`, `/trace/{id}`, `/services` and `/ui/{*path}`. Merge it into an API
/// router that owns no such paths.
pub fn router() -> Router {
    Router::new()
        .route("/", get(page))
        .route("/trace/{id}", get(page))
        .route("/services", get(page))
        .route("/ui/{*path}", get(static_file))
}

async fn page(headers: HeaderMap) -> Response {
    match asset("index.html") {
        Some(a) => serve(a, &headers),
        None => not_found(),
    }
}

async fn static_file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match asset(&path) {
        Some(a) if a.name != "index.html" => serve(a, &headers),
        _ => not_found(),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

/// The files are not fingerprinted, so browsers revalidate every time
/// (`no-cache`) and get a `304` while the ETag matches: a new binary is seen at
/// once, an unchanged one costs no body.
fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let etag = HeaderValue::from_static(asset.etag);
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == asset.etag || t == "*")
        });
    if matches {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        StatusCode::OK,
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    async fn call(uri: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::get(uri);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        router()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body(r: Response) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn etags_are_quoted_hex_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for a in ASSETS {
            assert_eq!(a.etag.len(), 18, "{}", a.name);
            assert!(a.etag.starts_with('"') && a.etag.ends_with('"'));
            assert!(seen.insert(a.etag), "duplicate etag for {}", a.name);
            assert_eq!(
                a.etag,
                format!("\"{:016x}\"", fnv1a(a.body)),
                "compile-time hash of {}",
                a.name
            );
        }
    }

    #[tokio::test]
    async fn pages_and_assets_have_types_and_cache_headers() {
        for uri in ["/", "/trace/5b8efff798038103d269b633813fc60c", "/services"] {
            let r = call(uri, None).await;
            assert_eq!(r.status(), StatusCode::OK, "{uri}");
            assert_eq!(
                r.headers()[header::CONTENT_TYPE],
                "text/html; charset=utf-8"
            );
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
            assert!(body(r).await.contains("<script type=\"module\""));
        }
        for (uri, ct) in [
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/model.js", "text/javascript; charset=utf-8"),
            ("/ui/app.css", "text/css; charset=utf-8"),
            ("/ui/favicon.svg", "image/svg+xml"),
        ] {
            let r = call(uri, None).await;
            assert_eq!(r.status(), StatusCode::OK, "{uri}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], ct, "{uri}");
            assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            let etag = r.headers()[header::ETAG].to_str().unwrap().to_string();
            let again = call(uri, Some(&etag)).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{uri}");
            assert!(body(again).await.is_empty());
            let stale = call(uri, Some("\"0000000000000000\"")).await;
            assert_eq!(stale.status(), StatusCode::OK, "{uri}");
        }
    }

    #[tokio::test]
    async fn unknown_paths_are_404() {
        for uri in [
            "/ui/nope.js",
            "/ui/index.html",
            "/ui/../Cargo.toml",
            "/trace/",
        ] {
            assert_eq!(
                call(uri, None).await.status(),
                StatusCode::NOT_FOUND,
                "{uri}"
            );
        }
    }
}
