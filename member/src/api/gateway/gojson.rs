//! Go's `encoding/json` as etcd's gateway meets it: the scanner whose syntax errors clients
//! read ("invalid character 'x' looking for beginning of value"), the streaming decoder's
//! first value, the raw values of an object or array (Go's `json.RawMessage`), string
//! unquoting, and `base64.StdEncoding` with Go's error offsets. No crate reproduces these
//! texts and offsets, and clients compare them with etcd's.

/// Where the scanner is within a value (Go's scanner states, by what they expect next).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    BeginValue,
    /// After `[`: a value or `]`.
    BeginValueOrEmpty,
    /// After `{`: a key or `}`.
    BeginKeyOrEmpty,
    /// After `,` in an object: a key.
    BeginKey,
    InString,
    InStringEscape,
    /// Within `\u`, this many hex digits read.
    InStringHex(u8),
    Neg,
    /// A number's integer part: `0` (nothing may follow but `.`/`e`) or `1`-`9` digits.
    Zero,
    Digits,
    Dot,
    Fraction,
    Exponent,
    ExponentSign,
    ExponentDigits,
    /// Within the literal, this many bytes matched.
    Literal(&'static str, u8),
    EndValue,
    EndTop,
}

/// What the value being scanned is nested in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Parse {
    ObjectKey,
    ObjectValue,
    Array,
}

/// What one byte did.
#[derive(PartialEq, Eq, Debug)]
enum Step {
    Continue,
    /// A top-level value ended before this byte.
    End,
    /// A top-level object or array ended with this byte.
    EndContainer,
    Error,
}

struct Scanner {
    state: State,
    stack: Vec<Parse>,
    /// The first error, kept: Go's scanner reports it at the next step.
    err: Option<String>,
    end_top: bool,
}

impl Scanner {
    fn new() -> Self {
        Scanner {
            state: State::BeginValue,
            stack: Vec::new(),
            err: None,
            end_top: false,
        }
    }

    fn fail(&mut self, c: u8, context: &str) -> Step {
        if self.err.is_none() {
            self.err = Some(format!("invalid character {} {context}", quote_char(c)));
        }
        Step::Error
    }

    fn step(&mut self, c: u8) -> Step {
        if self.err.is_some() {
            return Step::Error;
        }
        match self.state {
            State::BeginValue => self.begin_value(c),
            State::BeginValueOrEmpty => {
                if is_space(c) {
                    Step::Continue
                } else if c == b']' {
                    self.end_value(c)
                } else {
                    self.begin_value(c)
                }
            }
            State::BeginKeyOrEmpty => {
                if is_space(c) {
                    Step::Continue
                } else if c == b'}' {
                    if let Some(top) = self.stack.last_mut() {
                        *top = Parse::ObjectValue;
                    }
                    self.end_value(c)
                } else {
                    self.begin_key(c)
                }
            }
            State::BeginKey => self.begin_key(c),
            State::InString => match c {
                b'"' => {
                    self.state = State::EndValue;
                    Step::Continue
                }
                b'\\' => {
                    self.state = State::InStringEscape;
                    Step::Continue
                }
                c if c < 0x20 => self.fail(c, "in string literal"),
                _ => Step::Continue,
            },
            State::InStringEscape => match c {
                b'b' | b'f' | b'n' | b'r' | b't' | b'\\' | b'/' | b'"' => {
                    self.state = State::InString;
                    Step::Continue
                }
                b'u' => {
                    self.state = State::InStringHex(0);
                    Step::Continue
                }
                _ => self.fail(c, "in string escape code"),
            },
            State::InStringHex(n) => {
                if !c.is_ascii_hexdigit() {
                    return self.fail(c, "in \\u hexadecimal character escape");
                }
                self.state = if n == 3 {
                    State::InString
                } else {
                    State::InStringHex(n + 1)
                };
                Step::Continue
            }
            State::Neg => match c {
                b'0' => self.to(State::Zero),
                b'1'..=b'9' => self.to(State::Digits),
                _ => self.fail(c, "in numeric literal"),
            },
            State::Digits if c.is_ascii_digit() => Step::Continue,
            State::Digits | State::Zero => match c {
                b'.' => self.to(State::Dot),
                b'e' | b'E' => self.to(State::Exponent),
                _ => self.end_value(c),
            },
            State::Dot => {
                if c.is_ascii_digit() {
                    self.to(State::Fraction)
                } else {
                    self.fail(c, "after decimal point in numeric literal")
                }
            }
            State::Fraction => match c {
                b'0'..=b'9' => Step::Continue,
                b'e' | b'E' => self.to(State::Exponent),
                _ => self.end_value(c),
            },
            State::Exponent if c == b'+' || c == b'-' => self.to(State::ExponentSign),
            State::Exponent | State::ExponentSign => {
                if c.is_ascii_digit() {
                    self.to(State::ExponentDigits)
                } else {
                    self.fail(c, "in exponent of numeric literal")
                }
            }
            State::ExponentDigits => {
                if c.is_ascii_digit() {
                    Step::Continue
                } else {
                    self.end_value(c)
                }
            }
            State::Literal(word, n) => {
                let want = word.as_bytes()[usize::from(n)];
                if c != want {
                    let context = format!("in literal {word} (expecting {})", quote_char(want));
                    return self.fail(c, &context);
                }
                self.state = if usize::from(n) + 1 == word.len() {
                    State::EndValue
                } else {
                    State::Literal(word, n + 1)
                };
                Step::Continue
            }
            State::EndValue => self.end_value(c),
            State::EndTop => {
                if !is_space(c) {
                    self.fail(c, "after top-level value");
                }
                Step::End
            }
        }
    }

