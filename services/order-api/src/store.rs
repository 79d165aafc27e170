//! Orders and products in PostgreSQL or SQLite, one span per statement.
//!
//! sqlx's `Any` driver cannot serve both engines (types and macros break), so each engine gets
//! a typed pool; the SQL is written once and instantiated per engine by `engine!`.

use std::str::FromStr as _;
use std::time::Duration;

use fleet_telemetry::db::{DbTarget, record_db_error};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use tracing::Instrument as _;

use crate::model::{Order, OrderItem, Product};

/// One schema migration: version, description, SQL.
type MigrationFile = (i64, &'static str, &'static str);

/// The schema, embedded at compile time. Listed here rather than read by `sqlx::migrate!` so the
/// build needs no sqlx proc-macro crate, which compiles sqlx and SQLite's C code a second time for
/// the host. Versions, SQL and so checksums are the files', so databases migrated by the macro
/// stay valid; `tests::migrations_list_every_file` keeps the list in step with the directories.
const POSTGRES_MIGRATIONS: &[MigrationFile] = &[
    (
        1,
        "orders",
        include_str!("../migrations/postgres/0001_orders.sql"),
    ),
    (
        2,
        "idempotency",
        include_str!("../migrations/postgres/0002_idempotency.sql"),
    ),
];
const SQLITE_MIGRATIONS: &[MigrationFile] = &[
    (
        1,
        "orders",
        include_str!("../migrations/sqlite/0001_orders.sql"),
    ),
    (
        2,
        "idempotency",
        include_str!("../migrations/sqlite/0002_idempotency.sql"),
    ),
];

fn migrator(files: &[MigrationFile]) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr as _;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    Migrator::with_migrations(
        files
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    (*description).into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// What the fault points ask of one insert.
#[derive(Debug, Clone, Copy, Default)]
pub struct DbFaults {
    /// Make the INSERT itself take this long (PostgreSQL: `pg_sleep` inside the statement).
    pub slow_query: Option<Duration>,
    /// Send the INSERT to a table that does not exist, so the database itself fails it.
    pub broken: bool,
}

/// An order as it is first written: pending, under its idempotency key.
#[derive(Debug, Clone, Copy)]
pub struct NewOrder<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub currency: &'a str,
    pub idempotency_key: &'a str,
    pub lines: &'a [NewLine],
}

/// A priced line, ready to be written.
#[derive(Debug, Clone)]
pub struct NewLine {
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone)]
pub enum Store {
    Postgres(sqlx::PgPool, DbTarget),
    Sqlite(sqlx::SqlitePool, DbTarget),
}

/// Runs one statement inside its database span, recording the error code when it fails.
async fn traced<T>(
    span: tracing::Span,
    fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let result = fut.instrument(span.clone()).await;
    if let Err(err) = &result {
        let code = match err {
            sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        };
        let error_type = match err {
            sqlx::Error::PoolTimedOut => "sqlx::PoolTimedOut".to_owned(),
            sqlx::Error::Database(_) => code.clone().unwrap_or_else(|| "sqlx::Database".to_owned()),
            _ => "sqlx::Error".to_owned(),
        };
        record_db_error(&span, code.as_deref(), &error_type, &err.to_string());
    }
    result
}

