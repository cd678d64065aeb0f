//! Table rows and recorded changes (contract 1, 2 and 5a): values are checked against the DDL.

use super::{q, set, set_all, truncated};
use shopdiff_schemas::tables::{
    parse_change, parse_key, parse_row, ChangeError, ChangeOp, Customer, IpRep, Product, Table,
    TableRow,
};
use shopdiff_schemas::Reason::{self, *};
use shopdiff_schemas::Str;

/// `P00000` of the sample's `products.jsonl`.
const PRODUCT: &str = r#"{"product_id":"P00000","name":"Stark Electronics 0","description":"Electronics by Acme, Phones","category_id":"C01","category_name":"Electronics","subcategory":"Phones","brand":"Acme","price":2113.99,"cost":640.53,"inventory_count":12,"weight_kg":5.69,"dimensions_cm":"26x53x7","sku":"SKU-P00000-0140","status":"active","created_at":"2023-01-27T15:00:00Z","updated_at":"2024-01-02T12:00:00Z","tags":["bestseller","eco"],"supplier_id":"SUP003","rating_avg":1.47,"review_count":156}"#;
/// `P00001`: nulls in nullable columns.
const PRODUCT_NULLS: &str = r#"{"product_id":"P00001","name":"Pied Piper Home & Kitchen 1","description":"Home & Kitchen by Wonka, Cookware","category_id":"C02","category_name":"Home & Kitchen","subcategory":"Cookware","brand":"Wonka","price":2896.99,"cost":2169.15,"inventory_count":40,"weight_kg":6.15,"dimensions_cm":"29x60x12","sku":"SKU-P00001-6239","status":"active","created_at":"2023-06-10T08:00:00Z","updated_at":null,"tags":["new","sale","eco"],"supplier_id":"SUP026","rating_avg":null,"review_count":null}"#;
/// `U000000` of the sample's `customers.jsonl`.
const CUSTOMER: &str = r#"{"user_id":"U000000","email":"u000000@example.com","first_name":"FU000000","last_name":"LU000000","phone":"+15557821995","date_of_birth":"1964-01-16","gender":"other","registration_date":"2023-12-14T03:09:51.000Z","last_login":"2023-12-28T06:11:47.000Z","account_status":"active","customer_tier":"bronze","lifetime_value":null,"total_orders":41,"preferred_language":"fr","marketing_consent":false,"address":{"street":"113 Main St","city":"Chicago","state":"IL","zip_code":"60601","country":"US"},"preferences":{"newsletter":false,"categories":["C02","C05"]}}"#;
/// `CUSTOMER`'s `registration_date` in UTC milliseconds.
const REGISTERED_MS: i64 = 1_702_523_391_000;
/// A Tor exit of the sample's `ip_reputation.jsonl`.
const IP: &str = r#"{"ip_address":"185.220.101.7","risk_score":0.35,"country_risk":null,"is_vpn":false,"is_tor":true,"device_fingerprint":"fpc2543051","previous_fraud_incidents":null}"#;

const PRODUCT_NOT_NULL: [&str; 8] = [
    "product_id",
    "name",
    "category_id",
    "category_name",
    "brand",
    "price",
    "cost",
    "inventory_count",
];

#[track_caller]
fn ok(table: Table, text: &str) -> TableRow {
    parse_row(table, text).unwrap_or_else(|r| panic!("{} rejected ({r}): {text}", table.name()))
}

#[track_caller]
fn rejects(table: Table, text: &str, reason: Reason, field: &str) {
    match parse_row(table, text) {
        Ok(row) => panic!("accepted {row:?}, expected {reason} ({field}): {text}"),
        Err(r) => assert_eq!((r.reason, r.field), (reason, field), "{text}"),
    }
}

fn registered(text: &str) -> i64 {
    match ok(Table::Customers, text) {
        TableRow::Customer(c) => c.registration_date,
        other => panic!("not a customer: {other:?}"),
    }
}

#[test]
fn sample_rows_are_accepted() {
    let p = ok(Table::Products, PRODUCT);
    assert_eq!(
        p,
        TableRow::Product(Product {
            product_id: Str::from("P00000"),
            cost: 64_053,
            inventory_count: 12,
        })
    );
    assert_eq!((p.table(), p.key().as_str()), (Table::Products, "P00000"));
    ok(Table::Products, PRODUCT_NULLS);
    let c = ok(Table::Customers, CUSTOMER);
    assert_eq!(
        c,
        TableRow::Customer(Customer {
            user_id: Str::from("U000000"),
            registration_date: REGISTERED_MS,
        })
    );
    let i = ok(Table::IpReputation, IP);
    assert_eq!(
        i,
        TableRow::Ip(IpRep {
            ip_address: Str::from("185.220.101.7"),
            risk: Some(350_000),
            is_tor: true,
        })
    );
}

