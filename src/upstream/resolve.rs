//! Upstream host names looked up once per [`RESOLVED_FOR`], never on a request's way once known.
//!
//! ureq asks its resolver for the addresses of a request's host before it looks in its pool
//! of idle connections, so with its `DefaultResolver` every request (a pooled connection
//! included) paid a lookup: `/etc/hosts` read and parsed (8 system calls here), and for a
//! provider's name a DNS round trip that also made each request depend on the resolver being
//! up. [`Remembered`] keeps each answer for [`RESOLVED_FOR`]. Only the first request to a name
//! waits for its lookup. Once an answer is stale, the request that finds it so uses it and
//! starts a lookup on a thread of its own (one per name at a time); the answer it brings serves
//! the requests after it (a provider that moves is followed), and no request waits on a slow or
//! failing resolver. A failed lookup is never kept: the answer from before stays in use, the
//! failure is logged once, and the name is looked up again [`RETRY_AFTER`] later. An IP
//! literal needs no lookup and is remembered the same way (no string is formatted and parsed
//! per request).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::uri::{Authority, Scheme};
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a looked-up address list is used before the next lookup.
pub const RESOLVED_FOR: Duration = Duration::from_secs(30);

/// How long after a failed lookup of a known name the next one starts.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Names remembered per agent (an agent talks to one endpoint; a proxy's name is another).
const NAMES: usize = 4;

/// A resolver that remembers what `R` answered, per scheme and authority, for `ttl`.
#[derive(Debug)]
pub struct Remembered<R = DefaultResolver> {
    shared: Arc<Shared<R>>,
}

/// What a [`Remembered`] and its lookups on their own threads share.
#[derive(Debug)]
struct Shared<R> {
    inner: R,
    ttl: Duration,
    /// How long a lookup under way keeps other requests on the stale answer (past it, a
    /// lookup that never came back is taken over).
    patience: Duration,
    known: Mutex<Vec<Known>>,
}

#[derive(Debug)]
struct Known {
    scheme: Scheme,
    authority: Authority,
    at: Instant,
    addrs: ResolvedSocketAddrs,
    /// A lookup failed since this answer came (said once in the log).
    failed: bool,
    /// When a lookup of the name began again, this answer being stale.
    looking: Option<Instant>,
    /// After a failed lookup, the next starts no sooner than this.
    retry_at: Option<Instant>,
}

/// What is known of a name when a request asks for it.
enum Recalled {
    /// A fresh answer.
    Fresh(ResolvedSocketAddrs),
    /// A stale answer, and this request starts its lookup.
    Refresh(ResolvedSocketAddrs),
    /// A stale answer already being looked up (or to be, after a failure): use it.
    Stale(ResolvedSocketAddrs),
    /// Nothing: look it up.
    Unknown,
}

impl Known {
    /// Whether this is the answer for `uri`'s scheme and authority.
    fn of(&self, uri: &Uri) -> bool {
        uri.scheme() == Some(&self.scheme) && uri.authority() == Some(&self.authority)
    }
}

impl Remembered {
    pub fn new() -> Remembered {
        Remembered::with(DefaultResolver::default(), RESOLVED_FOR)
    }
}

impl<R: Resolver + 'static> Remembered<R> {
    pub fn with(inner: R, ttl: Duration) -> Remembered<R> {
        Remembered {
            shared: Arc::new(Shared {
                inner,
                ttl,
                patience: ttl,
                known: Mutex::new(Vec::with_capacity(NAMES)),
            }),
        }
    }

    /// Looks `uri`'s name up again on a thread of its own (inline if no thread can be started).
    fn refresh_later(&self, uri: &Uri, config: &Config, timeout: NextTimeout) {
        let (shared, owned_uri, owned_config) =
            (Arc::clone(&self.shared), uri.clone(), config.clone());
        let started = std::thread::Builder::new()
            .name("resolve".to_string())
            .stack_size(256 * 1024)
            .spawn(move || shared.refresh(&owned_uri, &owned_config, NextTimeout::default()));
        if started.is_err() {
            self.shared.refresh(uri, config, timeout);
        }
    }
}

impl<R: Resolver> Shared<R> {
    fn known(&self) -> MutexGuard<'_, Vec<Known>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known of `uri`'s scheme and authority at `now`; a stale answer whose lookup is
    /// due is marked as being looked up.
    fn recall(&self, uri: &Uri, now: Instant) -> Recalled {
        let mut known = self.known();
        let Some(k) = known.iter_mut().find(|k| k.of(uri)) else {
            return Recalled::Unknown;
        };
        if now.saturating_duration_since(k.at) < self.ttl {
            return Recalled::Fresh(k.addrs.clone());
        }
        let since = |at: Instant| now.saturating_duration_since(at);
        let looking = k.looking.is_some_and(|at| since(at) < self.patience);
        if looking || k.retry_at.is_some_and(|at| now < at) {
            return Recalled::Stale(k.addrs.clone());
        }
        k.looking = Some(now);
        Recalled::Refresh(k.addrs.clone())
    }

