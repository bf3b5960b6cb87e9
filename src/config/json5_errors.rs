//! Where a config error is in the text: json5's and serde's messages turned into "FILE: line
//! L, column C: what was wrong", for the errors they report without a position (unknown keys,
//! numbers json5 would silently cast) or at the wrong place (a missing comma).

use serde_json::Value;

use super::{ConfigError, RawConfig};

/// json5 0.4 reads every number as a float and casts it to the field's type, so `-3` became 0
/// and `2.7` became 2 for an integer key. Deserializing once more through `serde_json::Value`
/// (where json5 keeps integers and floats apart) refuses both; the offending literal is then
/// located in the text.
pub(super) fn check_numbers(text: &str, origin: &str) -> Result<(), ConfigError> {
    let value: Value = json5::from_str(text).map_err(|e| located(e, text, origin))?;
    let Err(e) = serde_json::from_value::<RawConfig>(value) else {
        return Ok(());
    };
    let msg = e.to_string();
    let literal = msg.split('`').nth(1).filter(|l| {
        l.parse::<f64>().is_ok() && (msg.contains("integer") || msg.contains("floating point"))
    });
    let location = literal.and_then(|l| find_literal(text, l));
    Err(ConfigError(match location {
        Some((line, column)) => {
            format!("{origin}: line {line}, column {column}: {msg} (a whole, non-negative number)")
        }
        None => format!("{origin}: {msg}"),
    }))
}

/// Line and column (1-based) of the first number literal `lit` outside comments.
fn find_literal(text: &str, lit: &str) -> Option<(usize, usize)> {
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut from = 0;
        while let Some(pos) = code[from..].find(lit) {
            let at = from + pos;
            let before = code[..at].chars().next_back();
            let after = code[at + lit.len()..].chars().next();
            let part_of_number =
                |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit() || c == '.');
            if !part_of_number(before) && !part_of_number(after) {
                return Some((i + 1, at + 1));
            }
            from = at + lit.len();
        }
    }
    None
}

/// Turns a json5 error into "FILE: line L, column C: what was wrong".
pub(super) fn located(err: json5::Error, text: &str, origin: &str) -> ConfigError {
    let json5::Error::Message { msg, location } = err;
    // serde reports an unknown key without a position of its own (json5 gives the position of
    // the enclosing object); point at the key itself when we can find it.
    let location = unknown_field(&msg)
        .and_then(|key| find_key(text, key))
        .or(location.map(|l| (l.line, l.column)));
    // pest's syntax errors come as a drawn snippet (" --> 2:13 | ... = expected x"); keep it
    // on its own lines under a plain first line.
    // pest points at the value before a missing comma; the structural scan finds the token
    // where the comma (or colon, or bracket) was expected.
    if msg.contains('\n') {
        if let Some(e) = crate::locate::syntax_error(text) {
            return ConfigError(format!(
                "{origin}: line {}, column {}: invalid JSONC syntax: {}",
                e.line, e.column, e.message
            ));
        }
    }
    let msg = match msg.split_once('\n') {
        Some((_, snippet)) => {
            format!("invalid JSONC syntax here (a missing comma, quote or bracket?)\n{snippet}")
        }
        None if msg == "error parsing number" => "expected a number here".to_string(),
        None => msg,
    };
    match location {
        Some((line, column)) => {
            ConfigError(format!("{origin}: line {line}, column {column}: {msg}"))
        }
        None => ConfigError(format!("{origin}: {msg}")),
    }
}

fn unknown_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// Line and column (1-based) of the first occurrence of `key` used as an object key.
fn find_key(text: &str, key: &str) -> Option<(usize, usize)> {
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for quoted in [format!("\"{key}\""), format!("'{key}'")] {
            if let Some(col) = code.find(&quoted) {
                if code[col + quoted.len()..].trim_start().starts_with(':') {
                    return Some((i + 1, col + 1));
                }
            }
        }
        let bare = code.trim_start();
        if bare.starts_with(key) && bare[key.len()..].trim_start().starts_with(':') {
            return Some((i + 1, code.len() - bare.len() + 1));
        }
    }
    None
}
