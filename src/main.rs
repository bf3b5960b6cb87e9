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
mod answer;
mod api;
mod auth;
mod body_cost;
mod body_log;
mod body_model;
mod budget;
mod cache;
mod check;
mod config;
mod count_tokens;
mod dashboard;
mod error;
mod exchange;
mod expand;
mod fd_limit;
mod gate;
mod glob;
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
mod objects;
mod ops;
mod owners;
mod passthrough;
mod peers;
mod pipeline;
mod probe;
mod route_policy;
mod routes;
mod rules;
mod server;
mod shape;
mod sse;
mod sse_out;
mod state;
mod store;
mod stored;
mod streaming;
mod telemetry;
mod translate;
mod ui;
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
       llm-relay cache stats [--namespace NAME] [--config FILE]  print cache entries, bytes and hits
       llm-relay cache why REQUEST.json [--route PATH] [--header 'NAME: VALUE']... [--config FILE]
                 the request's cache key, and the closest recorded requests field by field;
                 --header gives a request header that is part of the key (for /v1/messages:
                 anthropic-version, anthropic-beta; X-Relay-Cache-Namespace and
                 X-Relay-Cache-Sample where `cache.client_controls` allows them), and implies
                 --route /v1/messages for a body with `messages`
       llm-relay cache export --out FILE [--model GLOB] [--since TIME] [--namespace NAME]
                 [--skip-secrets | --allow-secrets] [--config FILE]
                 write the cache's entries to one portable cassette file; refuses entries
                 holding a credential-shaped string unless told to skip or allow them
       llm-relay cache import FILE [--namespace NAME] [--config FILE]
                 merge a cassette into the cache directory (entry by entry, atomically)
       llm-relay cache prune [--unused-since TIME] [--namespace NAME] [--config FILE]
                 remove the entries (of the namespace) neither created nor hit since TIME
       llm-relay cache misses FILE
                 summarise a `cache.miss_log` of a replay run (per route and model, the fields
                 that differ most often, a suggested `ignore_fields`)

Options:
  -c, --config <FILE>  JSONC config file [default: config.jsonc]
      --check          validate the config, print what the relay would do, and exit
  -V, --version        print the version
  -h, --help           print this help
";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Serve {
        config: PathBuf,
    },
    Check {
        config: PathBuf,
    },
    Health {
        url: String,
    },
    CacheScan {
        config: PathBuf,
    },
    CacheStats {
        config: PathBuf,
        namespace: Option<String>,
    },
    CachePrune {
        config: PathBuf,
        filter: cache::PruneFilter,
    },
    CacheMisses {
        file: PathBuf,
    },
    CacheWhy {
        config: PathBuf,
        request: PathBuf,
        route: Option<String>,
        /// `--header 'NAME: VALUE'`, in order.
        headers: Vec<(String, String)>,
    },
    CacheExport {
        config: PathBuf,
        out: PathBuf,
        model: Option<String>,
        since: Option<String>,
        namespace: Option<String>,
        secrets: cache::Secrets,
    },
    CacheImport {
        config: PathBuf,
        file: PathBuf,
        namespace: Option<String>,
    },
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
    let mut file = None;
    let (mut out, mut model, mut since, mut route) = (None, None, None, None);
    let mut headers = Vec::new();
    let (mut namespace, mut unused_since, mut secrets) = (None, None, cache::Secrets::Refuse);
    const SUBS: &str = "scan, stats, why, export, import, prune or misses";
    if args.peek().is_some_and(|a| a == "cache") {
        args.next();
        cache = match args.next().as_deref() {
            Some(sub @ ("scan" | "stats" | "why" | "export" | "import" | "prune" | "misses")) => {
                Some(sub.to_string())
            }
            Some(other) => return Err(format!("unknown cache command `{other}`; use {SUBS}")),
            None => return Err(format!("`cache` needs a command: {SUBS}")),
        };
    }
    let sub = cache.as_deref().unwrap_or("");
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--out" if sub == "export" => out = Some(PathBuf::from(value("--out")?)),
            "--model" if sub == "export" => model = Some(value("--model")?),
            "--since" if sub == "export" => since = Some(value("--since")?),
            "--route" if sub == "why" => route = Some(value("--route")?),
            "--namespace" if matches!(sub, "export" | "import" | "stats" | "prune") => {
                let ns = value("--namespace")?;
                cache::check_namespace(&ns).map_err(|e| format!("--namespace: {e}"))?;
                namespace = Some(ns);
            }
            "--unused-since" if sub == "prune" => {
                unused_since = Some(cache::parse_since(&value("--unused-since")?)?);
            }
            "--skip-secrets" | "--allow-secrets" if sub == "export" => {
                let asked = if arg == "--skip-secrets" {
                    cache::Secrets::Skip
                } else {
                    cache::Secrets::Allow
                };
                if secrets != cache::Secrets::Refuse && secrets != asked {
                    return Err("give --skip-secrets or --allow-secrets, not both".to_string());
                }
                secrets = asked;
            }
            "--header" | "-H" if sub == "why" => headers.push(header(&value("--header")?)?),
            s if matches!(sub, "why" | "import" | "misses")
                && !s.starts_with('-')
                && file.is_none() =>
            {
                file = Some(PathBuf::from(s));
            }
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
    let need = |what: Option<PathBuf>, usage: &str| what.ok_or_else(|| format!("usage: {usage}"));
    Ok(if let Some(sub) = cache {
        match sub.as_str() {
            "scan" => Command::CacheScan { config },
            "why" => Command::CacheWhy {
                config,
                request: need(
                    file,
                    "llm-relay cache why REQUEST.json [--route PATH] [--header 'NAME: VALUE']...",
                )?,
                route,
                headers,
            },
            "export" => Command::CacheExport {
                config,
                out: need(
                    out,
                    "llm-relay cache export --out FILE [--model GLOB] [--since TIME]",
                )?,
                model,
                since,
                namespace,
                secrets,
            },
            "import" => Command::CacheImport {
                config,
                file: need(file, "llm-relay cache import FILE [--namespace NAME]")?,
                namespace,
            },
            "prune" => Command::CachePrune {
                config,
                filter: cache::PruneFilter {
                    namespace,
                    unused_since,
                },
            },
            "misses" => Command::CacheMisses {
                file: need(file, "llm-relay cache misses FILE")?,
            },
            _ => Command::CacheStats { config, namespace },
        }
    } else if check {
        Command::Check { config }
    } else {
        Command::Serve { config }
    })
}

