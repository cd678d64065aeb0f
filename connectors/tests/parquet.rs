//! The Parquet snapshot sink: every view round-trips through the `parquet` crate's Arrow reader
//! with the contract's types (section 6), sorted by key, with `shopdiff.as_of` in the metadata.

use arrow::array::{
    Array, BooleanArray, Decimal128Array, Float64Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use shopdiff_connectors::parquet::{
    arrow_schema, rows_to_batch, snapshot_path, write_snapshot, SinkError, AS_OF_KEY,
};
use shopdiff_schemas::rows::{self, ColKind, Value, ViewDef, ALL_VIEWS};
use shopdiff_schemas::Str;
use std::cmp::Ordering;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// A fresh, empty directory for one test under cargo's temporary directory for tests.
fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("shopdiff-parquet-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

const STRS: [&str; 6] = ["b", "a", "é", "Z", "z10", "z9"];
/// Negative, zero, the largest `DECIMAL(38,2)`, past an `i64` and odd cents.
const CENTS: [i128; 6] = [
    -12_345,
    0,
    10i128.pow(38) - 1,
    -1,
    i64::MAX as i128 * 1_000 + 7,
    -(10i128.pow(38) - 1),
];
/// Before 1970 (with milliseconds), just before the epoch, the epoch, leap day 2024.
const TIMES: [i64; 6] = [
    -31_536_000_001,
    -1,
    0,
    1_709_164_800_123,
    -2_208_988_800_000,
    4_102_444_800_999,
];
const NUMBERS: [f64; 6] = [0.5, -1.25, 500_000.0, 0.8, 0.0, 1e-4];

/// A value of `kind` for seed `s`; nullable ratio columns are null for every third seed.
fn value(kind: ColKind, nullable: bool, s: usize) -> Value {
    match kind {
        ColKind::String => Value::Str(Str::from(STRS[s % 6])),
        ColKind::Integer => Value::Int((s as i64 - 3) * 7),
        ColKind::Money => Value::Money(CENTS[s % 6]),
        ColKind::Time => Value::Time(TIMES[s % 6]),
        ColKind::Ratio(_) if nullable && s.is_multiple_of(3) => Value::Null,
        ColKind::Ratio(p) => Value::Ratio([12_345, -5, 10_000, 1, 7, 999_999][s % 6], p),
        ColKind::Number => Value::Number(NUMBERS[s % 6]),
        ColKind::Boolean => Value::Bool(s.is_multiple_of(2)),
    }
}

/// Six rows with unique keys, given in an order that is not the key order: the first key column
/// repeats in pairs so that later key columns decide.
fn sample_rows(def: &ViewDef) -> Vec<Vec<Value>> {
    (0..6)
        .map(|i| {
            def.columns
                .iter()
                .enumerate()
                .map(|(c, col)| {
                    let seed = match c {
                        0 if def.key_len > 1 => i / 2,
                        1 if def.key_len > 1 => 5 - i,
                        0 => 5 - i,
                        _ => i,
                    };
                    value(col.kind, col.nullable, seed)
                })
                .collect()
        })
        .collect()
}

/// The key order, written independently of the sink: strings by UTF-8 bytes, numbers by value.
fn cmp_value(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Int(x), Value::Int(y)) | (Value::Time(x), Value::Time(y)) => x.cmp(y),
        (Value::Money(x), Value::Money(y)) => x.cmp(y),
        _ => panic!("not a key value: {a:?} {b:?}"),
    }
}