macro_rules! engine {
    ($module:ident, $db:ty, $now:literal, $created_at:literal, $older_than:literal, $slow_insert:expr) => {
        mod $module {
            use super::*;
            use sqlx::Row as _;

            const LIST_PRODUCTS: &str =
                "SELECT sku, name, price_cents, currency FROM products ORDER BY sku";
            const INSERT_ORDER: &str = concat!(
                "INSERT INTO orders (id, customer_email, status, total_cents, currency, idempotency_key, created_at, updated_at) ",
                "VALUES ($1, $2, 'pending', $3, $4, $5, ", $now, ", ", $now, ")"
            );
            /// The same insert against a table a bad migration renamed: fails in the database.
            const BROKEN_INSERT_ORDER: &str = concat!(
                "INSERT INTO orders_v2 (id, customer_email, status, total_cents, currency, idempotency_key, created_at, updated_at) ",
                "VALUES ($1, $2, 'pending', $3, $4, $5, ", $now, ", ", $now, ")"
            );
            const SLOW_INSERT_ORDER: Option<&str> = $slow_insert;
            const SELECT_LINES: &str = "SELECT line_no FROM order_items WHERE order_id = $1 ORDER BY line_no";
            const SELECT_ITEM: &str = concat!(
                "SELECT sku, name, quantity, unit_price_cents FROM order_items ",
                "WHERE order_id = $1 AND line_no = $2"
            );
            // Only a pending order moves: a late finish and the reconciler cannot both win.
            const UPDATE_ORDER: &str = concat!(
                "UPDATE orders SET status = $1, payment_id = $2, failure_reason = $3, updated_at = ",
                $now, " WHERE id = $4 AND status = 'pending'"
            );
            const SELECT_BY_KEY: &str = "SELECT id FROM orders WHERE idempotency_key = $1";
            const SELECT_STALE: &str = concat!(
                "SELECT id FROM orders WHERE status = 'pending' AND updated_at < ", $older_than,
                " ORDER BY updated_at LIMIT $2"
            );
            const SELECT_ORDER: &str = concat!(
                "SELECT id, customer_email, status, total_cents, currency, payment_id, failure_reason, ",
                $created_at, " AS created_at FROM orders WHERE id = $1"
            );
            // Items keep the name and price they were bought at: no join with products.
            const SELECT_ITEMS: &str = concat!(
                "SELECT sku, name, quantity, unit_price_cents FROM order_items ",
                "WHERE order_id = $1 ORDER BY line_no"
            );

            fn product(row: &<$db as sqlx::Database>::Row) -> Result<Product, sqlx::Error> {
                Ok(Product {
                    sku: row.try_get("sku")?,
                    name: row.try_get("name")?,
                    price_cents: row.try_get("price_cents")?,
                    currency: row.try_get("currency")?,
                })
            }

            pub async fn list_products(pool: &sqlx::Pool<$db>, t: &DbTarget) -> Result<Vec<Product>, sqlx::Error> {
                let rows = traced(
                    t.span("SELECT", "products", LIST_PRODUCTS),
                    sqlx::query(LIST_PRODUCTS).fetch_all(pool),
                )
                .await?;
                rows.iter().map(product).collect()
            }

            pub async fn products_by_sku(
                pool: &sqlx::Pool<$db>,
                t: &DbTarget,
                skus: &[String],
            ) -> Result<Vec<Product>, sqlx::Error> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT sku, name, price_cents, currency FROM products WHERE sku IN (",
                );
                let mut list = qb.separated(", ");
                for sku in skus {
                    list.push_bind(sku.clone());
                }
                qb.push(")");
                let span = t.span("SELECT", "products", qb.sql().as_str());
                let rows = traced(span, qb.build().fetch_all(pool)).await?;
                rows.iter().map(product).collect()
            }

            pub async fn insert_order(
                pool: &sqlx::Pool<$db>,
                t: &DbTarget,
                order: NewOrder<'_>,
                faults: DbFaults,
            ) -> Result<(), sqlx::Error> {
                let NewOrder { id, email, currency, idempotency_key, lines } = order;
                let total: i64 = lines.iter().map(|l| l.quantity * l.unit_price_cents).sum();
                // The order and its items land together or not at all. Waiting for a pooled
                // connection gets its own span: an exhausted pool shows up as this span's length.
                let acquire = tracing::info_span!(
                    "sqlx.pool.acquire",
                    otel.kind = "internal",
                    otel.status_code = tracing::field::Empty,
                    otel.status_description = tracing::field::Empty,
                    error.type = tracing::field::Empty,
                    db.response.status_code = tracing::field::Empty,
                    db.system.name = t.system,
                    db.client.connection.pool.name = %t.namespace,
                );
                let mut tx = traced(acquire, pool.begin()).await?;
                let (sql, collection, slow) = match (faults.broken, faults.slow_query.zip(SLOW_INSERT_ORDER)) {
                    (true, _) => (BROKEN_INSERT_ORDER, "orders_v2", None),
                    (false, Some((delay, slow_sql))) => (slow_sql, "orders", Some(delay)),
                    (false, None) => (INSERT_ORDER, "orders", None),
                };
                let mut insert = sqlx::query(sql)
                    .bind(id)
                    .bind(email)
                    .bind(total)
                    .bind(currency)
                    .bind(idempotency_key);
                if let Some(delay) = slow {
                    insert = insert.bind(delay.as_secs_f64());
                }
                traced(t.span("INSERT", collection, sql), insert.execute(&mut *tx)).await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price_cents) ",
                );
                qb.push_values(lines.iter().enumerate(), |mut row, (i, line)| {
                    row.push_bind(id.to_owned())
                        .push_bind(i as i32 + 1)
                        .push_bind(line.sku.clone())
                        .push_bind(line.name.clone())
                        .push_bind(line.quantity as i32)
                        .push_bind(line.unit_price_cents);
                });
                let span = t.span("INSERT", "order_items", qb.sql().as_str());
                traced(span, qb.build().execute(&mut *tx)).await?;
                tx.commit().await?;
                Ok(())
            }

            pub async fn finish_order(
                pool: &sqlx::Pool<$db>,
                t: &DbTarget,
                id: &str,
                status: &str,
                payment_id: Option<&str>,
                failure_reason: Option<&str>,
            ) -> Result<(), sqlx::Error> {
                traced(
                    t.span("UPDATE", "orders", UPDATE_ORDER),
                    sqlx::query(UPDATE_ORDER)
                        .bind(status)
                        .bind(payment_id)
                        .bind(failure_reason)
                        .bind(id)
                        .execute(pool),
                )
                .await?;
                Ok(())
            }

            pub async fn get_order(
                pool: &sqlx::Pool<$db>,
                t: &DbTarget,
                id: &str,
                n_plus_one: bool,
            ) -> Result<Option<Order>, sqlx::Error> {
                let row = traced(
                    t.span("SELECT", "orders", SELECT_ORDER),
                    sqlx::query(SELECT_ORDER).bind(id).fetch_optional(pool),
                )
                .await?;
                let Some(row) = row else { return Ok(None) };
                let rows = if n_plus_one {
                    // The classic N+1: list the lines, then fetch each one by itself.
                    let lines = traced(
                        t.span("SELECT", "order_items", SELECT_LINES),
                        sqlx::query(SELECT_LINES).bind(id).fetch_all(pool),
                    )
                    .await?;
                    let mut rows = Vec::with_capacity(lines.len());
                    for line in &lines {
                        let line_no: i32 = line.try_get("line_no")?;
                        rows.push(
                            traced(
                                t.span("SELECT", "order_items", SELECT_ITEM),
                                sqlx::query(SELECT_ITEM).bind(id).bind(line_no).fetch_one(pool),
                            )
                            .await?,
                        );
                    }
                    rows
                } else {
                    traced(
                        t.span("SELECT", "order_items", SELECT_ITEMS),
                        sqlx::query(SELECT_ITEMS).bind(id).fetch_all(pool),
                    )
                    .await?
                };
                let items = rows
                .iter()
                .map(|r| {
                    Ok(OrderItem {
                        sku: r.try_get("sku")?,
                        name: r.try_get("name")?,
                        quantity: i64::from(r.try_get::<i32, _>("quantity")?),
                        unit_price_cents: r.try_get("unit_price_cents")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
                Ok(Some(Order {
                    id: row.try_get("id")?,
                    customer_email: row.try_get("customer_email")?,
                    status: row.try_get("status")?,
                    total_cents: row.try_get("total_cents")?,
                    currency: row.try_get("currency")?,
                    payment_id: row.try_get("payment_id")?,
                    failure_reason: row.try_get("failure_reason")?,
                    created_at: row.try_get("created_at")?,
                    items,
                }))
            }

            pub async fn order_id_by_key(
                pool: &sqlx::Pool<$db>,
                t: &DbTarget,
                key: &str,
            ) -> Result<Option<String>, sqlx::Error> {
                let row = traced(
                    t.span("SELECT", "orders", SELECT_BY_KEY),
                    sqlx::query(SELECT_BY_KEY).bind(key).fetch_optional(pool),
                )
                .await?;
                row.map(|r| r.try_get("id")).transpose()
            }

            pub async fn stale_pending(
                pool: &sqlx::Pool<$db>,
                t: &DbTarget,
                older_than_secs: f64,
                limit: i64,
            ) -> Result<Vec<String>, sqlx::Error> {
                // Untraced: an idle check every few seconds would bury the traces learners
                // look for; a pass that finds work is traced by the reconciler.
                let _ = t;
                let rows = sqlx::query(SELECT_STALE)
                    .bind(older_than_secs)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|r| r.try_get("id")).collect()
            }

            pub async fn ping(pool: &sqlx::Pool<$db>) -> Result<(), sqlx::Error> {
                sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
            }
        }
    };
}

