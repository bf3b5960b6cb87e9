//! The secret scan of `cache export`: credential-shaped strings in a recorded request or
//! answer, found by JSON path, so a cassette committed next to a test suite never carries an
//! API key someone pasted into a prompt.
//!
//! Shapes: OpenAI-style `sk-` keys (`sk-proj-`, `sk-ant-` …), AWS access key ids (`AKIA`,
//! `ASIA`), GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), GitLab
//! (`glpat-`), Slack (`xoxb-` …), Stripe (`sk_live_`, `rk_live_`), Google API keys (`AIza`),
//! Hugging Face (`hf_`), `Bearer` tokens and PEM private keys. Each needs enough key-like
//! characters after its prefix that prose ("sk-learn", "the AKIA prefix") does not match. A
//! finding names its kind, never the secret.

use serde_json::Value;

/// A credential-shaped string: where it is and what it looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `request messages[0].content`, `answer choices[0].message.content`, `answer event 3`.
    pub path: String,
    pub kind: &'static str,
}

/// Prefix, what it is, the fewest token characters after it, and whether those must be
/// upper-case letters and digits only (AWS ids).
const SHAPES: &[(&str, &str, usize, bool)] = &[
    ("sk-ant-", "Anthropic API key", 20, false),
    ("sk-", "OpenAI-style API key", 20, false),
    ("sk_live_", "Stripe secret key", 16, false),
    ("rk_live_", "Stripe restricted key", 16, false),
    ("AKIA", "AWS access key id", 16, true),
    ("ASIA", "AWS temporary access key id", 16, true),
    ("ghp_", "GitHub token", 30, false),
    ("gho_", "GitHub OAuth token", 30, false),
    ("ghu_", "GitHub user token", 30, false),
    ("ghs_", "GitHub app token", 30, false),
    ("ghr_", "GitHub refresh token", 30, false),
    ("github_pat_", "GitHub fine-grained token", 30, false),
    ("glpat-", "GitLab token", 20, false),
    ("xoxb-", "Slack bot token", 20, false),
    ("xoxp-", "Slack user token", 20, false),
    ("xoxa-", "Slack token", 20, false),
    ("AIza", "Google API key", 35, false),
    ("hf_", "Hugging Face token", 30, false),
    ("Bearer ", "bearer token", 16, false),
    ("bearer ", "bearer token", 16, false),
];

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=')
}

/// The kind of the first credential-shaped string in `text`, if any.
pub fn kind_in(text: &str) -> Option<&'static str> {
    if text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----") {
        return Some("PEM private key");
    }
    for (prefix, kind, min, upper) in SHAPES {
        for (at, _) in text.match_indices(prefix) {
            // a prefix glued to a word ("task-", "mask-") is not a key's start
            let before = text.get(..at).and_then(|b| b.chars().next_back());
            if before.is_some_and(|c| c.is_ascii_alphanumeric()) {
                continue;
            }
            let rest = text.get(at + prefix.len()..).unwrap_or("");
            let run = if *upper {
                rest.chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                    .count()
            } else {
                rest.chars().take_while(|&c| token_char(c)).count()
            };
            let has_digit = rest.chars().take(run).any(|c| c.is_ascii_digit());
            if run >= *min && has_digit {
                return Some(kind);
            }
        }
    }
    None
}

/// Every credential-shaped string value (and object key) under `v`, `prefix` naming where `v`
/// is.
pub fn scan_json(prefix: &str, v: &Value, out: &mut Vec<Finding>) {
    walk(prefix.to_string(), v, out);
}

fn walk(path: String, v: &Value, out: &mut Vec<Finding>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else if path.ends_with(' ') {
            format!("{path}{k}")
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if let Some(kind) = kind_in(k) {
                    out.push(Finding {
                        path: join(k),
                        kind,
                    });
                }
                walk(join(k), child, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(format!("{}[{i}]", path.trim_end()), item, out);
            }
        }
        Value::String(s) => {
            if let Some(kind) = kind_in(s) {
                out.push(Finding {
                    path: path.trim_end().to_string(),
                    kind,
                });
            }
        }
        _ => {}
    }
}

/// The findings in a recorded answer: a JSON body by path, a stream event by event (each
/// event's JSON by path, `answer event N …`).
pub fn scan_answer(answer: &str, out: &mut Vec<Finding>) {
    if let Ok(v) = serde_json::from_str::<Value>(answer) {
        scan_json("answer ", &v, out);
        return;
    }
    let text = answer.replace("\r\n", "\n");
    for (i, event) in text.split("\n\n").enumerate() {
        let data: String = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim_start)
            .collect::<Vec<_>>()
            .join("\n");
        let before = out.len();
        if let Ok(v) = serde_json::from_str::<Value>(&data) {
            scan_json(&format!("answer event {i} "), &v, out);
        }
        if out.len() == before {
            if let Some(kind) = kind_in(event) {
                out.push(Finding {
                    path: format!("answer event {i}"),
                    kind,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credential_shapes_found_prose_left_alone() {
        let found = [
            "my key is sk-proj-4f9aXb2c8d7e6f5a4b3c2d1e",
            "sk-ant-api03-abcdefghij0123456789xyz",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_0123456789abcdefghijABCDEFGHIJklmnop",
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload123",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
            "AIzaSyA0123456789abcdefghijklmnopqrstuv",
            "xoxb-123456789012-abcdefghijkl",
        ];
        for s in found {
            assert!(kind_in(s).is_some(), "{s}");
        }
        let clean = [
            "use sk-learn for that",
            "a task-based approach with many many many words",
            "AKIA is the prefix of AWS key ids",
            "the Bearer token goes in a header",
            "hf_ is Hugging Face's prefix",
        ];
        for s in clean {
            assert_eq!(kind_in(s), None, "{s}");
        }
    }

    #[test]
    fn findings_name_json_paths() {
        let mut out = Vec::new();
        scan_json(
            "request ",
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"},
                    {"role": "user", "content": "key sk-abcdefghij0123456789"}]}),
            &mut out,
        );
        scan_answer(
            "data: {\"choices\":[{\"delta\":{\"content\":\"AKIAIOSFODNN7EXAMPLE\"}}]}\n\ndata: [DONE]\n\n",
            &mut out,
        );
        let paths: Vec<&str> = out.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "request messages[1].content",
                "answer event 0 choices[0].delta.content"
            ]
        );
    }
}
