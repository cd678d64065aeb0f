//! Cluster throughput and recovery: a recorded stream replayed by shopdiff clusters of several
//! processes on this machine, and the time to bring a cluster back after a process is killed.
//!
//! Run with: cargo run --release -p shopdiff-benches --bin cluster -- DIR
//!            [--topologies 1x2,2x1,4x1] [--runs 3] [--recover]
//!
//! For each topology `NxW` (N processes of W workers) it runs `shopdiff replay DIR -w W
//! --processes N --process i` for every i, `--runs` times, and prints the median replay
//! records/s (process 0's own timing, which excludes the connection set-up), the wall time
//! from the first spawn to the last exit, the bytes the processes sent each other per record
//! (timely's communication log, `shopdiff_cluster_bytes_sent_total`) and the largest peak RSS
//! of a process. `--recover` then starts a 2 x 1 cluster with `scripts/cluster.sh start 2 1 --
//! --replay DIR`, kills process 1 with SIGKILL half-way, and times `scripts/cluster.sh start`
//! until both processes serve the final `as_of` again (state is rebuilt by replaying the
//! source). The `shopdiff` binary is `target/release/shopdiff` (or `SHOPDIFF_BIN`).

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    std::env::var_os("SHOPDIFF_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|d| d.join("shopdiff")))
        })
        .unwrap_or_else(|| PathBuf::from("target/release/shopdiff"))
}

fn arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The number after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> Option<f64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let n: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    n.parse().ok()
}

struct RunResult {
    records: f64,
    replay_secs: f64,
    wall_secs: f64,
    bytes_sent: f64,
    peak_rss_mb: f64,
}

