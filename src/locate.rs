//! Where things sit in a JSONC config text, for error messages that name line and column: a
//! small structural scan (strings, comments, brackets, keys) that maps each key path such as
//! `upstreams[1].url` to its position, and finds the real place of a syntax error (the token
//! after which a `,` is missing, where json5's parser points at the value before it).

/// A structural syntax error: 1-based line and column, and what was expected there.
#[derive(Debug, PartialEq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Line and column of the config key a check's message is about: the key path it starts with
/// (`upstreams[0]: …`, `model_rules[1].match_model is empty`) joined with the first key it
/// quotes in backticks, or the longest prefix of that path the text has.
pub fn message_position(text: &str, message: &str) -> Option<(usize, usize)> {
    let mut segments: Vec<&str> = Vec::new();
    let mut rest = message;
    loop {
        let len = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
        let (head, tail) = rest.split_at(len);
        if head.is_empty() || !(tail.starts_with(": ") || tail.starts_with(' ')) {
            break;
        }
        segments.push(head);
        match tail.strip_prefix(": ") {
            Some(t) => rest = t,
            None => break,
        }
    }
    if let Some(quoted) = message.split('`').nth(1) {
        if !quoted.is_empty() && quoted.chars().all(is_path_char) {
            segments.push(quoted);
        }
    }
    let scan = Scan::run(text);
    let full = segments.join(".");
    let mut candidate = full.as_str();
    loop {
        if let Some((_, at)) = scan.paths.iter().find(|(p, _)| p == candidate) {
            return Some(position(text, *at));
        }
        let cut = candidate.rfind(['.', '['])?;
        candidate = candidate.get(..cut)?;
    }
}

/// The first structural error in `text` (a missing comma or colon, an unclosed bracket), with
/// the position of the token where something else was expected.
pub fn syntax_error(text: &str) -> Option<SyntaxError> {
    let scan = Scan::run(text);
    let (at, message) = scan.error?;
    let (line, column) = position(text, at);
    Some(SyntaxError {
        line,
        column,
        message,
    })
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']')
}

/// 1-based line and column (in characters) of byte offset `at`.
pub fn position(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Punct(char),
    /// A string literal (its unquoted text, escapes left as written) or a bare word.
    Word(String),
}

struct Scan {
    toks: Vec<(usize, Tok)>,
    next: usize,
    end: usize,
    paths: Vec<(String, usize)>,
    error: Option<(usize, String)>,
}

impl Scan {
    fn run(text: &str) -> Scan {
        let mut scan = Scan {
            toks: tokens(text),
            next: 0,
            end: text.len(),
            paths: Vec::new(),
            error: None,
        };
        if let Err(e) = scan.value("") {
            scan.error = Some(e);
        } else if let Some((at, _)) = scan.toks.get(scan.next) {
            scan.error = Some((*at, "expected the end of the file after the value".into()));
        }
        scan
    }

    fn peek(&self) -> Option<&(usize, Tok)> {
        self.toks.get(self.next)
    }

    /// The position of the next token (or the end of the text), for errors.
    fn here(&self) -> usize {
        self.peek().map_or(self.end, |(at, _)| *at)
    }

    fn value(&mut self, path: &str) -> Result<(), (usize, String)> {
        let Some((at, tok)) = self.peek().cloned() else {
            return Err((
                self.end,
                "expected a value before the end of the file".into(),
            ));
        };
        self.next += 1;
        match tok {
            Tok::Punct('{') => self.object(path),
            Tok::Punct('[') => self.array(path),
            Tok::Word(_) => Ok(()),
            Tok::Punct(c) => Err((at, format!("expected a value, found `{c}`"))),
        }
    }

    fn object(&mut self, path: &str) -> Result<(), (usize, String)> {
        loop {
            let Some((at, tok)) = self.peek().cloned() else {
                return Err((self.end, "expected `}` to close the object".into()));
            };
            self.next += 1;
            let key = match tok {
                Tok::Punct('}') => return Ok(()),
                Tok::Word(key) => key,
                Tok::Punct(c) => return Err((at, format!("expected a key or `}}`, found `{c}`"))),
            };
            let key_path = if path.is_empty() {
                key
            } else {
                format!("{path}.{key}")
            };
            self.paths.push((key_path.clone(), at));
            if self.peek().map(|t| &t.1) != Some(&Tok::Punct(':')) {
                return Err((self.here(), "expected `:` after the key".into()));
            }
            self.next += 1;
            self.value(&key_path)?;
            self.separator('}')?;
        }
    }

