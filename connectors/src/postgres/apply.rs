//! Applying CDC events to the tables' state in shopdiff's time model (contract section 3): the
//! snapshot replaces the tables, each transaction applies at one tick, and acknowledgements wait
//! until an `as_of` at or past that tick is complete.

use super::convert::RawOp;
use super::{AckHandle, CdcError, CdcEvent};
use crate::ingest::Ingest;
use crate::source::Batch;
use crate::tables::TableState;
use crate::TimeConfig;
use shopdiff_schemas::tables::Table;
use shopdiff_schemas::time::floor_tick;
use shopdiff_schemas::Rejection;
use std::collections::VecDeque;

/// The tick at which a live CDC change applies: the next tick after the event sources'
/// watermark (`floor_tick(W) + tick`), or the frontier while there is no watermark yet (time 0
/// before any event: the initial rows apply before every event).
pub fn live_tick(ingest: &Ingest) -> u64 {
    let tick = ingest.config().tick_ms;
    match ingest.watermark() {
        Some(w) => (floor_tick(w, tick) + tick).max(ingest.frontier()),
        None => ingest.frontier(),
    }
}

/// What has been applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdcStats {
    pub snapshots: u64,
    pub snapshot_rows: u64,
    pub txns: u64,
    pub changes: u64,
    /// Rows rejected by validation (counted in `data_quality` under the table).
    pub rejected: u64,
    /// Transactions at or below the last applied LSN (a resumed source's repeats).
    pub skipped_txns: u64,
    /// Connections lost (and resumed) so far.
    pub reconnects: u64,
    /// The last [`CdcEvent::Status`] or [`CdcEvent::Reconnecting`] message.
    pub last_status: Option<String>,
}

/// The CDC side of the tables: their current rows, the last applied LSN and the LSNs waiting
/// for their tick to complete.
pub struct CdcTables {
    state: TableState,
    ack: AckHandle,
    last_lsn: u64,
    /// `(tick, lsn)` applied but not yet acknowledged, in order.
    unacked: VecDeque<(u64, u64)>,
    stats: CdcStats,
    /// Rejected rows kept for the dead letters (`None`: not kept).
    dead: Option<Vec<DeadRow>>,
}

/// A row the tables rejected, for the dead letters: its table, why, the LSN of its snapshot or
/// transaction and its text (the columns as a JSON object; empty for an unreadable delete key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRow {
    pub table: Table,
    pub rejection: Rejection,
    pub lsn: u64,
    pub text: String,
}

impl CdcTables {
    pub fn new(ack: AckHandle) -> CdcTables {
        CdcTables {
            state: TableState::default(),
            ack,
            last_lsn: 0,
            unacked: VecDeque::new(),
            stats: CdcStats::default(),
            dead: None,
        }
    }

    /// Keeps rejected rows for [`CdcTables::take_dead_letters`] from now on.
    pub fn keep_dead_letters(&mut self) {
        self.dead.get_or_insert_with(Vec::new);
    }

