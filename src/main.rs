//! The `llm-relay` command line: run what the arguments ask for (parsed by `cli.rs`): load
//! the config, start the server or a `cache` command.
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
mod cli;
mod client_headers;
mod config;
mod count_tokens;
mod dashboard;
mod error;
mod exchange;
mod expand;
mod fd_limit;
mod gate;
mod glob;
mod http_head;
mod intake;
mod json;
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
mod sse_frame;
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

use std::process::ExitCode;

use cli::{parse_args, Command, USAGE};

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
            let ran = server::run(cfg, &config);
            // the access lines of the last moment, before the process ends
            log::flush();
            match ran {
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
    let Ok(serde_json::Value::Object(body)) = crate::json::from_slice(&text) else {
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
