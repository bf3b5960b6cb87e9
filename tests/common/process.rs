//! Running a client program (a Python SDK script, an agent) to completion with a time limit,
//! with no proxy in its environment so its loopback traffic reaches the relay.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::PROXY_ENV_VARS;

/// Runs `cmd` (stdin empty, stdout and stderr captured), killing it after `limit`.
pub fn run_to_end(mut cmd: Command, limit: Duration) -> Output {
    for var in PROXY_ENV_VARS {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("child output")
}

/// Status, stdout and stderr of a finished program, for an assertion message.
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
