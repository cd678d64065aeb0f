//! PostgreSQL CDC for `products`, `customers` and `ip_reputation` by logical replication
//! (contract sections 1, 3 and 6; issue 6).
//!
//! [`start`] runs the source on its own thread with a current-thread tokio runtime and hands back
//! a channel of [`CdcEvent`]s and an [`AckHandle`]:
//!
//! 1. **Checks** (plain connection): each table exists, has a primary key on exactly the
//!    contract's key column, and every column of the contract's DDL that it has is of a
//!    compatible type; the `NOT NULL` columns must exist. Extra upstream columns are ignored.
//!    Any failure is a [`CdcError`] naming the table and column.
//! 2. **Publication**: created `FOR TABLE products, customers, ip_reputation` when missing,
//!    extended with `ALTER PUBLICATION .. ADD TABLE` when it lacks one of them.
//! 3. **Slot and snapshot**: a fresh start creates the logical slot (`pgoutput`) with an exported
//!    snapshot and copies the three tables inside that snapshot (pg_walstream's managed
//!    snapshot: `BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT ..; COPY`), then
//!    starts streaming at the slot's consistent point: every change is either in the copy or in
//!    the stream, never both and never neither. The copy is one [`CdcEvent::Snapshot`].
//! 4. **Stream**: each upstream transaction becomes one [`CdcEvent::Txn`] (begin .. commit is
//!    buffered; pgoutput protocol 1 without in-progress streaming, so a transaction is only ever
//!    seen once committed), tagged with its commit's end LSN.
//! 5. **Acknowledgement**: the slot's confirmed (flushed) LSN only moves to LSNs the caller gave
//!    to [`AckHandle::ack`] (the driver acks a transaction once every view's `as_of` is at or past
//!    the tick it was applied at). A standby status update goes out every
//!    [`CdcConfig::status_interval`]; when every delivered transaction is acknowledged and none
//!    is open, it confirms the server's current WAL position, so an idle publication never pins
//!    WAL that other tables write.
//! 6. **Reconnect**: a lost connection is retried with exponential backoff (capped at
//!    [`CdcConfig::max_backoff`]), resuming from the last acknowledged LSN; transactions whose
//!    commit LSN is at or below the last one delivered are dropped, so nothing is lost or
//!    repeated. Before resuming, the slot is checked: a missing or invalidated
//!    (`wal_status = 'lost'`) slot is an error ([`CdcError::SlotMissing`],
//!    [`CdcError::SlotInvalidated`]) unless [`CdcConfig::resnapshot`] is set, in which case the
//!    slot is dropped (if present), created again and a new [`CdcEvent::Snapshot`] replaces the
//!    tables.
//!
//! **Crate choice.** `pg_walstream` 0.9 (0.10 does not resolve here) is the only Rust crate that
//! has all four needs: slot creation with an exported snapshot and a managed no-gap copy, full
//! pgoutput decoding (relations, inserts, updates with old keys, deletes, truncates,
//! unchanged-TOAST markers), and explicit flushed-LSN feedback. tokio-postgres has no replication
//! protocol, and `pgwire-replication` decodes nothing. It is built with its `libpq` backend
//! (system libpq, already a dependency of the PostgreSQL client tools) instead of the default
//! rustls/aws-lc backend, which saves a several-minute C build. Control-plane SQL (checks,
//! publication, slot status, loader) uses the synchronous `postgres` crate.

mod apply;
mod check;
mod convert;
pub mod load;
mod source;
mod tls;

pub use apply::{live_tick, CdcStats, CdcTables, DeadRow};
pub use check::{check_tables, TableCheck};
pub use convert::{RawChange, RawOp};

use crossbeam_channel::Receiver;
use shopdiff_schemas::tables::{Table, TableRow};
use shopdiff_schemas::Rejection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where and how to replicate from.
#[derive(Debug, Clone)]
pub struct CdcConfig {
    /// `postgres://user@host:port/db` (no `replication=` parameter: it is added for the stream).
    pub url: String,
    /// Logical replication slot name (default `shopdiff`).
    pub slot: String,
    /// Publication name (default `shopdiff`).
    pub publication: String,
    /// When the slot cannot be resumed (it exists but there is no state to resume from, it is
    /// missing, or it was invalidated), drop it if present, create it again and take a new
    /// snapshot instead of failing.
    pub resnapshot: bool,
    /// Resume a source that already delivered up to this commit LSN (the value of
    /// [`CdcTables::last_lsn`]): the slot must exist, no snapshot is taken, and transactions at
    /// or below it are dropped. `None`: a fresh start with a snapshot.
    pub resume_after: Option<u64>,
    /// How often a standby status update (heartbeat and acknowledgement) is sent.
    pub status_interval: Duration,
    /// Upper bound of the reconnect backoff (it starts at 100 ms and doubles).
    pub max_backoff: Duration,
    /// Give up after this long without a working connection (`None`: never).
    pub give_up_after: Option<Duration>,
}

impl CdcConfig {
    /// Defaults for `url`: slot and publication `shopdiff`, status every 2 s, backoff up to 10 s.
    pub fn new(url: &str) -> CdcConfig {
        CdcConfig {
            url: url.to_string(),
            slot: "shopdiff".into(),
            publication: "shopdiff".into(),
            resnapshot: false,
            resume_after: None,
            status_interval: Duration::from_secs(2),
            max_backoff: Duration::from_secs(10),
            give_up_after: None,
        }
    }
}

