//! The CDC thread: slot preparation, snapshot, streaming, acknowledgement and reconnects.

use super::check::{
    check_name, check_tables, connect, current_database, drop_slot, ensure_publication, slot_info,
    SlotInfo,
};
use super::convert::{row_json, row_key, upsert, RawChange, RawOp};
use super::{format_lsn, AckHandle, CdcConfig, CdcError, CdcEvent};
use crossbeam_channel::{unbounded, Receiver, Sender};
use pg_walstream::{
    CancellationToken, EventType, LogicalReplicationStream, ReplicationStreamConfig, RetryConfig,
    SnapshotOutcome, StreamingMode,
};
use shopdiff_schemas::tables::{parse_row, Table};
use std::time::{Duration, Instant};

/// How the first session begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Begin {
    /// Create the slot with an exported snapshot and copy the tables.
    Snapshot,
    /// Reuse the existing slot from this LSN on.
    Resume(u64),
}

/// Waits (a few seconds at most) until a slot is no longer held by a walsender, e.g. one whose
/// client just went away.
fn slot_when_free(client: &mut postgres::Client, slot: &str) -> Result<Option<SlotInfo>, CdcError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = slot_info(client, slot)?;
        match &info {
            Some(SlotInfo {
                active_pid: Some(pid),
                ..
            }) => {
                if Instant::now() >= deadline {
                    return Err(CdcError::SlotBusy {
                        slot: slot.into(),
                        pid: *pid,
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => return Ok(info),
        }
    }
}

/// Decides how to begin given the slot's state, dropping it when a re-snapshot is asked for.
fn prepare(cfg: &CdcConfig) -> Result<Begin, CdcError> {
    check_name("slot", &cfg.slot)?;
    let mut client = connect(&cfg.url)?;
    check_tables(&mut client)?;
    ensure_publication(&mut client, &cfg.publication)?;
    let db = current_database(&mut client)?;
    let info = slot_when_free(&mut client, &cfg.slot)?;
    if let Some(i) = &info {
        if i.database != db || i.plugin != "pgoutput" {
            return Err(CdcError::SlotMismatch {
                slot: cfg.slot.clone(),
                found: i.database.clone(),
                plugin: i.plugin.clone(),
                expected: db,
            });
        }
    }
    let begin = match (cfg.resume_after, info) {
        (Some(lsn), Some(i)) if !i.lost => Begin::Resume(lsn),
        (None, None) => Begin::Snapshot,
        (_, Some(_)) if cfg.resnapshot => {
            drop_slot(&mut client, &cfg.slot)?;
            Begin::Snapshot
        }
        (Some(_), None) if cfg.resnapshot => Begin::Snapshot,
        (Some(_), None) => {
            return Err(CdcError::SlotMissing {
                slot: cfg.slot.clone(),
            })
        }
        (Some(_), Some(_)) => {
            return Err(CdcError::SlotInvalidated {
                slot: cfg.slot.clone(),
            })
        }
        (None, Some(_)) => {
            return Err(CdcError::SlotExists {
                slot: cfg.slot.clone(),
            })
        }
    };
    Ok(begin)
}

pub(super) fn start(cfg: CdcConfig) -> Result<(Receiver<CdcEvent>, AckHandle), CdcError> {
    let begin = prepare(&cfg)?;
    let (tx, rx) = unbounded();
    let ack = AckHandle::default();
    let thread_ack = ack.clone();
    std::thread::Builder::new()
        .name("cdc-postgres".into())
        .spawn(move || run(cfg, begin, tx, thread_ack))
        .map_err(|e| CdcError::Thread(e.to_string()))?;
    Ok((rx, ack))
}

/// Appends `replication=database` to a URL.
fn replication_url(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}replication=database")
}

/// How a session ended.
enum End {
    /// Asked to stop, or the receiver went away.
    Stopped,
    /// Connection trouble: reconnect. `streamed` tells whether the session got as far as
    /// streaming (which resets the backoff).
    Lost {
        message: String,
        streamed: bool,
    },
    Fatal(CdcError),
}

/// What survives a reconnect.
struct Progress {
    /// End LSN of the last transaction delivered (or of the snapshot).
    delivered: u64,
    snapshot_due: bool,
}

fn run(cfg: CdcConfig, begin: Begin, tx: Sender<CdcEvent>, ack: AckHandle) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = tx.send(CdcEvent::Failed(CdcError::Thread(e.to_string())));
            return;
        }
    };
    let mut progress = Progress {
        delivered: match begin {
            Begin::Resume(lsn) => lsn,
            Begin::Snapshot => 0,
        },
        snapshot_due: begin == Begin::Snapshot,
    };
    let initial_backoff = Duration::from_millis(100);
    let mut backoff = initial_backoff;
    let mut down_since: Option<Instant> = None;
    let mut first = true;
    loop {
        if ack.stopping() {
            return;
        }
        // before a reconnect: the slot must still be there and valid
        if !first && !progress.snapshot_due {
            match recheck_slot(&cfg) {
                Ok(true) => {}
                Ok(false) => progress.snapshot_due = true,
                Err(e @ (CdcError::SlotMissing { .. } | CdcError::SlotInvalidated { .. })) => {
                    let _ = tx.send(CdcEvent::Failed(e));
                    return;
                }
                Err(e) => {
                    if !wait_backoff(
                        &cfg,
                        &tx,
                        &ack,
                        &mut backoff,
                        &mut down_since,
                        &e.to_string(),
                        progress.delivered,
                    ) {
                        return;
                    }
                    continue;
                }
            }
        }
        first = false;
        let end = rt.block_on(session(&cfg, &mut progress, &tx, &ack));
        match end {
            End::Stopped => return,
            End::Fatal(e) => {
                let _ = tx.send(CdcEvent::Failed(e));
                return;
            }
            End::Lost { message, streamed } => {
                if streamed {
                    backoff = initial_backoff;
                    down_since = None;
                }
                let _ = tx.send(CdcEvent::Reconnecting(format!(
                    "connection lost at LSN {}: {message}; reconnecting",
                    format_lsn(progress.delivered)
                )));
                if !wait_backoff(
                    &cfg,
                    &tx,
                    &ack,
                    &mut backoff,
                    &mut down_since,
                    &message,
                    progress.delivered,
                ) {
                    return;
                }
            }
        }
    }
}