    /// After a member or an element: a `,` (taken) or the closing `close` (left for the loop).
    fn separator(&mut self, close: char) -> Result<(), (usize, String)> {
        match self.peek().map(|t| t.1.clone()) {
            Some(Tok::Punct(',')) => {
                self.next += 1;
                Ok(())
            }
            Some(Tok::Punct(c)) if c == close => Ok(()),
            _ => Err((
                self.here(),
                format!("expected `,` or `{close}` before this (a missing comma?)"),
            )),
        }
    }

    fn array(&mut self, path: &str) -> Result<(), (usize, String)> {
        for i in 0.. {
            match self.peek().cloned() {
                None => return Err((self.end, "expected `]` to close the array".into())),
                Some((_, Tok::Punct(']'))) => {
                    self.next += 1;
                    return Ok(());
                }
                Some((at, _)) => {
                    let element = format!("{path}[{i}]");
                    self.paths.push((element.clone(), at));
                    self.value(&element)?;
                }
            }
            self.separator(']')?;
        }
        Ok(())
    }
}

/// The tokens of `text` with their byte offsets; comments and whitespace dropped.
fn tokens(text: &str) -> Vec<(usize, Tok)> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '{' | '}' | '[' | ']' | ':' | ',' => out.push((at, Tok::Punct(c))),
            '/' if chars.peek().map(|p| p.1) == Some('/') => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek().map(|p| p.1) == Some('*') => {
                chars.next();
                let mut prev = '\0';
                for (_, c) in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '"' | '\'' => {
                let mut s = String::new();
                while let Some((_, d)) = chars.next() {
                    match d {
                        '\\' => {
                            s.push(d);
                            if let Some((_, e)) = chars.next() {
                                s.push(e);
                            }
                        }
                        d if d == c => break,
                        d => s.push(d),
                    }
                }
                out.push((at, Tok::Word(s)));
            }
            c => {
                let mut s = String::from(c);
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_whitespace() || "{}[]:,\"'".contains(d) || d == '/' {
                        break;
                    }
                    s.push(d);
                    chars.next();
                }
                out.push((at, Tok::Word(s)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line and column of the key or array element at `path` (`a.b[2].c`).
    fn path_position(text: &str, path: &str) -> Option<(usize, usize)> {
        let scan = Scan::run(text);
        let at = scan.paths.iter().find(|(p, _)| p == path)?.1;
        Some(position(text, at))
    }

    const TEXT: &str = "{\n  // a comment with \"quotes\" and [brackets]\n  listen: '127.0.0.1:1',\n  \"upstreams\": [\n    {\"url\": \"http://a/v1\"},\n    {url: \"b\", name: 'x,y'}\n  ],\n  auth: {keys: [{key: \"k\", rate_limit: {per_minute: 0}}]},\n}\n";

    #[test]
    fn paths_map_to_their_keys() {
        assert_eq!(path_position(TEXT, "listen"), Some((3, 3)));
        assert_eq!(path_position(TEXT, "upstreams[0].url"), Some((5, 6)));
        assert_eq!(path_position(TEXT, "upstreams[1].url"), Some((6, 6)));
        assert_eq!(path_position(TEXT, "upstreams[1]"), Some((6, 5)));
        assert_eq!(
            path_position(TEXT, "auth.keys[0].rate_limit.per_minute"),
            Some((8, 41))
        );
        assert_eq!(path_position(TEXT, "nothing"), None);
        assert_eq!(syntax_error(TEXT), None);
    }

    #[test]
    fn messages_point_at_the_key_they_are_about() {
        let at = |m: &str| message_position(TEXT, m);
        assert_eq!(
            at("upstreams[1]: `url` must be an http:// URL"),
            Some((6, 6))
        );
        assert_eq!(at("`listen` is wrong"), Some((3, 3)));
        assert_eq!(
            at("`auth.keys[0].rate_limit.per_minute` must be positive"),
            Some((8, 41))
        );
        // a key the text does not have: the nearest enclosing one that it has
        assert_eq!(at("upstreams[1]: `weight` must be positive"), Some((6, 5)));
        assert_eq!(at("the admin key is shorter than 8 characters"), None);
    }

    #[test]
    fn a_missing_comma_is_reported_where_it_is_missing() {
        let e = syntax_error("{\n  \"listen\": \"x\"\n  \"workers\": 4\n}").unwrap();
        assert_eq!((e.line, e.column), (3, 3));
        assert!(e.message.contains("missing comma"), "{e:?}");
        let e = syntax_error("{\n  a: [1, 2\n  3]\n}").unwrap();
        assert_eq!((e.line, e.column), (3, 3));
        let e = syntax_error("{\n  a 1\n}").unwrap();
        assert_eq!((e.line, e.column), (2, 5));
        assert!(e.message.contains("`:`"), "{e:?}");
        let e = syntax_error("{\n  a: 1,\n").unwrap();
        assert!(e.message.contains("close the object"), "{e:?}");
    }
}
