//! `${VAR}` and `${VAR:-default}` in config string values, expanded from the environment before
//! the JSONC text is parsed.
//!
//! A small scanner walks the text and only touches string literals (never comments, keys
//! outside quotes or numbers). Each value is escaped for the string it lands in, and its line
//! breaks are written as `\n`, so the parser's line numbers stay those of the file (columns
//! after an expansion on the same line shift by the length difference). `\${` in a string
//! keeps a literal `${`. A missing variable without a default is an error naming the variable
//! and its line and column.

/// Expands `${…}` inside string literals of `text`. `lookup` gives a variable's value.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    let mut quote: Option<char> = None;
    while let Some((i, c)) = chars.next() {
        match quote {
            None => {
                out.push(c);
                match c {
                    '"' | '\'' => quote = Some(c),
                    '/' if chars.peek().map(|p| p.1) == Some('/') => {
                        // line comment: copy to the end of the line
                        for (_, c) in chars.by_ref() {
                            out.push(c);
                            if c == '\n' {
                                break;
                            }
                        }
                    }
                    '/' if chars.peek().map(|p| p.1) == Some('*') => {
                        // block comment: copy the `*`, then up to and including `*/`
                        if let Some((_, star)) = chars.next() {
                            out.push(star);
                        }
                        let mut prev = '\0';
                        for (_, c) in chars.by_ref() {
                            out.push(c);
                            if prev == '*' && c == '/' {
                                break;
                            }
                            prev = c;
                        }
                    }
                    _ => {}
                }
            }
            Some(q) => match c {
                '\\' => {
                    out.push(c);
                    if let Some((_, next)) = chars.next() {
                        out.push(next);
                    }
                }
                '$' if text[i..].starts_with("${") => {
                    let close = text[i..].find('}').filter(|end| {
                        // the reference must not run past the end of the string
                        !text[i..i + end].contains([q, '\n'])
                    });
                    let Some(end) = close else {
                        let (line, col) = crate::locate::position(text, i);
                        return Err(format!(
                            "line {line}, column {col}: `${{` without a closing `}}`; write \
                             ${{VAR}} or ${{VAR:-default}}, or \\${{ for a literal `${{`"
                        ));
                    };
                    let inner = &text[i + 2..i + end];
                    let value = resolve(inner, lookup).map_err(|msg| {
                        let (line, col) = crate::locate::position(text, i);
                        format!("line {line}, column {col}: {msg}")
                    })?;
                    push_escaped(&mut out, &value, q);
                    // skip the reference's remaining characters
                    while chars.peek().is_some_and(|(j, _)| *j <= i + end) {
                        chars.next();
                    }
                }
                _ => {
                    out.push(c);
                    if c == q {
                        quote = None;
                    }
                }
            },
        }
    }
    Ok(out)
}

/// The value of `VAR` or `VAR:-default`.
fn resolve(inner: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match inner.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (inner, None),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`${{{inner}}}` is not a variable reference; names are letters, digits and `_`, \
             e.g. ${{OPENAI_API_KEY}} or ${{PORT:-8080}}"
        ));
    }
    match (lookup(name), default) {
        (Some(v), Some(d)) if v.is_empty() => Ok(d.to_string()),
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_string()),
        (None, None) => Err(format!(
            "environment variable {name} is not set; export it, or give a default with \
             ${{{name}:-default}}"
        )),
    }
}

/// Appends `value` escaped for a string literal quoted with `quote`.
fn push_escaped(out: &mut String, value: &str, quote: char) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("10.0.0.1".to_string()),
            "EMPTY" => Some(String::new()),
            "TRICKY" => Some("a\"b\\c\nd".to_string()),
            _ => None,
        }
    }

    fn check(input: &str, expected: Result<&str, &str>) {
        let got = expand(input, &env);
        match (got, expected) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "input {input:?}"),
            (Err(g), Err(e)) => assert!(g.contains(e), "input {input:?}: error {g:?}"),
            (g, e) => panic!("input {input:?}: got {g:?}, expected {e:?}"),
        }
    }

    #[test]
    fn expansions() {
        check(
            r#"{a: "http://${HOST}:1/v1"}"#,
            Ok(r#"{a: "http://10.0.0.1:1/v1"}"#),
        );
        check(r#"{a: '${HOST}'}"#, Ok(r#"{a: '10.0.0.1'}"#));
        check(r#"{a: "${NOPE:-x y}"}"#, Ok(r#"{a: "x y"}"#));
        check(r#"{a: "${EMPTY:-d}"}"#, Ok(r#"{a: "d"}"#));
        check(r#"{a: "${EMPTY}"}"#, Ok(r#"{a: ""}"#));
        check(r#"{a: "${TRICKY}"}"#, Ok(r#"{a: "a\"b\\c\nd"}"#));
        check(r#"{a: "\${HOST}"}"#, Ok(r#"{a: "\${HOST}"}"#));
        check("{a: 1} // ${NOPE}\n", Ok("{a: 1} // ${NOPE}\n"));
        check("/* ${NOPE} */ {a: 1}", Ok("/* ${NOPE} */ {a: 1}"));
        check("{a: \"$HOST and $\"}", Ok("{a: \"$HOST and $\"}"));
    }

    #[test]
    fn errors_name_variable_and_position() {
        check(
            "{\n  a: \"${NOPE}\"\n}",
            Err("line 2, column 7: environment variable NOPE is not set"),
        );
        check(
            "{a: \"${HOST\"}",
            Err("line 1, column 6: `${` without a closing"),
        );
        check("{a: \"${1X}\"}", Err("not a variable reference"));
    }
}