/// `NAME: VALUE` of `--header`.
fn header(arg: &str) -> Result<(String, String), String> {
    match arg.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!(
            "--header {arg:?}: give it as 'NAME: VALUE', e.g. 'anthropic-version: 2023-06-01'"
        )),
    }
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
    let stats_namespace = match &command {
        Command::CacheStats { namespace, .. } => namespace.clone(),
        _ => None,
    };
    match command {
        Command::CacheWhy {
            config,
            request,
            route,
            headers,
        } => cache_tool(&config, |cfg| {
            cache_why(cfg, &request, route.as_deref(), headers).map(|text| print!("{text}"))
        }),
        Command::CacheExport {
            config,
            out,
            model,
            since,
            namespace,
            secrets,
        } => cache_tool(&config, |cfg| {
            let since = since.as_deref().map(cache::parse_since).transpose()?;
            let model = model
                .map(|m| glob::Glob::new(m).map_err(|e| format!("--model is {e}")))
                .transpose()?;
            let filter = cache::ExportFilter {
                model,
                since,
                namespace,
            };
            cache::export_command(&cfg.cache, &out, &filter, secrets).map(|line| println!("{line}"))
        }),
        Command::CacheImport {
            config,
            file,
            namespace,
        } => cache_tool(&config, |cfg| {
            cache::import_command(&cfg.cache, &file, namespace.as_deref())
                .map(|line| println!("{line}"))
        }),
        Command::CachePrune { config, filter } => cache_tool(&config, |cfg| {
            cache::prune_command(&cfg.cache.dir, &filter).map(|line| println!("{line}"))
        }),
        Command::CacheMisses { file } => match cache::misses_command(&file) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("llm-relay: {e}");
                ExitCode::from(1)
            }
        },
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
        Command::Check { config } => match config::Config::load(&config)
            .map_err(|e| format!("config error: {e}"))
            // the files the start reads fail as the start says it
            .and_then(|c| c.check_files().map(|()| c))
        {
            Ok(c) => {
                println!("config {} is valid", config.display());
                print!("{}", c.summary());
                for w in &c.warnings {
                    eprintln!("llm-relay: warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("llm-relay: {e}");
                ExitCode::from(1)
            }
        },
        Command::CacheScan { config }
        | Command::CacheStats {
            config,
            namespace: _,
        } => {
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
                print!(
                    "{}",
                    cache::stats_command(&cfg.cache, stats_namespace.as_deref())
                );
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

/// Runs a `cache` command that needs the config: exit 1 on a config error or its own.
fn cache_tool(
    config: &std::path::Path,
    run: impl FnOnce(&config::Config) -> Result<(), String>,
) -> ExitCode {
    let cfg = match config::Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("llm-relay: config error: {e}");
            return ExitCode::from(1);
        }
    };
    match run(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llm-relay: {e}");
            ExitCode::from(1)
        }
    }
}

