//! Optional persistence (`DESK_DATA_DIR`): what the desk holds survives a restart.
//!
//! Storage is one [redb](https://docs.rs/redb) file, `DESK_DATA_DIR/desk.redb`: pure Rust, ACID,
//! copy-on-write B-trees whose commits are crash-safe (checksummed, fsynced with
//! `Durability::Immediate`), a stable file format, and no background threads of its own. It has
//! three tables:
//!
//! - `wal`: one row per acknowledged export, `seq -> received_at_ms ++ ExportTraceServiceRequest`.
//! - `traces`: the compacted segment, one row per held trace,
//!   `trace id -> ordinal ++ last_received_ms ++ ExportTraceServiceRequest` (the trace's spans
//!   regrouped by [`group_spans`]). The ordinal keeps the store's first-received order.
//! - `meta`: the format version and the next WAL sequence number.
//!
//! Intake: an export is written to the WAL and committed (fsync) before it enters the in-memory
//! store and before it is answered. Exports arriving while a commit runs share the next commit
//! (group commit: at most [`MAX_GROUP_BATCHES`] batches or [`MAX_GROUP_BYTES`] per commit), so
//! the fsync cost is paid once per group, not once per export. A kill at any moment loses no
//! acknowledged span; it loses at most the exports in flight, none of which were answered
//! (their senders see the connection fail and retry). A failed write answers 503 / `UNAVAILABLE`
//! (retryable) and is counted; nothing enters memory for it, so a retry does not duplicate.
//!
//! Compaction (every `DESK_COMPACT_INTERVAL`, and as soon as the WAL passes
//! `DESK_WAL_MAX_BYTES`) rewrites the traces that changed since the last compaction from the
//! store's snapshot, deletes the rows of traces the store evicted or that passed
//! `DESK_RETENTION`, and drops every WAL row the snapshot covers, in one transaction. Intake is
//! paused while the snapshot is taken (a write lock around "WAL commit + ingest"), so the
//! snapshot holds exactly the WAL rows up to a known sequence number, and waits for the
//! transaction's commit (one writer); the rows are encoded before it, off the writer thread.
//!
//! Replay at start: the `traces` rows in first-received order, then the WAL in order, all
//! through [`Store::ingest`], so the span and byte bounds apply; rows older than the retention
//! age (by received time) are skipped and deleted. Then the file is compacted (redb reuses freed
//! pages but does not shrink the file on its own).
//!
//! Disk use: the `traces` rows hold at most what the store held at the last compaction (the
//! store's bounds, encoded as protobuf, which is smaller than the in-memory estimate), the WAL
//! at most `DESK_WAL_MAX_BYTES` plus what arrives during one compaction, plus redb's
//! copy-on-write overhead (freed pages are reused, and the file is compacted at each start).
//!
//! A file that is not a desk data file (garbage, another program's database, a newer format)
//! stops the desk at start with an error naming the file; the desk never overwrites it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
use tokio::sync::{Notify, RwLock, mpsc, oneshot};

use crate::store::{IngestOutcome, Store, StoredSpan, TraceId, group_spans};

/// The data file inside `DESK_DATA_DIR`.
pub const DB_FILE: &str = "desk.redb";
/// Default retention age (`DESK_RETENTION`): data received longer ago is dropped at replay and
/// at compaction.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Default compaction interval (`DESK_COMPACT_INTERVAL`).
pub const DEFAULT_COMPACT_INTERVAL: Duration = Duration::from_secs(60);
/// Default WAL size that starts a compaction early (`DESK_WAL_MAX_BYTES`).
pub const DEFAULT_WAL_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Most exports committed together (one fsync).
pub const MAX_GROUP_BATCHES: usize = 256;
/// Most encoded bytes committed together; one export over it is committed alone.
pub const MAX_GROUP_BYTES: usize = 32 * 1024 * 1024;
/// Exports waiting for the writer beyond the group being committed; more wait to be queued.
const QUEUE: usize = 1024;
/// The file format this code writes; another one is refused at start.
const FORMAT_VERSION: u64 = 1;

const WAL: TableDefinition<u64, &[u8]> = TableDefinition::new("wal");
const TRACES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("traces");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_FORMAT: &str = "format_version";
const META_NEXT_SEQ: &str = "next_seq";

