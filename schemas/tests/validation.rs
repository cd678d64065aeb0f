//! Validation of records and table rows against contract sections 2 and 5a: every rejection
//! reason, the order in which checks name it, and what accepted records carry.
//!
//! Each case starts from a realistic record copied from the public sample
//! (`checks/sample/*.jsonl`) and changes one field (two where the order of checks is tested).

#[path = "validation/behavior.rs"]
mod behavior;
#[path = "validation/tables.rs"]
mod tables;
#[path = "validation/transactions.rs"]
mod transactions;

use serde_json::{Map, Value as Json};

/// Marks where raw JSON text goes in a serialized record (a string no record contains).
const HOLE: &str = "\u{1}raw\u{1}";

/// The record `base` with the field at `path` (`"price"` or `"user_location.country"`) replaced
/// by the raw JSON text `raw`, or removed when `raw` is `None`. The raw text is inserted
/// verbatim, so `2.0`, `1.005` or `NaN` reach the parser exactly as written. A missing or
/// non-object parent is replaced by an object.
pub fn set(base: &str, path: &str, raw: Option<&str>) -> String {
    let mut doc: Map<String, Json> = serde_json::from_str(base).expect("base record is an object");
    let mut obj = &mut doc;
    let mut parts = path.split('.').peekable();
    while let Some(name) = parts.next() {
        if parts.peek().is_none() {
            match raw {
                Some(_) => obj.insert(name.to_string(), Json::String(HOLE.to_string())),
                None => obj.remove(name),
            };
            break;
        }
        let child = obj
            .entry(name.to_string())
            .or_insert_with(|| Json::Object(Map::new()));
        if !child.is_object() {
            *child = Json::Object(Map::new());
        }
        obj = child.as_object_mut().expect("an object");
    }
    let text = serde_json::to_string(&doc).expect("serializable");
    let hole = serde_json::to_string(HOLE).expect("serializable");
    match raw {
        Some(r) => {
            assert!(text.contains(&hole), "{path} was not set");
            text.replace(&hole, r)
        }
        None => text,
    }
}

/// `set` for several fields at once.
pub fn set_all(base: &str, changes: &[(&str, Option<&str>)]) -> String {
    changes
        .iter()
        .fold(base.to_string(), |text, (path, raw)| set(&text, path, *raw))
}

/// A JSON string literal.
pub fn q(s: &str) -> String {
    serde_json::to_string(s).expect("serializable")
}

/// The record with its last `n` bytes cut off (a truncated line).
pub fn truncated(base: &str, n: usize) -> &str {
    &base[..base.len() - n]
}

#[test]
fn set_inserts_raw_text_verbatim() {
    let t = set(r#"{"a":1,"b":{"c":2}}"#, "b.c", Some("1.005"));
    assert_eq!(t, r#"{"a":1,"b":{"c":1.005}}"#);
    assert_eq!(set(r#"{"a":1,"b":2}"#, "a", None), r#"{"b":2}"#);
    assert_eq!(set(r#"{"a":null}"#, "a.x", Some("5")), r#"{"a":{"x":5}}"#);
    assert_eq!(q("x\"y"), r#""x\"y""#);
}

#[test]
fn blank_lines_are_not_records() {
    use shopdiff_schemas::records::is_blank;
    for blank in ["", " ", "\t", "\r", "\r\n", "  \t \n"] {
        assert!(is_blank(blank), "{blank:?}");
    }
    for record in ["{}", " {} ", "x", "null"] {
        assert!(!is_blank(record), "{record:?}");
    }
}