    /// The rejected rows kept since the last call.
    pub fn take_dead_letters(&mut self) -> Vec<DeadRow> {
        self.dead.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn dead_row(&mut self, table: Table, rejection: Rejection, lsn: u64, text: String) {
        if let Some(d) = &mut self.dead {
            d.push(DeadRow {
                table,
                rejection,
                lsn,
                text,
            });
        }
    }

    /// Applies one event at `tick` (which must be `>=` the frontier of the last batch taken
    /// from `out`). A [`CdcEvent::Failed`] is returned as the error.
    pub fn apply(&mut self, ev: CdcEvent, tick: u64, out: &mut Ingest) -> Result<(), CdcError> {
        match ev {
            CdcEvent::Snapshot {
                lsn,
                rows,
                rejected,
            } => {
                // a re-snapshot replaces everything: rows it lacks go
                let mut keep = std::collections::HashSet::new();
                for r in &rows {
                    keep.insert((r.table(), r.key().clone()));
                }
                for table in Table::ALL {
                    for k in self.state.keys(table) {
                        if !keep.contains(&(table, k.clone())) {
                            self.state.delete(table, &k, tick, out);
                        }
                    }
                }
                self.stats.snapshots += 1;
                self.stats.snapshot_rows += rows.len() as u64;
                self.stats.rejected += rejected.len() as u64;
                for row in rows {
                    self.state.upsert(row, tick, out);
                }
                for (table, rej, text) in rejected {
                    out.table_rejected(table.source(), rej.reason, tick);
                    self.dead_row(table, rej, lsn, text);
                }
                self.last_lsn = self.last_lsn.max(lsn);
                self.unacked.push_back((tick, lsn));
            }
            CdcEvent::Txn {
                commit_lsn,
                commit_ms,
                changes,
            } => {
                if commit_lsn <= self.last_lsn {
                    self.stats.skipped_txns += 1;
                    return Ok(());
                }
                for c in changes {
                    self.stats.changes += 1;
                    if c.op == RawOp::Truncate {
                        for k in self.state.keys(c.table) {
                            self.state.delete(c.table, &k, tick, out);
                        }
                        continue;
                    }
                    let current = c.key().and_then(|k| self.state.get(c.table, k)).cloned();
                    if let Some(change) = c.resolve(current.as_ref(), commit_ms) {
                        if let Err(rej) = &change.op {
                            self.stats.rejected += 1;
                            let text = match &c.op {
                                RawOp::Upsert { json, .. } => json.clone(),
                                _ => String::new(),
                            };
                            self.dead_row(c.table, *rej, commit_lsn, text);
                        }
                        self.state.apply(change, tick, out);
                    }
                }
                self.stats.txns += 1;
                self.last_lsn = commit_lsn;
                self.unacked.push_back((tick, commit_lsn));
            }
            CdcEvent::Status(s) => self.stats.last_status = Some(s),
            CdcEvent::Reconnecting(s) => {
                self.stats.reconnects += 1;
                self.stats.last_status = Some(s);
            }
            CdcEvent::Failed(e) => return Err(e),
        }
        Ok(())
    }

    /// Like [`CdcTables::apply`], into a batch made by another source (e.g. a replay's).
    pub fn apply_to_batch(
        &mut self,
        ev: CdcEvent,
        tick: u64,
        batch: &mut Batch,
    ) -> Result<(), CdcError> {
        let mut scratch = Ingest::new(TimeConfig::default());
        let res = self.apply(ev, tick, &mut scratch);
        let b = scratch.take_batch();
        batch.tables.extend(b.tables);
        batch.quality.extend(b.quality);
        res
    }

    /// Every view is complete at `as_of`: acknowledges the LSNs applied at ticks `<= as_of`.
    pub fn completed(&mut self, as_of: u64) {
        while let Some(&(tick, lsn)) = self.unacked.front() {
            if tick > as_of {
                break;
            }
            self.ack.ack(lsn);
            self.unacked.pop_front();
        }
    }

    /// The last LSN applied (pass it as [`super::CdcConfig::resume_after`] to restart a source).
    pub fn last_lsn(&self) -> u64 {
        self.last_lsn
    }

    /// The largest LSN acknowledged upstream.
    pub fn acked(&self) -> u64 {
        self.ack.acked()
    }

    /// Applied LSNs still waiting for their tick to complete.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    pub fn state(&self) -> &TableState {
        &self.state
    }

    pub fn stats(&self) -> &CdcStats {
        &self.stats
    }

    /// The handle acknowledgements go to (e.g. to stop the source).
    pub fn ack_handle(&self) -> &AckHandle {
        &self.ack
    }