fn sorted_by_key(def: &ViewDef, mut rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    rows.sort_by(|a, b| {
        (0..def.key_len)
            .map(|c| cmp_value(&a[c], &b[c]))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    rows
}

/// The `f64` a ratio should read back as, parsed from its decimal text.
fn ratio_f64(v: i64, p: u32) -> f64 {
    let digits = format!("{:0>width$}", v.unsigned_abs(), width = p as usize + 1);
    let (int, frac) = digits.split_at(digits.len() - p as usize);
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{int}.{frac}0").parse().unwrap()
}

/// Reads a snapshot back: its batches, the file's key-value metadata and the Arrow schema.
fn read_back(
    path: &Path,
) -> (
    RecordBatch,
    Vec<(String, Option<String>)>,
    arrow::datatypes::SchemaRef,
) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    for rg in builder.metadata().row_groups() {
        for col in rg.columns() {
            assert!(
                matches!(col.compression(), Compression::ZSTD(_)),
                "{}: {:?}",
                path.display(),
                col.compression()
            );
        }
    }
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
    let batch = arrow::compute::concat_batches(&schema, &batches).unwrap();
    (batch, kv, schema)
}

/// The value at `row` of an Arrow column read as the column's kind.
fn read_value(array: &dyn Array, kind: ColKind, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    let any = array.as_any();
    match kind {
        ColKind::String => Value::Str(Str::from(
            any.downcast_ref::<StringArray>().unwrap().value(row),
        )),
        ColKind::Integer => Value::Int(any.downcast_ref::<Int64Array>().unwrap().value(row)),
        ColKind::Money => {
            let d = any.downcast_ref::<Decimal128Array>().unwrap();
            assert_eq!((d.precision(), d.scale()), (38, 2));
            Value::Money(d.value(row))
        }
        ColKind::Time => Value::Time(
            any.downcast_ref::<TimestampMillisecondArray>()
                .unwrap()
                .value(row),
        ),
        ColKind::Ratio(_) | ColKind::Number => {
            Value::Number(any.downcast_ref::<Float64Array>().unwrap().value(row))
        }
        ColKind::Boolean => Value::Bool(any.downcast_ref::<BooleanArray>().unwrap().value(row)),
    }
}

/// What a written value reads back as: ratios become their decimal as a float.
fn as_read(v: &Value) -> Value {
    match v {
        Value::Ratio(n, p) => Value::Number(ratio_f64(*n, *p)),
        v => v.clone(),
    }
}

#[test]
fn every_view_round_trips_with_contract_types() {
    let dir = temp_dir("all-views");
    let as_of = 1_709_337_600_000u64;
    for def in ALL_VIEWS {
        let rows = sample_rows(&def);
        let path = write_snapshot(&dir, &def, &rows, as_of).unwrap();
        assert_eq!(path, dir.join(format!("{}.parquet", def.name)));
        assert_eq!(path, snapshot_path(&dir, &def));
        let (batch, kv, schema) = read_back(&path);

        let as_of_kv: Vec<_> = kv.iter().filter(|(k, _)| k == AS_OF_KEY).collect();
        assert_eq!(as_of_kv.len(), 1, "{}: {kv:?}", def.name);
        assert_eq!(as_of_kv[0].1.as_deref(), Some("1709337600000"));
        assert_eq!(
            schema.metadata().get(AS_OF_KEY).map(String::as_str),
            Some("1709337600000"),
            "{}",
            def.name
        );

        assert_eq!(schema.fields().len(), def.columns.len());
        for (field, col) in schema.fields().iter().zip(def.columns) {
            assert_eq!(field.name(), col.name);
            assert_eq!(
                field.is_nullable(),
                col.nullable,
                "{}.{}",
                def.name,
                col.name
            );
            let want = match col.kind {
                ColKind::String => DataType::Utf8,
                ColKind::Integer => DataType::Int64,
                ColKind::Money => DataType::Decimal128(38, 2),
                ColKind::Time => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                ColKind::Ratio(_) | ColKind::Number => DataType::Float64,
                ColKind::Boolean => DataType::Boolean,
            };
            assert_eq!(field.data_type(), &want, "{}.{}", def.name, col.name);
        }

        let want = sorted_by_key(&def, rows);
        assert_eq!(batch.num_rows(), want.len(), "{}", def.name);
        for (r, want_row) in want.iter().enumerate() {
            for (c, col) in def.columns.iter().enumerate() {
                let got = read_value(batch.column(c).as_ref(), col.kind, r);
                assert_eq!(
                    got,
                    as_read(&want_row[c]),
                    "{} row {r} column {}",
                    def.name,
                    col.name
                );
            }
        }
    }
    // only the snapshots are left: no temporary files
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want: Vec<String> = ALL_VIEWS
        .iter()
        .map(|v| format!("{}.parquet", v.name))
        .collect();
    want.sort();
    assert_eq!(names, want);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nullable_ratio_columns_hold_nulls_and_negative_money_is_exact() {
    let def = rows::INVENTORY;
    let rows = vec![
        vec![
            Value::Str("P2".into()),
            Value::Int(5),
            Value::Int(0),
            Value::Null,
            Value::Bool(false),
        ],
        vec![
            Value::Str("P1".into()),
            Value::Int(3),
            Value::Int(7),
            Value::Ratio(300, 2),
            Value::Bool(true),
        ],
    ];
    let dir = temp_dir("inventory");
    let path = write_snapshot(&dir, &def, &rows, 0).unwrap();
    let (batch, kv, _) = read_back(&path);
    assert!(kv.contains(&(AS_OF_KEY.to_string(), Some("0".to_string()))));
    let ids = batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!((ids.value(0), ids.value(1)), ("P1", "P2"));
    let cover = batch
        .column(3)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!(cover.value(0), 3.0);
    assert!(cover.is_null(1));
    assert_eq!(cover.null_count(), 1);

    let def = rows::RFM_SEGMENTS;
    let rows = vec![vec![
        Value::Str("loyal".into()),
        Value::Int(2),
        Value::Money(-105),
    ]];
    let path = write_snapshot(&dir, &def, &rows, 42).unwrap();
    let (batch, _, _) = read_back(&path);
    let money = batch
        .column(2)
        .as_any()
        .downcast_ref::<Decimal128Array>()
        .unwrap();
    assert_eq!(money.value_as_string(0), "-1.05");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_view_writes_a_file_with_its_schema() {
    let dir = temp_dir("empty");
    let path = write_snapshot(&dir, &rows::FRAUD_ALERTS, &[], 7).unwrap();
    let (batch, kv, schema) = read_back(&path);
    assert_eq!(batch.num_rows(), 0);
    assert_eq!(schema.fields().len(), rows::FRAUD_ALERTS.columns.len());
    assert!(kv.contains(&(AS_OF_KEY.to_string(), Some("7".to_string()))));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_new_snapshot_replaces_the_old_one_and_the_directory_is_created() {
    let dir = temp_dir("replace").join("nested").join("out");
    let def = rows::DATA_QUALITY;
    let row = |n| {
        vec![
            Value::Str("transactions".into()),
            Value::Str("accepted".into()),
            Value::Int(n),
        ]
    };
    write_snapshot(&dir, &def, &[row(1)], 1000).unwrap();
    let path = write_snapshot(&dir, &def, &[row(2)], 2000).unwrap();
    let (batch, kv, _) = read_back(&path);
    assert!(kv.contains(&(AS_OF_KEY.to_string(), Some("2000".to_string()))));
    let n = batch
        .column(2)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(n.values().to_vec(), vec![2]);
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);

    // a rejected snapshot leaves the previous one in place
    let err = write_snapshot(&dir, &def, &[vec![Value::Int(1)]], 3000).unwrap_err();
    assert!(
        matches!(
            err,
            SinkError::RowWidth {
                row: 0,
                found: 1,
                expected: 3,
                ..
            }
        ),
        "{err}"
    );
    let (_, kv, _) = read_back(&path);
    assert!(kv.contains(&(AS_OF_KEY.to_string(), Some("2000".to_string()))));
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    fs::remove_dir_all(temp_dir("replace")).unwrap();
}

#[test]
fn an_unwritable_directory_is_an_io_error_naming_the_path() {
    let base = temp_dir("unwritable");
    let not_a_dir = base.join("file");
    fs::write(&not_a_dir, b"x").unwrap();
    let err = write_snapshot(&not_a_dir, &rows::FUNNEL_DAILY, &[], 1).unwrap_err();
    assert!(matches!(err, SinkError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&not_a_dir.display().to_string()),
        "{err}"
    );
    fs::remove_dir_all(&base).unwrap();
}

fn bad_value(def: &ViewDef, rows: &[Vec<Value>]) -> (usize, &'static str, String) {
    match rows_to_batch(def, rows) {
        Err(e @ SinkError::BadValue { row, column, .. }) => (row, column, e.to_string()),
        other => panic!("expected a bad value, got {other:?}"),
    }
}

#[test]
fn values_are_checked_against_their_columns() {
    let def = rows::RFM_SEGMENTS;
    let ok = |seg: &str| vec![Value::Str(seg.into()), Value::Int(1), Value::Money(100)];
    assert_eq!(
        rows_to_batch(&def, &[ok("new"), ok("loyal")])
            .unwrap()
            .num_rows(),
        2
    );

    let mut wrong = ok("new");
    wrong[2] = Value::Int(100);
    let (row, column, msg) = bad_value(&def, &[ok("loyal"), wrong]);
    assert_eq!((row, column), (1, "monetary"));
    assert!(
        msg.contains("rfm_segments") && msg.contains("row 1") && msg.contains("monetary"),
        "{msg}"
    );
    assert!(msg.contains("expected money"), "{msg}");

    // null only where the column is nullable
    let mut null = ok("new");
    null[1] = Value::Null;
    assert_eq!(bad_value(&def, &[null]).1, "customers");

    // money must fit DECIMAL(38,2)
    let mut big = ok("new");
    big[2] = Value::Money(10i128.pow(38));
    assert_eq!(bad_value(&def, &[big]).1, "monetary");
    let mut big = ok("new");
    big[2] = Value::Money(i128::MIN);
    assert_eq!(bad_value(&def, &[big]).1, "monetary");

    // ratios need their column's places; numbers must be finite
    let cohorts = |ret: Value| {
        vec![
            Value::Time(0),
            Value::Int(0),
            Value::Int(2),
            Value::Int(1),
            ret,
        ]
    };
    assert!(rows_to_batch(&rows::COHORTS, &[cohorts(Value::Ratio(5000, 4))]).is_ok());
    assert!(rows_to_batch(&rows::COHORTS, &[cohorts(Value::Null)]).is_ok());
    assert_eq!(
        bad_value(&rows::COHORTS, &[cohorts(Value::Ratio(50, 2))]).1,
        "retention"
    );
    assert_eq!(
        bad_value(&rows::COHORTS, &[cohorts(Value::Number(0.5))]).1,
        "retention"
    );
    let mut cohort_time = cohorts(Value::Null);
    cohort_time[0] = Value::Int(0);
    assert_eq!(bad_value(&rows::COHORTS, &[cohort_time]).1, "cohort_month");

    let alert = |m: f64| {
        vec![
            Value::Str("amount".into()),
            Value::Str("U1".into()),
            Value::Str("U1".into()),
            Value::Number(m),
            Value::Number(500_000.0),
        ]
    };
    assert!(rows_to_batch(&rows::FRAUD_ALERTS, &[alert(600_000.0)]).is_ok());
    assert_eq!(
        bad_value(&rows::FRAUD_ALERTS, &[alert(f64::NAN)]).1,
        "measure"
    );
    assert_eq!(
        bad_value(&rows::FRAUD_ALERTS, &[alert(f64::INFINITY)]).1,
        "measure"
    );

    let mut inv = vec![
        Value::Str("P1".into()),
        Value::Int(1),
        Value::Int(1),
        Value::Null,
        Value::Str("true".into()),
    ];
    assert_eq!(
        bad_value(&rows::INVENTORY, std::slice::from_ref(&inv)).1,
        "low_stock"
    );
    inv[4] = Value::Bool(true);
    inv[0] = Value::Int(1);
    assert_eq!(bad_value(&rows::INVENTORY, &[inv]).1, "product_id");

    // a row of the wrong width
    let err = rows_to_batch(&def, &[ok("new"), vec![]]).unwrap_err();
    assert!(
        matches!(
            err,
            SinkError::RowWidth {
                row: 1,
                found: 0,
                expected: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn schema_follows_the_view_definition() {
    let s = arrow_schema(&rows::REVENUE_DAILY);
    let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "dimension",
            "value",
            "bucket",
            "currency",
            "orders",
            "items",
            "gross",
            "discount",
            "net",
            "cost",
            "margin",
            "unmatched_lines"
        ]
    );
    assert_eq!(s.field(6).data_type(), &DataType::Decimal128(38, 2));
    assert!(!s.field(6).is_nullable());
    let p = arrow_schema(&rows::PRODUCT_PERFORMANCE);
    let conv = p.field_with_name("conversion").unwrap();
    assert_eq!(conv.data_type(), &DataType::Float64);
    assert!(conv.is_nullable());
    assert!(s.metadata().is_empty());
}

#[test]
fn ratio_text_helper_is_exact() {
    assert_eq!(ratio_f64(12_345, 4), 1.2345);
    assert_eq!(ratio_f64(-5, 4), -0.0005);
    assert_eq!(ratio_f64(300, 2), 3.0);
    assert_eq!(ratio_f64(999_999, 2), 9999.99);
}
