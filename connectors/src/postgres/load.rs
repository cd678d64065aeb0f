//! Loading a recorded stream's tables into PostgreSQL (`shopdiff generate --postgres URL`): the
//! contract's DDL, the initial rows, and optionally its table changes replayed over time as real
//! transactions (one per tick of `at`), so CDC has something to capture.
//!
//! Rows go through `jsonb_populate_record(set)`, which maps JSON keys to columns by name (extra
//! keys are ignored, absent columns are NULL). RFC 3339 times are converted to UTC wall-clock
//! text first, because a `TIMESTAMP` column drops an offset instead of applying it. A row
//! PostgreSQL refuses (a NOT NULL column missing, a value it cannot coerce) is skipped and
//! counted; note that PostgreSQL coerces some values a recorded-file replay rejects (e.g. the
//! string `"0.95"` into a NUMERIC), so streams generated with `bad_rate > 0` can differ there.

use super::check::{connect, sql_err};
use super::CdcError;
use crate::files::{self, FileError, LineReader};
use postgres::Client;
use serde_json::value::RawValue;
use shopdiff_schemas::records::is_blank;
use shopdiff_schemas::tables::{ColType, Table};
use shopdiff_schemas::time::{ceil_tick, format_rfc3339, parse_rfc3339, Ms};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The contract's DDL: the seed's `products` and `customers`, and `ip_reputation` (contract 1).
pub const DDL: &str = "
CREATE TABLE products (
    product_id VARCHAR(50) PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    category_id VARCHAR(50) NOT NULL,
    category_name VARCHAR(100) NOT NULL,
    subcategory VARCHAR(100),
    brand VARCHAR(100) NOT NULL,
    price DECIMAL(10,2) NOT NULL,
    cost DECIMAL(10,2) NOT NULL,
    inventory_count INTEGER NOT NULL,
    weight_kg DECIMAL(8,2),
    dimensions_cm VARCHAR(50),
    sku VARCHAR(100) UNIQUE,
    status VARCHAR(20) DEFAULT 'active',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    tags TEXT[],
    supplier_id VARCHAR(50),
    rating_avg DECIMAL(3,2),
    review_count INTEGER DEFAULT 0
);
CREATE TABLE customers (
    user_id VARCHAR(50) PRIMARY KEY,
    email VARCHAR(255) UNIQUE NOT NULL,
    first_name VARCHAR(100),
    last_name VARCHAR(100),
    phone VARCHAR(20),
    date_of_birth DATE,
    gender VARCHAR(10),
    registration_date TIMESTAMP NOT NULL,
    last_login TIMESTAMP,
    account_status VARCHAR(20) DEFAULT 'active',
    customer_tier VARCHAR(20) DEFAULT 'bronze',
    lifetime_value DECIMAL(12,2) DEFAULT 0.00,
    total_orders INTEGER DEFAULT 0,
    preferred_language VARCHAR(10) DEFAULT 'en',
    marketing_consent BOOLEAN DEFAULT false,
    address JSONB,
    preferences JSONB
);
CREATE TABLE ip_reputation (
    ip_address TEXT PRIMARY KEY,
    risk_score NUMERIC(4,3),
    country_risk TEXT,
    is_vpn BOOLEAN,
    is_tor BOOLEAN,
    device_fingerprint TEXT,
    previous_fraud_incidents INTEGER
);
";

/// Why loading failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Pg(#[from] CdcError),
    #[error(transparent)]
    File(#[from] FileError),
}

/// How to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Drop the three tables first (otherwise existing tables are kept and rows upserted).
    pub replace: bool,
    /// Replay `changes.jsonl` after the initial rows.
    pub changes: bool,
    /// Simulated milliseconds per real millisecond while replaying changes (0: no pacing).
    pub speed: f64,
    /// Only changes with `ceil_tick(at) <= until` (a replay's final `as_of`).
    pub until: Option<Ms>,
}

/// What was loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Rows stored per table, in [`Table::ALL`] order.
    pub rows: [u64; 3],
    /// Initial rows or changes PostgreSQL refused (skipped).
    pub refused: u64,
    /// Transactions committed while replaying changes.
    pub txns: u64,
    /// Changes applied.
    pub changes: u64,
}

/// A table change as PostgreSQL applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgChange {
    pub table: Table,
    pub at: Ms,
    /// `Some(row JSON)` for an upsert, `None` for a delete of `key`.
    pub row: Option<String>,
    pub key: String,
}

