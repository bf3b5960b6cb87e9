//! The command line's words: the usage text, [`Command`] (what the arguments ask for) and
//! [`parse_args`]; `main.rs` runs the command.

use std::path::PathBuf;

use crate::{cache, probe};

pub const USAGE: &str = "\
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
pub enum Command {
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

pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
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
