//! The static binary (issue #6): no dynamic loader, CA roots built in, and it serves
//! from an empty root directory holding only itself and its config (what `FROM scratch` gives),
//! by IP without `/etc/hosts`, by host name with one, and its `health` probe works there.
//!
//! The binary comes from `scripts/build-static.sh` (the command the Dockerfile runs; here in
//! the `static-check` profile, the same linking without optimisation), built once per test run
//! by `crate::static_build`. The empty root is made with
//! `unshare -r --root=DIR`; if that cannot run here the tests fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::common::*;

/// The static binary of this test run (built once, see `static_build`).
fn static_binary() -> &'static Path {
    &crate::static_build().relay
}

/// The program header types in an x86-64 ELF file.
fn program_header_types(elf: &[u8]) -> Vec<u32> {
    assert_eq!(&elf[..5], b"\x7fELF\x02", "a 64-bit ELF file");
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .map(|i| {
            let o = phoff + i * phentsize;
            u32::from_le_bytes(elf[o..o + 4].try_into().unwrap())
        })
        .collect()
}

#[test]
fn static_binary_has_no_dynamic_loader_and_carries_ca_roots() {
    let bin = static_binary();
    let ldd = Command::new("ldd").arg(bin).output().expect("run ldd");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(
        said.contains("statically linked") || said.contains("not a dynamic executable"),
        "ldd: {said}"
    );
    let elf = std::fs::read(bin).unwrap();
    const PT_INTERP: u32 = 3;
    assert!(
        !program_header_types(&elf).contains(&PT_INTERP),
        "the binary names a program interpreter (dynamic loader)"
    );
    // webpki-roots: the Mozilla root set is compiled in (no /etc/ssl needed)
    for ca in [&b"ISRG Root X1"[..], b"DigiCert Global Root G2"] {
        assert!(
            elf.windows(ca.len()).any(|w| w == ca),
            "CA root {} not in the binary",
            String::from_utf8_lossy(ca)
        );
    }
}

/// An empty root holding only the binary and `config.jsonc`, plus `etc` files if given.
fn empty_root(config: &str, etc: &[(&str, &str)]) -> (TempDir, PathBuf) {
    let dir = TempDir::new();
    // A hard link, not a copy: a copy holds the file open for writing, and a process another
    // test thread forks meanwhile inherits that descriptor until it execs, so executing the
    // copy could fail with ETXTBSY ("Text file busy"). A copy only across file systems.
    let binary = dir.path().join("llm-relay");
    if std::fs::hard_link(static_binary(), &binary).is_err() {
        std::fs::copy(static_binary(), &binary).expect("copy binary");
    }
    let config_path = dir.write("config.jsonc", config);
    if !etc.is_empty() {
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        for (name, text) in etc {
            std::fs::write(dir.path().join("etc").join(name), text).unwrap();
        }
    }
    (dir, config_path)
}

fn unshare_in(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.arg("-r")
        .arg(format!("--root={}", dir.display()))
        .arg("/llm-relay")
        .args(args);
    cmd
}

fn start_in_empty_root(config: &str, etc: &[(&str, &str)]) -> Relay {
    let (dir, config_path) = empty_root(config, etc);
    let listing: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        listing.len() <= 3,
        "the root holds only binary, config (and etc): {listing:?}"
    );
    let cmd = unshare_in(dir.path(), &["--config", "/config.jsonc"]);
    Relay::start_command(cmd, dir, config_path)
}

fn chat() -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn static_binary_serves_from_an_empty_root_by_ip_without_etc_hosts() {
    let up = Upstream::openai();
    let port = up.addr().rsplit(':').next().unwrap().to_string();
    let relay = start_in_empty_root(&config_json(&up.base_url(), json!({})), &[]);
    let r = post_json(&relay.url("/v1/chat/completions"), &chat());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["object"], "chat.completion");
    assert_eq!(up.requests().len(), 1);

    // a host name cannot resolve without /etc/hosts: a clean 502, not a crash
    let named = config_json(&format!("http://upstream.test:{port}/v1"), json!({}));
    let relay = start_in_empty_root(&named, &[]);
    let r = post_json(&relay.url("/v1/chat/completions"), &chat());
    r.assert_error(502, "upstream_unreachable");
    assert_eq!(get(&relay.url("/health")).status, 200);
}

#[test]
fn static_binary_resolves_host_names_in_an_empty_root_with_etc_hosts() {
    let up = Upstream::openai();
    let port = up.addr().rsplit(':').next().unwrap().to_string();
    let named = config_json(&format!("http://upstream.test:{port}/v1"), json!({}));
    let etc = [
        ("hosts", "127.0.0.1 localhost\n127.0.0.1 upstream.test\n"),
        ("resolv.conf", "nameserver 127.0.0.1\n"),
    ];
    let relay = start_in_empty_root(&named, &etc);
    let r = post_json(&relay.url("/v1/chat/completions"), &chat());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.only_request().path, "/v1/chat/completions");
}

#[test]
fn health_subcommand_works_in_an_empty_root() {
    let up = Upstream::openai();
    let relay = start_in_empty_root(&config_json(&up.base_url(), json!({})), &[]);
    let (dir, _) = empty_root("{}", &[]);
    let ok = unshare_in(dir.path(), &["health", "--url", &relay.url("/health")])
        .output()
        .expect("run health");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = unshare_in(dir.path(), &["health", "--url", &relay.url("/nothing")])
        .output()
        .expect("run health");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("status 404"));
}

#[test]
fn dockerfile_builds_with_the_tested_script_and_probes_without_a_shell() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("RUN scripts/build-static.sh target/static"));
    assert!(dockerfile.contains("FROM scratch"));
    assert!(dockerfile.contains(r#"CMD ["/llm-relay", "health", "--url""#));
}

#[test]
fn container_config_takes_upstream_and_key_from_the_environment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = root.join("deploy/container.jsonc");
    let cfg = cfg.to_str().unwrap();
    let ok = run_relay(
        &["--check", "--config", cfg],
        &[
            ("OPENAI_API_KEY", "sk-test"),
            ("LLM_RELAY_UPSTREAM", "http://10.1.2.3:8000/v1"),
        ],
    );
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(
        ok.stdout.contains("upstream: http://10.1.2.3:8000/v1"),
        "{}",
        ok.stdout
    );
    assert!(!ok.stdout.contains("sk-test"), "{}", ok.stdout);
    let missing = run_relay(&["--check", "--config", cfg], &[("OPENAI_API_KEY", "")]);
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("OPENAI_API_KEY"),
        "{}",
        missing.stderr
    );
}
