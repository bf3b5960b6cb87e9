//! Upstream host names looked up once per [`RESOLVED_FOR`], not once per request.
//!
//! ureq asks its resolver for the addresses of a request's host before it looks in its pool
//! of idle connections, so with its `DefaultResolver` every request (a pooled connection
//! included) paid a lookup: `/etc/hosts` read and parsed (8 system calls here), and for a
//! provider's name a DNS round trip that also made each request depend on the resolver being
//! up. [`Remembered`] keeps each answer for [`RESOLVED_FOR`]; a new connection made later
//! than that looks the name up again (a provider that moves is followed). A failed lookup is
//! never kept: while the name has an answer from before, that answer is used (a resolver that
//! is down does not fail requests to an upstream whose address is known) and the next request
//! looks it up again; without one, the request fails as it did. Once an answer is stale, one
//! request looks the name up while the others keep using that answer, so a busy endpoint
//! never has its requests wait on lookups side by side. An IP literal needs no lookup and is
//! remembered the same way (no string is formatted and parsed per request).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::uri::{Authority, Scheme};
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a looked-up address list is used before the next lookup.
pub const RESOLVED_FOR: Duration = Duration::from_secs(30);

/// Names remembered per agent (an agent talks to one endpoint; a proxy's name is another).
const NAMES: usize = 4;

/// A resolver that remembers what `R` answered, per scheme and authority, for `ttl`.
#[derive(Debug)]
pub struct Remembered<R = DefaultResolver> {
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
    /// When a request began looking the name up again, this answer being stale.
    looking: Option<Instant>,
}

/// What is known of a name when a request asks for it.
enum Recalled {
    /// A fresh answer.
    Fresh(ResolvedSocketAddrs),
    /// A stale answer, and this request looks the name up.
    Refresh(ResolvedSocketAddrs),
    /// A stale answer that another request is looking up: use it.
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

impl<R: Resolver> Remembered<R> {
    pub fn with(inner: R, ttl: Duration) -> Remembered<R> {
        Remembered {
            inner,
            ttl,
            patience: ttl,
            known: Mutex::new(Vec::with_capacity(NAMES)),
        }
    }

    /// What is known of `uri`'s scheme and authority at `now`; a stale answer nobody is
    /// looking up is marked as being looked up by this request.
    fn recall(&self, uri: &Uri, now: Instant) -> Recalled {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let Some(k) = known.iter_mut().find(|k| k.of(uri)) else {
            return Recalled::Unknown;
        };
        if now.saturating_duration_since(k.at) < self.ttl {
            return Recalled::Fresh(k.addrs.clone());
        }
        let since = |at: Instant| now.saturating_duration_since(at);
        if k.looking.is_some_and(|at| since(at) < self.patience) {
            return Recalled::Stale(k.addrs.clone());
        }
        k.looking = Some(now);
        Recalled::Refresh(k.addrs.clone())
    }

    fn remember(&self, uri: &Uri, at: Instant, addrs: &ResolvedSocketAddrs) {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return;
        };
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
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
        });
    }

    /// Marks `uri`'s answer as outlived by a failed lookup (the next request looks again);
    /// true the first time since it came.
    fn first_failure(&self, uri: &Uri) -> bool {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let entry = known.iter_mut().find(|k| k.of(uri));
        entry.is_some_and(|k| {
            k.looking = None;
            !std::mem::replace(&mut k.failed, true)
        })
    }
}