/// A connection for loading.
pub struct Loader {
    client: Client,
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `row` with every RFC 3339 value of a `TIMESTAMP`/`DATE` column turned into UTC wall-clock
/// text (`YYYY-MM-DD HH:MM:SS.mmm`); `None` when it is not a JSON object.
pub fn pg_row(table: Table, row: &str) -> Option<String> {
    let map: BTreeMap<String, &RawValue> = serde_json::from_str(row).ok()?;
    let mut out = String::from("{");
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quote(k));
        out.push(':');
        let is_time = table
            .columns()
            .iter()
            .any(|(c, t, _)| c == k && *t == ColType::Timestamp);
        let utc = is_time
            .then(|| serde_json::from_str::<String>(v.get()).ok())
            .flatten()
            .and_then(|s| parse_rfc3339(&s))
            .map(|ms| format_rfc3339(ms).replace('T', " ").replace('Z', ""));
        match utc {
            Some(s) => out.push_str(&quote(&s)),
            None => out.push_str(v.get()),
        }
    }
    out.push('}');
    Some(out)
}

fn upsert_sql(table: Table, set_returning: &str) -> String {
    let name = table.name();
    let key = table.key_column();
    let sets: Vec<String> = table
        .columns()
        .iter()
        .filter(|(c, _, _)| *c != key)
        .map(|(c, _, _)| format!("{c} = EXCLUDED.{c}"))
        .collect();
    format!(
        "INSERT INTO {name} SELECT * FROM {set_returning}(NULL::{name}, $1::text::jsonb) \
         ON CONFLICT ({key}) DO UPDATE SET {}",
        sets.join(", ")
    )
}

impl Loader {
    pub fn connect(url: &str) -> Result<Loader, CdcError> {
        Ok(Loader {
            client: connect(url)?,
        })
    }

    /// The underlying connection.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Creates the three tables (dropping them first with `replace`; keeping existing ones
    /// otherwise).
    pub fn create_tables(&mut self, replace: bool) -> Result<(), CdcError> {
        if replace {
            self.client
                .batch_execute("DROP TABLE IF EXISTS products, customers, ip_reputation")
                .map_err(sql_err("dropping the tables"))?;
        }
        let exists = self
            .client
            .query_one("SELECT to_regclass('products') IS NOT NULL", &[])
            .map_err(sql_err("looking for the tables"))?
            .get::<_, bool>(0);
        if !exists {
            self.client
                .batch_execute(DDL)
                .map_err(sql_err("creating the tables"))?;
        }
        Ok(())
    }

    /// Upserts rows (JSON objects); returns `(stored, refused)`.
    pub fn load_rows(&mut self, table: Table, rows: &[String]) -> Result<(u64, u64), CdcError> {
        let mut stored = 0;
        let mut refused = 0;
        let many = upsert_sql(table, "jsonb_populate_recordset");
        let one = upsert_sql(table, "jsonb_populate_record");
        for chunk in rows.chunks(500) {
            let fixed: Vec<Option<String>> = chunk.iter().map(|r| pg_row(table, r)).collect();
            let array = format!(
                "[{}]",
                fixed
                    .iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(",")
            );
            if self.client.execute(&many, &[&array]).is_ok() && fixed.iter().all(Option::is_some) {
                stored += chunk.len() as u64;
                continue;
            }
            // one by one: a bad row or a key twice in the chunk
            for r in fixed {
                match r {
                    Some(r) if self.client.execute(&one, &[&r]).is_ok() => stored += 1,
                    _ => refused += 1,
                }
            }
        }
        Ok((stored, refused))
    }

    /// Applies changes as one transaction; returns the number of rows they affected.
    pub fn apply_txn(&mut self, changes: &[PgChange]) -> Result<u64, CdcError> {
        let mut t = self.client.transaction().map_err(sql_err("BEGIN"))?;
        let mut affected = 0;
        for c in changes {
            let name = c.table.name();
            let n = match &c.row {
                Some(row) => {
                    let sql = upsert_sql(c.table, "jsonb_populate_record");
                    let row = pg_row(c.table, row).unwrap_or_else(|| row.clone());
                    t.execute(&sql, &[&row])
                        .map_err(sql_err(format!("upsert into {name} ({})", c.key)))?
                }
                None => t
                    .execute(
                        &format!("DELETE FROM {name} WHERE {} = $1", c.table.key_column()),
                        &[&c.key],
                    )
                    .map_err(sql_err(format!("delete from {name} ({})", c.key)))?,
            };
            affected += n;
        }
        t.commit().map_err(sql_err("COMMIT"))?;
        Ok(affected)
    }
}

