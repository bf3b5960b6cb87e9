//! The `ureq` agent of one endpoint: its timeouts, proxy, root certificates, buffer sizes,
//! pool bounds and connector chain (ours for TCP and the idle bound, ureq's for the rest).

use std::time::Duration;

use ureq::unversioned::transport::{
    ConnectProxyConnector, Connector, RustlsConnector, SocksConnector,
};

use super::endpoints::{EndpointConfig, Settings};
use super::{idle, resolve, slim, tcp, Timeouts};

/// Size of each of the read and write buffers of the transport under ureq's own
/// (`slim::SlimBuffers`, which bound the response head and the request header lines): a read
/// or write of the socket moves at most this much.
const TRANSPORT_BUFFER_BYTES: usize = 4 * 1024;

/// The agent's budget for a whole response body: in effect none (a healthy stream may run for
/// days); it is set so that reads of the body report their phase (see `idle`).
const BODY_BUDGET: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The proxy `e` is reached through: its own, else with `use_proxy` the environment's.
pub(super) fn proxy(s: &Settings, e: &EndpointConfig) -> Option<ureq::Proxy> {
    match (&e.proxy, s.use_proxy) {
        (Some(p), _) => Some(p.clone()),
        (None, true) => ureq::Proxy::try_from_env(),
        (None, false) => None,
    }
}

/// The most idle connections kept to one endpoint.
pub(super) fn idle_per_host(workers: usize) -> usize {
    workers.max(8)
}

/// The agent of one endpoint: its timeouts, proxy and root certificates.
pub(super) fn agent(s: &Settings, t: Timeouts, workers: usize, e: &EndpointConfig) -> ureq::Agent {
    let proxy = proxy(s, e);
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(roots) = &e.roots {
        tls = tls.root_certs(roots.clone());
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_connect(Some(t.connect))
        .timeout_recv_response(Some(t.first_byte))
        .timeout_recv_body(Some(BODY_BUDGET))
        // The buffers of the transports under ours (TCP, TLS, proxy); ureq's own are
        // `slim::SlimBuffers` (see there), which bound a response head to 16 KiB and each
        // request header line to 16 KiB (tiny_http accepts lines up to that). ureq's default is
        // 128 KiB each, zero-filled: with 1,000 open streams that was 256 MB of the relay's RSS.
        .input_buffer_size(TRANSPORT_BUFFER_BYTES)
        .output_buffer_size(TRANSPORT_BUFFER_BYTES)
        .max_response_header_size(slim::INPUT_MAX_BYTES - 1)
        .max_idle_age(e.keepalive.unwrap_or(t.keepalive))
        .max_idle_connections(workers.max(8) * 2)
        .max_idle_connections_per_host(idle_per_host(workers))
        .user_agent(concat!("llm-relay/", env!("CARGO_PKG_VERSION")))
        .proxy(proxy)
        .tls_config(tls.build())
        .build();
    // ureq's `DefaultConnector` with our TCP transport (`tcp.rs`: a pooled connection's probe
    // in one system call, not three) and the idle layer on top
    let connector =
        ().chain(SocksConnector::default())
            .chain(ConnectProxyConnector::default())
            .chain(tcp::TcpConnector)
            .chain(RustlsConnector::default())
            .chain(idle::IdleConnector { idle: t.idle });
    // host names looked up once per `resolve::RESOLVED_FOR`, not before every request
    ureq::Agent::with_parts(config, connector, resolve::Remembered::new())
}
