//! The `llm-relay` command line: parse arguments, load the config, start the server.
//!
//! Everything else lives in the modules below; this file only maps the command line to them
//! and their errors to exit codes (0 ok, 1 runtime or config error, 2 usage error).

#![forbid(unsafe_code)]
// A bad input or a broken invariant is an error value, never a crash of a worker thread:
// `get()`, `?` and `let … else` instead (clippy.toml lets `#[cfg(test)]` code use them).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod admin;
mod api;
mod auth;
mod body_cost;
mod body_log;
mod budget;
mod cache;
mod check;
mod config;
mod error;
mod exchange;
mod expand;
mod fd_limit;
mod gate;
mod intake;
mod keepalive;
mod key_store;
mod keys_file;
mod lifecycle;
mod limits;
mod locate;
mod log;
mod metrics;
mod models;
mod ops;
mod passthrough;
mod pipeline;
mod probe;
mod routes;
mod rules;
mod server;
mod shape;
mod sse;
mod state;
mod store;
mod streaming;
mod translate;
mod upstream;
mod usage;
mod utc;
mod util;

#[cfg(test)]
mod proptests;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
llm-relay — OpenAI-compatible relay and response cache for LLM APIs

Usage: llm-relay [OPTIONS]
       llm-relay health [--url URL]   exit 0 if URL answers 200 [default: http://127.0.0.1:8080/health]
       llm-relay cache scan [--config FILE]   check the cache, quarantine bad entries, print a report
       llm-relay cache stats [--config FILE]  print cache entries, bytes and hits

Options:
  -c, --config <FILE>  JSONC config file [default: config.jsonc]
      --check          validate the config, print what the relay would do, and exit
  -V, --version        print the version
  -h, --help           print this help
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Serve { config: PathBuf },
    Check { config: PathBuf },
    Health { url: String },
    CacheScan { config: PathBuf },
    CacheStats { config: PathBuf },
    Version,
    Help,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut config = PathBuf::from("config.jsonc");
    let mut check = false;
    let mut cache = None;
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == "health") {
        args.next();
        return match (args.next().as_deref(), args.next(), args.next()) {
            (None, _, _) => Ok(Command::Health {
                url: probe::DEFAULT_URL.to_string(),
            }),
            (Some("--url"), Some(url), None) => Ok(Command::Health { url }),
            (Some(s), None, None) if s.starts_with("--url=") => Ok(Command::Health {
                url: s["--url=".len()..].to_string(),
            }),
            _ => Err("usage: llm-relay health [--url URL]".to_string()),
        };
    }
    if args.peek().is_some_and(|a| a == "cache") {
        args.next();
        cache = match args.next().as_deref() {
            Some(sub @ ("scan" | "stats")) => Some(sub.to_string()),
            Some(other) => {
                return Err(format!(
                    "unknown cache command `{other}`; use scan or stats"
                ))
            }
            None => return Err("`cache` needs a command: scan or stats".to_string()),
        };
    }
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--config" => {
                config = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("{arg} needs a file name"))?;
            }
            s if s.starts_with("--config=") => config = PathBuf::from(&s["--config=".len()..]),
            "--check" => check = true,
            "-V" | "--version" => return Ok(Command::Version),
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(if let Some(sub) = cache {
        if sub == "scan" {
            Command::CacheScan { config }
        } else {
            Command::CacheStats { config }
        }
    } else if check {
        Command::Check { config }
    } else {
        Command::Serve { config }
    })
}

fn main() -> ExitCode {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("llm-relay: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let scan = matches!(command, Command::CacheScan { .. });
    match command {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("llm-relay {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Health { url } => match probe::check(&url) {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("llm-relay: health check failed: {e}");
                ExitCode::from(1)
            }
        },
        Command::Check { config } => match config::Config::load(&config) {
            Ok(c) => {
                println!("config {} is valid", config.display());
                print!("{}", c.summary());
                for w in &c.warnings {
                    eprintln!("llm-relay: warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("llm-relay: config error: {e}");
                ExitCode::from(1)
            }
        },
        Command::CacheScan { config } | Command::CacheStats { config } => {
            let cfg = match config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("llm-relay: config error: {e}");
                    return ExitCode::from(1);
                }
            };
            if !cfg.cache.dir.is_dir() {
                eprintln!(
                    "llm-relay: cache directory {} does not exist; check `cache.dir` in {}",
                    cfg.cache.dir.display(),
                    config.display()
                );
                return ExitCode::from(1);
            }
            if scan {
                println!("{}", cache::scan_command(&cfg.cache));
            } else {
                print!("{}", cache::stats_command(&cfg.cache));
            }
            ExitCode::SUCCESS
        }
        Command::Serve { config } => {
            let cfg = match config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("llm-relay: config error: {e}");
                    return ExitCode::from(1);
                }
            };
            server::install_panic_hook();
            match server::run(cfg, &config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("llm-relay: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let cfg = |p: &str| PathBuf::from(p);
        assert_eq!(
            parse(&[]),
            Ok(Command::Serve {
                config: cfg("config.jsonc")
            })
        );
        assert_eq!(
            parse(&["-c", "a.jsonc"]),
            Ok(Command::Serve {
                config: cfg("a.jsonc")
            })
        );
        assert_eq!(
            parse(&["--config=b", "--check"]),
            Ok(Command::Check { config: cfg("b") })
        );
        assert_eq!(parse(&["--version"]), Ok(Command::Version));
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--config"]).is_err());
        assert_eq!(
            parse(&["health"]),
            Ok(Command::Health {
                url: probe::DEFAULT_URL.to_string()
            })
        );
        assert_eq!(
            parse(&["health", "--url", "http://x/ready"]),
            Ok(Command::Health {
                url: "http://x/ready".to_string()
            })
        );
        assert!(parse(&["health", "--bogus"]).is_err());
        assert_eq!(
            parse(&["cache", "scan", "--config", "c"]),
            Ok(Command::CacheScan { config: cfg("c") })
        );
        assert_eq!(
            parse(&["cache", "stats"]),
            Ok(Command::CacheStats {
                config: cfg("config.jsonc")
            })
        );
        assert!(parse(&["cache"]).is_err());
        assert!(parse(&["cache", "wipe"]).is_err());
    }
}
