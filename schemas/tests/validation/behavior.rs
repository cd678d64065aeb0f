//! Behavior events (contract 2 and 5a).

use super::{q, set, set_all, truncated};
use shopdiff_schemas::records::{parse_behavior, Event, EventKind};
use shopdiff_schemas::Reason::{self, *};

/// `E000000009` of the sample: a product view with a product and an IP address.
const EV: &str = r#"{"event_id":"E000000009","user_id":"U000064","session_id":"S00000002","event_type":"product_view","event_category":"engagement","page_url":"https://shop.example.com/product_view/P00005","page_title":"Product View","timestamp":"2024-02-29T00:19:54.061Z","duration_ms":20175,"event_properties":{"product_id":"P00005","search_query":null,"filter_applied":null,"scroll_depth":10,"clicks":0},"user_location":{"country":"US","state":"IL","city":"Chicago","ip_address":"39.75.165.110"},"device_info":{"type":"mobile","os":"Android","browser":"Chrome","user_agent":"Mozilla/5.0 (Android) Chrome"}}"#;

/// `EV`'s `timestamp` in UTC milliseconds.
const EV_MS: i64 = 1_709_165_994_061;

const REQUIRED: [&str; 4] = ["event_id", "user_id", "timestamp", "event_type"];

#[track_caller]
fn ok(text: &str) -> Event {
    parse_behavior(text).unwrap_or_else(|r| panic!("rejected ({r}): {text}"))
}

#[track_caller]
fn rejects(text: &str, reason: Reason, field: &str) {
    match parse_behavior(text) {
        Ok(ev) => panic!("accepted {ev:?}, expected {reason} ({field}): {text}"),
        Err(r) => assert_eq!(
            (r.reason, r.field),
            (reason, field),
            "expected {reason} ({field}): {text}"
        ),
    }
}

#[test]
fn sample_event_is_accepted_with_its_fields() {
    let e = ok(EV);
    assert_eq!(e.event_id, "E000000009");
    assert_eq!(e.user_id, "U000064");
    assert_eq!(e.session_id.as_deref(), Some("S00000002"));
    assert_eq!(e.kind, EventKind::ProductView);
    assert_eq!(e.product_id.as_deref(), Some("P00005"));
    assert_eq!(e.ip.as_deref(), Some("39.75.165.110"));
    assert_eq!(e.ts, EV_MS);
}

#[test]
fn event_types() {
    for (name, kind) in [
        ("page_view", EventKind::PageView),
        ("product_view", EventKind::ProductView),
        ("search", EventKind::Search),
        ("add_to_cart", EventKind::AddToCart),
        ("remove_from_cart", EventKind::RemoveFromCart),
        ("checkout_start", EventKind::CheckoutStart),
        // other values are accepted
        ("wishlist_add", EventKind::Other),
        ("Page_View", EventKind::Other),
        ("", EventKind::Other),
    ] {
        assert_eq!(
            ok(&set(EV, "event_type", Some(&q(name)))).kind,
            kind,
            "{name}"
        );
    }
}

#[test]
fn malformed_json() {
    for text in [
        String::new(),
        "{".to_string(),
        truncated(EV, 1).to_string(),
        truncated(EV, 100).to_string(),
        format!("{EV},"),
        set(EV, "duration_ms", Some("NaN")),
        set(EV, "event_properties.scroll_depth", Some("Infinity")),
        set(EV, "duration_ms", Some("-Infinity")),
        format!("[{EV}]"),
        "[\"E000000009\"]".to_string(),
        "\"event\"".to_string(),
        "2304".to_string(),
        "-1.5".to_string(),
        "false".to_string(),
        "null".to_string(),
    ] {
        rejects(&text, MalformedJson, "");
    }
}

#[test]
fn required_fields_absent_or_null_are_missing() {
    for field in REQUIRED {
        rejects(&set(EV, field, None), MissingField, field);
        rejects(&set(EV, field, Some("null")), MissingField, field);
    }
    // missing beats bad_type, bad_type beats bad_timestamp
    let text = set_all(EV, &[("event_id", Some("9")), ("event_type", None)]);
    rejects(&text, MissingField, "event_type");
    let text = set_all(
        EV,
        &[("timestamp", Some("\"soon\"")), ("event_type", Some("1"))],
    );
    rejects(&text, BadType, "event_type");
}

#[test]
fn wrong_types_are_bad_type() {
    for (field, raw) in [
        ("event_id", "9"),
        ("event_id", "[\"E000000009\"]"),
        ("user_id", "64"),
        ("user_id", "true"),
        ("event_type", "1"),
        ("event_type", "{\"name\":\"product_view\"}"),
        ("timestamp", "1709165994061"),
        ("timestamp", "false"),
    ] {
        rejects(&set(EV, field, Some(raw)), BadType, field);
    }
}

#[test]
fn optional_fields_of_another_type_count_as_absent() {
    for raw in [None, Some("null"), Some("5"), Some("[\"S00000002\"]")] {
        assert_eq!(ok(&set(EV, "session_id", raw)).session_id, None, "{raw:?}");
        let e = ok(&set(EV, "event_properties.product_id", raw));
        assert_eq!(e.product_id, None, "{raw:?}");
        assert_eq!(
            ok(&set(EV, "user_location.ip_address", raw)).ip,
            None,
            "{raw:?}"
        );
    }
    for raw in [None, Some("null"), Some("\"P00005\""), Some("[]")] {
        assert_eq!(
            ok(&set(EV, "event_properties", raw)).product_id,
            None,
            "{raw:?}"
        );
        assert_eq!(ok(&set(EV, "user_location", raw)).ip, None, "{raw:?}");
    }
    // other fields are not type-checked
    for (field, raw) in [
        ("duration_ms", "\"long\""),
        ("page_url", "null"),
        ("event_category", "7"),
        ("device_info", "\"phone\""),
        ("event_properties.clicks", "\"many\""),
    ] {
        ok(&set(EV, field, Some(raw)));
    }
}

#[test]
fn timestamps() {
    let ts = |raw: &str| ok(&set(EV, "timestamp", Some(&q(raw)))).ts;
    assert_eq!(ts("2024-02-29T00:19:54.061Z"), EV_MS);
    assert_eq!(ts("2024-02-29T02:19:54.061+02:00"), EV_MS);
    assert_eq!(ts("2024-02-28T19:19:54.061-05:00"), EV_MS);
    assert_eq!(ts("2024-02-29T00:19:54Z"), EV_MS - 61);
    assert_eq!(ts("2024-02-29T00:19:54.0619Z"), EV_MS);
    assert_eq!(ts("2024-02-29T00:19:54.061999999Z"), EV_MS);
    assert_eq!(ts("2024-02-29T00:19:54.06Z"), EV_MS + 60 - 61);
    for bad in [
        "2024-02-29T00:19:54.061",
        "2024-02-29 00:19:54.061Z",
        "2023-02-29T00:19:54.061Z",
        "2024-02-29T00:19:54.061 Z",
        "29/02/2024 00:19:54",
    ] {
        rejects(
            &set(EV, "timestamp", Some(&q(bad))),
            BadTimestamp,
            "timestamp",
        );
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let text = set_all(
        EV,
        &[
            ("referrer", Some("{\"a\":[1,2,3]}")),
            ("event_properties.variant", Some("\"B\"")),
            ("Event_Type", Some("5")),
        ],
    );
    assert_eq!(ok(&text), ok(EV));
}