    /// Looks a known name up again: its answer replaces the stale one; a failure keeps that
    /// (said once in the log) until a retry [`RETRY_AFTER`] later.
    fn refresh(&self, uri: &Uri, config: &Config, timeout: NextTimeout) {
        let now = Instant::now();
        match self.inner.resolve(uri, config, timeout) {
            Ok(addrs) => self.remember(uri, now, &addrs),
            Err(err) => {
                if self.failed(uri, Instant::now() + RETRY_AFTER) {
                    crate::log::warn(&format!(
                        "looking up upstream host {} failed ({err}); using the addresses \
                         found before until a lookup succeeds",
                        uri.host().unwrap_or_default()
                    ));
                }
            }
        }
    }

    fn remember(&self, uri: &Uri, at: Instant, addrs: &ResolvedSocketAddrs) {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return;
        };
        let mut known = self.known();
        known.retain(|k| !k.of(uri));
        if known.len() >= NAMES {
            // the oldest goes
            let oldest = known.iter().enumerate().min_by_key(|(_, k)| k.at);
            if let Some(at) = oldest.map(|(at, _)| at) {
                known.swap_remove(at);
            }
        }
        known.push(Known {
            scheme: scheme.clone(),
            authority: authority.clone(),
            at,
            addrs: addrs.clone(),
            failed: false,
            looking: None,
            retry_at: None,
        });
    }

    /// Marks `uri`'s answer as outlived by a failed lookup, the next due at `retry_at`; true
    /// the first time since the answer came.
    fn failed(&self, uri: &Uri, retry_at: Instant) -> bool {
        let mut known = self.known();
        let entry = known.iter_mut().find(|k| k.of(uri));
        entry.is_some_and(|k| {
            k.looking = None;
            k.retry_at = Some(retry_at);
            !std::mem::replace(&mut k.failed, true)
        })
    }
}

