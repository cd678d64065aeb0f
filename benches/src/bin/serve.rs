//! Query-server benchmarks (issue 4).
//!
//! `serve reads [--customers N]`: an `rfm` store of N customers (default 1,000,000) behind the
//! real HTTP server while a thread folds 10,000 row changes every 100 ms into it; measures
//! key-lookup and top-100 (`order_by=monetary&desc=true&limit=100`) latency over keep-alive
//! HTTP/1.1, p50/p99.
//!
//! `serve load [--customers N] [--secs S] [--heavy H] [--subscribers S]`: `/health` and key
//! reads while heavy readers and subscribers (one of them stuck) run, beside the update time.
//!
//! `serve freshness [--volume V] [--users U] [--speed X] [--secs S]`: the live generator at real time (speed 1) with a
//! 100 ms tick and zero lateness, all views on 2 workers, the HTTP server, and an SSE client
//! subscribed to `data_quality` (which changes every tick that has records). For every `as_of`
//! `t` delivered, `delay = received - t`: the time from the end of tick `t` (its last record's
//! event time, which is when it was accepted) to the delta reaching the client. A record early
//! in its tick waits up to one tick more. Reports p50/p99 and the input rate.

use shopdiff_benches::{flag_or, peak_rss_mb};
use shopdiff_connectors::generator::GenConfig;
use shopdiff_connectors::live::{Feeder, LiveGenerator};
use shopdiff_connectors::TimeConfig;
use shopdiff_dataflows::config::ViewsConfig;
use shopdiff_schemas::rows::{RfmRow, RFM};
use shopdiff_server::auth::Auth;
use shopdiff_server::http::{self, AppState};
use shopdiff_server::live::wall_ms;
use shopdiff_server::metrics::Metrics;
use shopdiff_server::store::{HistoryConfig, Stores, ViewStore};
use shopdiff_server::{Engine, EngineConfig};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn serve(state: Arc<AppState>) -> anyhow::Result<(tokio::runtime::Runtime, SocketAddr)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    rt.spawn(http::serve(state, listener, std::future::pending()));
    Ok((rt, addr))
}

/// A keep-alive HTTP/1.1 client: one GET at a time.
struct Client {
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Client {
            r: BufReader::new(s),
        })
    }

    fn get(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        self.r
            .get_mut()
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status: u16 = line.get(9..12).unwrap_or("0").parse()?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line)?;
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse()?;
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body)?;
        Ok((status, body))
    }
}

fn row(i: u64, version: u64) -> RfmRow {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version;
    RfmRow {
        user_id: format!("U{i:07}").into(),
        last_purchase: 1_719_792_000_000 + (h % 10_000_000_000) as i64,
        frequency: (h % 40) as i64 + 1,
        monetary: (h % 10_000_000) as i128,
        r_score: (h % 5) as u8 + 1,
        f_score: ((h >> 8) % 5) as u8 + 1,
        m_score: ((h >> 16) % 5) as u8 + 1,
    }
}

/// An `rfm` store of `n` customers (10 s of history) folded at the first tick, in its `Stores`.
fn rfm_store(n: u64, tick: u64) -> (Arc<ViewStore<RfmRow>>, Stores) {
    let store = ViewStore::<RfmRow>::with_history(
        RFM,
        tick,
        HistoryConfig {
            span_ms: 10_000,
            max_updates: 1_000_000,
        },
    );
    let mut stores = Stores::new(tick);
    stores.add(store.clone());
    let rows: Vec<(RfmRow, u64, isize)> = (0..n).map(|i| (row(i, 0), 0, 1)).collect();
    store.push(&rows);
    drop(rows);
    stores.advance(tick);
    (store, stores)
}

