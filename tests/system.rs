//! System checks for `llm-relay`, a second test binary that `cargo test` runs after the
//! integration tests: the static build run from an empty root, the benchmark script's quick
//! mode, and schemathesis against the OpenAPI document. They share one static build, made once
//! before any of them starts its clock, and the two that load the whole machine (the bench run,
//! schemathesis) take turns.

#[allow(dead_code, unused_imports)]
mod common;

mod system_bench;
mod system_openapi;
mod system_static;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The one static build of the system tests: `scripts/build-static.sh` (what the Dockerfile
/// runs) with the bench tool added, in the `static-check` profile (the release build's linking
/// without its optimisation: nothing here measures speed), into `$CARGO_TARGET_DIR/static`
/// (default `target/static`), a target dir of its own so it does not wait on the test build's
/// lock.
pub struct StaticBuild {
    pub relay: PathBuf,
    pub bench_tool: PathBuf,
}

/// Builds (once per test run; cargo makes a warm one take a second) and returns the binaries.
pub fn static_build() -> &'static StaticBuild {
    static BUILD: OnceLock<StaticBuild> = OnceLock::new();
    BUILD.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("static");
        let mut cmd = Command::new("sh");
        cmd.arg(root.join("scripts/build-static.sh"))
            .env("PROFILE", "static-check")
            .arg(&target)
            .args(["--example", "bench_tool"]);
        // The test's own CARGO_PKG_* / CARGO_MANIFEST_* values would reach ring's build script,
        // which watches some of them: a build from a shell would then rebuild everything.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
            ]
            .iter()
            .any(|p| name.starts_with(p))
                || name == "CARGO_TARGET_TMPDIR"
            {
                cmd.env_remove(&*name);
            }
        }
        let out = cmd.output().expect("run scripts/build-static.sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "static build failed:\n{stderr}");
        let printed = String::from_utf8_lossy(&out.stdout);
        let relay = PathBuf::from(printed.lines().last().unwrap_or("").trim());
        assert!(
            relay.is_file(),
            "build printed {relay:?}, not a file:\n{stderr}"
        );
        let bench_tool = relay.with_file_name("examples").join("bench_tool");
        assert!(bench_tool.is_file(), "no {bench_tool:?}:\n{stderr}");
        StaticBuild { relay, bench_tool }
    })
}

/// A turn at loading the whole machine: the bench run and schemathesis never overlap.
pub fn heavy_turn() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
