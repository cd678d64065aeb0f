//! The Parquet snapshot sink (contract section 6): one view's rows at one `as_of` become
//! `<dir>/<view>.parquet`.
//!
//! Column types: strings are `Utf8`, integers `Int64`, money `Decimal128(38, 2)` (exact cents),
//! times `Timestamp(Millisecond, "UTC")`, ratios and numbers `Float64`, booleans `Boolean`. Rows
//! are sorted by the view's key columns. The answer's `as_of` (integer milliseconds) is written
//! in the file's key-value metadata and in the Arrow schema's metadata under [`AS_OF_KEY`]. A
//! file is written to a temporary name in the same directory and renamed into place, so a reader
//! sees the old snapshot or the new one, never half of one.

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use arrow::compute::{lexsort_to_indices, take_record_batch, SortColumn};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use shopdiff_schemas::rows::{ColKind, Column, Value, ViewDef};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The metadata key holding the answer's `as_of`, as a decimal integer of milliseconds.
pub const AS_OF_KEY: &str = "shopdiff.as_of";
/// The metadata key holding the view's name.
pub const VIEW_KEY: &str = "shopdiff.view";
/// The metadata key holding the view's key columns, comma-separated.
pub const KEY_COLUMNS_KEY: &str = "shopdiff.key";

/// Money is `DECIMAL(38, 2)` (contract 4): cents must stay below `10^38` in magnitude, which
/// every sum of accepted input does.
const MONEY_PRECISION: u8 = 38;
const MONEY_SCALE: i8 = 2;
const MONEY_LIMIT: u128 = 100_000_000_000_000_000_000_000_000_000_000_000_000;

/// Why a snapshot could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("view {view}: row {row} has {found} values, expected {expected} (one per column)")]
    RowWidth {
        view: &'static str,
        row: usize,
        found: usize,
        expected: usize,
    },
    #[error("view {view}: row {row}, column {column}: expected {expected}, found {found}")]
    BadValue {
        view: &'static str,
        row: usize,
        column: &'static str,
        expected: String,
        found: String,
    },
    #[error("view {view}: cannot build the arrow batch")]
    Arrow {
        view: &'static str,
        #[source]
        source: ArrowError,
    },
    #[error("cannot write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot encode {} as parquet", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
}

/// The Arrow data type of a column kind.
pub fn arrow_type(kind: ColKind) -> DataType {
    match kind {
        ColKind::String => DataType::Utf8,
        ColKind::Integer => DataType::Int64,
        ColKind::Money => DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE),
        ColKind::Time => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        ColKind::Ratio(_) | ColKind::Number => DataType::Float64,
        ColKind::Boolean => DataType::Boolean,
    }
}

/// The Arrow schema of a view: one field per column, in order, nullable as the column is.
pub fn arrow_schema(def: &ViewDef) -> Schema {
    Schema::new(
        def.columns
            .iter()
            .map(|c| Field::new(c.name, arrow_type(c.kind), c.nullable))
            .collect::<Vec<_>>(),
    )
}

/// The path of a view's snapshot in `dir`: `<dir>/<view>.parquet`.
pub fn snapshot_path(dir: &Path, def: &ViewDef) -> PathBuf {
    dir.join(format!("{}.parquet", def.name))
}

/// Turns rows (each value in its column's order and type) into one record batch sorted by the
/// view's key columns. A value of the wrong type, a null in a non-nullable column, money outside
/// `DECIMAL(38, 2)` or a non-finite number is an error naming the row (its index in `rows`) and
/// the column.
pub fn rows_to_batch(def: &ViewDef, rows: &[Vec<Value>]) -> Result<RecordBatch, SinkError> {
    for (i, row) in rows.iter().enumerate() {
        if row.len() != def.columns.len() {
            return Err(SinkError::RowWidth {
                view: def.name,
                row: i,
                found: row.len(),
                expected: def.columns.len(),
            });
        }
    }
    let arrays = def
        .columns
        .iter()
        .enumerate()
        .map(|(c, col)| column_array(def.name, c, col, rows))
        .collect::<Result<Vec<_>, _>>()?;
    let batch = RecordBatch::try_new(Arc::new(arrow_schema(def)), arrays).map_err(|source| {
        SinkError::Arrow {
            view: def.name,
            source,
        }
    })?;
    sort_batch(def.name, batch, &(0..def.key_len).collect::<Vec<_>>())
}

