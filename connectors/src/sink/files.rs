//! Data files of a sink: their paths (`<view>/date=<YYYY-MM-DD>/changes-<from>-<to>.parquet`,
//! `<view>/snapshots/as_of=<t>.parquet`), the schema of change files (the view's delta columns,
//! then `as_of` and `diff`) and their encoding, reusing the snapshot writer's column conversion
//! ([`crate::parquet`]). Everything here is synchronous and CPU-bound: the sink runs it on
//! tokio's blocking pool.

use super::manifest::{FileEntry, FileKind};
use crate::parquet::{
    arrow_schema, arrow_type, column_array, encode, rows_to_batch, sort_batch,
    SinkError as EncodeError, AS_OF_KEY, KEY_COLUMNS_KEY, VIEW_KEY,
};
use arrow::array::{ArrayRef, Int64Array, TimestampMillisecondArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use shopdiff_schemas::rows::{Value, ViewDef};
use shopdiff_schemas::time::civil_from_days;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The name of the change files' column holding each change's `as_of` (a UTC ms timestamp).
pub const AS_OF_COLUMN: &str = "as_of";
/// The name of the change files' column holding each change's multiplicity (+1 inserted, -1
/// retracted; any integer in general).
pub const DIFF_COLUMN: &str = "diff";
/// Metadata keys of change files: the `as_of` range of their rows, and the file's kind.
pub const FROM_AS_OF_KEY: &str = "shopdiff.from_as_of";
pub const TO_AS_OF_KEY: &str = "shopdiff.to_as_of";
pub const KIND_KEY: &str = "shopdiff.kind";

/// A day in milliseconds.
const DAY: u64 = shopdiff_schemas::time::DAY_MS as u64;

/// The UTC day of `as_of`, `YYYY-MM-DD`.
pub fn day_of(as_of: u64) -> String {
    let (y, m, d) = civil_from_days((as_of / DAY) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The path of a change file below the root.
pub fn changes_path(view: &str, from_as_of: u64, to_as_of: u64) -> String {
    format!(
        "{view}/date={}/changes-{from_as_of}-{to_as_of}.parquet",
        day_of(from_as_of)
    )
}

/// The path of a snapshot below the root.
pub fn snapshot_path(view: &str, as_of: u64) -> String {
    format!("{view}/snapshots/as_of={as_of}.parquet")
}

/// Whether `rel` is named like a data file of `view` (garbage collection deletes only these).
pub fn is_data_path(view: &str, rel: &str) -> bool {
    let Some(rest) = rel.strip_prefix(view).and_then(|r| r.strip_prefix('/')) else {
        return false;
    };
    match rest.split('/').collect::<Vec<_>>()[..] {
        ["snapshots", name] => name.starts_with("as_of=") && name.ends_with(".parquet"),
        [date, name] => {
            date.starts_with("date=") && name.starts_with("changes-") && name.ends_with(".parquet")
        }
        _ => false,
    }
}

/// The Arrow schema of a view's change files: its delta columns, then `as_of` and `diff`.
pub fn change_schema(def: &ViewDef) -> Schema {
    let mut fields: Vec<Field> = def
        .delta_columns()
        .into_iter()
        .map(|i| {
            let c = &def.columns[i];
            Field::new(c.name, arrow_type(c.kind), c.nullable)
        })
        .collect();
    fields.push(Field::new(
        AS_OF_COLUMN,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    ));
    fields.push(Field::new(DIFF_COLUMN, DataType::Int64, false));
    Schema::new(fields)
}

/// The changes of one view waiting for a commit, in push order (so `as_ofs` never decreases).
/// Rows hold the delta columns only.
#[derive(Debug, Clone)]
pub struct ViewChanges {
    pub def: ViewDef,
    pub rows: Vec<Vec<Value>>,
    pub as_ofs: Vec<u64>,
    pub diffs: Vec<i64>,
}

impl ViewChanges {
    pub fn new(def: ViewDef) -> ViewChanges {
        ViewChanges {
            def,
            rows: Vec::new(),
            as_ofs: Vec::new(),
            diffs: Vec::new(),
        }
    }

    /// Drops the changes with `as_of <= t`.
    pub fn drain_through(&mut self, t: u64) {
        let n = self.as_ofs.partition_point(|&a| a <= t);
        self.rows.drain(..n);
        self.as_ofs.drain(..n);
        self.diffs.drain(..n);
    }
}

/// An encoding failure and the file it was for.
pub type FileError = (String, EncodeError);

fn parquet_err(rel: &str, source: ParquetError) -> FileError {
    (
        rel.to_string(),
        EncodeError::Parquet {
            path: PathBuf::from(rel),
            source,
        },
    )
}

fn arrow_err(view: &'static str, rel: &str, source: arrow::error::ArrowError) -> FileError {
    (rel.to_string(), EncodeError::Arrow { view, source })
}

/// The positions of the sort columns of a change file: `as_of`, the key columns, then `diff`
/// (a retraction before the insertion that replaces it). Equal inputs give equal files.
fn change_order(def: &ViewDef) -> Vec<usize> {
    let delta = def.delta_columns();
    let mut by = vec![delta.len()];
    by.extend((0..def.key_len).filter_map(|k| delta.iter().position(|&c| c == k)));
    by.push(delta.len() + 1);
    by
}

fn key_columns(def: &ViewDef) -> String {
    def.key_columns()
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(",")
}

/// Encodes a change batch (already in [`change_schema`], sorted) as a Parquet file.
fn encode_changes(
    def: &ViewDef,
    rel: &str,
    batch: RecordBatch,
    from: u64,
    to: u64,
) -> Result<(FileEntry, Bytes), FileError> {
    let meta = [
        (VIEW_KEY, def.name.to_string()),
        (KEY_COLUMNS_KEY, key_columns(def)),
        (KIND_KEY, "changes".to_string()),
        (FROM_AS_OF_KEY, from.to_string()),
        (TO_AS_OF_KEY, to.to_string()),
    ];
    let rows = batch.num_rows() as u64;
    let bytes = encode_with_meta(def, rel, batch, &meta)?;
    Ok((
        FileEntry {
            path: rel.to_string(),
            view: def.name.to_string(),
            kind: FileKind::Changes,
            from_as_of: from,
            to_as_of: to,
            rows,
            bytes: bytes.len() as u64,
        },
        bytes,
    ))
}

fn encode_with_meta(
    def: &ViewDef,
    rel: &str,
    batch: RecordBatch,
    meta: &[(&str, String)],
) -> Result<Bytes, FileError> {
    let schema: SchemaRef = Arc::new(
        batch.schema().as_ref().clone().with_metadata(
            meta.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<HashMap<_, _>>(),
        ),
    );
    let batch = batch
        .with_schema(schema.clone())
        .map_err(|e| arrow_err(def.name, rel, e))?;
    let kv = meta
        .iter()
        .map(|(k, v)| KeyValue::new(k.to_string(), v.clone()))
        .collect();
    let out = encode(Vec::new(), schema, &batch, kv).map_err(|e| parquet_err(rel, e))?;
    Ok(Bytes::from(out))
}

/// The change files of one view's buffered changes: one per UTC day of `as_of`, each sorted by
/// `(as_of, key)` and named by the first and last `as_of` of its rows.
pub fn change_files(changes: &ViewChanges) -> Result<Vec<(FileEntry, Bytes)>, FileError> {
    let def = &changes.def;
    let schema = Arc::new(change_schema(def));
    let order = change_order(def);
    let mut files = Vec::new();
    let mut start = 0;
    while start < changes.as_ofs.len() {
        let day = changes.as_ofs[start] / DAY;
        let end = start + changes.as_ofs[start..].partition_point(|&a| a / DAY == day);
        let (from, to) = (changes.as_ofs[start], changes.as_ofs[end - 1]);
        let rel = changes_path(def.name, from, to);
        let rows = &changes.rows[start..end];
        let delta = def.delta_columns();
        let mut arrays: Vec<ArrayRef> = delta
            .iter()
            .enumerate()
            .map(|(pos, &c)| column_array(def.name, pos, &def.columns[c], rows))
            .collect::<Result<_, _>>()
            .map_err(|e| (rel.clone(), e))?;
        let ms = changes.as_ofs[start..end]
            .iter()
            .map(|&a| a as i64)
            .collect::<Vec<_>>();
        arrays.push(Arc::new(
            TimestampMillisecondArray::from(ms).with_timezone("UTC"),
        ));
        arrays.push(Arc::new(Int64Array::from(
            changes.diffs[start..end].to_vec(),
        )));
        let batch = RecordBatch::try_new(schema.clone(), arrays)
            .map_err(|e| arrow_err(def.name, &rel, e))?;
        let batch = sort_batch(def.name, batch, &order).map_err(|e| (rel.clone(), e))?;
        files.push(encode_changes(def, &rel, batch, from, to)?);
        start = end;
    }
    Ok(files)
}

/// A snapshot file: every column of `rows` (sorted by key), `as_of` in the metadata under
/// [`AS_OF_KEY`] as in the one-shot snapshots of [`crate::parquet`].
pub fn snapshot_file(
    def: &ViewDef,
    as_of: u64,
    rows: &[Vec<Value>],
) -> Result<(FileEntry, Bytes), FileError> {
    let rel = snapshot_path(def.name, as_of);
    let batch = rows_to_batch(def, rows).map_err(|e| (rel.clone(), e))?;
    let meta = [
        (AS_OF_KEY, as_of.to_string()),
        (VIEW_KEY, def.name.to_string()),
        (KEY_COLUMNS_KEY, key_columns(def)),
        (KIND_KEY, "snapshot".to_string()),
    ];
    debug_assert_eq!(batch.schema().fields(), arrow_schema(def).fields());
    let bytes = encode_with_meta(def, &rel, batch, &meta)?;
    Ok((
        FileEntry {
            path: rel,
            view: def.name.to_string(),
            kind: FileKind::Snapshot,
            from_as_of: as_of,
            to_as_of: as_of,
            rows: rows.len() as u64,
            bytes: bytes.len() as u64,
        },
        bytes,
    ))
}

/// Reads a change file back as one batch in [`change_schema`] (metadata dropped).
fn read_changes(def: &ViewDef, rel: &str, bytes: Bytes) -> Result<RecordBatch, FileError> {
    let schema = Arc::new(change_schema(def));
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| parquet_err(rel, e))?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| arrow_err(def.name, rel, e))?;
    let batches = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| arrow_err(def.name, rel, e))?;
    concat_batches(&schema, &batches).map_err(|e| arrow_err(def.name, rel, e))
}

/// Merges change files of one view and one day (given as `(entry, contents)`) into one file
/// with the same rows, sorted by `(as_of, key, diff)` and named by the `as_of` range of them all.
pub fn merge_changes(
    def: &ViewDef,
    inputs: Vec<(FileEntry, Bytes)>,
) -> Result<(FileEntry, Bytes), FileError> {
    let from = inputs.iter().map(|(e, _)| e.from_as_of).min().unwrap_or(0);
    let to = inputs.iter().map(|(e, _)| e.to_as_of).max().unwrap_or(0);
    let rel = changes_path(def.name, from, to);
    let schema = Arc::new(change_schema(def));
    let batches = inputs
        .into_iter()
        .map(|(e, b)| read_changes(def, &e.path, b))
        .collect::<Result<Vec<_>, _>>()?;
    let batch = concat_batches(&schema, &batches).map_err(|e| arrow_err(def.name, &rel, e))?;
    let batch = sort_batch(def.name, batch, &change_order(def)).map_err(|e| (rel.clone(), e))?;
    encode_changes(def, &rel, batch, from, to)
}
