//! Test helpers shared by the HTTP and cluster tests: a tiny HTTP/1.0 client, an SSE
//! reader and a model of a subscribed view.
#![allow(dead_code)] // each test file uses its own subset

use serde_json::Value as J;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A GET over HTTP/1.0 (no chunking): status and body.
pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: 127.0.0.1\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status: u16 = buf[9..12].parse().unwrap();
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_with(addr, path, &[])
}

/// [`get`], with status 0 while nothing listens at `addr` (a server still starting).
pub fn try_get(addr: SocketAddr, path: &str) -> (u16, String) {
    match TcpStream::connect(addr) {
        Err(e) => (0, e.to_string()),
        Ok(_) => get(addr, path),
    }
}

pub fn get_json(addr: SocketAddr, path: &str) -> J {
    let (st, body) = get(addr, path);
    assert_eq!(st, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

pub fn wait_ready(addr: SocketAddr) -> u64 {
    let t0 = Instant::now();
    loop {
        let (st, body) = get(addr, "/ready");
        if st == 200 {
            let j: J = serde_json::from_str(&body).unwrap();
            return j["as_of"].as_u64().unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "never ready: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads SSE events `(event, data)` from an HTTP/1.0 response.
pub struct Sse {
    r: BufReader<TcpStream>,
}

impl Sse {
    pub fn open(addr: SocketAddr, path: &str) -> Sse {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("200"), "{path}: {line}");
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        Sse { r }
    }

    pub fn next(&mut self) -> Option<(String, J)> {
        let (mut ev, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !data.is_empty() {
                    return Some((ev, serde_json::from_str(&data).unwrap()));
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("event:") {
                ev = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    }
}

pub type Model = BTreeMap<String, J>;

pub fn fold(model: &mut Model, key: &[&str], ev: &J) {
    for d in ev["diffs"].as_array().unwrap() {
        let k: Vec<String> = key.iter().map(|c| d["row"][c].to_string()).collect();
        let k = k.join("|");
        if d["diff"] == -1 {
            assert_eq!(
                model.remove(&k).as_ref(),
                Some(&d["row"]),
                "retracted row {k} was not there"
            );
        } else {
            assert!(
                model.insert(k.clone(), d["row"].clone()).is_none(),
                "row {k} added twice"
            );
        }
    }
}

pub fn model_of(rows: &J, key: &[&str]) -> Model {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let k: Vec<String> = key.iter().map(|c| r[c].to_string()).collect();
            (k.join("|"), r.clone())
        })
        .collect()
}

/// Every view, comma-separated, for `/v1/query?views=`.
pub const VIEWS: &str = "rfm,rfm_segments,cohorts,revenue_hourly,revenue_daily,fraud_alerts,product_performance,inventory,funnel_daily,data_quality";

/// A base port with `n` consecutive free ports above it (each call tries other ports).
pub fn free_ports(n: u16) -> u16 {
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = (std::process::id() as u16).wrapping_add(call.wrapping_mul(1013));
    for i in 0..200u16 {
        let base = 20_000 + (seed.wrapping_mul(7).wrapping_add(i * 97)) % 30_000;
        let all_free = (0..n).all(|k| TcpListener::bind(("127.0.0.1", base + k)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// Kills a child process when the test ends, also when it fails.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the server at `addr` is ready at `as_of`.
pub fn wait_as_of(addr: SocketAddr, as_of: u64) {
    let t0 = Instant::now();
    loop {
        let (st, body) = try_get(addr, "/ready");
        if st == 200 && serde_json::from_str::<J>(&body).unwrap()["as_of"] == as_of {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "{addr} never reached as_of {as_of}: {st} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every view at the current as_of, as one JSON answer.
pub fn all_views(addr: SocketAddr) -> J {
    get_json(addr, &format!("/v1/query?views={VIEWS}"))
}

/// A directory under the system's temp dir (made empty), removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