/// Sorts a batch by the columns at `by` (lexicographically, ascending, nulls first).
pub(crate) fn sort_batch(
    view: &'static str,
    batch: RecordBatch,
    by: &[usize],
) -> Result<RecordBatch, SinkError> {
    if batch.num_rows() < 2 || by.is_empty() {
        return Ok(batch);
    }
    let arrow_err = |source| SinkError::Arrow { view, source };
    let keys: Vec<SortColumn> = by
        .iter()
        .map(|&c| SortColumn {
            values: batch.column(c).clone(),
            options: None,
        })
        .collect();
    let order = lexsort_to_indices(&keys, None).map_err(arrow_err)?;
    take_record_batch(&batch, &order).map_err(arrow_err)
}

/// Whether `v` fits `col` (the same rule [`rows_to_batch`] applies): its kind, a null only where
/// the column is nullable, money within `DECIMAL(38, 2)`, ratios with the column's places,
/// finite numbers.
pub fn fits(col: &Column, v: &Value) -> bool {
    match (col.kind, v) {
        (_, Value::Null) => col.nullable,
        (ColKind::String, Value::Str(_))
        | (ColKind::Integer, Value::Int(_))
        | (ColKind::Time, Value::Time(_))
        | (ColKind::Boolean, Value::Bool(_)) => true,
        (ColKind::Money, Value::Money(m)) => m.unsigned_abs() < MONEY_LIMIT,
        (ColKind::Ratio(p), Value::Ratio(_, q)) => p == *q,
        (ColKind::Number, Value::Number(x)) => x.is_finite(),
        _ => false,
    }
}

/// Checks one row given as the values of `columns` (in that order): its width and that every
/// value [`fits`] its column. Errors name `view`, the row's index `row` and the column.
pub fn check_row(
    view: &'static str,
    row: usize,
    columns: &[&Column],
    values: &[Value],
) -> Result<(), SinkError> {
    if values.len() != columns.len() {
        return Err(SinkError::RowWidth {
            view,
            row,
            found: values.len(),
            expected: columns.len(),
        });
    }
    match columns.iter().zip(values).find(|(c, v)| !fits(c, v)) {
        None => Ok(()),
        Some((col, v)) => Err(SinkError::BadValue {
            view,
            row,
            column: col.name,
            expected: expected(col),
            found: format!("{v:?}"),
        }),
    }
}

/// What a column expects, for messages.
fn expected(col: &Column) -> String {
    let kind = match col.kind {
        ColKind::String => "a string".to_string(),
        ColKind::Integer => "an integer".to_string(),
        ColKind::Money => "money that fits decimal(38,2)".to_string(),
        ColKind::Time => "a time".to_string(),
        ColKind::Ratio(p) => format!("a ratio with {p} places"),
        ColKind::Number => "a finite number".to_string(),
        ColKind::Boolean => "a boolean".to_string(),
    };
    if col.nullable {
        format!("{kind} or null")
    } else {
        kind
    }
}

/// One column's values, each read by `get` (`None` when the value does not fit the column).
fn values<'a, T>(
    view: &'static str,
    c: usize,
    col: &Column,
    rows: &'a [Vec<Value>],
    get: impl Fn(&'a Value) -> Option<T>,
) -> Result<Vec<Option<T>>, SinkError> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let v = &row[c];
            let got = match v {
                Value::Null if col.nullable => return Ok(None),
                Value::Null => None,
                v => get(v),
            };
            got.map(Some).ok_or_else(|| SinkError::BadValue {
                view,
                row: i,
                column: col.name,
                expected: expected(col),
                found: format!("{v:?}"),
            })
        })
        .collect()
}

