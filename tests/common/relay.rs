//! Starting the `llm-relay` binary: as a long-running server ([`Relay`]) or
//! to completion with arguments ([`run_relay`]), plus a std-only [`TempDir`].

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::PROXY_ENV_VARS;

/// Path of the binary under test, built by cargo for integration tests.
pub const RELAY_BIN: &str = env!("CARGO_BIN_EXE_llm-relay");

/// How long the relay may take to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "llm-relay-test-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            nanos
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn base_command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(RELAY_BIN);
    for var in PROXY_ENV_VARS {
        cmd.env_remove(var);
    }
    cmd.env_remove("LLM_RELAY_TEST_HOOKS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A running relay process. Killed on drop.
pub struct Relay {
    child: Child,
    addr: String,
    stderr_lines: Arc<Mutex<Vec<String>>>,
    stderr_thread: Option<JoinHandle<()>>,
    config_path: PathBuf,
    _dir: TempDir,
}

impl Relay {
    /// Writes `config_jsonc` to a temp file and starts the relay with
    /// `--config FILE`.
    pub fn start(config_jsonc: &str) -> Relay {
        Relay::start_with(config_jsonc, &[], &[])
    }

    /// Like [`Relay::start`] with extra environment variables and arguments.
    pub fn start_with(config_jsonc: &str, env: &[(&str, &str)], args: &[&str]) -> Relay {
        let dir = TempDir::new();
        let config_path = dir.write("config.jsonc", config_jsonc);
        let mut cmd = base_command(env);
        cmd.arg("--config").arg(&config_path).args(args);
        Relay::spawn(cmd, dir, config_path)
    }

    /// Starts the relay with a command line of the test's own (e.g. a static build under
    /// `unshare`); `dir` lives as long as the relay.
    pub fn start_command(mut cmd: Command, dir: TempDir, config_path: PathBuf) -> Relay {
        for var in PROXY_ENV_VARS {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Relay::spawn(cmd, dir, config_path)
    }

    fn spawn(mut cmd: Command, dir: TempDir, config_path: PathBuf) -> Relay {
        let mut child = cmd.spawn().expect("spawn llm-relay");

        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr piped");
        let sink = Arc::clone(&stderr_lines);
        let stderr_thread = thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[relay] {line}");
                sink.lock().unwrap().push(line);
            }
        });

        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = tx.send(first);
            for line in reader.lines() {
                let Ok(line) = line else { break };
                eprintln!("[relay stdout] {line}");
            }
        });

        let mut relay = Relay {
            child,
            addr: String::new(),
            stderr_lines,
            stderr_thread: Some(stderr_thread),
            config_path,
            _dir: dir,
        };
        let first = rx.recv_timeout(STARTUP_TIMEOUT);
        let first_line = first.as_deref().unwrap_or("").trim_end().to_string();
        match first_line.strip_prefix("listening on http://") {
            Some(addr) if !addr.is_empty() => relay.addr = addr.to_string(),
            _ => {
                let stderr = relay.kill_and_collect_stderr();
                panic!(
                    "relay did not print `listening on http://ADDR` within {STARTUP_TIMEOUT:?} \
                     (first stdout line: {first_line:?})\n--- relay stderr ---\n{stderr}"
                );
            }
        }
        relay
    }

    fn kill_and_collect_stderr(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(h) = self.stderr_thread.take() {
            let _ = h.join();
        }
        self.stderr_text()
    }

    /// `127.0.0.1:PORT` as printed by the relay.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://ADDR` + `path` (path starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The OpenAI-style base URL clients use: `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        self.url("/v1")
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A memory figure of the relay process from `/proc/PID/status` in kB: `VmRSS` (resident
    /// now) or `VmHWM` (the most it was resident so far).
    pub fn memory_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status:\n{status}"))
    }

    /// Sends a signal (`TERM`, `INT`, `HUP`, ...) to the relay with the shell's `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{name} {}", self.pid()))
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `timeout` for the process to exit; its exit code, `Some(None)` if a signal
    /// ended it, `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st.code());
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the relay wrote to stderr so far, one line per log line.
    pub fn stderr_text(&self) -> String {
        self.stderr_lines.lock().unwrap().join("\n")
    }

    /// Polls the log until a line satisfies `pred` (the access log may be
    /// written just after the response). Returns that line, or `None`.
    pub fn wait_for_log_line(
        &self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .stderr_lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| pred(l.as_str()))
            {
                return Some(l.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The stderr thread ends by itself once the pipe closes; don't block.
    }
}

/// Result of running the binary to completion.
#[derive(Debug)]
pub struct RunOutput {
    /// Exit code; `None` if killed by a signal or by the timeout.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

/// Runs `llm-relay ARGS` to completion (killed after 90 s) and returns its
/// exit code and output.
pub fn run_relay(args: &[&str], env: &[(&str, &str)]) -> RunOutput {
    let mut child = base_command(env).args(args).spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let t_err = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    // a hang guard, not a time limit: a command that is meant to exit does, however busy the
    // machine (a cassette import fsyncs every entry); one that serves instead is killed here
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = t_out.join().unwrap();
    let stderr = t_err.join().unwrap();
    for l in stderr.lines() {
        eprintln!("[relay] {l}");
    }
    RunOutput {
        code: status.code(),
        stdout,
        stderr,
        timed_out,
    }
}

/// A config document (plain JSON, which is valid JSONC) listening on
/// `127.0.0.1:0` and forwarding to `upstream`, with the keys of `extra`
/// (an object) added or overriding.
pub fn config_json(upstream: &str, extra: serde_json::Value) -> String {
    let mut cfg = serde_json::json!({"listen": "127.0.0.1:0", "upstream": upstream});
    if let serde_json::Value::Object(m) = extra {
        for (k, v) in m {
            cfg[k] = v;
        }
    }
    serde_json::to_string_pretty(&cfg).unwrap()
}
