//! Current table state and its changes: turns upserts and deletes into `-old`/`+new` updates.

use crate::ingest::Ingest;
use hashbrown::HashMap;
use shopdiff_schemas::tables::{Change, ChangeOp, Table, TableRow};
use shopdiff_schemas::Str;

/// The current rows of the three tables, keyed by primary key.
#[derive(Debug, Default)]
pub struct TableState {
    rows: HashMap<(Table, Str), TableRow>,
}

impl TableState {
    /// Inserts or replaces a row at `time`: `-old` (if any) and `+new`.
    pub fn upsert(&mut self, row: TableRow, time: u64, out: &mut Ingest) {
        let key = (row.table(), row.key().clone());
        if let Some(old) = self.rows.get(&key) {
            if *old == row {
                return;
            }
            out.table(old.clone(), time, -1);
        }
        out.table(row.clone(), time, 1);
        self.rows.insert(key, row);
    }

    /// Deletes a row at `time` (nothing when absent).
    pub fn delete(&mut self, table: Table, key: &Str, time: u64, out: &mut Ingest) {
        if let Some(old) = self.rows.remove(&(table, key.clone())) {
            out.table(old, time, -1);
        }
    }

    /// Applies a recorded change at `time`, counting a rejected one under its table.
    pub fn apply(&mut self, change: Change, time: u64, out: &mut Ingest) {
        match change.op {
            Ok(ChangeOp::Upsert(row)) => self.upsert(row, time, out),
            Ok(ChangeOp::Delete(key)) => self.delete(change.table, &key, time, out),
            Err(rej) => out.table_rejected(change.table.source(), rej.reason, time),
        }
    }

    /// Number of rows of a table.
    pub fn len(&self, table: Table) -> usize {
        self.rows.keys().filter(|(t, _)| *t == table).count()
    }

    /// The keys of a table's rows (in no particular order).
    pub fn keys(&self, table: Table) -> Vec<Str> {
        self.rows
            .keys()
            .filter(|(t, _)| *t == table)
            .map(|(_, k)| k.clone())
            .collect()
    }

    pub fn get(&self, table: Table, key: &str) -> Option<&TableRow> {
        self.rows.get(&(table, Str::from(key)))
    }
}