/// What the source delivers, in order.
#[derive(Debug, Clone)]
pub enum CdcEvent {
    /// The whole content of the three tables at the slot's consistent point `lsn`. Replaces
    /// whatever the tables held (a second one only follows a re-snapshot).
    Snapshot {
        lsn: u64,
        rows: Vec<TableRow>,
        /// Rows that failed validation, counted under their table's source, with their text.
        rejected: Vec<(Table, Rejection, String)>,
    },
    /// One committed upstream transaction, to apply atomically at one tick.
    Txn {
        /// End LSN of the commit record: what the slot confirms once acknowledged, and the
        /// de-duplication key (strictly increasing over delivered transactions).
        commit_lsn: u64,
        /// Commit time, milliseconds since the epoch.
        commit_ms: i64,
        /// The changes in upstream order; resolved against the current rows by
        /// [`RawChange::resolve`] (unchanged TOASTed columns come from the current row).
        changes: Vec<RawChange>,
    },
    /// Something an operator should see (streaming started or resumed, and from where).
    Status(String),
    /// The connection was lost; the source reconnects with backoff and resumes.
    Reconnecting(String),
    /// The source stopped for good.
    Failed(CdcError),
}

/// Acknowledges LSNs whose transactions are in a completed `as_of`. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AckHandle {
    acked: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl AckHandle {
    /// Everything at or below `lsn` may be forgotten upstream. Monotonic: a smaller value is
    /// ignored.
    pub fn ack(&self, lsn: u64) {
        self.acked.fetch_max(lsn, Ordering::AcqRel);
    }
    /// The largest LSN acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }
    /// Asks the source to stop (after a final status update); its channel then closes.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// Where a `postgres://user:password@host/db` URL's password is: the byte range of it.
fn password_range(url: &str) -> Option<(usize, usize)> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let at = rest.find('@')?;
    let userinfo = &rest[..at];
    if userinfo.contains('/') {
        return None;
    }
    let colon = userinfo.find(':')?;
    Some((scheme_end + colon + 1, scheme_end + at))
}

/// `url` with its password, if any, replaced by `***` (URL form, or `password=` in the
/// key-value form), for messages and logs.
pub fn redact_url(url: &str) -> String {
    if let Some((a, b)) = password_range(url) {
        return format!("{}***{}", &url[..a], &url[b..]);
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***".to_string()
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `url` with `password` put in (percent-encoded) when the URL has none; a URL that has one
/// keeps it.
pub fn with_password(url: &str, password: &str) -> String {
    if password_range(url).is_some() {
        return url.to_string();
    }
    let encoded: String = password
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    if let Some(scheme_end) = url.find("://").map(|i| i + 3) {
        let rest = &url[scheme_end..];
        return match rest.find('@').filter(|&at| !rest[..at].contains('/')) {
            Some(at) => format!(
                "{}{}:{encoded}@{}",
                &url[..scheme_end],
                &rest[..at],
                &rest[at + 1..]
            ),
            // no user: libpq's default user, with this password
            None => url.to_string(),
        };
    }
    // key-value form
    if url.split_whitespace().any(|kv| kv.starts_with("password=")) {
        url.to_string()
    } else {
        format!("{url} password='{}'", password.replace('\'', "\\'"))
    }
}

/// Why the CDC source cannot start or cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdcError {
    #[error("postgres {url}: {message}")]
    Connect { url: String, message: String },
    #[error("postgres: {context}: {message}")]
    Sql { context: String, message: String },
    #[error("table {table}: not found (create it with `shopdiff generate --postgres URL` or the contract DDL)")]
    MissingTable { table: String },
    #[error("table {table}: no primary key (shopdiff needs PRIMARY KEY ({column}) to apply updates and deletes)")]
    NoPrimaryKey { table: String, column: String },
    #[error("table {table}: primary key is ({found}), expected ({column})")]
    WrongPrimaryKey {
        table: String,
        column: String,
        found: String,
    },
    #[error("table {table}: column {column} is missing (it is NOT NULL in the contract's DDL)")]
    MissingColumn { table: String, column: String },
    #[error("table {table}: column {column} has type {found}, expected {expected}")]
    ColumnType {
        table: String,
        column: String,
        found: String,
        expected: String,
    },
    #[error("replication slot {slot} does not exist (it was dropped); start again with re-snapshot (CdcConfig::resnapshot, `--pg-resnapshot`) to create it and copy the tables anew")]
    SlotMissing { slot: String },
    #[error("replication slot {slot} was invalidated (wal_status = lost: the WAL it needed was removed); start again with re-snapshot (CdcConfig::resnapshot, `--pg-resnapshot`) to drop it, create it and copy the tables anew")]
    SlotInvalidated { slot: String },
    #[error("replication slot {slot} already exists but this source has no state to resume from; start with re-snapshot (CdcConfig::resnapshot, `--pg-resnapshot`) to drop and re-create it, or use another slot name")]
    SlotExists { slot: String },
    #[error("replication slot {slot} belongs to database {found} / plugin {plugin}, expected database {expected} / pgoutput")]
    SlotMismatch {
        slot: String,
        found: String,
        plugin: String,
        expected: String,
    },
    #[error("replication slot {slot} is in use by another process (pid {pid})")]
    SlotBusy { slot: String, pid: i32 },
    #[error("replication at LSN {lsn}: {message}")]
    Stream { lsn: String, message: String },
    #[error("gave up reconnecting after {secs} s (last error: {message}); resume after LSN {lsn}")]
    GaveUp {
        secs: u64,
        message: String,
        lsn: String,
    },
    #[error("cannot start the CDC thread: {0}")]
    Thread(String),
}

/// Formats an LSN the way PostgreSQL does (`16/B374D848`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Starts the CDC source: checks the tables, prepares the publication and the slot, then runs
/// snapshot and stream on its own thread. Errors found before streaming (tables, slot state,
/// connection) are returned here; later ones arrive as [`CdcEvent::Failed`].
pub fn start(cfg: CdcConfig) -> Result<(Receiver<CdcEvent>, AckHandle), CdcError> {
    source::start(cfg)
}