/// Where and how the desk persists what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistConfig {
    /// `DESK_DATA_DIR`: created if missing; the data file is [`DB_FILE`] inside it.
    pub dir: PathBuf,
    /// `DESK_RETENTION`: data received longer ago is dropped at replay and compaction.
    pub retention: Duration,
    /// `DESK_COMPACT_INTERVAL`: time between compactions.
    pub compact_interval: Duration,
    /// `DESK_WAL_MAX_BYTES`: a WAL larger than this starts a compaction at once.
    pub wal_max_bytes: u64,
}

impl PersistConfig {
    /// Persistence in `dir` with the default retention, interval and WAL bound.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            retention: DEFAULT_RETENTION,
            compact_interval: DEFAULT_COMPACT_INTERVAL,
            wal_max_bytes: DEFAULT_WAL_MAX_BYTES,
        }
    }

    /// The data file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }
}

/// Why persistence failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The data directory could not be created.
    #[error("cannot create the desk data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The data file exists but is not one this desk can use; it is left untouched.
    #[error(
        "{path} is not a usable trace desk data file ({reason}); the desk does not overwrite it: \
         move it away, or point DESK_DATA_DIR at another directory"
    )]
    Unusable { path: PathBuf, reason: String },
    /// Another process has the data file open.
    #[error("{path} is in use by another process (another trace desk on the same DESK_DATA_DIR?)")]
    InUse { path: PathBuf },
    /// Reading or writing the data file failed.
    #[error("desk data file: {0}")]
    Storage(String),
    /// The writer thread has stopped (the desk is shutting down).
    #[error("the desk's persistence writer has stopped")]
    WriterGone,
}

fn storage(e: impl Into<redb::Error>) -> PersistError {
    PersistError::Storage(e.into().to_string())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Counters shown in `/metrics` (`trace_desk_persist_*`).
#[derive(Debug, Default)]
struct Counters {
    batches_written: AtomicU64,
    bytes_written: AtomicU64,
    commits: AtomicU64,
    commit_micros: AtomicU64,
    commit_micros_max: AtomicU64,
    write_errors: AtomicU64,
    /// Highest WAL sequence number committed.
    committed_seq: AtomicU64,
    wal_bytes: AtomicU64,
    wal_batches: AtomicU64,
    compactions: AtomicU64,
    compaction_errors: AtomicU64,
    compaction_micros: AtomicU64,
    traces_written: AtomicU64,
    traces_deleted: AtomicU64,
    retention_dropped_traces: AtomicU64,
    retention_dropped_batches: AtomicU64,
    replayed_spans: AtomicU64,
    replayed_batches: AtomicU64,
    replayed_traces: AtomicU64,
    replay_micros: AtomicU64,
}

/// What persistence knows of each held trace.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Position in first-received order (replay order).
    ordinal: u64,
    /// When a span of it was last received (retention).
    last_ms: u64,
    /// Whether the `traces` table has a row for it.
    on_disk: bool,
}

#[derive(Debug, Default)]
struct Side {
    known: HashMap<TraceId, Meta>,
    /// Traces changed since the last compaction.
    dirty: HashSet<TraceId>,
    /// Rows whose delete failed with a compaction; retried by the next one.
    pending_deletes: Vec<TraceId>,
    next_ordinal: u64,
}

impl Side {
    fn touch(&mut self, ids: &HashSet<TraceId>, received_ms: u64) {
        for id in ids {
            let next = self.next_ordinal;
            let meta = self.known.entry(*id).or_insert(Meta {
                ordinal: next,
                last_ms: received_ms,
                on_disk: false,
            });
            if meta.ordinal == next {
                self.next_ordinal += 1;
            }
            meta.last_ms = meta.last_ms.max(received_ms);
            self.dirty.insert(*id);
        }
    }
}

struct Append {
    received_ms: u64,
    encoded: Vec<u8>,
    done: oneshot::Sender<Result<(), PersistError>>,
}

struct Compact {
    /// Trace rows, encoded (key, value).
    upserts: Vec<(TraceId, Vec<u8>)>,
    deletes: Vec<TraceId>,
    wal_upto: u64,
    done: oneshot::Sender<Result<(), PersistError>>,
}

enum Job {
    Append(Append),
    Compact(Compact),
    Close,
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Trace rows written (changed since the last compaction).
    pub traces_written: u64,
    /// Trace rows deleted (evicted from the store, or past the retention age).
    pub traces_deleted: u64,
    /// WAL rows up to this sequence number were dropped.
    pub wal_upto: u64,
}

/// What the replay at start found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Trace rows replayed.
    pub traces: u64,
    /// WAL batches replayed.
    pub batches: u64,
    /// Spans the store accepted during the replay.
    pub spans: u64,
    /// Trace rows and WAL batches skipped for their age.
    pub expired: u64,
    /// Time the replay took.
    pub elapsed: Duration,
}

