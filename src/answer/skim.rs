//! [`Skim`]: a JSON text checked without building it: accepted exactly when serde_json would
//! parse it into a `Value` (same grammar, UTF-8, escapes and surrogate pairs, nesting limit and
//! number range), while handing out the text of chosen members' values. A whole answer's
//! usage is read this way ([`super::Answer::read_usage`]): the usage member's few bytes are
//! read, the rest of the answer only checked.
//!
//! Rare shapes go to serde_json itself rather than being re-implemented: a number with an
//! exponent or of 300 digits and more (is it finite?), and member names with escapes (what do
//! they say?).

use std::borrow::Cow;

/// The text is not JSON as serde_json reads it.
#[derive(Debug)]
pub struct Invalid;

/// serde_json's nesting limit: its 128th container inside another is an error.
const MAX_DEPTH: u8 = 127;

/// A cursor over a JSON text.
pub struct Skim<'a> {
    text: &'a [u8],
    at: usize,
    /// Containers still allowed to open.
    depth: u8,
}

impl<'a> Skim<'a> {
    /// The members of the object that `text` is (whitespace around it allowed), each name
    /// and value's text handed to `each` in order; `Err` unless the whole text is valid JSON
    /// and an object.
    pub fn object(text: &'a [u8], each: impl FnMut(Name<'a>, &'a [u8])) -> Result<(), Invalid> {
        let mut s = Skim {
            text,
            at: 0,
            depth: MAX_DEPTH,
        };
        s.space();
        s.members(each)?;
        s.space();
        match s.at == text.len() {
            true => Ok(()),
            false => Err(Invalid),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Steps over `byte`, or fails.
    fn eat(&mut self, byte: u8) -> Result<(), Invalid> {
        match self.peek() == Some(byte) {
            true => {
                self.at += 1;
                Ok(())
            }
            false => Err(Invalid),
        }
    }

    fn enter(&mut self) -> Result<(), Invalid> {
        self.depth = self.depth.checked_sub(1).ok_or(Invalid)?;
        Ok(())
    }

    fn span(&self, from: usize) -> &'a [u8] {
        self.text.get(from..self.at).unwrap_or_default()
    }

    /// An object at the cursor; each member's name and value text to `each`.
    fn members(&mut self, mut each: impl FnMut(Name<'a>, &'a [u8])) -> Result<(), Invalid> {
        self.eat(b'{')?;
        self.enter()?;
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            self.depth += 1;
            return Ok(());
        }
        loop {
            let from = self.at + 1;
            let escaped = self.string()?;
            let name = Name {
                raw: self.text.get(from..self.at - 1).unwrap_or_default(),
                escaped,
            };
            self.space();
            self.eat(b':')?;
            self.space();
            let from = self.at;
            self.value()?;
            each(name, self.span(from));
            self.space();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    self.space();
                }
                Some(b'}') => {
                    self.at += 1;
                    self.depth += 1;
                    return Ok(());
                }
                _ => return Err(Invalid),
            }
        }
    }

    fn array(&mut self) -> Result<(), Invalid> {
        self.eat(b'[')?;
        self.enter()?;
        self.space();
        if self.peek() == Some(b']') {
            self.at += 1;
            self.depth += 1;
            return Ok(());
        }
        loop {
            self.value()?;
            self.space();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    self.space();
                }
                Some(b']') => {
                    self.at += 1;
                    self.depth += 1;
                    return Ok(());
                }
                _ => return Err(Invalid),
            }
        }
    }

    fn value(&mut self) -> Result<(), Invalid> {
        match self.peek().ok_or(Invalid)? {
            b'{' => self.members(|_, _| {}),
            b'[' => self.array(),
            b'"' => self.string().map(|_| ()),
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Invalid),
        }
    }

    fn word(&mut self, word: &[u8]) -> Result<(), Invalid> {
        match self
            .text
            .get(self.at..)
            .is_some_and(|t| t.starts_with(word))
        {
            true => {
                self.at += word.len();
                Ok(())
            }
            false => Err(Invalid),
        }
    }

    /// A string at the cursor: UTF-8, no control character, escapes as JSON has them, `\u`
    /// surrogates only in pairs; whether it had escapes.
    fn string(&mut self) -> Result<bool, Invalid> {
        self.eat(b'"')?;
        let from = self.at;
        let (mut escaped, mut high) = (false, false);
        loop {
            self.at += plain_run(self.text.get(self.at..).unwrap_or_default());
            let byte = self.peek().ok_or(Invalid)?;
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                0x80.. => high = true,
                _ => return Err(Invalid),
            }
        }
        // escapes are ASCII: the bytes as sent are UTF-8 exactly when the string is
        if high {
            let content = self.text.get(from..self.at - 1).unwrap_or_default();
            std::str::from_utf8(content).map_err(|_| Invalid)?;
        }
        Ok(escaped)
    }

    /// The rest of an escape, after its backslash.
    fn escape(&mut self) -> Result<(), Invalid> {
        let byte = self.peek().ok_or(Invalid)?;
        self.at += 1;
        match byte {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(()),
            b'u' => match self.hex()? {
                0xDC00..=0xDFFF => Err(Invalid),
                0xD800..=0xDBFF => {
                    self.eat(b'\\')?;
                    self.eat(b'u')?;
                    match self.hex()? {
                        0xDC00..=0xDFFF => Ok(()),
                        _ => Err(Invalid),
                    }
                }
                _ => Ok(()),
            },
            _ => Err(Invalid),
        }
    }

    fn hex(&mut self) -> Result<u16, Invalid> {
        let digits = self.text.get(self.at..self.at + 4).ok_or(Invalid)?;
        let digits = std::str::from_utf8(digits).map_err(|_| Invalid)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Invalid);
        }
        self.at += 4;
        u16::from_str_radix(digits, 16).map_err(|_| Invalid)
    }

    /// A number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, finite for certain below 300 digits;
    /// one with an exponent, or longer, is serde_json's to judge.
    fn number(&mut self) -> Result<(), Invalid> {
        let from = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Invalid),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            let start = self.at;
            self.digits();
            if self.at == start {
                return Err(Invalid);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.digits();
            return self.judged(from);
        }
        match self.at - from < 300 {
            true => Ok(()),
            false => self.judged(from),
        }
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    /// A number serde_json reads as it would in a `Value` (an `f64` out of range fails).
    fn judged(&self, from: usize) -> Result<(), Invalid> {
        match serde_json::from_slice::<f64>(self.span(from)) {
            Ok(_) => Ok(()),
            Err(_) => Err(Invalid),
        }
    }
}