impl<R: Resolver + 'static> Resolver for Remembered<R> {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let now = Instant::now();
        match self.shared.recall(uri, now) {
            Recalled::Fresh(addrs) | Recalled::Stale(addrs) => Ok(addrs),
            Recalled::Refresh(addrs) => {
                self.refresh_later(uri, config, timeout);
                Ok(addrs)
            }
            Recalled::Unknown => {
                let addrs = self.shared.inner.resolve(uri, config, timeout)?;
                self.shared.remember(uri, now, &addrs);
                Ok(addrs)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Answers 10.0.0.N:port, N counting its lookups; fails for the host `down`, and for
    /// every host once `failing` is set; while `held` is set, a lookup waits (at most 30 s).
    #[derive(Debug, Default, Clone)]
    struct Counting {
        lookups: Arc<AtomicUsize>,
        failing: Arc<AtomicBool>,
        held: Arc<AtomicBool>,
    }

    impl Resolver for Counting {
        fn resolve(
            &self,
            uri: &Uri,
            _: &Config,
            _: NextTimeout,
        ) -> Result<ResolvedSocketAddrs, ureq::Error> {
            let n = self.lookups.fetch_add(1, Ordering::SeqCst) + 1;
            let until = Instant::now() + Duration::from_secs(30);
            while self.held.load(Ordering::SeqCst) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
            if uri.host() == Some("down") || self.failing.load(Ordering::SeqCst) {
                return Err(ureq::Error::HostNotFound);
            }
            let mut addrs = self.empty();
            let port = uri.port_u16().unwrap_or(80);
            addrs.push(SocketAddr::from(([10, 0, 0, n as u8], port)));
            Ok(addrs)
        }
    }

    fn resolve(r: &Remembered<Counting>, url: &str) -> Result<Vec<SocketAddr>, ureq::Error> {
        let uri: Uri = url.parse().unwrap();
        let timeout = NextTimeout::default();
        r.resolve(&uri, &Config::default(), timeout)
            .map(|a| a.to_vec())
    }

    fn counting(ttl: Duration) -> (Remembered<Counting>, Counting) {
        let inner = Counting::default();
        (Remembered::with(inner.clone(), ttl), inner)
    }

    fn lookups(c: &Counting) -> usize {
        c.lookups.load(Ordering::SeqCst)
    }

    /// Resolves `url` until the answer is not `old` (a lookup on its own thread brought a new
    /// one); panics after 30 s.
    fn until_new(r: &Remembered<Counting>, url: &str, old: &[SocketAddr]) -> Vec<SocketAddr> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let now = resolve(r, url).unwrap();
            if now != old {
                return now;
            }
            assert!(Instant::now() < until, "no new answer for {url}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits (at most 30 s) until `uri`'s answer has a failed lookup recorded.
    fn until_failed(r: &Remembered<Counting>, uri: &Uri) {
        let until = Instant::now() + Duration::from_secs(30);
        while !r.shared.known().iter().any(|k| k.of(uri) && k.failed) {
            assert!(Instant::now() < until, "the failed lookup was not recorded");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_name_is_looked_up_once_while_its_answer_is_fresh() {
        let (r, c) = counting(Duration::from_secs(3600));
        let first = resolve(&r, "https://api.example.com/v1/chat/completions").unwrap();
        for path in ["/v1/chat/completions", "/v1/models", "/v1/responses"] {
            let again = resolve(&r, &format!("https://api.example.com{path}")).unwrap();
            assert_eq!(again, first);
        }
        assert_eq!(lookups(&c), 1);
        // another port, scheme or host is another name
        resolve(&r, "https://api.example.com:8443/v1").unwrap();
        resolve(&r, "http://api.example.com/v1").unwrap();
        resolve(&r, "https://other.example.com/v1").unwrap();
        assert_eq!(lookups(&c), 4);
    }

    #[test]
    fn a_stale_answer_serves_at_once_while_its_lookup_runs_on_its_own_thread() {
        let (mut r, c) = counting(Duration::ZERO);
        // (with the relay's figures, a lookup is waited for as long as an answer lasts)
        Arc::get_mut(&mut r.shared).unwrap().patience = Duration::from_secs(3600);
        let url = "http://model.internal:8000/v1";
        let first = resolve(&r, url).unwrap();
        // the resolver hangs: requests still get the stale answer at once, and only one
        // lookup runs for them
        c.held.store(true, Ordering::SeqCst);
        for _ in 0..5 {
            assert_eq!(resolve(&r, url).unwrap(), first);
        }
        let until = Instant::now() + Duration::from_secs(30);
        while lookups(&c) < 2 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            lookups(&c),
            2,
            "one lookup of the stale name, on its own thread"
        );
        // once it answers, its answer is used
        c.held.store(false, Ordering::SeqCst);
        assert_ne!(until_new(&r, url, &first), first);
    }

    #[test]
    fn a_failed_lookup_is_not_remembered() {
        let (r, c) = counting(Duration::from_secs(3600));
        assert!(resolve(&r, "http://down/v1").is_err());
        assert!(resolve(&r, "http://down/v1").is_err());
        assert_eq!(lookups(&c), 2);
    }

    #[test]
    fn a_failed_lookup_of_a_known_name_keeps_its_last_answer_until_a_retry_succeeds() {
        let (r, c) = counting(Duration::ZERO);
        let url = "https://api.example.com/v1";
        let uri: Uri = url.parse().unwrap();
        let known = resolve(&r, url).unwrap();
        c.failing.store(true, Ordering::SeqCst);
        assert_eq!(resolve(&r, url).unwrap(), known);
        until_failed(&r, &uri);
        // no lookup on each request while it fails: the next is due RETRY_AFTER later
        for _ in 0..5 {
            assert_eq!(resolve(&r, url).unwrap(), known);
        }
        assert_eq!(lookups(&c), 2);
        assert!(matches!(
            r.shared.recall(&uri, Instant::now() + RETRY_AFTER),
            Recalled::Refresh(_)
        ));
        // a retry that fails again is said once only
        assert!(!r.shared.failed(&uri, Instant::now()), "said already");
        // a name never answered still fails
        assert!(resolve(&r, "https://other.example.com/v1").is_err());
        // once the resolver answers again, its answer is used
        c.failing.store(false, Ordering::SeqCst);
        assert_ne!(until_new(&r, url, &known), known);
    }

    #[test]
    fn a_lookup_that_never_comes_back_is_taken_over_after_the_patience() {
        let (mut r, c) = counting(Duration::ZERO);
        let url = "https://api.example.com/v1";
        let uri: Uri = url.parse().unwrap();
        let known = resolve(&r, url).unwrap();
        let shared = Arc::get_mut(&mut r.shared).unwrap();
        shared.patience = Duration::from_secs(3600);
        // a lookup began and has not come back
        assert!(matches!(
            shared.recall(&uri, Instant::now()),
            Recalled::Refresh(_)
        ));
        for _ in 0..3 {
            assert_eq!(resolve(&r, url).unwrap(), known);
        }
        assert_eq!(lookups(&c), 1, "no lookup beside it");
        // past the patience, another starts
        Arc::get_mut(&mut r.shared).unwrap().patience = Duration::ZERO;
        assert_ne!(until_new(&r, url, &known), known);
        assert!(lookups(&c) >= 2);
    }

    #[test]
    fn it_remembers_a_few_names_and_forgets_the_oldest() {
        let (r, c) = counting(Duration::from_secs(3600));
        for n in 0..=NAMES {
            resolve(&r, &format!("http://host{n}/v1")).unwrap();
        }
        assert_eq!(lookups(&c), NAMES + 1);
        assert_eq!(r.shared.known().len(), NAMES);
        // the newest are still known, the first is looked up again
        resolve(&r, &format!("http://host{NAMES}/v1")).unwrap();
        assert_eq!(lookups(&c), NAMES + 1);
        resolve(&r, "http://host0/v1").unwrap();
        assert_eq!(lookups(&c), NAMES + 2);
    }
}