    fn to(&mut self, state: State) -> Step {
        self.state = state;
        Step::Continue
    }

    fn begin_value(&mut self, c: u8) -> Step {
        match c {
            c if is_space(c) => Step::Continue,
            b'{' => {
                self.stack.push(Parse::ObjectKey);
                self.to(State::BeginKeyOrEmpty)
            }
            b'[' => {
                self.stack.push(Parse::Array);
                self.to(State::BeginValueOrEmpty)
            }
            b'"' => self.to(State::InString),
            b'-' => self.to(State::Neg),
            b'0' => self.to(State::Zero),
            b'1'..=b'9' => self.to(State::Digits),
            b't' => self.to(State::Literal("true", 1)),
            b'f' => self.to(State::Literal("false", 1)),
            b'n' => self.to(State::Literal("null", 1)),
            _ => self.fail(c, "looking for beginning of value"),
        }
    }

    fn begin_key(&mut self, c: u8) -> Step {
        match c {
            c if is_space(c) => Step::Continue,
            b'"' => self.to(State::InString),
            _ => self.fail(c, "looking for beginning of object key string"),
        }
    }

    /// A value has ended; `c` is the byte after it.
    fn end_value(&mut self, c: u8) -> Step {
        let Some(top) = self.stack.last().copied() else {
            self.state = State::EndTop;
            self.end_top = true;
            return self.step(c);
        };
        if is_space(c) {
            self.state = State::EndValue;
            return Step::Continue;
        }
        match (top, c) {
            (Parse::ObjectKey, b':') => {
                self.stack.pop();
                self.stack.push(Parse::ObjectValue);
                self.to(State::BeginValue)
            }
            (Parse::ObjectKey, _) => self.fail(c, "after object key"),
            (Parse::ObjectValue, b',') => {
                self.stack.pop();
                self.stack.push(Parse::ObjectKey);
                self.to(State::BeginKey)
            }
            (Parse::Array, b',') => self.to(State::BeginValue),
            (Parse::ObjectValue, b'}') | (Parse::Array, b']') => {
                self.stack.pop();
                self.state = State::EndValue;
                if self.stack.is_empty() {
                    Step::EndContainer
                } else {
                    Step::Continue
                }
            }
            (Parse::ObjectValue, _) => self.fail(c, "after object key:value pair"),
            (Parse::Array, _) => self.fail(c, "after array element"),
        }
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// The first JSON value of a stream, as Go's `json.Decoder` reads it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum First {
    /// The value's bytes are `input[range]`; what follows is left for the next value.
    Value(std::ops::Range<usize>),
    /// Only whitespace, and the stream has ended (Go's `io.EOF`: no value).
    Nothing,
    /// The value is not complete yet: read on.
    More,
    /// A syntax error, or the stream ended within a value ("unexpected EOF"), in Go's words.
    Error(String),
}

/// The first value of `input` as Go's streaming decoder finds it; `at_eof` says whether more
/// bytes may follow.
pub(super) fn first_value(input: &[u8], at_eof: bool) -> First {
    let mut s = Scanner::new();
    let Some(start) = input.iter().position(|c| !is_space(*c)) else {
        return if at_eof { First::Nothing } else { First::More };
    };
    for (i, c) in input.iter().enumerate().skip(start) {
        match s.step(*c) {
            Step::Continue => {}
            Step::End => return First::Value(start..i),
            Step::EndContainer => return First::Value(start..i + 1),
            Step::Error => return First::Error(s.err.unwrap_or_default()),
        }
    }
    if !at_eof {
        return First::More;
    }
    // At the end Go's decoder steps once more with a space: a number or literal ends there.
    match s.step(b' ') {
        Step::End => First::Value(start..input.len()),
        _ => First::Error("unexpected EOF".into()),
    }
}

/// Go's `json.Unmarshal` syntax check of a whole document (`checkValid`): one value, nothing
/// but whitespace around it.
pub(super) fn check_valid(input: &[u8]) -> Result<(), String> {
    let mut s = Scanner::new();
    for c in input {
        if s.step(*c) == Step::Error {
            return Err(s.err.unwrap_or_default());
        }
    }
    if let Some(e) = s.err {
        return Err(e);
    }
    if s.end_top {
        return Ok(());
    }
    s.step(b' ');
    match (s.err, s.end_top) {
        (Some(e), _) => Err(e),
        (None, true) => Ok(()),
        (None, false) => Err("unexpected end of JSON input".into()),
    }
}

/// What a valid JSON value is, by its first byte (as Go's decoder tells them apart).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl Kind {
    pub(super) fn of(raw: &[u8]) -> Kind {
        match raw.first() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            _ => Kind::Number,
        }
    }

    /// The word in Go's "cannot unmarshal X into Go value of type T".
    pub(super) fn go_word(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::Array => "array",
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Bool => "bool",
            Kind::Null => "null",
        }
    }
}

