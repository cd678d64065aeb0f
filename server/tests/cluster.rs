//! Multi-process clusters (issue 7), with the real `shopdiff` binary and `scripts/cluster.sh`:
//! 1 x 4, 2 x 2 and 4 x 1 give byte-identical snapshots of every view; a process killed with
//! SIGKILL mid-stream is reported by the survivor (503 with the reason, subscriptions ended
//! with it), `scripts/cluster.sh start` brings the cluster back to exactly the views of an
//! uninterrupted single-process run on every process, and a subscription resumed with `since=`
//! misses and repeats nothing.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{
    all_views, fold, free_ports, get, model_of, try_get, wait_as_of, KillOnDrop, Sse, VIEWS,
};

const BIN: &str = env!("CARGO_BIN_EXE_shopdiff");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shopdiff-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(out: Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{what} failed: {err}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    err + &String::from_utf8_lossy(&out.stdout)
}

fn generate(dir: &Path, records: u64, seed: u64) {
    let out = Command::new(BIN)
        .args(["generate", "--out"])
        .arg(dir)
        .args([
            "--records",
            &records.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .args(["--users", "2000", "--products", "300"])
        .args(["--bad-rate", "0.003", "--duplicate-rate", "0.003"])
        .args(["--late-rate", "0.002", "--anomaly-rate", "0.01"])
        .output()
        .unwrap();
    ok(out, "generate");
}

/// `shopdiff replay STREAM --snapshot SNAPSHOT -w W` with `cluster` flags.
fn replay(stream: &Path, snapshot: &Path, workers: usize, cluster: &[String]) -> Child {
    let mut c = Command::new(BIN);
    c.arg("replay")
        .arg(stream)
        .arg("--snapshot")
        .arg(snapshot)
        .args(["-w", &workers.to_string(), "--batch", "3000"])
        .args(cluster);
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn same_snapshots(a: &Path, b: &Path, what: &str) {
    for view in VIEWS.split(',') {
        let f = format!("{view}.parquet");
        let x = std::fs::read(a.join(&f)).unwrap();
        let y = std::fs::read(b.join(&f)).unwrap_or_default();
        assert!(
            x == y,
            "{what}: {view} differs from the single-process snapshot"
        );
    }
}

#[test]
fn one_by_four_two_by_two_and_four_by_one_give_identical_snapshots() {
    let dir = scratch("topologies");
    let stream = dir.join("stream");
    generate(&stream, 40_000, 7);
    let single = dir.join("1x4");
    ok(
        replay(&stream, &single, 4, &[]).wait_with_output().unwrap(),
        "1 x 4",
    );
    // the snapshot holds real rows: the comparison below cannot pass on empty files
    let rfm = std::fs::metadata(single.join("rfm.parquet")).unwrap().len();
    assert!(rfm > 10_000, "rfm snapshot is only {rfm} bytes");
    for (n, w) in [(2usize, 2usize), (4, 1)] {
        let port = free_ports(n as u16);
        // 2 x 2 from a hostfile (as on several machines), 4 x 1 on local ports
        let hostfile = dir.join(format!("hosts-{n}.txt"));
        let hosts: Vec<String> = (0..n)
            .map(|i| format!("127.0.0.1:{}", port + i as u16))
            .collect();
        std::fs::write(
            &hostfile,
            format!("# {n} processes\n{}\n", hosts.join("\n")),
        )
        .unwrap();
        let procs: Vec<(PathBuf, Child)> = (0..n)
            .map(|p| {
                let out = dir.join(format!("{n}x{w}-p{p}"));
                let mut flags = vec!["--process".to_string(), p.to_string()];
                if n == 2 {
                    flags.extend(["--hostfile".to_string(), hostfile.display().to_string()]);
                } else {
                    flags.extend(["--processes".to_string(), n.to_string()]);
                    flags.extend(["--cluster-port".to_string(), port.to_string()]);
                }
                let child = replay(&stream, &out, w, &flags);
                (out, child)
            })
            .collect();
        for (p, (out, child)) in procs.into_iter().enumerate() {
            let log = ok(
                child.wait_with_output().unwrap(),
                &format!("{n} x {w}, process {p}"),
            );
            if p > 0 {
                assert!(log.contains("every view complete"), "{log}");
            }
            // every process writes every view whole, not only its shard
            same_snapshots(&single, &out, &format!("{n} x {w}, process {p}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `scripts/cluster.sh` with its own state directory and ports.
struct Script {
    dir: PathBuf,
    http: u16,
    cluster_port: u16,
    /// More environment (a shared hostfile, the processes of "this machine").
    env: Vec<(&'static str, String)>,
}

impl Script {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../scripts/cluster.sh"
            ))
            .args(args)
            .env("SHOPDIFF_CLUSTER_DIR", &self.dir)
            .env("SHOPDIFF_HTTP_PORT", self.http.to_string())
            .env("SHOPDIFF_CLUSTER_PORT", self.cluster_port.to_string())
            .env("SHOPDIFF_BIN", BIN)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    fn addr(&self, p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http + p))
    }

    fn pid(&self, p: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("p{p}.pid")))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
    }
}

#[test]
fn a_killed_process_is_reported_and_a_restart_gives_identical_views_and_resumes_subscriptions() {
    let dir = scratch("recovery");
    let stream = dir.join("stream");
    generate(&stream, 150_000, 11);
    // the uninterrupted single-process run: its final as_of and every view
    let log = ok(
        replay(&stream, &dir.join("snap"), 2, &[])
            .wait_with_output()
            .unwrap(),
        "replay",
    );
    let final_as_of: u64 = log
        .split("; as_of ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no as_of in {log}"));
    let history = ["--history-ms", "864000000"];
    let reference = {
        let port = free_ports(1);
        let child = Command::new(BIN)
            .args(["run", "--replay"])
            .arg(&stream)
            .args(["-w", "2", "--http", &format!("127.0.0.1:{port}")])
            .args(history)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _stop = KillOnDrop(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_as_of(addr, final_as_of);
        all_views(addr)
    };
    assert_eq!(reference["as_of"], final_as_of);

    let script = Script {
        dir: dir.join("cluster"),
        http: free_ports(2),
        cluster_port: free_ports(2),
        env: Vec::new(),
    };
    let stream_arg = stream.to_string_lossy().to_string();
    let mut args = vec![
        "start",
        "2",
        "1",
        "--",
        "--replay",
        &stream_arg,
        "--batch",
        "300",
    ];
    args.extend(history);
    let out = script.run(&args);
    let text = ok(out, "cluster.sh start 2 1");
    assert!(text.contains("process 1"), "{text}");

    // a subscriber on process 1 folds rfm_segments until process 0 dies under it
    let key = ["segment"];
    let (p0, p1) = (script.addr(0), script.addr(1));
    let t0 = Instant::now();
    while try_get(p1, "/ready").0 != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "process 1 never ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut sub = Sse::open(p1, "/v1/views/rfm_segments/subscribe");
    let (ev, snap) = sub.next().unwrap();
    assert_eq!(ev, "snapshot");
    let mut model = model_of(&snap["rows"], &key);
    let mut as_of = snap["as_of"].as_u64().unwrap();
    let mut updates = 0;
    while updates < 3 {
        let (ev, d) = sub.next().expect("the subscription ended early");
        as_of = d["as_of"].as_u64().unwrap();
        if ev == "update" {
            fold(&mut model, &key, &d);
            updates += 1;
        }
    }
    let killed = Command::new("kill")
        .args(["-9", &script.pid(0)])
        .status()
        .unwrap();
    assert!(killed.success());
    // the survivor ends the subscription with the reason; what it sent before is exact
    let reason = loop {
        let (ev, d) = sub
            .next()
            .expect("the subscription closed without an error event");
        match ev.as_str() {
            "update" => {
                fold(&mut model, &key, &d);
                as_of = d["as_of"].as_u64().unwrap();
            }
            "progress" => as_of = d["as_of"].as_u64().unwrap(),
            "error" => break d["reason"].as_str().unwrap().to_string(),
            other => panic!("unexpected event {other}"),
        }
    };
    assert!(reason.contains("process of the cluster"), "{reason}");
    assert!(
        as_of < final_as_of,
        "the replay ended before the kill ({as_of}): the test did not kill mid-stream"
    );
    // reads on the survivor: a clear 503, never numbers
    let (st, body) = get(p1, "/v1/views/rfm?limit=1");
    assert_eq!(st, 503, "{body}");
    assert!(
        body.contains("process of the cluster") && body.contains("cluster.sh start"),
        "{body}"
    );
    assert_eq!(get(p1, "/health").0, 503);
    let status = script.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        !status.status.success(),
        "status must fail while a process is down: {text}"
    );
    assert!(
        text.contains("process 0: DOWN") && text.contains("process 1: running"),
        "{text}"
    );

    // restart: every process again, state rebuilt from the source, exactly the reference
    let text = ok(script.run(&["start"]), "cluster.sh start (restart)");
    assert!(text.contains("are down"), "{text}");
    wait_as_of(p0, final_as_of);
    wait_as_of(p1, final_as_of);
    assert_eq!(all_views(p0), reference, "process 0 after the restart");
    assert_eq!(all_views(p1), reference, "process 1 after the restart");

    // the subscriber resumes where it was: nothing missed, nothing twice
    let mut resumed = Sse::open(
        p1,
        &format!("/v1/views/rfm_segments/subscribe?since={as_of}"),
    );
    let mut t = as_of;
    while t < final_as_of {
        let (ev, d) = resumed.next().expect("the resumed subscription ended");
        assert_ne!(
            ev, "snapshot",
            "a resume starts after since, without a snapshot"
        );
        t = d["as_of"].as_u64().unwrap();
        if ev == "update" {
            fold(&mut model, &key, &d);
        }
    }
    assert_eq!(
        model,
        model_of(&reference["views"]["rfm_segments"]["rows"], &key),
        "the resumed subscription's rows"
    );
    let status = script.run(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    drop(script);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_hostfile_starts_a_cluster_from_two_places_as_on_two_machines() {
    let dir = scratch("hostfile");
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/data");
    let log = ok(
        replay(&data, &dir.join("snap"), 2, &[])
            .wait_with_output()
            .unwrap(),
        "replay",
    );
    let final_as_of: u64 = log
        .split("; as_of ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no as_of in {log}"));
    let port = free_ports(2);
    let hostfile = dir.join("hosts.txt");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{port}\n127.0.0.1:{}\n", port + 1),
    )
    .unwrap();
    let http = free_ports(2);
    // "machine" A runs process 0, "machine" B process 1, each with its own state directory
    let machine = |name: &str, here: &str| Script {
        dir: dir.join(name),
        http,
        cluster_port: 1,
        env: vec![
            ("SHOPDIFF_HOSTFILE", hostfile.display().to_string()),
            ("SHOPDIFF_PROCESSES_HERE", here.to_string()),
        ],
    };
    let (a, b) = (machine("a", "0"), machine("b", "1"));
    let data_arg = data.display().to_string();
    let flags = [
        "start", "2", "1", "--", "--replay", &data_arg, "--batch", "50",
    ];
    let text = ok(a.run(&flags), "start on A");
    assert!(
        text.contains("process 0") && !text.contains("process 1"),
        "{text}"
    );
    ok(b.run(&flags), "start on B");
    wait_as_of(a.addr(0), final_as_of);
    wait_as_of(b.addr(1), final_as_of);
    let views = all_views(a.addr(0));
    assert_eq!(all_views(b.addr(1)), views);
    assert!(views["views"]["rfm"]["rows"]
        .as_array()
        .is_some_and(|r| !r.is_empty()));
    let status = a.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(status.status.success(), "{text}");
    assert!(text.contains("process 1: on another machine"), "{text}");
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}
