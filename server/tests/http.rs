//! The query server against a running engine: consistent reads under heavy updates, the
//! contract's shapes, filters and paging, errors, history, subscriptions, auth and privacy.

use serde_json::Value as J;
use shopdiff_connectors::generator::GenConfig;
use shopdiff_connectors::TimeConfig;
use shopdiff_dataflows::config::ViewsConfig;
use shopdiff_server::auth::{parse_tokens, Auth};
use shopdiff_server::live::{wall_ms, EventSource, RunConfig, Served};
use shopdiff_server::store::HistoryConfig;
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::{fold, get, get_json, get_with, model_of, wait_ready, Sse};

fn config(source: EventSource, auth: Auth) -> RunConfig {
    RunConfig {
        cluster: None,
        workers: 2,
        time: TimeConfig::default(),
        views: ViewsConfig::default(),
        source,
        http: "127.0.0.1:0".parse().unwrap(),
        auth,
        history: HistoryConfig::default(),
        subscriber_buffer: 1024,
        max_subscribers: 256,
        read_timeout: Duration::from_secs(10),
        subscriber_timeout: Duration::from_secs(30),
        readers: 2,
        any_host: false,
        dead_letters: None,
        tls: None,
        postgres: None,
        sink: None,
        flush_ms: 20,
        exit_after: None,
        on_failure: shopdiff_server::health::OnFailure::Exit,
        progress: false,
    }
}

fn live(speed: f64) -> EventSource {
    EventSource::Generator {
        gen: GenConfig {
            start: wall_ms(),
            records: 50_000_000,
            users: 3_000,
            products: 300,
            anomaly_rate: 0.01,
            bad_rate: 0.002,
            ..GenConfig::default()
        },
        speed,
        backfill_ms: 0,
    }
}

fn example_replay() -> EventSource {
    EventSource::Replay {
        dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/data"),
        batch: 500,
    }
}

fn wait_done(s: &Served) {
    let t0 = Instant::now();
    while !s.job.source_done() {
        assert!(t0.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(50));
    }
    // the last batch's frontier: wait until the stores are folded to it
    let want = s.job.engine.fed_frontier();
    while s.job.engine.stores().as_of().map(|a| a + 1000) < Some(want) {
        assert!(t0.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn money(v: &J) -> i64 {
    let s = v.as_str().unwrap();
    let (i, f) = s.split_once('.').unwrap();
    let neg = i.starts_with('-');
    let c = i.trim_start_matches('-').parse::<i64>().unwrap() * 100 + f.parse::<i64>().unwrap();
    if neg {
        -c
    } else {
        c
    }
}

#[test]
fn concurrent_readers_see_one_as_of_under_heavy_updates() {
    let s = Served::start(&config(live(400.0), Auth::open())).unwrap();
    let addr = s.addr;
    wait_ready(addr);
    let readers: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let mut as_ofs = Vec::new();
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_secs(6) {
                    let j = get_json(addr, "/v1/query?views=rfm,rfm_segments");
                    let rfm = j["views"]["rfm"]["rows"].as_array().unwrap();
                    let segs = j["views"]["rfm_segments"]["rows"].as_array().unwrap();
                    let customers: i64 =
                        segs.iter().map(|r| r["customers"].as_i64().unwrap()).sum();
                    assert_eq!(customers as usize, rfm.len(), "as_of {}", j["as_of"]);
                    // and per segment: counts and money agree with the rfm rows
                    let mut by: BTreeMap<String, (i64, i64)> = BTreeMap::new();
                    for r in rfm {
                        let e = by
                            .entry(r["segment"].as_str().unwrap().to_string())
                            .or_default();
                        e.0 += 1;
                        e.1 += money(&r["monetary"]);
                    }
                    for sg in segs {
                        let e = by[sg["segment"].as_str().unwrap()];
                        assert_eq!(e.0, sg["customers"].as_i64().unwrap());
                        assert_eq!(e.1, money(&sg["monetary"]));
                    }
                    as_ofs.push((j["as_of"].as_u64().unwrap(), rfm.len()));
                }
                as_ofs
            })
        })
        .collect();
    for r in readers {
        let seen = r.join().unwrap();
        assert!(seen.len() >= 3, "too few reads: {}", seen.len());
        // time moved and data changed while reading
        assert!(seen.last().unwrap().0 > seen[0].0, "{seen:?}");
        assert!(seen.last().unwrap().1 > 0);
    }
    s.stop().unwrap();
}