engine!(
    pg,
    sqlx::Postgres,
    "now()",
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
    "now() - make_interval(secs => $1)",
    Some(concat!(
        "INSERT INTO orders (id, customer_email, status, total_cents, currency, idempotency_key, created_at, updated_at) ",
        "SELECT $1, $2, 'pending', $3, $4, $5, now(), now() FROM pg_sleep($6)"
    ))
);
engine!(
    lite,
    sqlx::Sqlite,
    "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    "created_at",
    "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || $1 || ' seconds')",
    None
);

macro_rules! dispatch {
    ($self:ident, $f:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Postgres(pool, t) => pg::$f(pool, t $(, $arg)*).await,
            Store::Sqlite(pool, t) => lite::$f(pool, t $(, $arg)*).await,
        }
    };
}

impl Store {
    /// PostgreSQL at `database_url`; migrations run on connect.
    pub async fn postgres(database_url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(database_url)?;
        let target = DbTarget {
            system: "postgresql",
            namespace: options.get_database().unwrap_or("postgres").to_owned(),
            server_address: Some(options.get_host().to_owned()),
            server_port: Some(options.get_port()),
        };
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(options)
            .await?;
        migrator(POSTGRES_MIGRATIONS).run(&pool).await?;
        Ok(Self::Postgres(pool, target))
    }

