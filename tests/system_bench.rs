//! The benchmark script cannot rot: `bench/run.sh --quick` runs to completion, prints a table
//! with every scenario's row (figures, or an explicit "not run: reason"), judges every target,
//! and leaves nothing running. It needs nginx, wrk and curl (`scripts/test-deps.sh` installs
//! them); without them this test fails with the install command instead of passing silently.
//! It runs the system tests' one static build (`crate::static_build`), built before its
//! clock starts, and takes its turn at the machine (`crate::heavy_turn`).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// A hang guard, not a speed target: a quick run takes about a minute on an idle 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(900);

/// Row ids of a quick run, in order (quick mode: 50 concurrent streams, 1 k / 10 k cache entries).
const ROWS: &[&str] = &[
    "1",
    "1p",
    "1n",
    "2",
    "2p",
    "2q",
    "2b",
    "3m",
    "3d",
    "4",
    "4b",
    "11-miss",
    "11-hit",
    "10r-miss",
    "10r-hit",
    "10m-miss",
    "10m-hit",
    "5off",
    "5on",
    "6d-1",
    "6n-1",
    "6b-1",
    "6r-1",
    "6ta-1",
    "6tr-1",
    "6d-50",
    "6n-50",
    "6b-50",
    "6r-50",
    "6ta-50",
    "6tr-50",
    "6tc-1",
    "6tcr-1",
    "6tc-50",
    "6tcr-50",
    "7-1000",
    "7-10000",
    "8-idle",
    "8-streams",
    "9-idle",
    "9-attack",
    "9-bodies",
];

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn number(cell: &str) -> Option<f64> {
    cell.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Checks one table row: either every figure is "-" and the notes say why, or it has figures.
fn check_row(id: &str, row: &str) {
    let cells: Vec<&str> = row
        .trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect();
    assert_eq!(cells.len(), 9, "row {id} has 9 columns: {row}");
    let (rps, p50, p99, rss, notes) = (cells[2], cells[3], cells[4], cells[7], cells[8]);
    if id.starts_with("11-") && !notes.starts_with("not run: ") {
        // the alternating rounds: a median ratio and each round's, in the notes
        let median = notes
            .strip_prefix("median ")
            .and_then(|rest| rest.split(';').next())
            .and_then(number)
            .unwrap_or_else(|| panic!("row {id} gives its median ratio: {row}"));
        assert!(median > 0.0, "row {id}: a ratio above 0: {row}");
        // and the machine's CPU a request of each side, a figure for both
        let cpu = notes
            .split("CPU a request (median of the rounds): ")
            .nth(1)
            .unwrap_or_else(|| panic!("row {id} gives the CPU a request: {row}"));
        let figures: Vec<f64> = cpu
            .split(", ")
            .filter_map(|side| side.split_whitespace().nth(1))
            .filter_map(number)
            .collect();
        assert_eq!(
            figures.len(),
            2,
            "row {id}: both sides' CPU a request: {row}"
        );
        assert!(
            figures.iter().all(|f| *f > 0.0),
            "row {id}: CPU above 0: {row}"
        );
        return;
    }
    if let Some(reason) = notes.strip_prefix("not run: ") {
        assert!(
            !reason.trim().is_empty(),
            "row {id} says why it did not run: {row}"
        );
        for c in &cells[2..8] {
            assert_eq!(*c, "-", "a row that did not run shows no figure: {row}");
        }
        return;
    }
    assert!(
        !notes.contains("errors"),
        "row {id} ran without errors: {row}"
    );
    if id.starts_with("8-") || id == "9-bodies" {
        let mb = number(rss).unwrap_or_else(|| panic!("row {id} has a peak RSS: {row}"));
        assert!(
            mb > 0.5 && mb < 4096.0,
            "row {id}: RSS {mb} MB is plausible: {row}"
        );
        return;
    }
    let p50 = number(p50).unwrap_or_else(|| panic!("row {id} has a p50: {row}"));
    let p99 = number(p99).unwrap_or_else(|| panic!("row {id} has a p99: {row}"));
    assert!(p50 > 0.0 && p99 >= p50, "row {id}: 0 < p50 ≤ p99: {row}");
    if !id.starts_with('6') {
        let rps = number(rps).unwrap_or_else(|| panic!("row {id} has req/s: {row}"));
        assert!(rps > 10.0, "row {id}: some requests per second: {row}");
    }
}

/// Processes whose command line mentions `dir` (what the script starts does, through its files).
fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect()
}

#[test]
fn bench_quick_mode_prints_every_scenario_row_and_leaves_nothing_running() {
    let missing: Vec<&str> = ["nginx", "wrk", "curl"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    assert!(
        missing.is_empty(),
        "bench/run.sh needs {missing:?}: install them with `apt-get install -y nginx wrk curl` \
         (.ci/run does this)"
    );
    let build = crate::static_build();
    let _turn = crate::heavy_turn();
    let dir = TempDir::new();
    let table = dir.path().join("table.md");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/run.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .args(["--quick", "--no-install", "--out"])
        .arg(&table)
        .env("TMPDIR", dir.path())
        .env("BENCH_RELAY_BIN", &build.relay)
        .env("BENCH_TOOL_BIN", &build.bench_tool)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in PROXY_ENV_VARS {
        cmd.env_remove(var);
    }
    let mut child = cmd.spawn().expect("start bash bench/run.sh");
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for bench/run.sh") {
            break Some(st);
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill(); // its EXIT trap does not run on SIGKILL; the check below shows leftovers
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    eprintln!("--- bench/run.sh stderr ---\n{stderr}");
    let status = status.unwrap_or_else(|| panic!("bench/run.sh --quick took over {TIMEOUT:?}"));
    assert!(
        status.success(),
        "bench/run.sh --quick failed ({status})\n{stdout}"
    );

    let written = std::fs::read_to_string(&table).expect("--out FILE holds the table");
    assert!(
        stdout.contains(written.trim()),
        "stdout shows the same table"
    );
    assert!(
        written.contains("Command: `bench/run.sh --quick"),
        "{written}"
    );
    assert!(
        written.contains("Quick mode"),
        "quick figures are marked: {written}"
    );
    for id in ROWS {
        let prefix = format!("| {id} |");
        let row = written
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("the table has a row {id}:\n{written}"));
        check_row(id, row);
    }
    // the targets table: every row ends with a verdict, and none is missing
    let targets: Vec<&str> = written
        .lines()
        .skip_while(|l| !l.starts_with("| target |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(targets.len() >= 14, "every target is judged:\n{written}");
    for t in &targets {
        assert!(
            t.ends_with("| met |") || t.ends_with("| **missed** |") || t.ends_with("| not run |"),
            "a target without a verdict: {t}"
        );
    }

    // nginx workers exit a moment after their master: wait for them, a leftover stays
    let gone_by = Instant::now() + Duration::from_secs(30);
    let mut left = processes_mentioning(dir.path());
    while !left.is_empty() && Instant::now() < gone_by {
        thread::sleep(Duration::from_millis(100));
        left = processes_mentioning(dir.path());
    }
    assert!(
        left.is_empty(),
        "bench/run.sh left processes running: {left:#?}"
    );
}
