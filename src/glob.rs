//! [`Glob`], the one pattern type of the config: keys' `models` allow-lists and `routes`,
//! `prices`, `model_rules`, endpoints' `models`, `cache export --model`. One pattern means the
//! same everywhere: `*` is any run of characters (`/` included), `?` any one character, every
//! other character itself (case-sensitive). A leaf: it imports nothing of ours.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A checked pattern: not empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Glob(String);

impl Glob {
    /// `pattern` as a glob; `Err` says why not (an empty pattern matches nothing anyone means).
    pub fn new(pattern: impl Into<String>) -> Result<Glob, String> {
        let pattern = pattern.into();
        if pattern.is_empty() {
            return Err("an empty pattern; give a name, or a glob like \"gpt-4o*\"".to_string());
        }
        Ok(Glob(pattern))
    }

    /// True if `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        matches(&self.0, text)
    }

    /// True if the pattern has a wildcard (`*` or `?`); without one it matches only itself.
    pub fn is_pattern(&self) -> bool {
        self.0.contains(['*', '?'])
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Glob {
    type Error = String;
    fn try_from(s: String) -> Result<Glob, String> {
        Glob::new(s)
    }
}

impl From<Glob> for String {
    fn from(g: Glob) -> String {
        g.0
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Globs from a list as written; `what` names the list in errors (`auth.keys[0].models`).
pub fn list(raw: Option<Vec<String>>, what: &str) -> Result<Vec<Glob>, String> {
    raw.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, p)| Glob::new(p).map_err(|e| format!("`{what}[{i}]` is {e}")))
        .collect()
}

/// True if `text` matches `pattern` (see the module doc). Linear in practice: on a mismatch
/// only the last `*` backtracks.
fn matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // the last `*` seen, and where in the text its run ends so far
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn one_meaning_for_every_pattern() {
        let cases = [
            ("gpt-4o*", "gpt-4o-mini", true),
            ("gpt-4o*", "gpt-4o", true),
            ("gpt-4o*", "gpt-4", false),
            ("*", "", true),
            ("*", "anything/at all", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "abbc", false),
            ("gpt-4?-mini", "gpt-4o-mini", true),
            ("*mini*", "gpt-4o-mini-2024", true),
            ("llama", "llama3", false),
            ("llama", "llama", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("deepseek-*", "deepseek-", true),
            ("*-mini", "gpt-4o-mini", true),
            ("GPT-4o", "gpt-4o", false),
            ("/v1/files*", "/v1/files/file-1/content", true),
            ("/v1/files*", "/v1/file", false),
            ("/v1/*/content", "/v1/files/f/content", true),
            ("é?", "éü", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(g(p).matches(t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn empty_patterns_are_refused_with_their_place() {
        assert!(Glob::new("").is_err());
        let e = list(Some(vec!["a".into(), String::new()]), "auth.keys[0].models").unwrap_err();
        assert!(
            e.starts_with("`auth.keys[0].models[1]` is an empty pattern"),
            "{e}"
        );
        assert_eq!(list(None, "x").unwrap(), Vec::<Glob>::new());
    }

    #[test]
    fn wildcards_and_serde() {
        assert!(g("a*").is_pattern() && g("a?").is_pattern() && !g("abc").is_pattern());
        let v: Vec<Glob> = serde_json::from_str(r#"["gpt-*"]"#).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"["gpt-*"]"#);
        assert!(serde_json::from_str::<Glob>(r#""""#).is_err());
    }
}