    /// An embedded SQLite file, created with its directory when missing.
    pub async fn sqlite(path: &std::path::Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5))
            .foreign_keys(true);
        let target = DbTarget {
            system: "sqlite",
            namespace: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "orders.sqlite".into()),
            server_address: None,
            server_port: None,
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        migrator(SQLITE_MIGRATIONS).run(&pool).await?;
        Ok(Self::Sqlite(pool, target))
    }

    pub fn system(&self) -> &'static str {
        match self {
            Store::Postgres(_, t) | Store::Sqlite(_, t) => t.system,
        }
    }

    pub async fn list_products(&self) -> Result<Vec<Product>, sqlx::Error> {
        dispatch!(self, list_products())
    }

    pub async fn products_by_sku(&self, skus: &[String]) -> Result<Vec<Product>, sqlx::Error> {
        dispatch!(self, products_by_sku(skus))
    }

    pub async fn insert_order(
        &self,
        order: NewOrder<'_>,
        faults: DbFaults,
    ) -> Result<(), sqlx::Error> {
        if let (Some(delay), Store::Sqlite(..)) = (faults.slow_query, self) {
            // SQLite has no pg_sleep: the slowness comes from a writer holding the lock instead.
            self.hold_lock(delay).await?;
        }
        dispatch!(self, insert_order(order, faults))
    }

    /// Another session takes a write lock on `orders` and keeps it for `duration`; returns once
    /// the lock is held, so the caller's next write really waits. The holder is untraced: it
    /// stands for someone else's batch job.
    pub async fn hold_lock(&self, duration: Duration) -> Result<(), sqlx::Error> {
        use sqlx::{Connection as _, Executor as _};
        match self {
            Store::Postgres(pool, _) => {
                let mut conn = sqlx::PgConnection::connect_with(&pool.connect_options()).await?;
                conn.execute("BEGIN").await?;
                conn.execute("LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE")
                    .await?;
                tokio::spawn(async move {
                    tokio::time::sleep(duration).await;
                    let _ = conn.execute("COMMIT").await;
                });
            }
            Store::Sqlite(pool, _) => {
                let mut conn =
                    sqlx::SqliteConnection::connect_with(&pool.connect_options()).await?;
                conn.execute("BEGIN IMMEDIATE").await?;
                tokio::spawn(async move {
                    tokio::time::sleep(duration).await;
                    let _ = conn.execute("COMMIT").await;
                });
            }
        }
        Ok(())
    }

    /// Takes every pooled connection it can get within a second and keeps them for `duration`:
    /// requests meanwhile wait in `sqlx.pool.acquire`.
    pub async fn exhaust_pool(&self, duration: Duration) {
        async fn grab<DB: sqlx::Database>(pool: sqlx::Pool<DB>, duration: Duration) {
            let max = pool.options().get_max_connections();
            let mut held = Vec::new();
            for _ in 0..max {
                match tokio::time::timeout(Duration::from_secs(1), pool.acquire()).await {
                    Ok(Ok(conn)) => held.push(conn),
                    _ => break,
                }
            }
            tokio::spawn(async move {
                tokio::time::sleep(duration).await;
                drop(held);
            });
        }
        match self {
            Store::Postgres(pool, _) => grab(pool.clone(), duration).await,
            Store::Sqlite(pool, _) => grab(pool.clone(), duration).await,
        }
    }

    pub async fn finish_order(
        &self,
        id: &str,
        status: &str,
        payment_id: Option<&str>,
        failure_reason: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        dispatch!(self, finish_order(id, status, payment_id, failure_reason))
    }

    pub async fn get_order(
        &self,
        id: &str,
        n_plus_one: bool,
    ) -> Result<Option<Order>, sqlx::Error> {
        dispatch!(self, get_order(id, n_plus_one))
    }

    /// The order made under this idempotency key, if any.
    pub async fn order_id_by_key(&self, key: &str) -> Result<Option<String>, sqlx::Error> {
        dispatch!(self, order_id_by_key(key))
    }

    /// Orders still pending after `older_than`, oldest first, at most `limit`.
    pub async fn stale_pending(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        dispatch!(self, stale_pending(older_than.as_secs_f64(), limit))
    }

    /// Closes the pool: connections are closed and every later query fails with
    /// `PoolClosed` (which [`crate::server::transient`] takes for a database that is away).
    pub async fn close(&self) {
        match self {
            Store::Postgres(pool, _) => pool.close().await,
            Store::Sqlite(pool, _) => pool.close().await,
        }
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Store::Postgres(pool, _) => pg::ping(pool).await,
            Store::Sqlite(pool, _) => lite::ping(pool).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded lists name every file in `migrations/<db>/`, in order, with the version and
    /// description `sqlx::migrate!` would have read from the file name (`0002_idempotency.sql`).
    #[test]
    fn migrations_list_every_file() {
        for (dir, list) in [
            ("postgres", POSTGRES_MIGRATIONS),
            ("sqlite", SQLITE_MIGRATIONS),
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .map(|entry| {
                    let entry = entry.unwrap_or_else(|e| panic!("{dir}: {e}"));
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let stem = name
                        .strip_suffix(".sql")
                        .unwrap_or_else(|| panic!("{name}"));
                    let (version, description) = stem.split_once('_').unwrap_or((stem, ""));
                    let sql = std::fs::read_to_string(entry.path())
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    (
                        version.parse().unwrap_or_else(|e| panic!("{name}: {e}")),
                        description.replace('_', " "),
                        sql,
                    )
                })
                .collect();
            files.sort();
            let listed: Vec<(i64, String, String)> = list
                .iter()
                .map(|(v, d, s)| (*v, (*d).to_owned(), (*s).to_owned()))
                .collect();
            assert_eq!(listed, files, "migrations/{dir} and its list differ");
        }
    }
}
