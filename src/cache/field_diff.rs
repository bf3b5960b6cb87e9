//! The fields in which two requests differ, by path (`temperature`, `messages[1].content`),
//! and a one-line description of each: what `why.rs` lists for a near miss.

use serde_json::Value;

/// One differing field: its path, and its value in the recorded and the asked request
/// (`None`: absent there).
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    pub path: String,
    pub recorded: Option<Value>,
    pub asked: Option<Value>,
}

/// The fields in which `asked` differs from `recorded`.
pub fn diff(recorded: &Value, asked: &Value) -> Vec<Diff> {
    let mut out = Vec::new();
    walk(String::new(), Some(recorded), Some(asked), &mut out);
    out
}

fn walk(path: String, recorded: Option<&Value>, asked: Option<&Value>, out: &mut Vec<Diff>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (recorded, asked) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                walk(join(k), a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                walk(format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(Diff {
            path: if path.is_empty() {
                "(body)".to_string()
            } else {
                path
            },
            recorded: a.cloned(),
            asked: b.cloned(),
        }),
    }
}

/// A value for a one-line message: scalars as JSON, cut at 60 characters; objects and arrays
/// by kind.
fn short(v: Option<&Value>) -> String {
    match v {
        None => "absent".to_string(),
        Some(Value::Object(_)) => "an object".to_string(),
        Some(Value::Array(a)) => format!("a list of {}", a.len()),
        Some(v) => {
            let s = v.to_string();
            match s.char_indices().nth(60) {
                Some((i, _)) => format!("{}…", s.get(..i).unwrap_or("")),
                None => s,
            }
        }
    }
}

/// `temperature (recorded 0.7, asked 0.2)`.
pub fn describe(d: &Diff) -> String {
    format!(
        "{} (recorded {}, asked {})",
        d.path,
        short(d.recorded.as_ref()),
        short(d.asked.as_ref())
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn diffs_name_paths() {
        let recorded = json!({"model": "m", "temperature": 0.7,
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}]});
        let cases = [
            (
                json!({"model": "m", "temperature": 0.2, "messages": recorded["messages"]}),
                vec!["temperature"],
            ),
            (
                json!({"model": "m", "temperature": 0.7,
                    "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "b"}]}),
                vec!["messages[1].content"],
            ),
            (
                json!({"model": "m", "temperature": 0.7, "seed": 1, "messages": recorded["messages"]}),
                vec!["seed"],
            ),
            (
                json!({"model": "m", "messages": [{"role": "system", "content": "s"}]}),
                vec!["messages[1]", "temperature"],
            ),
            (recorded.clone(), vec![]),
        ];
        for (asked, paths) in cases {
            let got: Vec<String> = diff(&recorded, &asked)
                .into_iter()
                .map(|d| d.path)
                .collect();
            assert_eq!(got, paths, "{asked}");
        }
        let d = &diff(&recorded, &json!({"model": "m"}))[0];
        assert_eq!(describe(d), "messages (recorded a list of 2, asked absent)");
    }
}
