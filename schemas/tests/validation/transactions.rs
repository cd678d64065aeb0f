//! Transaction lines (contract 2 and 5a).

use super::{q, set, set_all, truncated};
use shopdiff_schemas::records::{parse_transaction, Line};
use shopdiff_schemas::Reason::{self, *};

/// `T00000001` of the sample: a discounted line with every optional object present.
const TX: &str = r#"{"transaction_id":"T00000001","user_id":"U000072","session_id":"S00000001","product_id":"P00006","product_name":"Monarch Toys 6","category_id":"C07","category_name":"Toys","subcategory":"Puzzles","brand":"Pied Piper","price":53.0,"quantity":1,"discount_applied":7.95,"payment_method":"credit_card","payment_provider":"adyen","currency":"USD","timestamp":"2024-02-29T00:33:23.473Z","user_location":{"country":"US","state":"TX","city":"Austin","zip_code":"73301","latitude":30.2672,"longitude":-97.7431},"device_info":{"type":"mobile","os":"iOS","browser":"Safari","user_agent":"Mozilla/5.0 (iOS) Safari"},"marketing_attribution":{"campaign_id":"cmp023","channel":"organic","referrer":null}}"#;

/// `TX`'s `timestamp` in UTC milliseconds.
const TX_MS: i64 = 1_709_166_803_473;

const REQUIRED: [&str; 7] = [
    "transaction_id",
    "product_id",
    "user_id",
    "timestamp",
    "price",
    "quantity",
    "currency",
];

#[track_caller]
fn ok(text: &str) -> Line {
    parse_transaction(text).unwrap_or_else(|r| panic!("rejected ({r}): {text}"))
}

#[track_caller]
fn rejects(text: &str, reason: Reason, field: &str) {
    match parse_transaction(text) {
        Ok(line) => panic!("accepted {line:?}, expected {reason} ({field}): {text}"),
        Err(r) => assert_eq!(
            (r.reason, r.field),
            (reason, field),
            "expected {reason} ({field}): {text}"
        ),
    }
}

/// The reason alone (cases with several defects, where only the reason is specified).
fn reason(text: &str) -> Option<Reason> {
    parse_transaction(text).err().map(|r| r.reason)
}

#[test]
fn sample_line_is_accepted_with_its_fields() {
    let l = ok(TX);
    assert_eq!(l.transaction_id, "T00000001");
    assert_eq!(l.product_id, "P00006");
    assert_eq!(l.user_id, "U000072");
    assert_eq!(l.session_id.as_deref(), Some("S00000001"));
    assert_eq!(l.ts, TX_MS);
    assert_eq!((l.price, l.quantity, l.discount), (5300, 1, 795));
    assert_eq!((l.gross(), l.net()), (5300, 4505));
    assert_eq!(l.currency, "USD");
    assert_eq!(l.category_id, "C07");
    assert_eq!(l.brand, "Pied Piper");
    assert_eq!(l.country, "US");
    assert_eq!(l.payment_method, "credit_card");
    assert_eq!(l.channel, "organic");
    assert_eq!(l.device_type, "mobile");
}

#[test]
fn malformed_json() {
    let not_json = [
        String::new(),
        "hello".to_string(),
        truncated(TX, 1).to_string(),
        truncated(TX, 40).to_string(),
        TX[..TX.len() / 2].to_string(),
        format!("{TX} x"),
        format!("{TX}{TX}"),
        TX.replacen(',', ";", 1),
        set(TX, "price", Some("NaN")),
        set(TX, "price", Some("Infinity")),
        set(TX, "price", Some("-Infinity")),
        set(TX, "discount_applied", Some("NaN")),
        set(TX, "user_location.latitude", Some("NaN")),
        set(TX, "price", Some("053.0")),
        set(TX, "price", Some("+53")),
    ];
    let not_object = [
        format!("[{TX}]"),
        "[1,2]".to_string(),
        "[]".to_string(),
        "\"txn\"".to_string(),
        "42".to_string(),
        "53.0".to_string(),
        "true".to_string(),
        "null".to_string(),
    ];
    for text in not_json.iter().chain(&not_object) {
        rejects(text, MalformedJson, "");
    }
}