/// How many bytes at the start of `text` need no look in a string: neither `"`, `\\`, a
/// control character nor a byte of a multi-byte character. Eight at a time (the bit tricks
/// of "Bit Twiddling Hacks", "Determine if a word has a byte less than n": a byte is
/// flagged only when it, or one before it, is such a byte, so the first flag is exact);
/// the last few bytes of the text one by one.
fn plain_run(text: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    /// Some byte of `w` is below `n` (n ≤ 128).
    fn below(w: u64, n: u8) -> u64 {
        w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH
    }
    let mut at = 0;
    let mut words = text.chunks_exact(8);
    for word in words.by_ref() {
        let w = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        let quote = below(w ^ (ONES * u64::from(b'"')), 1);
        let backslash = below(w ^ (ONES * u64::from(b'\\')), 1);
        let flags = quote | backslash | below(w, 0x20) | (w & HIGH);
        if flags != 0 {
            return at + (flags.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let rest = words.remainder();
    at + rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b))
        .unwrap_or(rest.len())
}

/// A member's name as sent.
#[derive(Debug, Clone, Copy)]
pub struct Name<'a> {
    /// Between the quotes, escapes as written.
    raw: &'a [u8],
    escaped: bool,
}

impl<'a> Name<'a> {
    /// The name decoded: the raw text itself when it has no escapes, else what serde_json
    /// makes of it (`None` only for a name [`Skim`] has not checked).
    pub fn text(&self) -> Option<Cow<'a, [u8]>> {
        if !self.escaped {
            return Some(Cow::Borrowed(self.raw));
        }
        let quoted = [b"\"", self.raw, b"\""].concat();
        serde_json::from_slice::<String>(&quoted)
            .ok()
            .map(|name| Cow::Owned(name.into_bytes()))
    }

    pub fn is(&self, name: &[u8]) -> bool {
        match self.escaped {
            false => self.raw == name,
            true => self.text().is_some_and(|text| *text == *name),
        }
    }
}

#[cfg(test)]
#[path = "skim_tests.rs"]
mod tests;
