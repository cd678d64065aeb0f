//! Every generated record is what the generator meant it to be: valid records pass the
//! contract's validation, bad ones are rejected with their intended reason (every reason
//! appears), duplicates and late records come at their rates.

mod generator_support;

use generator_support::{all_items, noisy, replay, verdict};
use shopdiff_connectors::generator::{GenStream, Note};
use shopdiff_schemas::records::{parse_behavior, parse_transaction};
use shopdiff_schemas::tables::parse_row;
use shopdiff_schemas::time::Ms;
use shopdiff_schemas::{Reason, Table};
use std::collections::{BTreeSet, HashMap};

#[test]
fn every_record_is_what_it_was_meant_to_be() {
    let (g, items) = all_items(&noisy(40_000));
    let mut reasons: HashMap<(GenStream, Reason), BTreeSet<&'static str>> = HashMap::new();
    let mut sent = Ms::MIN;
    for it in &items {
        assert!(it.sent >= sent, "delivery times go back: {}", it.json);
        sent = it.sent;
        match (it.note, verdict(it)) {
            (Note::Bad(want), Err(got)) => assert_eq!(want, got, "{}", it.json),
            (Note::Bad(want), Ok(())) => panic!("meant as {want} but accepted: {}", it.json),
            (_, Err(got)) => panic!("meant as valid but {got}: {}", it.json),
            (_, Ok(())) => {}
        }
        if let Note::Bad(r) = it.note {
            let field = match it.stream {
                GenStream::Transactions => parse_transaction(&it.json).err().map(|e| e.field),
                GenStream::Behavior => parse_behavior(&it.json).err().map(|e| e.field),
                GenStream::Change => Some("row"),
            };
            reasons
                .entry((it.stream, r))
                .or_default()
                .insert(field.unwrap_or(""));
        }
    }
    use Reason::*;
    for r in [MalformedJson, MissingField, BadType, BadTimestamp, BadValue] {
        assert!(
            reasons.contains_key(&(GenStream::Transactions, r)),
            "transactions lack {r}"
        );
    }
    for r in [MalformedJson, MissingField, BadType, BadTimestamp] {
        assert!(
            reasons.contains_key(&(GenStream::Behavior, r)),
            "behavior lacks {r}"
        );
    }
    let tx = |r| &reasons[&(GenStream::Transactions, r)];
    assert_eq!(
        tx(BadValue).iter().copied().collect::<Vec<_>>(),
        ["currency", "discount_applied", "price", "quantity"]
    );
    for f in [
        "transaction_id",
        "product_id",
        "user_id",
        "timestamp",
        "price",
        "quantity",
        "currency",
    ] {
        assert!(tx(MissingField).contains(f), "no missing {f}");
    }
    for f in [
        "quantity",
        "price",
        "user_id",
        "timestamp",
        "discount_applied",
    ] {
        assert!(tx(BadType).contains(f), "no bad type of {f}");
    }
    // the three kinds of bad timestamps and the lowercase currency, by their text
    let bad_tx: Vec<&str> = items
        .iter()
        .filter(|i| i.stream == GenStream::Transactions && matches!(i.note, Note::Bad(_)))
        .map(|i| i.json.as_str())
        .collect();
    for needle in [
        " ",
        "-02-30",
        "\"quantity\":\"",
        ".0,\"discount",
        "\"currency\":\"usd\"",
    ] {
        let found = bad_tx.iter().any(|j| match needle {
            " " => {
                j.contains("\"timestamp\":\"")
                    && j.split("\"timestamp\":\"")
                        .nth(1)
                        .is_some_and(|t| t[..19].contains(' '))
            }
            "-02-30" => ["-02-30", "-04-31", "-13-01", "-06-31"]
                .iter()
                .any(|d| j.contains(d)),
            ".0,\"discount" => {
                j.contains(".0,\"discount")
                    && j.contains("\"quantity\":")
                    && j.split("\"quantity\":")
                        .nth(1)
                        .is_some_and(|q| q.split(',').next().is_some_and(|q| q.ends_with(".0")))
            }
            "\"currency\":\"usd\"" => ["usd", "eur", "gbp", "cad"]
                .iter()
                .any(|c| j.contains(&format!("\"currency\":\"{c}\""))),
            _ => j.contains(needle),
        });
        assert!(found, "no bad transaction with {needle:?}");
    }
    // tables: valid initial rows parse, bad ones are rejected with their reason
    for table in Table::ALL {
        let lines = g.tables().get(table);
        assert!(
            lines.iter().any(|l| matches!(l.note, Note::Bad(_))),
            "{table:?} has no invalid row"
        );
        for l in lines {
            match (l.note, parse_row(table, &l.json)) {
                (Note::Bad(want), Err(got)) => assert_eq!(want, got.reason, "{}", l.json),
                (Note::Bad(_), Ok(_)) => panic!("invalid row accepted: {}", l.json),
                (_, Err(got)) => panic!("valid row rejected ({got}): {}", l.json),
                (_, Ok(row)) => assert_eq!(row.table(), table),
            }
        }
    }
    let bad_changes = items
        .iter()
        .filter(|i| i.stream == GenStream::Change && matches!(i.note, Note::Bad(_)))
        .count();
    assert!(bad_changes >= 3, "{bad_changes} invalid changes");
}

#[test]
fn duplicates_and_late_records_at_their_rates() {
    let cfg = noisy(60_000);
    let (_, items) = all_items(&cfg);
    let r = replay(&items);
    let total = cfg.records as f64;
    let dups = (r.duplicates[0] + r.duplicates[1]) as f64 / total;
    let late = (r.late[0] + r.late[1]) as f64 / total;
    let bad = items
        .iter()
        .filter(|i| i.stream != GenStream::Change && matches!(i.note, Note::Bad(_)))
        .count() as f64
        / total;
    assert!(
        (dups / cfg.duplicate_rate - 1.0).abs() < 0.25,
        "duplicates {dups}"
    );
    assert!((late / cfg.late_rate - 1.0).abs() < 0.3, "late {late}");
    assert!((bad / cfg.bad_rate - 1.0).abs() < 0.25, "bad {bad}");
    assert!(r.duplicates[0] > 0 && r.late[0] > 0 && r.duplicates[1] > 0 && r.late[1] > 0);
    let changed = items
        .iter()
        .filter(|i| i.note == Note::Duplicate { changed: true })
        .count();
    assert!(changed > 0 && changed * 2 < (r.duplicates[0] + r.duplicates[1]) as usize);
    // out of order by up to 2.5 s (a handful more at the very end, when late ones flush)
    assert!(
        r.behind_over_2500 <= 20,
        "{} records 2.5-5 s behind",
        r.behind_over_2500
    );
    let disordered = items
        .windows(2)
        .filter(|w| {
            w[0].stream == w[1].stream && w[1].ts + 1_000 < w[0].ts && w[1].note == Note::Valid
        })
        .count();
    assert!(disordered > 100, "{disordered}");
}