impl<R: Resolver> Resolver for Remembered<R> {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let now = Instant::now();
        let stale = match self.recall(uri, now) {
            Recalled::Fresh(addrs) | Recalled::Stale(addrs) => return Ok(addrs),
            Recalled::Refresh(addrs) => Some(addrs),
            Recalled::Unknown => None,
        };
        match self.inner.resolve(uri, config, timeout) {
            Ok(addrs) => {
                self.remember(uri, now, &addrs);
                Ok(addrs)
            }
            Err(err) => match stale {
                Some(addrs) => {
                    if self.first_failure(uri) {
                        crate::log::warn(&format!(
                            "looking up upstream host {} failed ({err}); using the addresses \
                             found before until a lookup succeeds",
                            uri.host().unwrap_or_default()
                        ));
                    }
                    Ok(addrs)
                }
                None => Err(err),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Answers 10.0.0.N:port, N counting its lookups; fails for the host `down`, and for
    /// every host once `failing` is set.
    #[derive(Debug, Default)]
    struct Counting(Arc<AtomicUsize>, Arc<std::sync::atomic::AtomicBool>);

    impl Resolver for Counting {
        fn resolve(
            &self,
            uri: &Uri,
            _: &Config,
            _: NextTimeout,
        ) -> Result<ResolvedSocketAddrs, ureq::Error> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            if uri.host() == Some("down") || self.1.load(Ordering::SeqCst) {
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

    fn counting(ttl: Duration) -> (Remembered<Counting>, Arc<AtomicUsize>) {
        let lookups = Arc::new(AtomicUsize::new(0));
        let inner = Counting(lookups.clone(), Default::default());
        (Remembered::with(inner, ttl), lookups)
    }

    #[test]
    fn a_name_is_looked_up_once_while_its_answer_is_fresh() {
        let (r, lookups) = counting(Duration::from_secs(3600));
        let first = resolve(&r, "https://api.example.com/v1/chat/completions").unwrap();
        for path in ["/v1/chat/completions", "/v1/models", "/v1/responses"] {
            let again = resolve(&r, &format!("https://api.example.com{path}")).unwrap();
            assert_eq!(again, first);
        }
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
        // another port, scheme or host is another name
        resolve(&r, "https://api.example.com:8443/v1").unwrap();
        resolve(&r, "http://api.example.com/v1").unwrap();
        resolve(&r, "https://other.example.com/v1").unwrap();
        assert_eq!(lookups.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_stale_answer_is_looked_up_again() {
        let (r, lookups) = counting(Duration::ZERO);
        let first = resolve(&r, "http://model.internal:8000/v1").unwrap();
        let second = resolve(&r, "http://model.internal:8000/v1").unwrap();
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        assert_ne!(first, second, "the new answer is used");
    }

    #[test]
    fn a_failed_lookup_is_not_remembered() {
        let (r, lookups) = counting(Duration::from_secs(3600));
        assert!(resolve(&r, "http://down/v1").is_err());
        assert!(resolve(&r, "http://down/v1").is_err());
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_lookup_of_a_known_name_uses_its_last_answer_and_asks_again_next_time() {
        let (r, lookups) = counting(Duration::ZERO);
        let known = resolve(&r, "https://api.example.com/v1").unwrap();
        r.inner.1.store(true, Ordering::SeqCst);
        assert_eq!(resolve(&r, "https://api.example.com/v1").unwrap(), known);
        assert_eq!(resolve(&r, "https://api.example.com/v1").unwrap(), known);
        assert_eq!(
            lookups.load(Ordering::SeqCst),
            3,
            "each stale request asks again"
        );
        let uri: Uri = "https://api.example.com/v1".parse().unwrap();
        assert!(!r.first_failure(&uri), "the failure was said already");
        // a name never answered still fails
        assert!(resolve(&r, "https://other.example.com/v1").is_err());
        // once the resolver answers again, its answer is used
        r.inner.1.store(false, Ordering::SeqCst);
        assert_ne!(resolve(&r, "https://api.example.com/v1").unwrap(), known);
    }

    #[test]
    fn while_one_request_looks_a_stale_name_up_the_others_use_its_answer() {
        let (mut r, lookups) = counting(Duration::ZERO);
        r.patience = Duration::from_secs(3600);
        let known = resolve(&r, "https://api.example.com/v1").unwrap();
        // a request began the lookup of the stale answer and has not come back
        let uri: Uri = "https://api.example.com/v1".parse().unwrap();
        assert!(matches!(
            r.recall(&uri, Instant::now()),
            Recalled::Refresh(_)
        ));
        for _ in 0..3 {
            assert_eq!(resolve(&r, "https://api.example.com/v1").unwrap(), known);
        }
        assert_eq!(lookups.load(Ordering::SeqCst), 1, "no lookup beside it");
        // past the patience, the lookup is taken over
        r.patience = Duration::ZERO;
        assert_ne!(resolve(&r, "https://api.example.com/v1").unwrap(), known);
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn it_remembers_a_few_names_and_forgets_the_oldest() {
        let (r, lookups) = counting(Duration::from_secs(3600));
        for n in 0..=NAMES {
            resolve(&r, &format!("http://host{n}/v1")).unwrap();
        }
        assert_eq!(lookups.load(Ordering::SeqCst), NAMES + 1);
        assert_eq!(r.known.lock().unwrap().len(), NAMES);
        // the newest are still known, the first is looked up again
        resolve(&r, &format!("http://host{NAMES}/v1")).unwrap();
        assert_eq!(lookups.load(Ordering::SeqCst), NAMES + 1);
        resolve(&r, "http://host0/v1").unwrap();
        assert_eq!(lookups.load(Ordering::SeqCst), NAMES + 2);
    }
}