/// `cache why`: reads the request and asks `pipeline::why`.
fn cache_why(
    cfg: &config::Config,
    request: &std::path::Path,
    route: Option<&str>,
    headers: Vec<(String, String)>,
) -> Result<String, String> {
    let text =
        std::fs::read(request).map_err(|e| format!("cannot read {}: {e}", request.display()))?;
    let Ok(serde_json::Value::Object(body)) = serde_json::from_slice(&text) else {
        return Err(format!(
            "{} is not a JSON object; give the request body as the client sends it",
            request.display()
        ));
    };
    // stored responses (for `previous_response_id`) are readable here only from `state.dir`
    let stored = match (&cfg.state.dir, &cfg.state.redis) {
        (Some(dir), None) => Some(store::Responses::open(Some(dir), None)?),
        _ => None,
    };
    pipeline::why(
        cfg,
        route,
        body,
        headers,
        cache::WhyBound::Command,
        stored.as_ref(),
    )
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
                config: cfg("config.jsonc"),
                namespace: None,
            })
        );
        assert_eq!(
            parse(&["cache", "stats", "--namespace", "suite/a"]),
            Ok(Command::CacheStats {
                config: cfg("config.jsonc"),
                namespace: Some("suite/a".to_string()),
            })
        );
        assert!(parse(&["cache", "stats", "--namespace", "../x"]).is_err());
        assert!(parse(&["cache"]).is_err());
        assert_eq!(
            parse(&["cache", "why", "r.json", "--route", "/v1/completions"]),
            Ok(Command::CacheWhy {
                config: cfg("config.jsonc"),
                request: cfg("r.json"),
                route: Some("/v1/completions".to_string()),
                headers: Vec::new(),
            })
        );
        assert_eq!(
            parse(&[
                "cache",
                "why",
                "r.json",
                "-H",
                "anthropic-version:2023-06-01",
                "--header",
                "Anthropic-Beta:  a, b "
            ]),
            Ok(Command::CacheWhy {
                config: cfg("config.jsonc"),
                request: cfg("r.json"),
                route: None,
                headers: vec![
                    ("anthropic-version".to_string(), "2023-06-01".to_string()),
                    ("Anthropic-Beta".to_string(), "a, b".to_string()),
                ],
            })
        );
        assert!(parse(&["cache", "why", "r.json", "--header", "no colon"])
            .unwrap_err()
            .contains("'NAME: VALUE'"));
        assert_eq!(
            parse(&["cache", "export", "--out", "c.jsonl", "--model", "gpt-*", "-c", "x"]),
            Ok(Command::CacheExport {
                config: cfg("x"),
                out: cfg("c.jsonl"),
                model: Some("gpt-*".to_string()),
                since: None,
                namespace: None,
                secrets: cache::Secrets::Refuse,
            })
        );
        assert_eq!(
            parse(&[
                "cache",
                "export",
                "--out",
                "c",
                "--skip-secrets",
                "--namespace",
                "n"
            ]),
            Ok(Command::CacheExport {
                config: cfg("config.jsonc"),
                out: cfg("c"),
                model: None,
                since: None,
                namespace: Some("n".to_string()),
                secrets: cache::Secrets::Skip,
            })
        );
        assert!(parse(&[
            "cache",
            "export",
            "--out",
            "c",
            "--skip-secrets",
            "--allow-secrets"
        ])
        .is_err());
        assert_eq!(
            parse(&["cache", "import", "c.jsonl"]),
            Ok(Command::CacheImport {
                config: cfg("config.jsonc"),
                file: cfg("c.jsonl"),
                namespace: None,
            })
        );
        assert_eq!(
            parse(&["cache", "prune", "--unused-since", "1970-01-02"]),
            Ok(Command::CachePrune {
                config: cfg("config.jsonc"),
                filter: cache::PruneFilter {
                    namespace: None,
                    unused_since: Some(86_400.0),
                },
            })
        );
        assert_eq!(
            parse(&["cache", "misses", "m.jsonl"]),
            Ok(Command::CacheMisses {
                file: cfg("m.jsonl")
            })
        );
        assert!(parse(&["cache", "misses"]).is_err());
        assert!(parse(&["cache", "export"]).is_err());
        assert!(parse(&["cache", "import"]).is_err());
        assert!(parse(&["--out", "x"]).is_err());
        assert!(parse(&["cache", "wipe"]).is_err());
    }
}