#[derive(Debug)]
struct Shared {
    config: PersistConfig,
    path: PathBuf,
    store: Store,
    jobs: mpsc::Sender<Job>,
    /// Held (read) from before a WAL append until its ingest ends; a compaction takes it
    /// (write) to snapshot the store and the committed sequence number together.
    gate: Arc<RwLock<()>>,
    side: Mutex<Side>,
    /// One compaction at a time: a later one must not drop WAL rows an earlier one has not
    /// written out yet.
    compacting: tokio::sync::Mutex<()>,
    counters: Arc<Counters>,
    wal_full: Arc<Notify>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Handle to the desk's persistence; clones share it.
#[derive(Debug, Clone)]
pub struct Persist {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Append(_) => "Append",
            Job::Compact(_) => "Compact",
            Job::Close => "Close",
        })
    }
}

fn open_db(path: &Path) -> Result<redb::Database, PersistError> {
    let unusable = |reason: String| PersistError::Unusable {
        path: path.to_path_buf(),
        reason,
    };
    match redb::Database::create(path) {
        Ok(db) => Ok(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(PersistError::InUse {
            path: path.to_path_buf(),
        }),
        // redb reports a foreign file (wrong magic number) as invalid data.
        Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
            if e.kind() != std::io::ErrorKind::InvalidData =>
        {
            Err(PersistError::Storage(format!(
                "cannot open {}: {e}",
                path.display()
            )))
        }
        Err(e) => Err(unusable(e.to_string())),
    }
}

/// Checks the format version (writing it into a new file) and creates the tables.
fn prepare(db: &redb::Database, path: &Path) -> Result<u64, PersistError> {
    let unusable = |reason: String| PersistError::Unusable {
        path: path.to_path_buf(),
        reason,
    };
    let txn = db.begin_write().map_err(storage)?;
    let next_seq;
    {
        let mut meta = txn
            .open_table(META)
            .map_err(|e| unusable(format!("its meta table: {e}")))?;
        let version = meta.get(META_FORMAT).map_err(storage)?.map(|v| v.value());
        match version {
            Some(FORMAT_VERSION) => {}
            Some(other) => {
                return Err(unusable(format!(
                    "format version {other}, this desk reads {FORMAT_VERSION}"
                )));
            }
            None => {
                meta.insert(META_FORMAT, FORMAT_VERSION).map_err(storage)?;
            }
        }
        let stored_next = meta
            .get(META_NEXT_SEQ)
            .map_err(storage)?
            .map_or(1, |v| v.value());
        let wal = txn
            .open_table(WAL)
            .map_err(|e| unusable(format!("its wal table: {e}")))?;
        let last = wal.last().map_err(storage)?.map_or(0, |(k, _)| k.value());
        next_seq = stored_next.max(last + 1);
        txn.open_table(TRACES)
            .map_err(|e| unusable(format!("its traces table: {e}")))?;
    }
    txn.commit().map_err(storage)?;
    Ok(next_seq)
}

fn split_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*head), rest))
}

fn decode(
    bytes: &[u8],
    what: &str,
    path: &Path,
) -> Result<ExportTraceServiceRequest, PersistError> {
    ExportTraceServiceRequest::decode(bytes).map_err(|e| PersistError::Unusable {
        path: path.to_path_buf(),
        reason: format!("{what} does not decode: {e}"),
    })
}

/// The valid trace ids of an export (as [`Store::ingest`] accepts them).
fn trace_ids(request: &ExportTraceServiceRequest) -> HashSet<TraceId> {
    let mut ids = HashSet::new();
    for rs in &request.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                if let Ok(id) = <TraceId>::try_from(span.trace_id.as_slice())
                    && id != [0; 16]
                {
                    ids.insert(id);
                }
            }
        }
    }
    ids
}