    /// Uses a new source's handle after a restart (state and last LSN are kept).
    pub fn reattach(&mut self, ack: AckHandle) {
        ack.ack(self.ack.acked());
        self.ack = ack;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::convert::RawChange;
    use shopdiff_schemas::tables::{Customer, IpRep};
    use shopdiff_schemas::{parse_behavior, Reason, Rejection, Source, TableRow};

    fn cust(id: &str, reg: i64) -> TableRow {
        TableRow::Customer(Customer {
            user_id: id.into(),
            registration_date: reg,
        })
    }

    fn upsert(table: Table, json: &str, key: &str) -> RawChange {
        RawChange {
            table,
            op: RawOp::Upsert {
                json: json.into(),
                key: Some(key.into()),
                unchanged: Vec::new(),
            },
        }
    }

    #[test]
    fn live_tick_is_the_next_tick_after_the_watermark() {
        let mut i = Ingest::new(TimeConfig::default());
        assert_eq!(live_tick(&i), 0);
        i.close(crate::Stream::Transactions);
        let e = parse_behavior(
            r#"{"event_id":"a","user_id":"u","timestamp":"1970-01-01T00:00:20.500Z","event_type":"x"}"#,
        )
        .expect("an event");
        i.event(e);
        // W = 15.5 s: the next tick is 16 s
        assert_eq!(live_tick(&i), 16_000);
        let e = parse_behavior(
            r#"{"event_id":"b","user_id":"u","timestamp":"1970-01-01T00:00:21Z","event_type":"x"}"#,
        )
        .expect("an event");
        i.event(e);
        // W = 16 s, on a boundary: the next tick is 17 s
        assert_eq!(i.watermark(), Some(16_000));
        assert_eq!(live_tick(&i), 17_000);
    }

    #[test]
    fn snapshot_then_transactions_at_one_tick_each_with_acks_after_completion() {
        let ack = AckHandle::default();
        let mut t = CdcTables::new(ack.clone());
        t.keep_dead_letters();
        let mut out = Ingest::new(TimeConfig::default());
        let snap = CdcEvent::Snapshot {
            lsn: 100,
            rows: vec![cust("U1", 0), cust("U2", 0)],
            rejected: vec![(
                Table::Products,
                Rejection::new(Reason::MissingField, "cost"),
                r#"{"product_id":"P1"}"#.into(),
            )],
        };
        t.apply(snap, 0, &mut out).expect("snapshot");
        let b = out.take_batch();
        assert_eq!(b.tables.len(), 2);
        assert_eq!(
            b.quality,
            vec![(Source::Products, Reason::MissingField, 0, 1)]
        );
        let txn = CdcEvent::Txn {
            commit_lsn: 200,
            commit_ms: 5,
            changes: vec![
                upsert(
                    Table::Customers,
                    r#"{"user_id":"U1","email":"e","registration_date":"2024-01-01"}"#,
                    "U1",
                ),
                RawChange {
                    table: Table::Customers,
                    op: RawOp::Delete(Ok("U2".into())),
                },
                upsert(
                    Table::IpReputation,
                    r#"{"ip_address":"1.1.1.1","risk_score":"x"}"#,
                    "1.1.1.1",
                ),
            ],
        };
        t.apply(txn.clone(), 7_000, &mut out).expect("txn");
        let b = out.take_batch();
        let mut tables = b.tables.clone();
        tables.sort();
        assert_eq!(
            tables,
            vec![
                (cust("U1", 0), 7_000, -1),
                (cust("U1", 1_704_067_200_000), 7_000, 1),
                (cust("U2", 0), 7_000, -1),
            ]
        );
        // the bad risk_score is a rejection under ip_reputation, at the same tick
        assert_eq!(
            b.quality,
            vec![(Source::IpReputation, Reason::BadType, 7_000, 1)]
        );
        // both rejected rows are kept for the dead letters, with their LSN and text
        let dead = t.take_dead_letters();
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert_eq!(
            (dead[0].table, dead[0].rejection.reason, dead[0].lsn),
            (Table::Products, Reason::MissingField, 100)
        );
        assert_eq!(dead[0].text, r#"{"product_id":"P1"}"#);
        assert_eq!(
            (dead[1].table, dead[1].rejection.reason, dead[1].lsn),
            (Table::IpReputation, Reason::BadType, 200)
        );
        assert!(
            dead[1].text.contains("\"risk_score\":\"x\""),
            "{}",
            dead[1].text
        );
        assert!(t.take_dead_letters().is_empty());
        // a repeat (a resumed source) changes nothing
        t.apply(txn, 8_000, &mut out).expect("repeat");
        assert!(out.take_batch().tables.is_empty());
        assert_eq!(t.stats().skipped_txns, 1);
        // acknowledged only once the tick is complete
        t.completed(6_000);
        assert_eq!(ack.acked(), 100);
        t.completed(7_000);
        assert_eq!(ack.acked(), 200);
        assert_eq!(t.unacked(), 0);
        // a re-snapshot replaces the tables: U1 goes, an IP comes
        let ip = TableRow::Ip(IpRep {
            ip_address: "2.2.2.2".into(),
            risk: None,
            is_tor: false,
        });
        let again = CdcEvent::Snapshot {
            lsn: 300,
            rows: vec![ip.clone()],
            rejected: Vec::new(),
        };
        t.apply(again, 9_000, &mut out).expect("re-snapshot");
        let mut tables = out.take_batch().tables;
        tables.sort();
        assert_eq!(
            tables,
            vec![(cust("U1", 1_704_067_200_000), 9_000, -1), (ip, 9_000, 1)]
        );
        assert_eq!(t.last_lsn(), 300);
        // a failure is handed back
        let e = CdcError::SlotMissing { slot: "s".into() };
        assert_eq!(
            t.apply(CdcEvent::Failed(e.clone()), 9_000, &mut out),
            Err(e)
        );
    }
}