/// The end of the valid JSON value starting at `raw[at]` (after any whitespace).
fn skip_value(raw: &[u8], at: usize) -> usize {
    let mut i = skip_space(raw, at);
    match raw.get(i) {
        Some(b'"') => {
            i += 1;
            while i < raw.len() {
                match raw[i] {
                    b'\\' => i += 2,
                    b'"' => return i + 1,
                    _ => i += 1,
                }
            }
            raw.len()
        }
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            while i < raw.len() {
                match raw[i] {
                    b'"' => {
                        i = skip_value(raw, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            raw.len()
        }
        _ => {
            while i < raw.len() && !matches!(raw[i], b',' | b'}' | b']') && !is_space(raw[i]) {
                i += 1;
            }
            i
        }
    }
}

fn skip_space(raw: &[u8], mut i: usize) -> usize {
    while i < raw.len() && is_space(raw[i]) {
        i += 1;
    }
    i
}

/// The members of a valid JSON object, keys unquoted, values raw, in order (a repeated key
/// appears twice; later wins, as in Go's map).
pub(super) fn members(raw: &[u8]) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    let mut i = skip_space(raw, 1);
    while i < raw.len() && raw[i] != b'}' {
        let key_end = skip_value(raw, i);
        let key = unquote(&raw[i..key_end]);
        let colon = skip_space(raw, key_end);
        let start = skip_space(raw, colon + 1);
        let end = skip_value(raw, start);
        out.push((key, &raw[start..end]));
        i = skip_space(raw, end);
        if raw.get(i) == Some(&b',') {
            i = skip_space(raw, i + 1);
        }
    }
    out
}

/// The elements of a valid JSON array, raw.
pub(super) fn elements(raw: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = skip_space(raw, 1);
    while i < raw.len() && raw[i] != b']' {
        let end = skip_value(raw, i);
        out.push(&raw[i..end]);
        i = skip_space(raw, end);
        if raw.get(i) == Some(&b',') {
            i = skip_space(raw, i + 1);
        }
    }
    out
}

/// A valid JSON string's text, as Go unquotes it: invalid UTF-8 and lone surrogates become
/// U+FFFD rather than errors.
pub(super) fn unquote(raw: &[u8]) -> String {
    let inner = raw
        .strip_prefix(b"\"")
        .and_then(|r| r.strip_suffix(b"\""))
        .unwrap_or(raw);
    let mut bytes = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] != b'\\' {
            bytes.push(inner[i]);
            i += 1;
            continue;
        }
        let Some(&e) = inner.get(i + 1) else { break };
        i += 2;
        let c = match e {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let Some(first) = hex4(inner, i) else { break };
                i += 4;
                if (0xD800..0xDC00).contains(&first)
                    && inner.get(i) == Some(&b'\\')
                    && inner.get(i + 1) == Some(&b'u')
                {
                    match hex4(inner, i + 2) {
                        Some(second) if (0xDC00..0xE000).contains(&second) => {
                            i += 6;
                            let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                            char::from_u32(c).unwrap_or('\u{FFFD}')
                        }
                        _ => '\u{FFFD}',
                    }
                } else {
                    char::from_u32(first).unwrap_or('\u{FFFD}')
                }
            }
            other => char::from(other),
        };
        let mut buf = [0u8; 4];
        bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn hex4(s: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(s.get(at..at + 4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

/// `base64.StdEncoding.DecodeString` (padded, `\r` and `\n` skipped, trailing bits not
/// checked), failing with Go's "illegal base64 data at input byte N".
pub(super) fn decode_base64(src: &[u8]) -> Result<Vec<u8>, String> {
    let corrupt = |at: usize| format!("illegal base64 data at input byte {at}");
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let skip_newlines = |mut i: usize| {
        while i < src.len() && matches!(src[i], b'\n' | b'\r') {
            i += 1;
        }
        i
    };
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut i = 0;
    loop {
        // One quantum: up to four symbols.
        let mut quantum = [0u32; 4];
        let mut len = 0;
        let mut done = false;
        while len < 4 {
            if i == src.len() {
                match len {
                    0 => return Ok(out),
                    _ => return Err(corrupt(i - len)),
                }
            }
            let c = src[i];
            i += 1;
            if let Some(v) = value(c) {
                quantum[len] = v;
                len += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Err(corrupt(i - 1));
            }
            // Padding: only after two or three symbols, and then the end.
            match len {
                0 | 1 => return Err(corrupt(i - 1)),
                2 => {
                    i = skip_newlines(i);
                    if i == src.len() {
                        return Err(corrupt(src.len()));
                    }
                    if src[i] != b'=' {
                        return Err(corrupt(i - 1));
                    }
                    i += 1;
                }
                _ => {}
            }
            i = skip_newlines(i);
            if i < src.len() {
                return Err(corrupt(i));
            }
            done = true;
            break;
        }
        let bits = quantum[0] << 18 | quantum[1] << 12 | quantum[2] << 6 | quantum[3];
        let bytes = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        out.extend_from_slice(&bytes[..len - 1]);
        if done {
            return Ok(out);
        }
    }
}

/// Go's `quoteChar`: a byte as the scanner names it in an error.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => r"'\''".into(),
        b'"' => "'\"'".into(),
        _ => {
            let quoted = quote(&char::from(c).to_string());
            format!("'{}'", &quoted[1..quoted.len() - 1])
        }
    }
}

/// Go's `strconv.Quote` (and `%q`) of a text: printable characters as they are, the rest
/// escaped.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_print(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint`, near enough: no control or format characters, and of the spaces
/// only U+0020.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_read_as_gos() {
        for (input, want) in [
            (
                "1.",
                "invalid character ' ' after decimal point in numeric literal",
            ),
            ("-", "invalid character ' ' in numeric literal"),
            (
                "tru",
                "invalid character ' ' in literal true (expecting 'e')",
            ),
            (
                "trux",
                "invalid character 'x' in literal true (expecting 'e')",
            ),
            ("1e", "invalid character ' ' in exponent of numeric literal"),
            ("1 2", "invalid character '2' after top-level value"),
            ("", "unexpected end of JSON input"),
            (
                r"\t5",
                r"invalid character '\\' looking for beginning of value",
            ),
            (r#"{"a" 1}"#, "invalid character '1' after object key"),
            (
                r#"{"a":1 "b"}"#,
                "invalid character '\"' after object key:value pair",
            ),
            (
                "{1:2}",
                "invalid character '1' looking for beginning of object key string",
            ),
            ("[1 2]", "invalid character '2' after array element"),
            (r#""a\x""#, "invalid character 'x' in string escape code"),
            (
                r#""a\u12""#,
                r#"invalid character '"' in \u hexadecimal character escape"#,
            ),
            ("\"a\u{1}\"", r"invalid character '\x01' in string literal"),
            (
                "'",
                r"invalid character '\'' looking for beginning of value",
            ),
            (
                "\u{e9}",
                "invalid character 'Ã' looking for beginning of value",
            ),
        ] {
            assert_eq!(check_valid(input.as_bytes()), Err(want.into()), "{input}");
        }
        for ok in [
            "5",
            " 5 ",
            "-0",
            "1e3",
            "null",
            r#"{"a":[1,{"b":"\u00e9"}]}"#,
            "[]",
            "{}",
        ] {
            assert_eq!(check_valid(ok.as_bytes()), Ok(()), "{ok}");
        }
    }

    #[test]
    fn the_decoder_takes_the_first_value() {
        assert_eq!(first_value(br#" {"a":1} x"#, true), First::Value(1..8));
        assert_eq!(first_value(b"5", true), First::Value(0..1));
        assert_eq!(first_value(b"5", false), First::More);
        assert_eq!(first_value(b"  ", true), First::Nothing);
        assert_eq!(
            first_value(b"{", true),
            First::Error("unexpected EOF".into())
        );
        assert_eq!(
            first_value(b"tru", true),
            First::Error("unexpected EOF".into())
        );
        assert_eq!(
            first_value(b"x", false),
            First::Error("invalid character 'x' looking for beginning of value".into())
        );
        assert_eq!(first_value(br#""a" "b""#, true), First::Value(0..3));
    }

    #[test]
    fn objects_and_arrays_split_into_raw_values() {
        let raw = br#"{ "a" : [1, "x,]", {"b":null}] , "c":"\"}" }"#;
        let m = members(raw);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, "a");
        assert_eq!(m[0].1, br#"[1, "x,]", {"b":null}]"#);
        assert_eq!(m[1], ("c".into(), &br#""\"}""#[..]));
        assert_eq!(
            elements(m[0].1),
            vec![&b"1"[..], br#""x,]""#, br#"{"b":null}"#]
        );
        assert_eq!(
            unquote(br#""a\u00e9\ud83d\ude00\ud800x\n""#),
            "aé😀\u{FFFD}x\n"
        );
    }

    #[test]
    fn base64_fails_where_gos_does() {
        assert_eq!(decode_base64(b"Z3c=").unwrap(), b"gw");
        assert_eq!(decode_base64(b"Z3c=\n").unwrap(), b"gw");
        assert_eq!(decode_base64(b"YWJj").unwrap(), b"abc");
        assert_eq!(decode_base64(b"").unwrap(), b"");
        for (input, at) in [
            ("Z3c", 0),
            ("YQ", 0),
            ("Z3c==", 4),
            ("Z3c_", 3),
            ("Z3-_", 2),
            ("not base64!", 3),
            ("!", 0),
            ("YQ=", 3),
            ("YQ=x", 2),
            ("=", 0),
            ("YWJjZ", 4),
        ] {
            assert_eq!(
                decode_base64(input.as_bytes()),
                Err(format!("illegal base64 data at input byte {at}")),
                "{input}"
            );
        }
    }
}
