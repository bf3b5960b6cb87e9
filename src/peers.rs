//! Connections per client address: `max_connections_per_ip` (so one address cannot take every
//! connection slot, and load-balancer probes from elsewhere keep working) and the
//! `trusted_proxies` exempt from it (IPs or CIDRs, e.g. the nginx in front of the relay, whose
//! one address carries every client's connections). A leaf: `config.rs` and `server.rs` use it.

use std::net::IpAddr;

/// The default share of `max_connections` one address may hold.
const DEFAULT_SHARE: usize = 4;
/// The default never goes below this many connections per address.
const DEFAULT_MIN: usize = 8;

/// The checked `max_connections_per_ip`: the configured value, or `max_connections / 4` (at
/// least 8, at most `max_connections`).
pub fn max_per_ip(configured: Option<usize>, max_connections: usize) -> Result<usize, String> {
    match configured {
        Some(0) => Err("`max_connections_per_ip` must be at least 1".to_string()),
        Some(n) => Ok(n),
        None => Ok((max_connections / DEFAULT_SHARE)
            .max(DEFAULT_MIN)
            .min(max_connections)),
    }
}

/// Addresses exempt from `max_connections_per_ip`: networks as (address, prefix length).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `trusted_proxies`: each entry an IP (`10.0.0.5`, `::1`) or a CIDR
    /// (`172.16.0.0/12`, `fd00::/8`).
    pub fn from_raw(raw: Vec<String>) -> Result<TrustedProxies, String> {
        raw.iter()
            .enumerate()
            .map(|(i, entry)| {
                network(entry).ok_or_else(|| {
                    format!(
                        "trusted_proxies[{i}] is `{}`: not an IP address or CIDR (e.g. \
                         \"10.0.0.5\", \"172.16.0.0/12\", \"::1\")",
                        entry.escape_debug()
                    )
                })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// Whether `ip` is in one of the networks (IPv4-mapped IPv6 as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0
            .iter()
            .any(|&(net, prefix)| in_network(ip, net, prefix))
    }
}

fn network(entry: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = match entry.trim().split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
        None => (entry.trim(), None),
    };
    let ip = addr.parse::<IpAddr>().ok()?.to_canonical();
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(bits);
    (prefix <= bits).then_some((ip, prefix))
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let mask = |bits: u32| -> u128 {
        match u32::from(prefix) {
            0 => 0,
            p => (u128::MAX << (bits - p.min(bits))) & (u128::MAX >> (128 - bits)),
        }
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = mask(32);
            (u128::from(u32::from(a)) & m) == (u128::from(u32::from(n)) & m)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = mask(128);
            (u128::from(a) & m) == (u128::from(n) & m)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::from_raw(entries.iter().map(|e| e.to_string()).collect()).unwrap()
    }

    #[test]
    fn networks_match_their_addresses_only() {
        let t = trusted(&["10.0.0.5", "172.16.0.0/12", "fd00::/8", "::1"]);
        let yes = [
            "10.0.0.5",
            "172.31.255.1",
            "fd12::3",
            "::1",
            "::ffff:10.0.0.5",
        ];
        for ip in yes {
            assert!(t.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.6", "172.32.0.1", "fe80::1", "127.0.0.1"] {
            assert!(!t.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(trusted(&["0.0.0.0/0"]).contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nginx", "10.0.0/8", "::/129", "1.2.3.4/x"] {
            let err = TrustedProxies::from_raw(vec![bad.to_string()]).unwrap_err();
            assert!(err.contains("trusted_proxies[0]"), "{err}");
        }
    }

    #[test]
    fn the_default_is_a_quarter_of_max_connections_at_least_8() {
        assert_eq!(max_per_ip(None, 320), Ok(80));
        assert_eq!(max_per_ip(None, 20), Ok(8));
        assert_eq!(max_per_ip(None, 5), Ok(5));
        assert_eq!(max_per_ip(Some(3), 320), Ok(3));
        assert!(max_per_ip(Some(0), 320).is_err());
    }
}
