//! The client's request headers as the relay reads them: a view, borrowed from the head
//! tiny_http parsed (no copy a request) or from recorded pairs (`llm-relay cache why`), less
//! the `anthropic-*` headers a translation to Chat leaves behind. Imports nothing of the relay.
//!
//! The pipeline had copied every header into a `Vec<(String, String)>` first: one allocation a
//! request and two a header (an SDK sends 12 to 17 of them), on the cache hit's path as on the
//! miss's.

use tiny_http::Header;

/// Headers in the order the client sent them. `Copy`: pass it by value.
#[derive(Clone, Copy)]
pub struct ClientHeaders<'a> {
    list: List<'a>,
    /// `anthropic-*` headers left out: a Messages request translated for a chat endpoint,
    /// where the client API's own headers mean nothing.
    no_anthropic: bool,
}

#[derive(Clone, Copy)]
enum List<'a> {
    Parsed(&'a [Header]),
    Pairs(&'a [(String, String)]),
}

impl<'a> ClientHeaders<'a> {
    /// The headers of a request head as tiny_http parsed it.
    pub fn parsed(headers: &'a [Header]) -> Self {
        ClientHeaders {
            list: List::Parsed(headers),
            no_anthropic: false,
        }
    }

    /// Headers held as (name, value) pairs.
    pub fn pairs(headers: &'a [(String, String)]) -> Self {
        ClientHeaders {
            list: List::Pairs(headers),
            no_anthropic: false,
        }
    }

    /// No headers at all.
    pub fn none() -> ClientHeaders<'static> {
        ClientHeaders::pairs(&[])
    }

    /// The same headers, less the `anthropic-*` ones when `drop` is true.
    pub fn without_anthropic(self, drop: bool) -> Self {
        ClientHeaders {
            no_anthropic: self.no_anthropic || drop,
            ..self
        }
    }

    /// Each (name, value), in order.
    pub fn iter(self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let (parsed, pairs): (&[Header], &[(String, String)]) = match self.list {
            List::Parsed(h) => (h, &[]),
            List::Pairs(p) => (&[], p),
        };
        let no_anthropic = self.no_anthropic;
        parsed
            .iter()
            .map(|h| (h.field.as_str().as_str(), h.value.as_str()))
            .chain(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            .filter(move |(name, _)| !(no_anthropic && is_anthropic(name)))
    }

    /// The value of the first header `name` (case-insensitive).
    pub fn get(self, name: &str) -> Option<&'a str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// At most how many headers [`iter`](ClientHeaders::iter) gives (for a capacity).
    pub fn len_hint(self) -> usize {
        match self.list {
            List::Parsed(h) => h.len(),
            List::Pairs(p) => p.len(),
        }
    }

    /// The headers as owned pairs.
    pub fn to_pairs(self) -> Vec<(String, String)> {
        self.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }
}

/// Whether `name` is one of the Messages API's own headers (`anthropic-version`, `-beta`, ...).
fn is_anthropic(name: &str) -> bool {
    name.get(..10)
        .is_some_and(|p| p.eq_ignore_ascii_case("anthropic-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(lines: &[(&str, &str)]) -> Vec<Header> {
        lines
            .iter()
            .filter_map(|(n, v)| Header::from_bytes(n.as_bytes(), v.as_bytes()).ok())
            .collect()
    }

    #[test]
    fn both_sources_read_alike_and_translation_drops_the_anthropic_headers() {
        let lines = [
            ("Content-Type", "application/json"),
            ("Anthropic-Version", "2023-06-01"),
            ("anthropic-beta", "a,b"),
            ("X-Api-Key", "k"),
        ];
        let head = parsed(&lines);
        let owned: Vec<(String, String)> = lines
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        for view in [ClientHeaders::parsed(&head), ClientHeaders::pairs(&owned)] {
            assert_eq!(view.iter().collect::<Vec<_>>(), lines);
            assert_eq!(view.get("anthropic-version"), Some("2023-06-01"));
            assert_eq!(view.get("x-api-key"), Some("k"));
            assert_eq!(view.len_hint(), 4);
            let chat = view.without_anthropic(true);
            assert_eq!(
                chat.to_pairs(),
                [
                    ("Content-Type".to_string(), "application/json".to_string()),
                    ("X-Api-Key".to_string(), "k".to_string()),
                ]
            );
            assert_eq!(chat.get("anthropic-beta"), None);
            // dropping is for good: a later `false` does not bring them back
            assert_eq!(chat.without_anthropic(false).iter().count(), 2);
            assert_eq!(view.without_anthropic(false).iter().count(), 4);
        }
        assert_eq!(ClientHeaders::none().iter().count(), 0);
        assert!(!is_anthropic("anthropic"));
        assert!(is_anthropic("ANTHROPIC-x"));
    }
}