/// Sleeps the backoff (doubling it); `false` when the source must stop (asked to, or gave up).
fn wait_backoff(
    cfg: &CdcConfig,
    tx: &Sender<CdcEvent>,
    ack: &AckHandle,
    backoff: &mut Duration,
    down_since: &mut Option<Instant>,
    message: &str,
    lsn: u64,
) -> bool {
    let since = *down_since.get_or_insert_with(Instant::now);
    if let Some(limit) = cfg.give_up_after {
        if since.elapsed() >= limit {
            let _ = tx.send(CdcEvent::Failed(CdcError::GaveUp {
                secs: limit.as_secs(),
                message: message.to_string(),
                lsn: format_lsn(lsn),
            }));
            return false;
        }
    }
    let until = Instant::now() + *backoff;
    while Instant::now() < until {
        if ack.stopping() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    *backoff = (*backoff * 2).min(cfg.max_backoff.max(Duration::from_millis(100)));
    true
}

/// `Ok(true)`: resume; `Ok(false)`: take a new snapshot (re-snapshot asked for, slot dropped).
fn recheck_slot(cfg: &CdcConfig) -> Result<bool, CdcError> {
    let mut client = connect(&cfg.url)?;
    let info = slot_when_free(&mut client, &cfg.slot)?;
    match info {
        Some(i) if !i.lost => Ok(true),
        Some(_) if cfg.resnapshot => {
            drop_slot(&mut client, &cfg.slot)?;
            Ok(false)
        }
        None if cfg.resnapshot => Ok(false),
        Some(_) => Err(CdcError::SlotInvalidated {
            slot: cfg.slot.clone(),
        }),
        None => Err(CdcError::SlotMissing {
            slot: cfg.slot.clone(),
        }),
    }
}

fn lost(e: impl std::fmt::Display, streamed: bool) -> End {
    End::Lost {
        message: e.to_string(),
        streamed,
    }
}

fn table_of(name: &str) -> Option<Table> {
    // pgoutput names the relation without its schema; a truncate may qualify it
    Table::parse(name.rsplit('.').next().unwrap_or(name))
}

async fn session(
    cfg: &CdcConfig,
    progress: &mut Progress,
    tx: &Sender<CdcEvent>,
    ack: &AckHandle,
) -> End {
    let config = ReplicationStreamConfig::builder(cfg.slot.clone(), cfg.publication.clone())
        .with_protocol_version(1)
        .with_streaming_mode(StreamingMode::Off)
        .with_feedback_interval(cfg.status_interval)
        .with_connection_timeout(Duration::from_secs(10))
        .with_retry_config(RetryConfig {
            max_attempts: 1,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(100),
            multiplier: 1.0,
            max_duration: Duration::from_secs(10),
            jitter: false,
        });
    let stream = match LogicalReplicationStream::new(&replication_url(&cfg.url), config).await {
        Ok(s) => s,
        Err(e) => return lost(e, false),
    };
    let mut stream = if progress.snapshot_due {
        let snap = match stream.snapshot().await {
            Ok(SnapshotOutcome::Available(s)) => s,
            Ok(SnapshotOutcome::Unavailable(_)) => {
                return End::Fatal(CdcError::SlotExists {
                    slot: cfg.slot.clone(),
                })
            }
            Err(e) => return lost(e, false),
        };
        let mut snap = snap;
        snap.retain_tables(|t| table_of(&t.relation().relation_name).is_some());
        let lsn = snap.consistent_point().value();
        let mut rows = snap.rows();
        let mut good = Vec::new();
        let mut rejected = Vec::new();
        loop {
            match rows.next_row().await {
                Ok(Some(r)) => {
                    let Some(table) = table_of(&r.relation.relation_name) else {
                        continue;
                    };
                    let (json, _, _) = row_json(table, &r.data);
                    match parse_row(table, &json) {
                        Ok(row) => good.push(row),
                        Err(rej) => rejected.push((table, rej, json)),
                    }
                }
                Ok(None) => break,
                Err(e) => return lost(e, false),
            }
        }
        let stream = match rows.finish().await {
            Ok(s) => s,
            Err(e) => return lost(e, false),
        };
        if tx
            .send(CdcEvent::Snapshot {
                lsn,
                rows: good,
                rejected,
            })
            .is_err()
        {
            return End::Stopped;
        }
        progress.snapshot_due = false;
        progress.delivered = progress.delivered.max(lsn);
        ack.ack(lsn);
        stream
    } else {
        stream
    };
    let acked = ack.acked();
    let from = (acked > 0).then_some(acked);
    if let Err(e) = stream.start(from).await {
        let msg = e.to_string();
        if msg.contains("does not exist") {
            return End::Fatal(CdcError::SlotMissing {
                slot: cfg.slot.clone(),
            });
        }
        return lost(msg, false);
    }
    let _ = tx.send(CdcEvent::Status(format!(
        "streaming slot {} of publication {} from LSN {}",
        cfg.slot,
        cfg.publication,
        format_lsn(acked.max(progress.delivered))
    )));
    let token = CancellationToken::new();
    let poll = cfg.status_interval.min(Duration::from_millis(200));
    let mut last_status = Instant::now();
    // the transaction being received: its changes and commit time
    let mut open: Option<Vec<RawChange>> = None;
    loop {
        if ack.stopping() {
            feedback(&mut stream, ack, open.is_none(), progress.delivered);
            let _ = stream.send_feedback().await;
            return End::Stopped;
        }
        if last_status.elapsed() >= cfg.status_interval {
            feedback(&mut stream, ack, open.is_none(), progress.delivered);
            if let Err(e) = stream.send_feedback().await {
                return lost(e, true);
            }
            last_status = Instant::now();
        }
        let ev = match tokio::time::timeout(poll, stream.next_event(&token)).await {
            Err(_) => continue,
            Ok(Err(e)) => return lost(e, true),
            Ok(Ok(ev)) => ev,
        };
        match ev.event_type {
            EventType::Begin { .. } => open = Some(Vec::new()),
            EventType::Insert { table, data, .. } => {
                if let Some(t) = table_of(&table) {
                    open.get_or_insert_with(Vec::new)
                        .push(upsert(t, &data, false));
                }
            }
            EventType::Update {
                table,
                old_data,
                new_data,
                ..
            } => {
                if let Some(t) = table_of(&table) {
                    let txn = open.get_or_insert_with(Vec::new);
                    let new = upsert(t, &new_data, true);
                    // a changed primary key: the old row goes first
                    if let Some(old) = old_data {
                        if let Ok(old_key) = row_key(t, &old) {
                            if new.key() != Some(&old_key) {
                                txn.push(RawChange {
                                    table: t,
                                    op: RawOp::Delete(Ok(old_key)),
                                });
                            }
                        }
                    }
                    txn.push(new);
                }
            }
            EventType::Delete {
                table, old_data, ..
            } => {
                if let Some(t) = table_of(&table) {
                    open.get_or_insert_with(Vec::new).push(RawChange {
                        table: t,
                        op: RawOp::Delete(row_key(t, &old_data)),
                    });
                }
            }
            EventType::Truncate { tables, .. } => {
                let txn = open.get_or_insert_with(Vec::new);
                for name in tables {
                    if let Some(t) = table_of(&name) {
                        txn.push(RawChange {
                            table: t,
                            op: RawOp::Truncate,
                        });
                    }
                }
            }
            EventType::Commit {
                commit_timestamp,
                end_lsn,
                ..
            } => {
                let changes = open.take().unwrap_or_default();
                let lsn = end_lsn.value();
                if changes.is_empty() || lsn <= progress.delivered {
                    // empty, or delivered before a reconnect: nothing to do
                    continue;
                }
                progress.delivered = lsn;
                let sent = tx.send(CdcEvent::Txn {
                    commit_lsn: lsn,
                    commit_ms: commit_timestamp.timestamp_millis(),
                    changes,
                });
                if sent.is_err() {
                    return End::Stopped;
                }
            }
            EventType::StreamStart { .. }
            | EventType::StreamStop
            | EventType::StreamCommit { .. }
            | EventType::StreamAbort { .. } => {
                return End::Fatal(CdcError::Stream {
                    lsn: format_lsn(ev.lsn.value()),
                    message: "unexpected in-progress transaction streaming (requested off)".into(),
                })
            }
            _ => {}
        }
    }
}

/// Sets the LSNs the next standby status update reports: the caller's acknowledgement, or the
/// server's current position when nothing delivered is unacknowledged and no transaction is
/// open (an idle publication must not pin WAL).
fn feedback(stream: &mut LogicalReplicationStream, ack: &AckHandle, idle: bool, delivered: u64) {
    let acked = ack.acked();
    let lsn = if idle && delivered <= acked {
        acked.max(stream.current_lsn())
    } else {
        acked
    };
    stream.shared_lsn_feedback.update_flushed_lsn(lsn);
    stream.shared_lsn_feedback.update_applied_lsn(lsn);
}