/// Reads a table file of a recorded stream (blank lines skipped).
pub fn read_lines(path: &Path) -> Result<Vec<String>, FileError> {
    let mut r = LineReader::open(path)?;
    let mut out = Vec::new();
    while let Some((_, bytes)) = r.next_line()? {
        let text = String::from_utf8_lossy(bytes);
        if !is_blank(&text) {
            out.push(text.into_owned());
        }
    }
    Ok(out)
}

/// Reads `changes.jsonl` in `at` order (file order among equal times). Lines without a known
/// table, an op, an RFC 3339 `at`, a row and its key are skipped, as a replay skips them.
pub fn read_changes(path: &Path) -> Result<Vec<PgChange>, FileError> {
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        table: String,
        op: String,
        at: String,
        #[serde(borrow)]
        row: &'a RawValue,
    }
    let mut out = Vec::new();
    for text in read_lines(path)? {
        let Ok(l) = serde_json::from_str::<Line>(&text) else {
            continue;
        };
        let (Some(table), Some(at)) = (Table::parse(&l.table), parse_rfc3339(&l.at)) else {
            continue;
        };
        let Ok(map) = serde_json::from_str::<BTreeMap<String, &RawValue>>(l.row.get()) else {
            continue;
        };
        let Some(key) = map
            .get(table.key_column())
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
        else {
            continue;
        };
        let row = match l.op.as_str() {
            "upsert" => Some(l.row.get().to_string()),
            "delete" => None,
            _ => continue,
        };
        out.push(PgChange {
            table,
            at,
            row,
            key,
        });
    }
    out.sort_by_key(|c| c.at);
    Ok(out)
}

/// Groups changes by `ceil_tick(at)`: one transaction per tick.
pub fn by_tick(changes: Vec<PgChange>, tick_ms: u64) -> Vec<(u64, Vec<PgChange>)> {
    let mut out: Vec<(u64, Vec<PgChange>)> = Vec::new();
    for c in changes {
        let t = ceil_tick(c.at, tick_ms);
        match out.last_mut() {
            Some((lt, v)) if *lt == t => v.push(c),
            _ => out.push((t, vec![c])),
        }
    }
    out
}

/// Loads a recorded stream's tables into `url` and, with `opts.changes`, replays its changes.
pub fn load_dir(url: &str, dir: &Path, opts: &LoadOptions) -> Result<LoadStats, LoadError> {
    let mut loader = Loader::connect(url)?;
    loader.create_tables(opts.replace)?;
    let mut stats = LoadStats::default();
    for (i, table) in Table::ALL.into_iter().enumerate() {
        let rows = read_lines(&files::require(dir, table.name())?)?;
        let (stored, refused) = loader.load_rows(table, &rows)?;
        stats.rows[i] = stored;
        stats.refused += refused;
    }
    if !opts.changes {
        return Ok(stats);
    }
    let Some(path) = files::find(dir, "changes")? else {
        return Ok(stats);
    };
    let changes = read_changes(&path)?;
    let groups = by_tick(changes, 1000);
    let started = Instant::now();
    let first = groups.first().map_or(0, |g| g.0);
    for (t, group) in groups {
        if opts.until.is_some_and(|u| t > u as u64) {
            break;
        }
        if opts.speed > 0.0 {
            let due = Duration::from_secs_f64((t - first) as f64 / opts.speed / 1000.0);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        match loader.apply_txn(&group) {
            Ok(_) => {
                stats.txns += 1;
                stats.changes += group.len() as u64;
            }
            Err(_) => stats.refused += group.len() as u64,
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_an_offset_become_utc_wall_clock() {
        let row = r#"{"user_id":"U1","registration_date":"2024-07-01T01:30:00+02:00","date_of_birth":"1990-05-06","lifetime_value":12.50}"#;
        let fixed = pg_row(Table::Customers, row).expect("an object");
        assert_eq!(
            fixed,
            r#"{"date_of_birth":"1990-05-06","lifetime_value":12.50,"registration_date":"2024-06-30 23:30:00.000","user_id":"U1"}"#
        );
        assert_eq!(pg_row(Table::Customers, "[1]"), None);
    }

    #[test]
    fn changes_group_by_tick() {
        let c = |at: Ms| PgChange {
            table: Table::Products,
            at,
            row: None,
            key: "P".into(),
        };
        let g = by_tick(vec![c(1), c(1000), c(1001), c(2500)], 1000);
        let shape: Vec<(u64, usize)> = g.iter().map(|(t, v)| (*t, v.len())).collect();
        assert_eq!(shape, vec![(1000, 2), (2000, 1), (3000, 1)]);
    }
}