/// Replays the file into `store`; returns the side state and the report.
fn replay(
    db: &redb::Database,
    path: &Path,
    store: &Store,
    retention: Duration,
) -> Result<(Side, ReplayReport), PersistError> {
    let began = Instant::now();
    let unusable = |reason: String| PersistError::Unusable {
        path: path.to_path_buf(),
        reason,
    };
    let cutoff = now_ms().saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
    let mut side = Side::default();
    let mut report = ReplayReport::default();
    let mut expired_rows: Vec<TraceId> = Vec::new();
    let txn = db.begin_read().map_err(storage)?;
    let traces = txn.open_table(TRACES).map_err(storage)?;
    // Order first (a small list), then read each row, so memory holds one row at a time.
    let mut order: Vec<(u64, u64, TraceId)> = Vec::new();
    for row in traces.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        let id = <TraceId>::try_from(k.value())
            .map_err(|_| unusable("a trace row's key is not a 16-byte trace id".into()))?;
        let value = v.value();
        let (ordinal, rest) =
            split_u64(value).ok_or_else(|| unusable("a trace row is too short".into()))?;
        let (last_ms, _) =
            split_u64(rest).ok_or_else(|| unusable("a trace row is too short".into()))?;
        if last_ms < cutoff {
            expired_rows.push(id);
        } else {
            order.push((ordinal, last_ms, id));
        }
    }
    order.sort_unstable();
    for (ordinal, last_ms, id) in order {
        let Some(row) = traces.get(id.as_slice()).map_err(storage)? else {
            continue;
        };
        let value = row.value();
        let body = value
            .get(16..)
            .ok_or_else(|| unusable("a trace row is too short".into()))?;
        let request = decode(body, &format!("trace row {}", hex::encode(id)), path)?;
        let outcome = store.ingest(request.resource_spans);
        report.spans += outcome.accepted;
        report.traces += 1;
        side.known.insert(
            id,
            Meta {
                ordinal,
                last_ms,
                on_disk: true,
            },
        );
        side.next_ordinal = side.next_ordinal.max(ordinal + 1);
    }
    drop(traces);
    let wal = txn.open_table(WAL).map_err(storage)?;
    for row in wal.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        let value = v.value();
        let (received_ms, body) =
            split_u64(value).ok_or_else(|| unusable("a WAL row is too short".into()))?;
        if received_ms < cutoff {
            report.expired += 1;
            continue;
        }
        let request = decode(body, &format!("WAL row {}", k.value()), path)?;
        let ids = trace_ids(&request);
        let outcome = store.ingest(request.resource_spans);
        report.spans += outcome.accepted;
        report.batches += 1;
        side.touch(&ids, received_ms);
    }
    drop(wal);
    drop(txn);
    report.expired += expired_rows.len() as u64;
    if !expired_rows.is_empty() {
        let txn = db.begin_write().map_err(storage)?;
        {
            let mut traces = txn.open_table(TRACES).map_err(storage)?;
            for id in &expired_rows {
                traces.remove(id.as_slice()).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
    }
    report.elapsed = began.elapsed();
    Ok((side, report))
}

fn wal_size(db: &redb::Database) -> Result<(u64, u64), PersistError> {
    let txn = db.begin_read().map_err(storage)?;
    let wal = txn.open_table(WAL).map_err(storage)?;
    let (mut bytes, mut batches) = (0, 0);
    for row in wal.iter().map_err(storage)? {
        let (_, v) = row.map_err(storage)?;
        bytes += v.value().len() as u64;
        batches += 1;
    }
    Ok((bytes, batches))
}

impl Persist {
    /// Opens (or creates) the data file in `config.dir`, replays it into `store` and starts the
    /// writer thread. Blocking: call it before serving.
    pub fn open(config: PersistConfig, store: Store) -> Result<(Self, ReplayReport), PersistError> {
        std::fs::create_dir_all(&config.dir).map_err(|source| PersistError::CreateDir {
            path: config.dir.clone(),
            source,
        })?;
        let path = config.path();
        let mut db = open_db(&path)?;
        let next_seq = prepare(&db, &path)?;
        let (side, report) = replay(&db, &path, &store, config.retention)?;
        // Start-up is the one moment without transactions: give freed pages back to the disk.
        if let Err(e) = db.compact() {
            tracing::warn!(error = %e, file = %path.display(), "compacting the desk data file failed");
        }
        let (wal_bytes, wal_batches) = wal_size(&db)?;
        let counters = Arc::new(Counters::default());
        counters
            .committed_seq
            .store(next_seq - 1, Ordering::Relaxed);
        counters.wal_bytes.store(wal_bytes, Ordering::Relaxed);
        counters.wal_batches.store(wal_batches, Ordering::Relaxed);
        counters
            .replayed_spans
            .store(report.spans, Ordering::Relaxed);
        counters
            .replayed_batches
            .store(report.batches, Ordering::Relaxed);
        counters
            .replayed_traces
            .store(report.traces, Ordering::Relaxed);
        counters.replay_micros.store(
            u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        counters
            .retention_dropped_batches
            .store(report.expired, Ordering::Relaxed);
        let (jobs, rx) = mpsc::channel(QUEUE);
        let wal_full = Arc::new(Notify::new());
        let writer = Writer {
            db: Some(db),
            path: path.clone(),
            failed: false,
            next_seq,
            counters: Arc::clone(&counters),
            wal_full: Arc::clone(&wal_full),
            wal_max_bytes: config.wal_max_bytes,
        };
        let handle = std::thread::Builder::new()
            .name("desk-persist".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| PersistError::Storage(format!("cannot start the writer thread: {e}")))?;
        tracing::info!(
            file = %path.display(),
            traces = report.traces,
            batches = report.batches,
            spans = report.spans,
            expired = report.expired,
            elapsed = ?report.elapsed,
            "replayed the desk data file"
        );
        Ok((
            Self {
                shared: Arc::new(Shared {
                    config,
                    path,
                    store,
                    jobs,
                    gate: Arc::new(RwLock::new(())),
                    side: Mutex::new(side),
                    compacting: tokio::sync::Mutex::new(()),
                    counters,
                    wal_full,
                    writer: Mutex::new(Some(handle)),
                }),
            },
            report,
        ))
    }

    fn side(&self) -> MutexGuard<'_, Side> {
        self.shared.side.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration.
    pub fn config(&self) -> &PersistConfig {
        &self.shared.config
    }

    /// Writes an export to the WAL (durably), then into the store. On an error nothing entered
    /// the store.
    pub async fn accept(
        &self,
        request: ExportTraceServiceRequest,
        encoded: Option<Vec<u8>>,
    ) -> Result<IngestOutcome, PersistError> {
        let received_ms = now_ms();
        let encoded = encoded.unwrap_or_else(|| request.encode_to_vec());
        let ids = trace_ids(&request);
        let guard = Arc::clone(&self.shared.gate).read_owned().await;
        let this = self.clone();
        // A task of its own: once the batch is committed, its ingest must happen even if the
        // exporter hangs up, or a compaction would drop a WAL row the store never saw.
        let task = tokio::spawn(async move {
            let _guard = guard;
            let (done, rx) = oneshot::channel();
            this.shared
                .jobs
                .send(Job::Append(Append {
                    received_ms,
                    encoded,
                    done,
                }))
                .await
                .map_err(|_| PersistError::WriterGone)?;
            rx.await.map_err(|_| PersistError::WriterGone)??;
            let outcome = this.shared.store.ingest(request.resource_spans);
            this.side().touch(&ids, received_ms);
            Ok(outcome)
        });
        let result = task
            .await
            .map_err(|e| PersistError::Storage(format!("the intake task failed: {e}")))
            .and_then(|r| r);
        if let Err(PersistError::WriterGone) = &result {
            // The writer counts the writes it attempted; these never reached it.
            self.shared
                .counters
                .write_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Compacts now: rewrites the traces changed since the last compaction, deletes those
    /// evicted or past the retention age, and drops the WAL rows the snapshot covers.
    pub async fn compact(&self) -> Result<CompactReport, PersistError> {
        let _one = self.shared.compacting.lock().await;
        let began = Instant::now();
        let cutoff = now_ms().saturating_sub(
            u64::try_from(self.shared.config.retention.as_millis()).unwrap_or(u64::MAX),
        );
        let (upserts, deletes, dirty, wal_upto) = {
            let _paused = self.shared.gate.write().await;
            let wal_upto = self.shared.counters.committed_seq.load(Ordering::Acquire);
            let snapshot = self.shared.store.snapshot();
            let mut side = self.side();
            let side = &mut *side;
            let dirty = std::mem::take(&mut side.dirty);
            let mut deletes = std::mem::take(&mut side.pending_deletes);
            let held: HashMap<TraceId, Arc<Vec<StoredSpan>>> = snapshot.into_iter().collect();
            let mut expired = 0;
            side.known.retain(|id, meta| {
                let keep = held.contains_key(id) && meta.last_ms >= cutoff;
                if !keep && meta.on_disk {
                    deletes.push(*id);
                }
                if held.contains_key(id) && !keep {
                    expired += 1;
                }
                keep
            });
            self.shared
                .counters
                .retention_dropped_traces
                .fetch_add(expired, Ordering::Relaxed);
            let upserts: Vec<(TraceId, Meta, Arc<Vec<StoredSpan>>)> = dirty
                .iter()
                .filter_map(|id| {
                    let meta = side.known.get(id)?;
                    let spans = held.get(id)?;
                    Some((*id, *meta, Arc::clone(spans)))
                })
                .collect();
            (upserts, deletes, dirty, wal_upto)
        };
        let report = CompactReport {
            traces_written: upserts.len() as u64,
            traces_deleted: deletes.len() as u64,
            wal_upto,
        };
        let written: Vec<TraceId> = upserts.iter().map(|(id, _, _)| *id).collect();
        // Encoded here, off the writer thread: exports wait only for the transaction itself.
        let upserts = tokio::task::spawn_blocking(move || encode_rows(upserts))
            .await
            .map_err(|e| PersistError::Storage(format!("the compaction task failed: {e}")));
        let upserts = match upserts {
            Ok(u) => u,
            Err(e) => {
                let mut side = self.side();
                side.dirty.extend(dirty);
                side.pending_deletes.extend(deletes);
                self.shared
                    .counters
                    .compaction_errors
                    .fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let (done, rx) = oneshot::channel();
        let sent = self
            .shared
            .jobs
            .send(Job::Compact(Compact {
                upserts,
                deletes: deletes.clone(),
                wal_upto,
                done,
            }))
            .await;
        let result = match sent {
            Ok(()) => rx.await.unwrap_or(Err(PersistError::WriterGone)),
            Err(_) => Err(PersistError::WriterGone),
        };
        let c = &self.shared.counters;
        let mut side = self.side();
        match result {
            Ok(()) => {
                for id in &written {
                    if let Some(meta) = side.known.get_mut(id) {
                        meta.on_disk = true;
                    }
                }
                c.compactions.fetch_add(1, Ordering::Relaxed);
                c.traces_written
                    .fetch_add(report.traces_written, Ordering::Relaxed);
                c.traces_deleted
                    .fetch_add(report.traces_deleted, Ordering::Relaxed);
                c.compaction_micros.fetch_add(
                    u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                Ok(report)
            }
            Err(e) => {
                // Nothing of it was committed: the next compaction redoes it.
                side.dirty.extend(dirty);
                side.pending_deletes.extend(deletes);
                c.compaction_errors.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Compacts every `DESK_COMPACT_INTERVAL`, and when the WAL passes `DESK_WAL_MAX_BYTES`,
    /// until `stop` resolves.
    pub async fn run_compactor(self, stop: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.shared.config.compact_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {}
                () = self.shared.wal_full.notified() => {}
            }
            match self.compact().await {
                Ok(r) => tracing::debug!(?r, "compacted the desk data file"),
                Err(e) => tracing::warn!(error = %e, "compacting the desk data file failed"),
            }
        }
    }

    /// Stops the writer thread (after the jobs queued before this call) and closes the file.
    pub async fn close(&self) {
        let _ = self.shared.jobs.send(Job::Close).await;
        let handle = self
            .shared
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    /// The `trace_desk_persist_*` metrics in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let disk = std::fs::metadata(&self.shared.path).map_or(0, |m| m.len());
        let secs = |micros: u64| micros as f64 / 1e6;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            crate::prom_text::write(&mut out, name, kind, help, value)
        };
        metric(
            "trace_desk_persist_batches_written_total",
            "counter",
            "Exports committed to the write-ahead log.",
            get(&c.batches_written).to_string(),
        );
        metric(
            "trace_desk_persist_bytes_written_total",
            "counter",
            "Encoded bytes committed to the write-ahead log.",
            get(&c.bytes_written).to_string(),
        );
        metric(
            "trace_desk_persist_commits_total",
            "counter",
            "WAL commits (each one fsync; concurrent exports share one).",
            get(&c.commits).to_string(),
        );
        metric(
            "trace_desk_persist_commit_seconds_total",
            "counter",
            "Time spent in WAL commits (divide by trace_desk_persist_commits_total for the mean).",
            secs(get(&c.commit_micros)).to_string(),
        );
        metric(
            "trace_desk_persist_commit_seconds_max",
            "gauge",
            "Longest WAL commit since start.",
            secs(get(&c.commit_micros_max)).to_string(),
        );
        metric(
            "trace_desk_persist_write_errors_total",
            "counter",
            "Exports refused with 503 / UNAVAILABLE because their WAL write failed.",
            get(&c.write_errors).to_string(),
        );
        metric(
            "trace_desk_persist_wal_bytes",
            "gauge",
            "Encoded bytes in the write-ahead log (compacted past DESK_WAL_MAX_BYTES).",
            get(&c.wal_bytes).to_string(),
        );
        metric(
            "trace_desk_persist_wal_batches",
            "gauge",
            "Exports in the write-ahead log.",
            get(&c.wal_batches).to_string(),
        );
        metric(
            "trace_desk_persist_wal_max_bytes",
            "gauge",
            "Configured WAL size that starts a compaction (DESK_WAL_MAX_BYTES).",
            self.shared.config.wal_max_bytes.to_string(),
        );
        metric(
            "trace_desk_persist_compactions_total",
            "counter",
            "Compactions committed.",
            get(&c.compactions).to_string(),
        );
        metric(
            "trace_desk_persist_compaction_errors_total",
            "counter",
            "Compactions that failed (retried by the next one).",
            get(&c.compaction_errors).to_string(),
        );
        metric(
            "trace_desk_persist_compaction_seconds_total",
            "counter",
            "Time spent compacting, snapshot to commit.",
            secs(get(&c.compaction_micros)).to_string(),
        );
        metric(
            "trace_desk_persist_traces_written_total",
            "counter",
            "Trace rows written by compactions.",
            get(&c.traces_written).to_string(),
        );
        metric(
            "trace_desk_persist_traces_deleted_total",
            "counter",
            "Trace rows deleted by compactions (evicted from memory or past DESK_RETENTION).",
            get(&c.traces_deleted).to_string(),
        );
        metric(
            "trace_desk_persist_retention_dropped_total",
            "counter",
            "Trace rows and WAL batches dropped for being older than DESK_RETENTION (replay and compaction).",
            (get(&c.retention_dropped_traces) + get(&c.retention_dropped_batches)).to_string(),
        );
        metric(
            "trace_desk_persist_retention_seconds",
            "gauge",
            "Configured retention age (DESK_RETENTION).",
            self.shared.config.retention.as_secs().to_string(),
        );
        metric(
            "trace_desk_persist_replayed_spans",
            "gauge",
            "Spans replayed into memory at start.",
            get(&c.replayed_spans).to_string(),
        );
        metric(
            "trace_desk_persist_replayed_traces",
            "gauge",
            "Compacted trace rows replayed at start.",
            get(&c.replayed_traces).to_string(),
        );
        metric(
            "trace_desk_persist_replayed_batches",
            "gauge",
            "WAL batches replayed at start.",
            get(&c.replayed_batches).to_string(),
        );
        metric(
            "trace_desk_persist_replay_seconds",
            "gauge",
            "Time the replay at start took.",
            secs(get(&c.replay_micros)).to_string(),
        );
        metric(
            "trace_desk_persist_disk_bytes",
            "gauge",
            "Size of the data file (DESK_DATA_DIR/desk.redb).",
            disk.to_string(),
        );
        out
    }
}

/// Trace rows: `ordinal ++ last_received_ms ++ ExportTraceServiceRequest` of the trace's spans.
fn encode_rows(traces: Vec<(TraceId, Meta, Arc<Vec<StoredSpan>>)>) -> Vec<(TraceId, Vec<u8>)> {
    traces
        .into_iter()
        .map(|(id, meta, spans)| {
            let request = ExportTraceServiceRequest {
                resource_spans: group_spans(&spans),
            };
            let mut value = Vec::with_capacity(16 + request.encoded_len());
            value.extend_from_slice(&meta.ordinal.to_le_bytes());
            value.extend_from_slice(&meta.last_ms.to_le_bytes());
            request.encode_raw(&mut value);
            (id, value)
        })
        .collect()
}

/// The writer thread: owns the database, commits groups of appends and compactions in order.
struct Writer {
    /// `None` after an I/O error until it is reopened.
    db: Option<redb::Database>,
    path: PathBuf,
    /// A write failed: reopen before the next one.
    failed: bool,
    next_seq: u64,
    counters: Arc<Counters>,
    wal_full: Arc<Notify>,
    wal_max_bytes: u64,
}

impl Writer {
    /// The database, reopened after a failed write: redb refuses every write after an I/O error
    /// until it is reopened, and a disk that was full may have room again.
    fn db(&mut self) -> Result<&redb::Database, PersistError> {
        if self.failed {
            self.db = None;
            self.db = Some(open_db(&self.path)?);
            self.failed = false;
        }
        self.db.as_ref().ok_or(PersistError::WriterGone)
    }

    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut next: Option<Job> = None;
        loop {
            let job = match next.take() {
                Some(job) => job,
                None => match rx.blocking_recv() {
                    Some(job) => job,
                    None => return,
                },
            };
            match job {
                Job::Close => return,
                Job::Compact(c) => self.compact(c),
                Job::Append(first) => {
                    let mut bytes = first.encoded.len();
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP_BATCHES && bytes < MAX_GROUP_BYTES {
                        match rx.try_recv() {
                            Ok(Job::Append(a)) => {
                                bytes += a.encoded.len();
                                group.push(a);
                            }
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.append(group);
                }
            }
        }
    }

    fn append(&mut self, group: Vec<Append>) {
        let began = Instant::now();
        let first_seq = self.next_seq;
        let result = self.db().and_then(|db| {
            let txn = db.begin_write().map_err(storage)?;
            let mut seq = first_seq;
            let mut value = Vec::new();
            {
                let mut wal = txn.open_table(WAL).map_err(storage)?;
                for a in &group {
                    value.clear();
                    value.extend_from_slice(&a.received_ms.to_le_bytes());
                    value.extend_from_slice(&a.encoded);
                    wal.insert(seq, value.as_slice()).map_err(storage)?;
                    seq += 1;
                }
            }
            txn.commit().map_err(storage)?;
            Ok(seq)
        });
        let c = &self.counters;
        match result {
            Ok(next) => {
                let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                let bytes: u64 = group.iter().map(|a| 8 + a.encoded.len() as u64).sum();
                self.next_seq = next;
                c.committed_seq.store(next - 1, Ordering::Release);
                c.commits.fetch_add(1, Ordering::Relaxed);
                c.commit_micros.fetch_add(micros, Ordering::Relaxed);
                c.commit_micros_max.fetch_max(micros, Ordering::Relaxed);
                c.batches_written
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                c.bytes_written.fetch_add(bytes, Ordering::Relaxed);
                c.wal_batches
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                let wal = c.wal_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
                if wal > self.wal_max_bytes {
                    self.wal_full.notify_one();
                }
                for a in group {
                    let _ = a.done.send(Ok(()));
                }
            }
            Err(e) => {
                self.failed = true;
                tracing::warn!(error = %e, batches = group.len(), "writing exports to the desk data file failed");
                c.write_errors
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                for a in group {
                    let _ = a.done.send(Err(PersistError::Storage(e.to_string())));
                }
            }
        }
    }

    fn compact(&mut self, job: Compact) {
        let next_seq = self.next_seq;
        let result = self.db().and_then(|db| {
            let txn = db.begin_write().map_err(storage)?;
            let (mut freed_bytes, mut freed_batches) = (0u64, 0u64);
            {
                let mut traces = txn.open_table(TRACES).map_err(storage)?;
                for (id, value) in &job.upserts {
                    traces
                        .insert(id.as_slice(), value.as_slice())
                        .map_err(storage)?;
                }
                for id in &job.deletes {
                    traces.remove(id.as_slice()).map_err(storage)?;
                }
                let mut wal = txn.open_table(WAL).map_err(storage)?;
                wal.retain_in(..=job.wal_upto, |_, v| {
                    freed_bytes += v.len() as u64;
                    freed_batches += 1;
                    false
                })
                .map_err(storage)?;
                let mut meta = txn.open_table(META).map_err(storage)?;
                meta.insert(META_NEXT_SEQ, next_seq).map_err(storage)?;
            }
            txn.commit().map_err(storage)?;
            Ok((freed_bytes, freed_batches))
        });
        let c = &self.counters;
        let reply = match result {
            Ok((bytes, batches)) => {
                let _ = c
                    .wal_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some(v.saturating_sub(bytes))
                    });
                let _ = c
                    .wal_batches
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some(v.saturating_sub(batches))
                    });
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        };
        let _ = job.done.send(reply);
    }
}

/// OTLP intake: into the store, through the WAL first when persistence is on.
#[derive(Debug, Clone)]
pub struct Intake {
    store: Store,
    persist: Option<Persist>,
}

impl Intake {
    /// Intake straight into `store` (memory only).
    pub fn memory(store: Store) -> Self {
        Self {
            store,
            persist: None,
        }
    }

    /// Intake into `store`, through `persist` when given.
    pub fn new(store: Store, persist: Option<Persist>) -> Self {
        Self { store, persist }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Accepts one export. `encoded` is its protobuf encoding when the caller has it (saves
    /// encoding it again for the WAL). An error means nothing of it was kept: answer with a
    /// retryable status.
    pub async fn accept(
        &self,
        request: ExportTraceServiceRequest,
        encoded: Option<Vec<u8>>,
    ) -> Result<IngestOutcome, PersistError> {
        match &self.persist {
            None => Ok(self.store.ingest(request.resource_spans)),
            Some(p) => p.accept(request, encoded).await,
        }
    }
}
