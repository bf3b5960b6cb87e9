//! Integration tests for `llm-relay`: one test binary, one module per topic.
//! The harness (relay process, upstream fixture, clients) is in `common/`; the heavy system
//! checks are the second binary, `tests/system.rs`.

#[allow(dead_code)]
mod common;

mod access_bounds;
mod access_budgets;
mod access_cache_scope;
mod access_front_door;
mod access_hostile;
mod access_keys;
mod access_limits;
mod access_memory;
mod access_objects;
mod access_redis;
mod access_replay;
mod access_routes;
mod access_slow;
mod access_usage;
mod access_usage_passthrough;
mod agents;
mod apis_keepalive;
mod apis_messages;
mod apis_passthrough;
mod apis_responses;
mod apis_sdk;
mod bench_regressions;
mod bench_syscalls;
mod cache_concurrency;
mod cache_eval;
mod cache_evals;
mod cache_exact;
mod cache_fleet;
mod cache_modes;
mod cache_replay;
mod cache_store;
mod cache_upkeep;
mod code_layers;
mod core_auth;
mod core_config;
mod core_keep;
mod core_routes;
mod core_rules;
mod core_stream;
mod openai_sdk;
mod ops_lifecycle;
mod ops_logs;
mod ops_metrics;
mod ops_traces;
mod translate_api;
mod translate_e2e;
mod translate_exact;
mod translate_reverse;
mod translate_rows;
mod translate_stored;
mod ui_dashboard;
mod upstreams_failover;
mod upstreams_framing;
mod upstreams_proxy;
mod upstreams_routing;
mod upstreams_shaping;
mod upstreams_tls;