/// The Arrow array of one column: the value at index `c` of every row, typed as `col`. A value
/// that does not [`fit`](fits) the column is an error naming `view`, the row and the column.
pub(crate) fn column_array(
    view: &'static str,
    c: usize,
    col: &Column,
    rows: &[Vec<Value>],
) -> Result<ArrayRef, SinkError> {
    let array: ArrayRef = match col.kind {
        ColKind::String => Arc::new(StringArray::from(values(
            view,
            c,
            col,
            rows,
            |v| match v {
                Value::Str(s) => Some(s.as_str()),
                _ => None,
            },
        )?)),
        ColKind::Integer => Arc::new(Int64Array::from(values(view, c, col, rows, |v| match v {
            Value::Int(n) => Some(*n),
            _ => None,
        })?)),
        ColKind::Money => {
            let cents = values(view, c, col, rows, |v| match v {
                Value::Money(m) if m.unsigned_abs() < MONEY_LIMIT => Some(*m),
                _ => None,
            })?;
            Arc::new(
                Decimal128Array::from(cents)
                    .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                    .map_err(|source| SinkError::Arrow { view, source })?,
            )
        }
        ColKind::Time => {
            let ms = values(view, c, col, rows, |v| match v {
                Value::Time(t) => Some(*t),
                _ => None,
            })?;
            Arc::new(TimestampMillisecondArray::from(ms).with_timezone("UTC"))
        }
        ColKind::Ratio(places) => Arc::new(Float64Array::from(values(
            view,
            c,
            col,
            rows,
            |v| match v {
                Value::Ratio(n, p) if *p == places => Some(scaled_to_f64(*n, *p)),
                _ => None,
            },
        )?)),
        ColKind::Number => Arc::new(Float64Array::from(values(
            view,
            c,
            col,
            rows,
            |v| match v {
                Value::Number(x) if x.is_finite() => Some(*x),
                _ => None,
            },
        )?)),
        ColKind::Boolean => Arc::new(BooleanArray::from(values(
            view,
            c,
            col,
            rows,
            |v| match v {
                Value::Bool(b) => Some(*b),
                _ => None,
            },
        )?)),
    };
    Ok(array)
}

/// `v / 10^places` as the nearest `f64` (both operands are exact, so the quotient is correctly
/// rounded whenever `|v| < 2^53`).
fn scaled_to_f64(v: i64, places: u32) -> f64 {
    v as f64 / 10f64.powi(places as i32)
}

/// A counter that keeps temporary names of one process apart.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes the rows of `def` at `as_of` to `<dir>/<view>.parquet` (zstd-compressed, sorted by
/// key, `as_of` in the metadata under [`AS_OF_KEY`]) and returns the path. The directory is
/// created when missing. The file is written to a temporary name in `dir` and renamed over the
/// old snapshot, so readers never see a partial file; on error the old snapshot is left as it
/// was.
pub fn write_snapshot(
    dir: &Path,
    def: &ViewDef,
    rows: &[Vec<Value>],
    as_of: u64,
) -> Result<PathBuf, SinkError> {
    let batch = rows_to_batch(def, rows)?;
    let as_of = as_of.to_string();
    let key_columns = def
        .key_columns()
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(",");
    let metadata = [
        (AS_OF_KEY, as_of.as_str()),
        (VIEW_KEY, def.name),
        (KEY_COLUMNS_KEY, key_columns.as_str()),
    ];
    let schema: SchemaRef = Arc::new(
        arrow_schema(def).with_metadata(
            metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        ),
    );
    let batch = batch
        .with_schema(schema.clone())
        .map_err(|source| SinkError::Arrow {
            view: def.name,
            source,
        })?;
    fs::create_dir_all(dir).map_err(|source| SinkError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = snapshot_path(dir, def);
    let tmp = dir.join(format!(
        ".{}.parquet.{}-{}.tmp",
        def.name,
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let kv = metadata
        .iter()
        .map(|(k, v)| KeyValue::new(k.to_string(), v.to_string()))
        .collect();
    let written = write_file(&tmp, schema, &batch, kv).and_then(|()| {
        fs::rename(&tmp, &path).map_err(|source| SinkError::Io {
            path: path.clone(),
            source,
        })
    });
    if let Err(e) = written {
        // best effort: the temporary file is ours and useless now
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir);
    Ok(path)
}

/// Writes one batch as a complete Parquet file at `path` and flushes it to disk.
fn write_file(
    path: &Path,
    schema: SchemaRef,
    batch: &RecordBatch,
    kv: Vec<KeyValue>,
) -> Result<(), SinkError> {
    let pq_err = |source| SinkError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(|source| SinkError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file = encode(file, schema, batch, kv).map_err(pq_err)?;
    file.sync_all().map_err(|source| SinkError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Encodes one batch as a complete, zstd-compressed Parquet file (with `kv` in its key-value
/// metadata) into `out`, and gives `out` back.
pub(crate) fn encode<W: Write + Send>(
    out: W,
    schema: SchemaRef,
    batch: &RecordBatch,
    kv: Vec<KeyValue>,
) -> Result<W, ParquetError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_key_value_metadata(Some(kv))
        .build();
    // the writer buffers internally; `into_inner` writes the footer and flushes
    let mut writer = ArrowWriter::try_new(out, schema, Some(props))?;
    writer.write(batch)?;
    writer.into_inner()
}

/// Makes a rename in `dir` durable where the platform allows it (best effort).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}