fn reads(args: &[String]) -> anyhow::Result<()> {
    let n = flag_or(args, "--customers", 1_000_000u64)?;
    let lookups = flag_or(args, "--lookups", 5_000usize)?;
    let tops = flag_or(args, "--tops", 40usize)?;
    let tick = 100;
    let t0 = Instant::now();
    let (store, stores) = rfm_store(n, tick);
    eprintln!("loaded {n} customers in {:.1}s", t0.elapsed().as_secs_f64());
    let state = Arc::new(AppState::new(
        stores.clone(),
        Arc::new(Metrics::default()),
        shopdiff_server::health::Health::new(),
        Auth::open(),
    ));
    let (_rt, addr) = serve(state)?;
    // ingest: 10,000 changed customers per 100 ms tick
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (stores, store, stop) = (stores.clone(), store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut version = vec![0u64; n as usize];
            let mut t = tick;
            let mut k: u64 = 1;
            let mut changed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut ups = Vec::with_capacity(20_000);
                for _ in 0..10_000 {
                    k = k
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let i = (k >> 33) % n;
                    let v = version[i as usize];
                    ups.push((row(i, v), t, -1));
                    ups.push((row(i, v + 1), t, 1));
                    version[i as usize] = v + 1;
                }
                store.push(&ups);
                t += tick;
                stores.advance(t);
                changed += 10_000;
                std::thread::sleep(Duration::from_millis(100));
            }
            changed
        })
    };
    let mut c = Client::connect(addr)?;
    let mut key_ms = Vec::with_capacity(lookups);
    let mut k: u64 = 7;
    for _ in 0..lookups {
        k = k.wrapping_mul(6364136223846793005).wrapping_add(1);
        let i = (k >> 33) % n;
        let path = format!("/v1/views/rfm?key=U{i:07}");
        let s = Instant::now();
        let (st, body) = c.get(&path)?;
        key_ms.push(s.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(st == 200 && body.len() > 100, "{path}: {st}");
    }
    let mut top_ms = Vec::with_capacity(tops);
    for _ in 0..tops {
        let s = Instant::now();
        let (st, body) = c.get("/v1/views/rfm?order_by=monetary&desc=true&limit=100")?;
        top_ms.push(s.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(st == 200 && body.len() > 1000, "top-100: {st}");
    }
    stop.store(true, Ordering::Relaxed);
    let changed = churn
        .join()
        .map_err(|_| anyhow::anyhow!("churn thread panicked"))?;
    println!(
        "reads with {n} customers while folding 100,000 row changes/s ({changed} changed during the run):"
    );
    println!(
        "  key lookup  n={:<5} p50 {:.3} ms  p99 {:.3} ms",
        key_ms.len(),
        pct(&mut key_ms, 0.5),
        pct(&mut key_ms, 0.99)
    );
    println!(
        "  top-100     n={:<5} p50 {:.1} ms  p99 {:.1} ms",
        top_ms.len(),
        pct(&mut top_ms, 0.5),
        pct(&mut top_ms, 0.99)
    );
    println!("  peak RSS {:.0} MB", peak_rss_mb());
    Ok(())
}

/// `serve load`: the `rfm` store of `--customers` (default 200,000) rows behind the real
/// server, 10,000 row changes per 100 ms tick, while `--heavy` clients (default 8) loop over
/// whole-view reads, reads at an old `as_of` and top-100s, `--subscribers` (default 50) SSE
/// clients read every update and one more subscribes and never reads. Reports `/health` and
/// key-read latency percentiles, what the heavy reads got (200 or 503), the dropped
/// subscribers and the churn's fold-and-publish time per tick beside them.
fn load(args: &[String]) -> anyhow::Result<()> {
    let n = flag_or(args, "--customers", 200_000u64)?;
    let secs = flag_or(args, "--secs", 20.0f64)?;
    let heavy = flag_or(args, "--heavy", 8usize)?;
    let subs = flag_or(args, "--subscribers", 50usize)?;
    let tick = 100;
    let (store, stores) = rfm_store(n, tick);
    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(AppState {
        read_timeout: Duration::from_secs(2),
        ..AppState::new(
            stores.clone(),
            metrics.clone(),
            shopdiff_server::health::Health::new(),
            Auth::open(),
        )
    });
    let (_rt, addr) = serve(state)?;
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (stores, store, stop) = (stores.clone(), store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut version = vec![0u64; n as usize];
            let (mut t, mut k) = (tick, 1u64);
            let mut advance_ms = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let mut ups = Vec::with_capacity(20_000);
                for _ in 0..10_000 {
                    k = k
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let i = (k >> 33) % n;
                    let v = version[i as usize];
                    ups.push((row(i, v), t, -1));
                    ups.push((row(i, v + 1), t, 1));
                    version[i as usize] = v + 1;
                }
                let s = Instant::now();
                store.push(&ups);
                t += tick;
                stores.advance(t);
                advance_ms.push(s.elapsed().as_secs_f64() * 1e3);
                std::thread::sleep(Duration::from_millis(100));
            }
            advance_ms
        })
    };
    std::thread::sleep(Duration::from_millis(3000));
    let mut workers = Vec::new();
    for h in 0..heavy {
        let (stop, stores) = (stop.clone(), stores.clone());
        workers.push(std::thread::spawn(
            move || -> anyhow::Result<Vec<(u16, f64)>> {
                let mut c = Client::connect(addr)?;
                let mut out = Vec::new();
                let mut i = h;
                while !stop.load(Ordering::Relaxed) {
                    // a second back: inside the history, 10 ticks of changes to undo
                    let old = stores.as_of().unwrap_or(0).saturating_sub(1000);
                    let path = match i % 3 {
                        0 => "/v1/views/rfm".to_string(),
                        1 => format!("/v1/views/rfm?as_of={old}&limit=10"),
                        _ => "/v1/views/rfm?order_by=monetary&desc=true&limit=100".to_string(),
                    };
                    let s = Instant::now();
                    let (st, _) = c.get(&path)?;
                    out.push((st, s.elapsed().as_secs_f64() * 1e3));
                    i += 1;
                }
                Ok(out)
            },
        ));
    }
    let mut readers = Vec::new();
    for _ in 0..subs {
        let stop = stop.clone();
        readers.push(std::thread::spawn(move || -> anyhow::Result<u64> {
            let mut s = TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            s.write_all(b"GET /v1/views/rfm/subscribe HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
            let mut r = BufReader::new(s);
            let (mut line, mut events) = (String::new(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                line.clear();
                if r.read_line(&mut line)? == 0 {
                    break;
                }
                if line.starts_with("event:") {
                    events += 1;
                }
            }
            Ok(events)
        }));
    }
    // the stuck one: subscribes, never reads
    let mut stuck = TcpStream::connect(addr)?;
    stuck.write_all(b"GET /v1/views/rfm/subscribe HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    // /health on its own connection and thread, every 10 ms
    let health = {
        let stop = stop.clone();
        std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
            let mut c = Client::connect(addr)?;
            let mut ms = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let s = Instant::now();
                let (st, _) = c.get("/health")?;
                ms.push(s.elapsed().as_secs_f64() * 1e3);
                anyhow::ensure!(st == 200, "/health: {st}");
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(ms)
        })
    };
    let mut c = Client::connect(addr)?;
    let mut key_ms = Vec::new();
    let t0 = Instant::now();
    let mut k: u64 = 7;
    while t0.elapsed().as_secs_f64() < secs {
        k = k.wrapping_mul(6364136223846793005).wrapping_add(1);
        let path = format!("/v1/views/rfm?key=U{:07}", (k >> 33) % n);
        let s = Instant::now();
        let (st, _) = c.get(&path)?;
        key_ms.push(s.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(st == 200 || st == 503, "{path}: {st}");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let mut advance_ms = churn
        .join()
        .map_err(|_| anyhow::anyhow!("churn thread panicked"))?;
    let mut health_ms = health
        .join()
        .map_err(|_| anyhow::anyhow!("health thread panicked"))??;
    let (mut ok_ms, mut busy, mut gone) = (Vec::new(), 0usize, 0usize);
    for w in workers {
        for (st, ms) in w.join().map_err(|_| anyhow::anyhow!("reader panicked"))?? {
            match st {
                200 => ok_ms.push(ms),
                503 => busy += 1,
                // an `as_of=` the history dropped while the read queued
                410 => gone += 1,
                other => anyhow::bail!("heavy read answered {other}"),
            }
        }
    }
    let mut events = 0;
    for r in readers {
        match r
            .join()
            .map_err(|_| anyhow::anyhow!("subscriber panicked"))?
        {
            Ok(n) => events += n,
            Err(e) => eprintln!("a subscriber: {e}"),
        }
    }
    drop(stuck);
    let dropped = metrics
        .render(&stores, &shopdiff_server::health::Health::new())
        .lines()
        .find_map(|l| {
            l.strip_prefix("shopdiff_subscribers_dropped_total ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    println!(
        "load: rfm of {n} customers, 100,000 row changes/s, {heavy} heavy readers, {subs} subscribers and a stuck one, {secs:.0}s, 2 reader slots:"
    );
    println!(
        "  /health     n={:<5} p50 {:.2} ms  p99 {:.2} ms",
        health_ms.len(),
        pct(&mut health_ms, 0.5),
        pct(&mut health_ms, 0.99)
    );
    println!(
        "  key read    n={:<5} p50 {:.2} ms  p99 {:.2} ms",
        key_ms.len(),
        pct(&mut key_ms, 0.5),
        pct(&mut key_ms, 0.99)
    );
    println!(
        "  heavy reads {} answered (p50 {:.0} ms, p99 {:.0} ms), {busy} refused with 503, {gone} 410 (as_of gone)",
        ok_ms.len(),
        pct(&mut ok_ms, 0.5),
        pct(&mut ok_ms, 0.99)
    );
    println!("  subscribers {events} events read, dropped as too slow: {dropped}");
    println!(
        "  update (fold + publish 20,000 row updates) p50 {:.1} ms  p99 {:.1} ms",
        pct(&mut advance_ms, 0.5),
        pct(&mut advance_ms, 0.99)
    );
    println!("  peak RSS {:.0} MB", peak_rss_mb());
    Ok(())
}

fn freshness(args: &[String]) -> anyhow::Result<()> {
    let volume = flag_or(args, "--volume", 150.0f64)?;
    let secs = flag_or(args, "--secs", 20.0f64)?;
    let speed = flag_or(args, "--speed", 1.0f64)?;
    // 100 ms of wall time per tick: the generator runs `speed` times faster than the wall
    let tick = (100.0 * speed).round().max(1.0) as u64;
    let engine = Engine::start_with(
        &EngineConfig {
            fine_ticks: false,
            cluster: None,
            workers: 2,
            views: ViewsConfig {
                tick_ms: tick,
                ..ViewsConfig::default()
            },
        },
        HistoryConfig {
            span_ms: 60_000,
            max_updates: 1_000_000,
        },
    )
    .map_err(anyhow::Error::msg)?;
    let state = Arc::new(AppState {
        subscriber_buffer: 4096,
        ..AppState::new(
            engine.stores().clone(),
            Arc::new(Metrics::default()),
            shopdiff_server::health::Health::new(),
            Auth::open(),
        )
    });
    let (_rt, addr) = serve(state)?;
    let start = wall_ms();
    let gen = GenConfig {
        start,
        volume,
        users: flag_or(args, "--users", 10_000usize)?,
        records: 1_000_000_000,
        ..GenConfig::default()
    };
    let mut feeder = Feeder::new(TimeConfig {
        tick_ms: tick,
        lateness_ms: 0,
        ..TimeConfig::default()
    });
    let mut live =
        LiveGenerator::new(&gen, speed, true, &mut feeder).map_err(anyhow::Error::msg)?;
    // the client: SSE on data_quality; (as_of, received epoch ms)
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || -> anyhow::Result<Vec<(u64, i64)>> {
            // wait for the first as_of
            let mut s;
            loop {
                s = TcpStream::connect(addr)?;
                s.write_all(
                    b"GET /v1/views/data_quality/subscribe HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
                )?;
                let mut r = BufReader::new(s.try_clone()?);
                let mut line = String::new();
                r.read_line(&mut line)?;
                if line.contains("200") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            s.set_read_timeout(Some(Duration::from_millis(500)))?;
            let mut r = BufReader::new(s);
            let mut out = Vec::new();
            let mut event = String::new();
            let mut line = String::new();
            while !stop.load(Ordering::Relaxed) {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => continue,
                }
                let l = line.trim_end();
                if let Some(e) = l.strip_prefix("event:") {
                    event = e.to_string();
                } else if let Some(d) = l.strip_prefix("data:") {
                    if event == "update" {
                        let now = wall_ms();
                        let j: serde_json::Value = serde_json::from_str(d)?;
                        if let Some(t) = j["as_of"].as_u64() {
                            out.push((t, now));
                        }
                    }
                }
            }
            Ok(out)
        })
    };
    let t0 = Instant::now();
    let mut fed = 0u64;
    while t0.elapsed() < Duration::from_secs_f64(secs) {
        let elapsed = (wall_ms() - start).max(0) as u64;
        fed += live.feed_due(elapsed, 1_000_000, &mut feeder).unwrap_or(0) as u64;
        let b = feeder.cut();
        engine.feed(b);
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let seen = client
        .join()
        .map_err(|_| anyhow::anyhow!("client panicked"))??;
    // skip the first second (start-up)
    let mut delays: Vec<f64> = seen
        .iter()
        .filter(|(t, _)| *t as i64 > start + (1000.0 * speed) as i64)
        // the wall time at which simulated time reached the end of tick t
        .map(|(t, recv)| *recv as f64 - (start as f64 + (*t as i64 - start) as f64 / speed))
        .collect();
    println!(
        "freshness: {:.0} records/s for {took:.0}s, tick {tick} ms of event time = 100 ms of wall time at speed {speed}, lateness 0, all views, 2 workers; {} deltas delivered",
        fed as f64 / took,
        delays.len()
    );
    println!(
        "  end of tick -> delta at the SSE client: p50 {:.0} ms  p99 {:.0} ms  (a record early in its tick: + up to 100 ms)",
        pct(&mut delays, 0.5),
        pct(&mut delays, 0.99)
    );
    println!("  peak RSS {:.0} MB", peak_rss_mb());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("reads") => reads(&args),
        Some("freshness") => freshness(&args),
        Some("load") => load(&args),
        _ => {
            eprintln!("usage: serve reads [--customers N] | serve load [--customers N] [--secs S] [--heavy H] [--subscribers S] | serve freshness [--volume V] [--users U] [--speed X] [--secs S]");
            std::process::exit(2)
        }
    }
}
