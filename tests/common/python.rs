//! Running the end-to-end Python scripts of `tests/e2e/` (interpreter from `$LLM_RELAY_PYTHON`,
//! default `python3`) with no proxy and no OpenAI/Anthropic environment of the host.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::PROXY_ENV_VARS;

pub fn python() -> String {
    std::env::var("LLM_RELAY_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// A `python` command with a clean environment for the SDKs.
pub fn python_command() -> Command {
    let mut cmd = Command::new(python());
    for var in PROXY_ENV_VARS {
        cmd.env_remove(var);
    }
    for var in [
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("OPENAI_AGENTS_DISABLE_TRACING", "1")
        .stdin(Stdio::null());
    cmd
}

/// Fails (never skips) with the install command when `module` is not installed. It looks the
/// module up without importing it: the SDKs take seconds of CPU to import (`anthropic` ~2.5 s),
/// and the script that follows imports them anyway (and says so if that fails).
pub fn require_python_module(module: &str) {
    let probe = python_command()
        .args([
            "-c",
            &format!("import importlib.util, sys; sys.exit(importlib.util.find_spec({module:?}) is None)"),
        ])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "Python module `{module}` not found by `{}`; run `pip install -r tests/requirements.txt` \
             (or set LLM_RELAY_PYTHON): {}",
            python(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "cannot run `{}` ({e}); install Python 3 and `pip install -r tests/requirements.txt`, \
             or set LLM_RELAY_PYTHON",
            python()
        ),
    }
}

/// Runs `tests/e2e/<script>` with `args`, killed after `limit`; returns its output.
pub fn run_e2e_script(script: &str, args: &[&str], limit: Duration) -> Output {
    let path = format!("{}/tests/e2e/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = python_command();
    cmd.arg(path).args(args);
    super::process::run_to_end(cmd, limit)
}