#[test]
fn malformed_rows() {
    for text in [
        String::new(),
        "[1]".to_string(),
        "\"P00000\"".to_string(),
        "null".to_string(),
        truncated(PRODUCT, 2).to_string(),
        set(PRODUCT, "weight_kg", Some("NaN")),
    ] {
        rejects(Table::Products, &text, MalformedJson, "");
    }
}

#[test]
fn not_null_columns_absent_or_null_are_missing() {
    for col in PRODUCT_NOT_NULL {
        rejects(Table::Products, &set(PRODUCT, col, None), MissingField, col);
        rejects(
            Table::Products,
            &set(PRODUCT, col, Some("null")),
            MissingField,
            col,
        );
    }
    for col in ["user_id", "email", "registration_date"] {
        rejects(
            Table::Customers,
            &set(CUSTOMER, col, None),
            MissingField,
            col,
        );
        rejects(
            Table::Customers,
            &set(CUSTOMER, col, Some("null")),
            MissingField,
            col,
        );
    }
    rejects(
        Table::IpReputation,
        &set(IP, "ip_address", None),
        MissingField,
        "ip_address",
    );
    rejects(
        Table::IpReputation,
        &set(IP, "ip_address", Some("null")),
        MissingField,
        "ip_address",
    );
    // nullable columns may be absent or null
    for col in [
        "description",
        "subcategory",
        "weight_kg",
        "tags",
        "created_at",
        "review_count",
    ] {
        ok(Table::Products, &set(PRODUCT, col, None));
        ok(Table::Products, &set(PRODUCT, col, Some("null")));
    }
    let bare = r#"{"user_id":"U9","email":"u9@example.com","registration_date":"2024-01-01"}"#;
    assert_eq!(registered(bare), 1_704_067_200_000);
    let ip = ok(Table::IpReputation, r#"{"ip_address":"10.0.0.1"}"#);
    assert_eq!(
        ip,
        TableRow::Ip(IpRep {
            ip_address: Str::from("10.0.0.1"),
            risk: None,
            is_tor: false
        })
    );
}

#[test]
fn wrong_types_are_bad_type() {
    let cases: [(Table, &str, &str, &str); 22] = [
        (Table::Products, PRODUCT, "product_id", "0"),
        (Table::Products, PRODUCT, "name", "[\"Stark\"]"),
        (Table::Products, PRODUCT, "price", "\"2113.99\""),
        (Table::Products, PRODUCT, "cost", "\"640.53\""),
        (Table::Products, PRODUCT, "rating_avg", "\"0.95\""),
        (Table::Products, PRODUCT, "weight_kg", "true"),
        (Table::Products, PRODUCT, "inventory_count", "5.0"),
        (Table::Products, PRODUCT, "inventory_count", "\"12\""),
        (Table::Products, PRODUCT, "inventory_count", "1e1"),
        (Table::Products, PRODUCT, "review_count", "156.5"),
        (Table::Products, PRODUCT, "tags", "[\"eco\",1]"),
        (Table::Products, PRODUCT, "tags", "\"eco\""),
        (Table::Products, PRODUCT, "tags", "{\"0\":\"eco\"}"),
        (Table::Products, PRODUCT, "created_at", "1674831600000"),
        (Table::Customers, CUSTOMER, "email", "5"),
        (Table::Customers, CUSTOMER, "marketing_consent", "\"true\""),
        (Table::Customers, CUSTOMER, "marketing_consent", "1"),
        (Table::Customers, CUSTOMER, "total_orders", "41.0"),
        (Table::Customers, CUSTOMER, "lifetime_value", "\"0.95\""),
        (Table::IpReputation, IP, "risk_score", "\"0.95\""),
        (Table::IpReputation, IP, "is_tor", "\"true\""),
        (Table::IpReputation, IP, "previous_fraud_incidents", "1.0"),
    ];
    for (table, base, col, raw) in cases {
        rejects(table, &set(base, col, Some(raw)), BadType, col);
    }
    // TEXT[] of strings, including none
    ok(Table::Products, &set(PRODUCT, "tags", Some("[]")));
    ok(
        Table::Products,
        &set(PRODUCT, "tags", Some("[\"a\",\"b\\\"c\"]")),
    );
    // DECIMAL takes any JSON number, INTEGER a JSON integer
    ok(Table::Products, &set(PRODUCT, "rating_avg", Some("4")));
    ok(Table::Products, &set(PRODUCT, "weight_kg", Some("1e-1")));
    ok(Table::Products, &set(PRODUCT, "review_count", Some("-3")));
}

#[test]
fn jsonb_takes_any_json() {
    for raw in [
        "{}",
        "[]",
        "\"x\"",
        "5",
        "-0.5",
        "true",
        "null",
        "[1,{\"a\":[null]}]",
    ] {
        ok(Table::Customers, &set(CUSTOMER, "address", Some(raw)));
        ok(Table::Customers, &set(CUSTOMER, "preferences", Some(raw)));
    }
}

#[test]
fn table_timestamps() {
    let reg = |raw: &str| registered(&set(CUSTOMER, "registration_date", Some(&q(raw))));
    assert_eq!(reg("2023-12-14T03:09:51.000Z"), REGISTERED_MS);
    assert_eq!(reg("2023-12-14T05:09:51+02:00"), REGISTERED_MS);
    assert_eq!(reg("2023-12-14 03:09:51"), REGISTERED_MS);
    assert_eq!(reg("2023-12-14 03:09:51.5"), REGISTERED_MS + 500);
    assert_eq!(reg("2023-12-14 03:09:51.123456"), REGISTERED_MS + 123);
    assert_eq!(reg("2023-12-14"), 1_702_512_000_000);
    assert_eq!(reg("1964-01-16"), -188_092_800_000);
    for bad in [
        "2023-12-14T03:09:51",
        "2023-02-29",
        "2023-12-14 25:00:00",
        "14/12/2023",
        "2023-12-14T",
        "",
    ] {
        let text = set(CUSTOMER, "registration_date", Some(&q(bad)));
        rejects(Table::Customers, &text, BadTimestamp, "registration_date");
    }
    // nullable TIMESTAMP and DATE columns are checked too
    let text = set(CUSTOMER, "date_of_birth", Some("\"1964-02-30\""));
    rejects(Table::Customers, &text, BadTimestamp, "date_of_birth");
    let text = set(PRODUCT, "updated_at", Some("\"last week\""));
    rejects(Table::Products, &text, BadTimestamp, "updated_at");
}

#[test]
fn checks_run_in_contract_order() {
    let text = set_all(PRODUCT, &[("name", None), ("price", Some("\"1\""))]);
    rejects(Table::Products, &text, MissingField, "name");
    // bad_type anywhere beats a bad timestamp in an earlier column
    let text = set_all(
        PRODUCT,
        &[
            ("created_at", Some("\"never\"")),
            ("rating_avg", Some("\"1\"")),
        ],
    );
    rejects(Table::Products, &text, BadType, "rating_avg");
    let text = set_all(
        CUSTOMER,
        &[("registration_date", Some("\"x\"")), ("email", None)],
    );
    rejects(Table::Customers, &text, MissingField, "email");
}

#[test]
fn extra_columns_are_ignored() {
    let text = set_all(
        PRODUCT,
        &[("color", Some("[1]")), ("cost_cents", Some("\"x\""))],
    );
    assert_eq!(ok(Table::Products, &text), ok(Table::Products, PRODUCT));
    let text = set(IP, "asn", Some("{\"n\":1}"));
    assert_eq!(ok(Table::IpReputation, &text), ok(Table::IpReputation, IP));
}

#[test]
fn values_kept_from_rows() {
    let risk = |raw: &str| match ok(Table::IpReputation, &set(IP, "risk_score", Some(raw))) {
        TableRow::Ip(ip) => ip.risk,
        other => panic!("{other:?}"),
    };
    assert_eq!(risk("0.8"), Some(800_000));
    assert_eq!(risk("0.7995"), Some(799_500));
    assert_eq!(risk("1"), Some(1_000_000));
    assert_eq!(risk("null"), None);
    let cost = |raw: &str| match ok(Table::Products, &set(PRODUCT, "cost", Some(raw))) {
        TableRow::Product(p) => p.cost,
        other => panic!("{other:?}"),
    };
    assert_eq!(cost("1.005"), 101);
    assert_eq!(cost("51.64"), 5164);
    assert_eq!(cost("0"), 0);
}

#[test]
fn a_delete_needs_only_the_key() {
    assert_eq!(
        parse_key(Table::Products, r#"{"product_id":"P00004"}"#).unwrap(),
        "P00004"
    );
    assert_eq!(
        parse_key(Table::Customers, r#"{"user_id":"U9CD1"}"#).unwrap(),
        "U9CD1"
    );
    assert_eq!(
        parse_key(Table::IpReputation, r#"{"ip_address":"1.2.3.4"}"#).unwrap(),
        "1.2.3.4"
    );
    // the rest of the row is not checked
    assert_eq!(
        parse_key(Table::Products, &set(PRODUCT, "price", Some("\"x\""))).unwrap(),
        "P00000"
    );
    for table in Table::ALL {
        let key = table.key_column();
        let err = |text: &str| parse_key(table, text).unwrap_err();
        assert_eq!(err("{}").reason, MissingField, "{}", table.name());
        assert_eq!(err(&format!("{{{}:null}}", q(key))).field, key);
        assert_eq!(err(&format!("{{{}:null}}", q(key))).reason, MissingField);
        assert_eq!(err(&format!("{{{}:5}}", q(key))).reason, BadType);
        assert_eq!(err("[]").reason, MalformedJson);
    }
}

fn change(table: &str, op: &str, at: &str, row: &str) -> String {
    format!(
        r#"{{"table":{},"op":{},"at":{},"row":{row}}}"#,
        q(table),
        q(op),
        q(at)
    )
}

#[test]
fn recorded_changes() {
    let at = "2024-02-29T14:24:00.000Z";
    let up = parse_change(&change("products", "upsert", at, PRODUCT)).unwrap();
    assert_eq!((up.table, up.at), (Table::Products, 1_709_216_640_000));
    assert_eq!(up.op, Ok(ChangeOp::Upsert(ok(Table::Products, PRODUCT))));

    // an invalid row is a change with its rejection, under the table's name
    let bad = parse_change(&change(
        "customers",
        "upsert",
        at,
        &set(CUSTOMER, "email", Some("5")),
    ))
    .unwrap();
    assert_eq!(bad.table, Table::Customers);
    assert_eq!(bad.op.unwrap_err().reason, BadType);
    let bad = parse_change(&change(
        "products",
        "upsert",
        at,
        &set(PRODUCT, "cost", None),
    ))
    .unwrap();
    assert_eq!(bad.op.unwrap_err().reason, MissingField);
    let no_row = r#"{"table":"ip_reputation","op":"upsert","at":"2024-03-01T00:00:00Z"}"#;
    assert_eq!(
        parse_change(no_row).unwrap().op.unwrap_err().reason,
        MissingField
    );

    let del = change(
        "customers",
        "delete",
        "2024-03-01T00:00:00.000Z",
        r#"{"user_id":"U9CD1"}"#,
    );
    let del = parse_change(&del).unwrap();
    assert_eq!((del.table, del.at), (Table::Customers, 1_709_251_200_000));
    assert_eq!(del.op, Ok(ChangeOp::Delete(Str::from("U9CD1"))));
    let del = parse_change(&change(
        "ip_reputation",
        "delete",
        at,
        r#"{"risk_score":1}"#,
    ))
    .unwrap();
    assert_eq!(del.op.unwrap_err().reason, MissingField);

    let err = |text: &str| parse_change(text).unwrap_err();
    assert_eq!(
        err(&change("orders", "upsert", at, "{}")),
        ChangeError::UnknownTable("orders".to_string())
    );
    for bad_at in [
        "2024-02-29 14:24:00",
        "2024-02-29T14:24:00",
        "2024-02-30T00:00:00Z",
        "",
    ] {
        assert_eq!(
            err(&change("products", "upsert", bad_at, PRODUCT)),
            ChangeError::BadAt
        );
    }
    let no_at = r#"{"table":"products","op":"delete","row":{"product_id":"P1"}}"#;
    assert_eq!(err(no_at), ChangeError::BadAt);
    assert_eq!(
        err(&change("products", "insert", at, PRODUCT)),
        ChangeError::UnknownOp("insert".to_string())
    );
    for text in ["", "[]", "{\"table\":\"products\"", "{\"op\":\"upsert\"}"] {
        assert_eq!(err(text), ChangeError::Malformed, "{text}");
    }
}