#[test]
fn reads_filters_paging_and_errors() {
    let s = Served::start(&config(example_replay(), Auth::open())).unwrap();
    let addr = s.addr;
    wait_ready(addr);
    wait_done(&s);
    let stores = s.job.engine.stores().clone();

    // the list of views
    let views = get_json(addr, "/v1/views");
    let names: Vec<&str> = views["views"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 10);
    assert!(names.contains(&"rfm") && names.contains(&"data_quality"));
    // no PII column anywhere
    for v in views["views"].as_array().unwrap() {
        for c in v["columns"].as_array().unwrap() {
            let n = c["name"].as_str().unwrap();
            for pii in ["email", "phone", "name", "address", "birth"] {
                assert!(!n.contains(pii), "{n}");
            }
        }
    }

    // every view: all rows at the stores' as_of
    let as_of = stores.as_of().unwrap();
    for v in stores.iter() {
        let name = v.def().name;
        let j = get_json(addr, &format!("/v1/views/{name}"));
        assert_eq!(j["view"], name);
        assert_eq!(j["as_of"].as_u64(), Some(as_of));
        assert_eq!(j["rows"].as_array().unwrap().len(), v.len(), "{name}");
    }

    // money and time shapes
    let rev = get_json(addr, "/v1/views/revenue_daily?dimension=total");
    let rows = rev["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        assert_eq!(r["dimension"], "total");
        assert_eq!(r["value"], "all");
        let net = r["net"].as_str().unwrap();
        assert_eq!(net.split_once('.').unwrap().1.len(), 2, "{net}");
        assert!(r["bucket"].as_str().unwrap().ends_with("T00:00:00.000Z"));
    }
    let all = get_json(addr, "/v1/views/revenue_daily")["rows"]
        .as_array()
        .unwrap()
        .len();
    assert!(all > rows.len());

    // key lookup returns exactly the row of the full read
    let rfm = get_json(addr, "/v1/views/rfm");
    let first = &rfm["rows"][3];
    let user = first["user_id"].as_str().unwrap();
    let one = get_json(addr, &format!("/v1/views/rfm?key={user}"));
    assert_eq!(one["rows"].as_array().unwrap().len(), 1);
    assert_eq!(one["rows"][0], *first);
    let none = get_json(addr, "/v1/views/rfm?key=nobody-at-all");
    assert_eq!(none["rows"].as_array().unwrap().len(), 0);
    // composite key
    let c = &get_json(addr, "/v1/views/cohorts")["rows"][0];
    let k = format!(
        "/v1/views/cohorts?key={},{}",
        c["cohort_month"].as_str().unwrap(),
        c["month_offset"]
    );
    assert_eq!(get_json(addr, &k)["rows"][0], *c);

    // order_by, desc, limit, offset
    let top = get_json(addr, "/v1/views/rfm?order_by=monetary&desc=true&limit=5");
    let m: Vec<i64> = top["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| money(&r["monetary"]))
        .collect();
    assert_eq!(m.len(), 5);
    assert!(m.windows(2).all(|w| w[0] >= w[1]), "{m:?}");
    let mut all_m: Vec<i64> = rfm["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| money(&r["monetary"]))
        .collect();
    all_m.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(m, all_m[..5]);
    let page2 = get_json(
        addr,
        "/v1/views/rfm?order_by=monetary&desc=true&limit=5&offset=5",
    );
    let m2: Vec<i64> = page2["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| money(&r["monetary"]))
        .collect();
    assert_eq!(m2, all_m[5..10]);
    let champions = get_json(addr, "/v1/views/rfm?segment=champions");
    assert!(champions["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["segment"] == "champions"));

    // errors: 400 with a message, 404 for unknown views
    for bad in [
        "/v1/views/rfm?limit=x",
        "/v1/views/rfm?order_by=nope",
        "/v1/views/rfm?no_such_column=1",
        "/v1/views/rfm?desc=maybe",
        "/v1/views/cohorts?key=2024-01-01T00:00:00Z",
        "/v1/views/cohorts?key=notatime,1",
        "/v1/query",
        "/v1/views/rfm?as_of=99999999999999",
        "/v1/views/rfm/subscribe?order_by=monetary",
    ] {
        let (st, body) = get(addr, bad);
        assert_eq!(st, 400, "{bad}: {body}");
        let j: J = serde_json::from_str(&body).unwrap();
        assert!(!j["error"].as_str().unwrap().is_empty());
    }
    assert_eq!(get(addr, "/v1/views/nope").0, 404);
    assert_eq!(get(addr, "/v1/views/nope/subscribe").0, 404);
    assert_eq!(get(addr, "/v1/query?views=rfm,nope").0, 404);
    assert_eq!(get(addr, "/v2/whatever").0, 404);

    // an older as_of still held: the history answers it exactly
    let q = get_json(addr, "/v1/query?views=rfm,rfm_segments");
    assert_eq!(q["as_of"].as_u64(), Some(as_of));
    s.stop().unwrap();
}

#[test]
fn older_as_of_reads_match_what_was_served_then() {
    let mut cfg = config(live(300.0), Auth::open());
    cfg.history.span_ms = 30 * 86_400_000;
    let s = Served::start(&cfg).unwrap();
    let addr = s.addr;
    wait_ready(addr);
    std::thread::sleep(Duration::from_millis(500));
    let then = get_json(addr, "/v1/views/rfm_segments");
    let t = then["as_of"].as_u64().unwrap();
    let then_rev = get_json(addr, &format!("/v1/views/revenue_hourly?as_of={t}"));
    std::thread::sleep(Duration::from_secs(2));
    let now = get_json(addr, "/v1/views/rfm_segments");
    assert!(now["as_of"].as_u64().unwrap() > t);
    let again = get_json(addr, &format!("/v1/views/rfm_segments?as_of={t}"));
    assert_eq!(again["as_of"].as_u64(), Some(t));
    assert_eq!(again["rows"], then["rows"]);
    let again_rev = get_json(addr, &format!("/v1/views/revenue_hourly?as_of={t}"));
    assert_eq!(again_rev["rows"], then_rev["rows"]);
    s.stop().unwrap();

    // a tiny history: old reads are gone (410)
    let mut cfg = config(live(300.0), Auth::open());
    cfg.history = HistoryConfig {
        span_ms: 1_000,
        max_updates: 10,
    };
    let s = Served::start(&cfg).unwrap();
    let addr = s.addr;
    let first = wait_ready(addr);
    std::thread::sleep(Duration::from_secs(2));
    let (st, body) = get(addr, &format!("/v1/views/rfm?as_of={first}"));
    assert_eq!(st, 410, "{body}");
    s.stop().unwrap();
}

#[test]
fn subscriptions_fold_to_the_reads_and_resume_with_since() {
    let mut cfg = config(live(300.0), Auth::open());
    cfg.history.span_ms = 30 * 86_400_000;
    let s = Served::start(&cfg).unwrap();
    let addr = s.addr;
    wait_ready(addr);
    let key = ["segment"];
    let mut sub = Sse::open(addr, "/v1/views/rfm_segments/subscribe");
    let (ev, snap) = sub.next().unwrap();
    assert_eq!(ev, "snapshot");
    let mut model = model_of(&snap["rows"], &key);
    let mut as_of = snap["as_of"].as_u64().unwrap();
    let mut updates = 0;
    let mut mid = None;
    while updates < 15 {
        let (ev, d) = sub.next().unwrap();
        let t = d["as_of"].as_u64().unwrap();
        assert!(t > as_of, "as_of order: {t} after {as_of}");
        as_of = t;
        if ev == "update" {
            fold(&mut model, &key, &d);
            updates += 1;
            if updates == 5 {
                mid = Some((t, model.clone()));
            }
        } else {
            assert_eq!(ev, "progress");
        }
    }
    // the folded subscription equals a read at the same as_of
    let read = get_json(addr, &format!("/v1/views/rfm_segments?as_of={as_of}"));
    assert_eq!(model_of(&read["rows"], &key), model);

    // resume from the middle: no snapshot, the updates after it, to the same state
    let (mid_t, mut resumed) = mid.unwrap();
    let mut sub2 = Sse::open(
        addr,
        &format!("/v1/views/rfm_segments/subscribe?since={mid_t}"),
    );
    let mut t2 = mid_t;
    while t2 < as_of {
        let (ev, d) = sub2.next().unwrap();
        assert_ne!(ev, "snapshot");
        t2 = d["as_of"].as_u64().unwrap();
        if ev == "update" {
            fold(&mut resumed, &key, &d);
        }
        if t2 == as_of {
            assert_eq!(resumed, model);
        }
    }

    // a filtered subscription only carries its key
    let mut one = Sse::open(addr, "/v1/views/rfm_segments/subscribe?key=champions");
    let (_, snap) = one.next().unwrap();
    assert!(snap["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["segment"] == "champions"));
    for _ in 0..5 {
        let (ev, d) = one.next().unwrap();
        if ev == "update" {
            assert!(d["diffs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["row"]["segment"] == "champions"));
        }
    }
    // rfm deltas leave out the read-time column
    let mut rfm = Sse::open(addr, "/v1/views/rfm/subscribe");
    let (_, snap) = rfm.next().unwrap();
    if let Some(r) = snap["rows"].get(0) {
        assert!(r.get("recency_days").is_some());
    }
    loop {
        let (ev, d) = rfm.next().unwrap();
        if ev == "update" {
            assert!(d["diffs"][0]["row"].get("recency_days").is_none());
            assert!(d["diffs"][0]["row"].get("monetary").is_some());
            break;
        }
    }
    s.stop().unwrap();
}

#[test]
fn tokens_scopes_and_metrics() {
    let auth = Auth::with_tokens(
        parse_tokens("reader-0001=rfm,rfm_segments;ops-00001=metrics;admin-0001=*").unwrap(),
    );
    let s = Served::start(&config(example_replay(), auth)).unwrap();
    let addr = s.addr;
    wait_ready(addr);
    wait_done(&s);
    assert_eq!(get(addr, "/health").0, 200);
    assert_eq!(get(addr, "/v1/views/rfm").0, 401);
    assert_eq!(
        get_with(
            addr,
            "/v1/views/rfm",
            &[("Authorization", "Bearer wrong-token")]
        )
        .0,
        401
    );
    assert_eq!(
        get_with(
            addr,
            "/v1/views/rfm",
            &[("Authorization", "Bearer reader-0001")]
        )
        .0,
        200
    );
    assert_eq!(get(addr, "/v1/views/rfm?access_token=reader-0001").0, 200);
    assert_eq!(
        get_with(
            addr,
            "/v1/views/fraud_alerts",
            &[("Authorization", "Bearer reader-0001")]
        )
        .0,
        403
    );
    assert_eq!(
        get_with(
            addr,
            "/v1/query?views=rfm,cohorts",
            &[("Authorization", "Bearer reader-0001")]
        )
        .0,
        403
    );
    assert_eq!(
        get_with(
            addr,
            "/v1/views/rfm/subscribe",
            &[("Authorization", "Bearer ops-00001")]
        )
        .0,
        403
    );
    assert_eq!(
        get_with(addr, "/metrics", &[("Authorization", "Bearer reader-0001")]).0,
        403
    );
    let (st, metrics) = get_with(addr, "/metrics", &[("Authorization", "Bearer ops-00001")]);
    assert_eq!(st, 200);
    for want in [
        "shopdiff_records_accepted_total{source=\"transactions\"}",
        "shopdiff_records_rejected_total{source=",
        "shopdiff_view_rows{view=\"rfm\"}",
        "shopdiff_view_folded_updates_total{view=\"rfm\"}",
        "shopdiff_last_merge_seconds ",
        "shopdiff_view_fold_seconds_total{view=\"revenue_hourly\"}",
        "shopdiff_as_of_ms",
        "shopdiff_http_request_duration_seconds_bucket{route=\"view\",status=\"200\"",
    ] {
        assert!(metrics.contains(want), "missing {want}");
    }
    // no customer value in metrics
    assert!(!metrics.contains("U0"));
    assert!(!metrics.contains('@'));
    let (st, _) = get_with(
        addr,
        "/v1/views/fraud_alerts",
        &[("Authorization", "Bearer admin-0001")],
    );
    assert_eq!(st, 200);
    s.stop().unwrap();
}

#[test]
fn https_with_certificate_files() {
    let dir = std::env::temp_dir().join(format!("shopdiff-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if !ok.is_ok_and(|o| o.status.success()) {
        eprintln!("openssl not available: HTTPS test skipped");
        return;
    }
    // a key that does not exist: a clear error naming the file, before anything starts
    let mut bad = config(example_replay(), Auth::open());
    bad.tls = Some(shopdiff_server::http::TlsFiles {
        cert: cert.clone(),
        key: dir.join("missing.pem"),
    });
    let err = Served::start(&bad).err().unwrap().to_string();
    assert!(err.contains("missing.pem"), "{err}");

    let mut cfg = config(
        example_replay(),
        Auth::with_tokens(parse_tokens("tls-token-1=*").unwrap()),
    );
    cfg.tls = Some(shopdiff_server::http::TlsFiles { cert, key });
    let s = Served::start(&cfg).unwrap();
    assert_eq!(s.scheme, "https");
    let curl = |path: &str, token: Option<&str>| {
        let mut c = std::process::Command::new("curl");
        c.args(["-sk", "-o", "-", "-w", "\n%{http_code}"]);
        if let Some(t) = token {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        let out = c.arg(format!("https://{}{path}", s.addr)).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let t0 = Instant::now();
    while !curl("/ready", None).ends_with("200") {
        assert!(t0.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(curl("/v1/views/rfm", None).ends_with("401"));
    let out = curl("/v1/views/rfm_segments", Some("tls-token-1"));
    assert!(out.ends_with("200"), "{out}");
    assert!(out.contains("\"view\":\"rfm_segments\""), "{out}");
    // plain HTTP on the TLS port gets nothing useful
    let (st, _) = std::panic::catch_unwind(|| get(s.addr, "/health")).unwrap_or((0, String::new()));
    assert_ne!(st, 200);
    s.stop().unwrap();
}

/// A source that stops (here a replay whose directory does not exist, found by the source
/// thread) is seen at once: `/health` and `/ready` answer 503 naming it, `/v1/status` gives
/// its error, `/metrics` has `shopdiff_source_up 0`; no frozen `as_of` behind a 200.
#[test]
fn a_failed_source_turns_health_to_503_naming_it() {
    let source = EventSource::Replay {
        dir: PathBuf::from("/nonexistent/shopdiff-stream"),
        batch: 500,
    };
    let s = Served::start(&config(source, Auth::open())).unwrap();
    let addr = s.addr;
    let failed = s.job.state.health.wait_failed(Duration::from_secs(30));
    let (part, why) = failed.expect("the source should have failed");
    assert_eq!(part, "source");
    assert!(why.contains("/nonexistent/shopdiff-stream"), "{why}");
    for route in ["/health", "/ready"] {
        let (status, body) = get(addr, route);
        assert_eq!(status, 503, "{route}: {body}");
        let j: J = serde_json::from_str(&body).unwrap();
        assert_eq!(j["part"], "source", "{body}");
        assert!(
            j["error"].as_str().unwrap().contains("nonexistent"),
            "{body}"
        );
    }
    let (status, body) = get(addr, "/v1/status");
    assert_eq!(status, 200, "{body}");
    let j: J = serde_json::from_str(&body).unwrap();
    let src = j["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["part"] == "source")
        .expect("the source in /v1/status")
        .clone();
    assert_eq!(src["state"], "failed", "{body}");
    assert_eq!(src["kind"], "replay", "{body}");
    let (_, metrics) = get(addr, "/metrics");
    assert!(
        metrics.contains("shopdiff_source_up{source=\"replay\",state=\"failed\"} 0"),
        "{metrics}"
    );
    assert!(s.stop().is_err(), "stop returns the source's error");
}

/// The live demo opens on a shop's history: with 30 backfilled days the views show, within
/// 15 s of the start, all six segments, cohorts of three months or more with offsets of two
/// or more, a week of funnel days and fraud alerts, and nothing of the backfill is late.
#[test]
fn a_backfilled_live_run_opens_on_a_month_of_history() {
    let day = 86_400_000u64;
    let start = wall_ms() - 30 * day as i64;
    let users = 3_000;
    let gen = GenConfig {
        start,
        records: 50_000_000,
        users,
        products: 300,
        anomaly_rate: 0.01,
        bad_rate: 0.002,
        volume: GenConfig::volume_for_days(start, 30.0, users as u64 * 47),
        ..GenConfig::default()
    };
    let source = EventSource::Generator {
        gen,
        speed: 60.0,
        backfill_ms: 30 * day,
    };
    let t0 = Instant::now();
    let s = Served::start(&config(source, Auth::open())).unwrap();
    let addr = s.addr;
    wait_ready(addr);
    let rows = |view: &str| -> Vec<J> {
        get_json(addr, &format!("/v1/views/{view}?limit=100000"))["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let shown = loop {
        let segments = rows("rfm_segments").len();
        let cohorts = rows("cohorts");
        let months: std::collections::BTreeSet<String> = cohorts
            .iter()
            .filter(|r| r["month_offset"].as_i64() >= Some(2))
            .map(|r| r["cohort_month"].to_string())
            .collect();
        let days = rows("funnel_daily").len();
        let alerts = rows("fraud_alerts").len();
        let done = segments == 6 && months.len() >= 3 && days >= 7 && alerts > 0;
        if done || t0.elapsed() > Duration::from_secs(15) {
            break (segments, months.len(), days, alerts, done);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        shown.4,
        "after {:?}: (segments, cohort months with offset >= 2, funnel days, alerts) = {shown:?}",
        t0.elapsed()
    );
    let quality = rows("data_quality");
    let late: i64 = quality
        .iter()
        .filter(|r| r["reason"] == "late" || r["reason"] == "too_late")
        .filter_map(|r| r["records"].as_i64())
        .sum();
    assert_eq!(late, 0, "{quality:?}");
    s.stop().unwrap();
}

/// Secrets come from files, not argv: `--token-file` (one `TOKEN=SCOPES` per line),
/// `--kafka-option-file` (one `KEY=VALUE` per line) and `--postgres-password-file` (put in the
/// URL, never printed back).
#[test]
fn secrets_from_files_stay_out_of_argv() {
    use shopdiff_server::cli::{run_config, RunArgs};
    use shopdiff_server::live::EventSource;
    let dir = std::env::temp_dir().join(format!("shopdiff-secrets-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (tokens, kafka, pw) = (dir.join("tokens"), dir.join("kafka"), dir.join("pgpass"));
    std::fs::write(&tokens, "# readers\nreader-0001=rfm\nadmin-0001=*\n").unwrap();
    std::fs::write(&kafka, "sasl.username=shop\nsasl.password=hunter2\n").unwrap();
    std::fs::write(&pw, "s3cr3t pw\n").unwrap();
    let cfg = run_config(&RunArgs {
        token_file: Some(tokens),
        kafka: Some("127.0.0.1:1".into()),
        kafka_option_file: Some(kafka),
        postgres: Some("postgres://shop@127.0.0.1:5432/shop".into()),
        postgres_password_file: Some(pw),
        http: Some("127.0.0.1:0".into()),
        ..RunArgs::default()
    })
    .expect("run config");
    assert!(cfg.auth.check(Some("reader-0001"), "rfm").is_ok());
    assert!(cfg.auth.check(Some("reader-0001"), "cohorts").is_err());
    assert!(cfg.auth.check(Some("admin-0001"), "metrics").is_ok());
    assert!(cfg.auth.check(None, "rfm").is_err());
    let EventSource::Kafka(k) = &cfg.source else {
        panic!("a Kafka source")
    };
    assert!(k
        .options
        .iter()
        .any(|(key, v)| key == "sasl.password" && v == "hunter2"));
    let pg = cfg.postgres.expect("postgres");
    assert_eq!(pg.url, "postgres://shop:s3cr3t%20pw@127.0.0.1:5432/shop");
    assert_eq!(
        shopdiff_server::secrets::redact_url(&pg.url),
        "postgres://shop:***@127.0.0.1:5432/shop"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Each request has a cost bound before it reaches a view: a request target over 8 KiB is a
/// 414, more than 64 query parameters a 400, and subscriptions past `max_subscribers` a 503
/// with `Retry-After` (the open ones keep streaming).
#[test]
fn oversized_requests_and_too_many_subscribers_are_refused() {
    let mut cfg = config(example_replay(), Auth::open());
    cfg.max_subscribers = 2;
    let s = Served::start(&cfg).unwrap();
    let addr = s.addr;
    wait_ready(addr);
    wait_done(&s);
    let long = format!("/v1/views/rfm?user_id={}", "U".repeat(9000));
    let (status, body) = get(addr, &long);
    assert_eq!(status, 414, "{body}");
    let many: Vec<String> = (0..65).map(|i| format!("user_id=U{i}")).collect();
    let (status, body) = get(addr, &format!("/v1/views/rfm?{}", many.join("&")));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 64"), "{body}");
    assert_eq!(get(addr, "/v1/views/rfm?limit=5").0, 200);
    let mut one = Sse::open(addr, "/v1/views/rfm_segments/subscribe");
    let mut two = Sse::open(addr, "/v1/views/cohorts/subscribe");
    assert_eq!(one.next().map(|e| e.0).as_deref(), Some("snapshot"));
    assert_eq!(two.next().map(|e| e.0).as_deref(), Some("snapshot"));
    let (status, body) = get(addr, "/v1/views/rfm/subscribe");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("--max-subscribers 2"), "{body}");
    s.stop().unwrap();
}

/// Reads page by key and have a cost bound: `after=` walks a view page by page, each row
/// once, in key order, with `next` naming the cursor; a read past its deadline is a 503 with
/// `Retry-After` while `/health` keeps answering; on a loopback bind a `Host` that is not a
/// loopback name is refused (DNS rebinding).
#[test]
fn reads_page_by_key_stop_at_their_deadline_and_check_the_host() {
    let s = Served::start(&config(example_replay(), Auth::open())).unwrap();
    let addr = s.addr;
    wait_ready(addr);
    wait_done(&s);
    let all = get_json(addr, "/v1/views/rfm");
    let all = all["rows"].as_array().unwrap().clone();
    assert!(all.len() > 20, "{} rfm rows", all.len());
    let (mut seen, mut after) = (Vec::new(), None::<String>);
    loop {
        let path = match &after {
            None => "/v1/views/rfm?limit=7".to_string(),
            Some(a) => format!("/v1/views/rfm?limit=7&after={a}"),
        };
        let page = get_json(addr, &path);
        let rows = page["rows"].as_array().unwrap();
        assert!(rows.len() <= 7);
        seen.extend(rows.iter().cloned());
        match page["next"].as_str() {
            Some(n) => {
                assert_eq!(Some(n), rows.last().unwrap()["user_id"].as_str());
                after = Some(n.to_string());
            }
            None => break,
        }
    }
    assert_eq!(seen, all, "the pages are the view, each row once");
    let (status, body) = get(addr, "/v1/views/rfm?after=U1&order_by=monetary");
    assert_eq!(status, 400, "{body}");
    let host = |h: &str| get_with(addr, "/v1/views/rfm?limit=1", &[("Host", h)]).0;
    assert_eq!(host("evil.example"), 403);
    assert_eq!(host("rebind.example:8080"), 403);
    assert_eq!(host("localhost:8080"), 200);
    assert_eq!(host("127.0.0.1"), 200);
    assert_eq!(host("[::1]:8080"), 200);
    s.stop().unwrap();

    let mut cfg = config(example_replay(), Auth::open());
    cfg.read_timeout = Duration::ZERO;
    let s = Served::start(&cfg).unwrap();
    let addr = s.addr;
    wait_ready(addr);
    wait_done(&s);
    let (status, body) = get(addr, "/v1/views/rfm");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("deadline") || body.contains("busy"), "{body}");
    let (status, body) = get(addr, "/v1/query?views=rfm,cohorts");
    assert_eq!(status, 503, "{body}");
    assert_eq!(get(addr, "/health").0, 200);
    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(
        status, 200,
        "a free reader slot serves /metrics, which scans no rows"
    );
    assert!(
        metrics.contains("shopdiff_read_deadlines_total 2\n"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("deadline"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    s.stop().unwrap();
}

/// `run --dead-letters FILE` with the live generator: every record the generator's defects
/// make the pipeline reject is written with its source, reason, position and text, as many as
/// `data_quality` counts (at least those of the last `as_of` read, which the run has passed).
#[test]
fn the_live_generator_dead_letters_what_it_rejects() {
    let dir = std::env::temp_dir().join(format!("shopdiff-dead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dead.jsonl");
    let mut cfg = config(live(60.0), Auth::open());
    if let EventSource::Generator { gen, .. } = &mut cfg.source {
        gen.bad_rate = 0.02;
    }
    cfg.dead_letters = Some(file.clone());
    let s = Served::start(&cfg).unwrap();
    let addr = s.addr;
    wait_ready(addr);
    std::thread::sleep(Duration::from_secs(3));
    let dq = get_json(addr, "/v1/views/data_quality");
    s.stop().unwrap();
    // counted, not rejected: accepted records, repeats, late ones and those whose customer or
    // product the tables lack (they count in the views)
    let not_dead = [
        "accepted",
        "duplicate",
        "late",
        "unknown_customer",
        "unknown_product",
    ];
    let mut counted: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in dq["rows"].as_array().unwrap() {
        let (src, reason) = (r["source"].as_str().unwrap(), r["reason"].as_str().unwrap());
        if !not_dead.contains(&reason) && matches!(src, "transactions" | "behavior") {
            counted.insert((src.into(), reason.into()), r["records"].as_u64().unwrap());
        }
    }
    assert!(!counted.is_empty(), "the generator made no rejection: {dq}");
    let mut written: BTreeMap<(String, String), u64> = BTreeMap::new();
    let text = std::fs::read_to_string(&file).unwrap();
    for line in text.lines() {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(j["file"], "generator", "{line}");
        assert!(j["line"].as_u64().is_some(), "{line}");
        assert!(!j["record"].as_str().unwrap().is_empty(), "{line}");
        let reason = j["reason"].as_str().unwrap();
        assert!(!not_dead.contains(&reason), "{line}");
        *written
            .entry((j["source"].as_str().unwrap().into(), reason.into()))
            .or_default() += 1;
    }
    for (k, n) in &counted {
        let w = written.get(k).copied().unwrap_or(0);
        assert!(
            w >= *n,
            "{k:?}: {w} dead letters, {n} counted in data_quality"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
