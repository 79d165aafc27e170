//! Database CLIENT spans: sqlx emits only log events, so the code that issues a query, which
//! knows its operation and table, opens the span.

use tracing::field::Empty;

/// Where the queries go: recorded on every database span.
#[derive(Debug, Clone)]
pub struct DbTarget {
    /// `db.system.name`: `postgresql` or `sqlite`.
    pub system: &'static str,
    /// `db.namespace`: the database name (PostgreSQL) or the file name (SQLite).
    pub namespace: String,
    pub server_address: Option<String>,
    pub server_port: Option<u16>,
}

impl DbTarget {
    /// A CLIENT span named `{operation} {collection}` with the database conventions.
    /// `query` must be the parameterised text, never one with literal values.
    pub fn span(
        &self,
        operation: &'static str,
        collection: &'static str,
        query: &str,
    ) -> tracing::Span {
        tracing::info_span!(
            "db.client",
            otel.name = %format_args!("{operation} {collection}"),
            otel.kind = "client",
            otel.status_code = Empty,
            otel.status_description = Empty,
            db.system.name = self.system,
            db.namespace = %self.namespace,
            db.operation.name = operation,
            db.collection.name = collection,
            db.query.summary = %format_args!("{operation} {collection}"),
            db.query.text = query,
            db.response.status_code = Empty,
            server.address = self.server_address.as_deref(),
            server.port = self.server_port.map(i64::from),
            error.type = Empty,
        )
    }
}

/// Marks a database span failed: `db.response.status_code` is the SQLSTATE (or SQLite code).
pub fn record_db_error(span: &tracing::Span, code: Option<&str>, error_type: &str, message: &str) {
    if let Some(code) = code {
        span.record("db.response.status_code", code);
    }
    span.record("error.type", error_type);
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", message);
}
