//! A POST through an endpoint's ureq agent (HTTPS, a proxy, a route the direct client does not
//! post to), and the short-lived thread a stream's ureq call runs on.

use super::ClientHeaders;
use super::{Endpoint, Mode, Reply, Upstream};

impl Upstream {
    /// [`post_one`](Upstream::post_one) through the endpoint's ureq agent.
    pub(super) fn post_ureq(
        &self,
        ep: &Endpoint,
        path: &str,
        headers: ClientHeaders<'_>,
        traceparent: Option<&str>,
        body: &[u8],
        mode: Mode,
    ) -> Result<Reply, ureq::Error> {
        let parsed = ep.posted.iter().find(|(p, _)| *p == path);
        let mut req = match parsed {
            Some((_, uri)) => ep.agent.post(uri.clone()),
            None => ep.agent.post(&format!("{}{}", ep.config.url, path)),
        };
        if mode == Mode::Stream {
            req = req
                .config()
                .timeout_per_read(Some(self.timeouts.idle))
                .build();
        }
        for (name, value) in self.outgoing_headers(ep, headers, traceparent) {
            req = req.header(name, value);
        }
        let response = req.header("content-type", "application/json").send(body)?;
        if mode == Mode::Stream {
            return Ok(Reply::from(response));
        }
        // Read here, so a body that stalls or breaks fails this attempt (and fails over).
        let (parts, body) = response.into_parts();
        let (data, held) = self.read_whole(body)?;
        Ok(Reply::whole(parts, data, held))
    }
}

/// Runs `f` on a scoped thread of its own and returns its result; on this thread if none can
/// be started. The deep frames of the call touch that thread's stack, whose pages are released
/// when it ends, not the stack of the calling worker, which a long stream holds.
pub(super) fn on_fresh_stack<T: Send>(f: &(dyn Fn() -> T + Sync)) -> T {
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("upstream-call".into())
            .spawn_scoped(scope, f)
        {
            Ok(call) => call
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => f(),
        }
    })
}