#[test]
fn required_fields_absent_or_null_are_missing() {
    for field in REQUIRED {
        rejects(&set(TX, field, None), MissingField, field);
        rejects(&set(TX, field, Some("null")), MissingField, field);
    }
    rejects(r#"{}"#, MissingField, "transaction_id");
}

#[test]
fn checks_run_in_contract_order() {
    // malformed beats everything
    let broken = set_all(TX, &[("user_id", None), ("price", Some("NaN"))]);
    assert_eq!(reason(&broken), Some(MalformedJson));
    // missing beats bad_type, whichever field comes first
    for (absent, wrong) in [
        ("user_id", ("price", "\"53.0\"")),
        ("currency", ("transaction_id", "1")),
        ("quantity", ("timestamp", "1709166803473")),
    ] {
        let text = set_all(TX, &[(absent, None), (wrong.0, Some(wrong.1))]);
        rejects(&text, MissingField, absent);
    }
    // bad_type beats bad_timestamp
    let text = set_all(
        TX,
        &[
            ("timestamp", Some("\"yesterday\"")),
            ("quantity", Some("\"2\"")),
        ],
    );
    rejects(&text, BadType, "quantity");
    let text = set_all(
        TX,
        &[
            ("timestamp", Some("\"yesterday\"")),
            ("discount_applied", Some("\"1\"")),
        ],
    );
    rejects(&text, BadType, "discount_applied");
    // bad_timestamp beats bad_value
    for (field, raw) in [
        ("price", "-1"),
        ("quantity", "0"),
        ("discount_applied", "-1"),
        ("currency", "\"usd\""),
    ] {
        let text = set_all(
            TX,
            &[
                ("timestamp", Some("\"2024-02-29 00:33:23Z\"")),
                (field, Some(raw)),
            ],
        );
        rejects(&text, BadTimestamp, "timestamp");
    }
}

#[test]
fn wrong_types_are_bad_type() {
    for (field, raw) in [
        ("quantity", "2.0"),
        ("quantity", "2e0"),
        ("quantity", "\"2\""),
        ("quantity", "true"),
        ("quantity", "[2]"),
        ("price", "\"53.0\""),
        ("price", "true"),
        ("price", "[53.0]"),
        ("price", "{\"amount\":53.0}"),
        ("transaction_id", "1"),
        ("product_id", "6"),
        ("user_id", "72"),
        ("user_id", "{\"id\":\"U000072\"}"),
        ("currency", "840"),
        ("timestamp", "1709166803473"),
        ("timestamp", "1709166803.473"),
        ("discount_applied", "\"7.95\""),
        ("discount_applied", "true"),
        ("discount_applied", "[]"),
    ] {
        rejects(&set(TX, field, Some(raw)), BadType, field);
    }
}

#[test]
fn optional_fields_of_another_type_count_as_absent() {
    for raw in [Some("5"), Some("null"), Some("{}"), None] {
        assert_eq!(ok(&set(TX, "session_id", raw)).session_id, None, "{raw:?}");
    }
    // dimensions: missing, null (or not a string) are `none`
    for path in [
        "category_id",
        "brand",
        "payment_method",
        "user_location.country",
        "device_info.type",
        "marketing_attribution.channel",
    ] {
        for raw in [None, Some("null"), Some("7")] {
            let l = ok(&set(TX, path, raw));
            let got = [
                &l.category_id,
                &l.brand,
                &l.payment_method,
                &l.country,
                &l.device_type,
                &l.channel,
            ]
            .iter()
            .filter(|v| v.as_str() == "none")
            .count();
            assert_eq!(got, 1, "{path} = {raw:?}: {l:?}");
        }
    }
    for raw in [None, Some("null"), Some("\"organic\""), Some("[]")] {
        let l = ok(&set(TX, "marketing_attribution", raw));
        assert_eq!(l.channel, "none", "{raw:?}");
    }
    assert_eq!(ok(&set(TX, "user_location", None)).country, "none");
    assert_eq!(
        ok(&set(TX, "device_info", Some("null"))).device_type,
        "none"
    );
    // other optional fields are not type-checked
    for (field, raw) in [
        ("product_name", "6"),
        ("subcategory", "null"),
        ("payment_provider", "[1]"),
        ("user_location.latitude", "\"north\""),
    ] {
        ok(&set(TX, field, Some(raw)));
    }
    ok(&set(TX, "subcategory", None));
}

#[test]
fn discount_absent_or_null_is_zero() {
    for raw in [None, Some("null")] {
        let l = ok(&set(TX, "discount_applied", raw));
        assert_eq!((l.discount, l.net()), (0, 5300), "{raw:?}");
    }
    assert_eq!(ok(&set(TX, "discount_applied", Some("0"))).discount, 0);
}

#[test]
fn timestamps() {
    let ts = |raw: &str| ok(&set(TX, "timestamp", Some(&q(raw)))).ts;
    assert_eq!(ts("2024-02-29T00:33:23.473Z"), TX_MS);
    assert_eq!(ts("2024-02-29T02:33:23.473+02:00"), TX_MS);
    assert_eq!(ts("2024-02-28T19:33:23.473-05:00"), TX_MS);
    assert_eq!(ts("2024-02-29T00:33:23Z"), TX_MS - 473);
    // fractions of 1 to 9 digits, floored to the millisecond
    let whole = TX_MS - 473;
    for (frac, ms) in [
        ("4", 400),
        ("47", 470),
        ("473", 473),
        ("4739", 473),
        ("47399", 473),
        ("473999", 473),
        ("4739999", 473),
        ("47399999", 473),
        ("473999999", 473),
        ("000000001", 0),
        ("999999999", 999),
    ] {
        assert_eq!(
            ts(&format!("2024-02-29T00:33:23.{frac}Z")),
            whole + ms,
            "{frac}"
        );
    }
    // before 1970 the instant is floored too
    assert_eq!(ts("1969-12-31T23:59:59.9995Z"), -1);
    assert_eq!(ts("1969-12-31T19:00:00-05:00"), 0);
    for bad in [
        "2024-02-29T00:33:23.473",
        "2024-02-29T00:33:23",
        "2024-02-29 00:33:23.473Z",
        "2023-02-29T00:33:23.473Z",
        "2024-02-30T00:33:23.473Z",
        "2024-13-01T00:00:00Z",
        "2024-02-29T25:00:00Z",
        "2024-02-29",
        "2024-02-29T00:33:23.473+0200",
        "",
        "yesterday",
    ] {
        rejects(
            &set(TX, "timestamp", Some(&q(bad))),
            BadTimestamp,
            "timestamp",
        );
    }
}

#[test]
fn value_rules() {
    let with = |changes: &[(&str, Option<&str>)]| set_all(TX, changes);
    rejects(&with(&[("price", Some("-0.01"))]), BadValue, "price");
    rejects(&with(&[("price", Some("-53.0"))]), BadValue, "price");
    // signs are checked on the exact decimal, before rounding: -0.004 is below zero
    rejects(&with(&[("price", Some("-0.005"))]), BadValue, "price");
    rejects(
        &with(&[("price", Some("-0.004")), ("discount_applied", None)]),
        BadValue,
        "price",
    );
    rejects(
        &with(&[("discount_applied", Some("-0.004"))]),
        BadValue,
        "discount_applied",
    );
    rejects(
        &with(&[("discount_applied", None), ("price", Some("-1e-30"))]),
        BadValue,
        "price",
    );
    // minus zero is zero
    for z in ["-0", "-0.0", "-0e5", "-0.000E-3"] {
        let l = ok(&with(&[("price", Some(z)), ("discount_applied", Some(z))]));
        assert_eq!((l.price, l.discount), (0, 0), "{z}");
    }
    let free = ok(&with(&[
        ("price", Some("0")),
        ("discount_applied", Some("0")),
    ]));
    assert_eq!((free.price, free.net()), (0, 0));
    rejects(&with(&[("quantity", Some("0"))]), BadValue, "quantity");
    rejects(&with(&[("quantity", Some("-1"))]), BadValue, "quantity");
    assert_eq!(ok(&with(&[("quantity", Some("3"))])).gross(), 15_900);
    rejects(
        &with(&[("discount_applied", Some("-0.01"))]),
        BadValue,
        "discount_applied",
    );
    // discount up to price * quantity, compared in cents
    let two = |d: &str| with(&[("quantity", Some("2")), ("discount_applied", Some(d))]);
    let all_off = ok(&two("106.0"));
    assert_eq!(
        (all_off.gross(), all_off.discount, all_off.net()),
        (10_600, 10_600, 0)
    );
    rejects(&two("106.01"), BadValue, "discount_applied");
    ok(&two("106.004")); // rounds to 106.00
    rejects(&two("106.005"), BadValue, "discount_applied"); // rounds to 106.01
    let cents = |p: &str, d: &str| with(&[("price", Some(p)), ("discount_applied", Some(d))]);
    assert_eq!(ok(&cents("1.005", "1.01")).net(), 0); // both 101 cents
    rejects(&cents("1.004", "1.005"), BadValue, "discount_applied"); // 100 < 101
    for cur in ["EUR", "GBP", "CAD", "JPY"] {
        assert_eq!(ok(&with(&[("currency", Some(&q(cur)))])).currency, cur);
    }
    for cur in ["usd", "Usd", "US", "USDT", "U$D", "US1", "", " USD", "ÜSD"] {
        rejects(&with(&[("currency", Some(&q(cur)))]), BadValue, "currency");
    }
}

#[test]
fn money_and_quantity_bounds_in_any_notation() {
    let with = |changes: &[(&str, Option<&str>)]| set_all(TX, changes);
    // (a huge exponent last: `set` parses the record it changes)
    let price = |p: &str| with(&[("discount_applied", None), ("price", Some(p))]);
    // up to 10^12 cents (10^10 units of money) is accepted, above it is bad_value
    assert_eq!(ok(&price("10000000000")).price, 1_000_000_000_000);
    assert_eq!(ok(&price("1e10")).price, 1_000_000_000_000);
    assert_eq!(ok(&price("10000000000.004")).price, 1_000_000_000_000);
    for big in [
        "10000000000.01",
        "10000000000.005",
        "1e11",
        "1000000000000000000000",
        "1e30",
        "1E+30",
        "100000000000000",
        "1e99999999999999999999",
        "1.0e400",
    ] {
        rejects(&price(big), BadValue, "price");
    }
    // tiny and huge negative exponents round to zero cents
    assert_eq!(ok(&price("1e-99999999999999999999")).price, 0);
    assert_eq!(ok(&price("5e-3")).price, 1);
    // discounts have the same bound (and stay below the line total)
    let disc = |q: &str, d: &str| {
        with(&[
            ("price", Some("10000000000")),
            ("quantity", Some(q)),
            ("discount_applied", Some(d)),
        ])
    };
    assert_eq!(ok(&disc("5", "1e10")).discount, 1_000_000_000_000);
    rejects(&disc("5", "1e11"), BadValue, "discount_applied");
    rejects(
        &disc("5", "1e99999999999999999999"),
        BadValue,
        "discount_applied",
    );
    // quantity up to 10^6
    let q = |q: &str| with(&[("discount_applied", None), ("quantity", Some(q))]);
    assert_eq!(ok(&q("1000000")).quantity, 1_000_000);
    rejects(&q("1000001"), BadValue, "quantity");
    rejects(&q("99999999999999999999999"), BadValue, "quantity");
    rejects(&q("-99999999999999999999999"), BadValue, "quantity");
    // the largest line: 10^12 cents times 10^6, exact in an i64
    let l = ok(&disc("1000000", "0"));
    assert_eq!(l.gross(), 1_000_000_000_000_000_000);
}

#[test]
fn money_is_rounded_half_away_from_zero_field_by_field() {
    let line = |p: &str, d: &str| {
        ok(&set_all(
            TX,
            &[("price", Some(p)), ("discount_applied", Some(d))],
        ))
    };
    let l = line("1.005", "0");
    assert_eq!(l.price, 101);
    assert_eq!(line("2.675", "0").price, 268);
    assert_eq!(line("53", "0").price, 5300);
    assert_eq!(line("1e2", "0").price, 10_000);
    assert_eq!(line("5.3E1", "0").price, 5300);
    assert_eq!(line("0.004", "0").price, 0);
    assert_eq!(line("53.0", "7.955").discount, 796);
    assert_eq!(line("53.0", "7.945").discount, 795);
    assert_eq!(line("53.0", "0.125").discount, 13);
    assert_eq!(line("53.0", "0.004").discount, 0);
    assert_eq!(line("53.0", "0.0049999999999999999").discount, 0);
    // each field is rounded on its own: 3 * 0.335 = 1.005 but 3 * 34 cents = 102
    let l = ok(&set_all(
        TX,
        &[
            ("price", Some("0.335")),
            ("quantity", Some("3")),
            ("discount_applied", Some("0.005")),
        ],
    ));
    assert_eq!((l.price, l.gross(), l.discount, l.net()), (34, 102, 1, 101));
}

#[test]
fn unknown_fields_are_ignored() {
    // (NaN last: `set` parses the record it changes)
    let text = set_all(
        TX,
        &[
            ("fraud_score", Some("\"high\"")),
            ("user_location.planet", Some("3")),
            ("extra", Some("[1,{\"a\":null},NaN]")),
        ],
    );
    // a NaN anywhere is still not JSON
    assert_eq!(reason(&text), Some(MalformedJson));
    let text = set_all(
        TX,
        &[
            ("fraud_score", Some("\"high\"")),
            ("extra", Some("[1,{\"a\":null},2.5e10]")),
            ("user_location.planet", Some("3")),
            ("Price", Some("\"x\"")),
        ],
    );
    assert_eq!(ok(&text), ok(TX));
}