fn run_topology(dir: &Path, n: usize, w: usize, port: u16) -> anyhow::Result<RunResult> {
    let t0 = Instant::now();
    let children: Vec<_> = (0..n)
        .map(|p| {
            let mut c = Command::new(bin());
            c.arg("replay")
                .arg(dir)
                .args(["-w", &w.to_string(), "--batch", "50000"]);
            if n > 1 {
                c.args(["--processes", &n.to_string(), "--process", &p.to_string()])
                    .args(["--cluster-port", &port.to_string()]);
            }
            c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut logs = Vec::new();
    for c in children {
        let out = c.wait_with_output()?;
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        if !out.status.success() {
            bail!("a process of {n}x{w} failed: {log}");
        }
        logs.push(log);
    }
    let wall_secs = t0.elapsed().as_secs_f64();
    let records = number_after(&logs[0], "replayed ").context("no record count")?;
    // "replayed N records (... late) in 5.22s (...)"
    let replay_secs = logs[0]
        .split(") in ")
        .nth(1)
        .and_then(|s| number_after(s, ""))
        .context("no replay time")?;
    let bytes_sent = logs
        .iter()
        .filter_map(|l| number_after(l, "sent "))
        .fold(0.0, |a, b| a + b);
    let peak_rss_mb = logs
        .iter()
        .filter_map(|l| number_after(l, "peak RSS "))
        .fold(0.0, f64::max);
    Ok(RunResult {
        records,
        replay_secs,
        wall_secs,
        bytes_sent,
        peak_rss_mb,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf)
}

fn ready_as_of(port: u16) -> Option<u64> {
    let r = get(port, "/ready")?;
    if !r.starts_with("HTTP/1.0 200") && !r.starts_with("HTTP/1.1 200") {
        return None;
    }
    number_after(&r, "\"as_of\":").map(|x| x as u64)
}

fn script(args: &[&str], state: &Path, http: u16, port: u16) -> anyhow::Result<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts/cluster.sh"))
        .args(args)
        .env("SHOPDIFF_CLUSTER_DIR", state)
        .env("SHOPDIFF_HTTP_PORT", http.to_string())
        .env("SHOPDIFF_CLUSTER_PORT", port.to_string())
        .env("SHOPDIFF_BIN", bin())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() && args.first() != Some(&"status") {
        bail!(
            "cluster.sh {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

fn recover(dir: &Path, final_as_of: u64, full_secs: f64) -> anyhow::Result<()> {
    let state = std::env::temp_dir().join(format!("shopdiff-bench-cluster-{}", std::process::id()));
    let (http, port) = (28_480, 28_400);
    let d = dir.to_string_lossy().to_string();
    script(
        &["start", "2", "1", "--", "--replay", &d, "--batch", "50000"],
        &state,
        http,
        port,
    )?;
    std::thread::sleep(Duration::from_secs_f64(full_secs / 2.0));
    let before = ready_as_of(http + 1);
    let pid = std::fs::read_to_string(state.join("p1.pid"))?;
    Command::new("kill").args(["-9", pid.trim()]).status()?;
    let killed = Instant::now();
    // the survivor reports it
    let mut reported = None;
    while killed.elapsed() < Duration::from_secs(30) {
        if let Some(r) = get(http, "/health") {
            if r.contains("\"down\"") {
                reported = Some(killed.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let t0 = Instant::now();
    script(&["start"], &state, http, port)?;
    let mut first = None;
    loop {
        let a = (ready_as_of(http), ready_as_of(http + 1));
        if first.is_none() && a.0.is_some() && a.1.is_some() {
            first = Some(t0.elapsed());
        }
        if a == (Some(final_as_of), Some(final_as_of)) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(3600) {
            bail!("the restarted cluster never reached as_of {final_as_of}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let back = t0.elapsed();
    script(&["stop"], &state, http, port)?;
    println!("recovery of a 2 x 1 cluster after kill -9 of process 1 (as_of then {before:?}):");
    println!(
        "  failure reported by process 0 after {:.0} ms",
        reported.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    );
    println!(
        "  restart to first as_of served by both: {:.2} s; to the final as_of (state rebuilt by replay): {:.2} s",
        first.map_or(f64::NAN, |d| d.as_secs_f64()),
        back.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .context("usage: cluster DIR [--topologies 1x2,2x1,4x1] [--runs 3] [--recover]")?,
    );
    let topologies = arg(&args, "--topologies").unwrap_or("1x2,2x1,4x1");
    let runs: usize = arg(&args, "--runs")
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    println!(
        "{:<6} {:>12} {:>10} {:>10} {:>16} {:>14}",
        "NxW", "records/s", "replay s", "wall s", "bytes sent/rec", "max RSS MB"
    );
    let mut last = None;
    for (k, t) in topologies.split(',').enumerate() {
        let (n, w) = t
            .split_once('x')
            .and_then(|(n, w)| Some((n.parse::<usize>().ok()?, w.parse::<usize>().ok()?)))
            .with_context(|| format!("topology {t} is not NxW"))?;
        let mut results = Vec::new();
        for r in 0..runs {
            results.push(run_topology(
                &dir,
                n,
                w,
                27_000 + (k * runs + r) as u16 * 8,
            )?);
        }
        let records = results[0].records;
        let rate = median(results.iter().map(|r| r.records / r.replay_secs).collect());
        println!(
            "{:<6} {:>12.0} {:>10.2} {:>10.2} {:>16.0} {:>14.0}",
            t,
            rate,
            median(results.iter().map(|r| r.replay_secs).collect()),
            median(results.iter().map(|r| r.wall_secs).collect()),
            median(results.iter().map(|r| r.bytes_sent / records).collect()),
            median(results.iter().map(|r| r.peak_rss_mb).collect()),
        );
        last = Some(results);
    }
    if args.iter().any(|a| a == "--recover") {
        let out = Command::new(bin())
            .arg("replay")
            .arg(&dir)
            .args(["-w", "2", "--batch", "50000"])
            .output()?;
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        let final_as_of = number_after(&log, "; as_of ").context("no as_of")? as u64;
        let secs = last
            .and_then(|r| r.first().map(|r| r.replay_secs))
            .unwrap_or(10.0);
        recover(&dir, final_as_of, secs)?;
    }
    Ok(())
}
