//! A small JSON reader for the two documents the library hands back (the
//! stats of `rt_stats_json_ex`, the segment list of `rt_shm_list`), and the
//! conversions into the crate's types.
//!
//! Why not serde: serde_derive, serde_json and their dependencies raise
//! their minimum Rust with new releases, and a user's fresh project resolves
//! the newest ones whatever this crate's `Cargo.lock` says, so with them the
//! crate could not honour its `rust-version` (Debian 12's rustc 1.63) without
//! capping serde for every user. This reader is strict RFC 8259 JSON (what
//! serde_json accepts): no trailing commas, no comments, no NaN, no lone
//! surrogates; unknown object keys are ignored, as serde's derive does.

use std::collections::BTreeMap;

/// A parsed JSON value. Numbers keep their text, converted on demand, so a
/// `u64` is exact whatever its size.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

/// Nesting deeper than this is refused rather than risking the stack (the
/// library's documents nest four levels).
const MAX_DEPTH: usize = 128;

/// Parses one JSON document (surrounding whitespace allowed).
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(p.error("trailing characters"));
    }
    Ok(v)
}

/// Parses `text` as a `T`.
pub(crate) fn from_str<T: FromJson>(text: &str) -> Result<T, String> {
    T::from_json(&parse(text)?)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.i)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", b as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end")),
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, String> {
        self.i += 1; // '{'
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a key"));
            }
            let key = self.string()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            members.push((key, self.value(depth + 1)?));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, String> {
        self.i += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("bad \\u escape"))?;
        let n = u32::from_str_radix(digits, 16).map_err(|_| self.error("bad \\u escape"))?;
        self.i += 4;
        Ok(n)
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // '"'
        let mut out = Vec::new();
        loop {
            let b = self
                .peek()
                .ok_or_else(|| self.error("unterminated string"))?;
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let e = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                // A high surrogate must be followed by a low one.
                                if !self.s[self.i..].starts_with(b"\\u") {
                                    return Err(self.error("lone surrogate"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.error("lone surrogate"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or_else(|| self.error("lone surrogate"))?
                        }
                        _ => return Err(self.error("bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return Err(self.error("control character in string")),
                _ => out.push(b), // the input is a &str: its bytes stay UTF-8
            }
        }
        String::from_utf8(out).map_err(|_| self.error("invalid UTF-8"))
    }

    /// Skips digits; whether there was any.
    fn digits(&mut self) -> bool {
        let from = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i > from
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        if self.peek() == Some(b'0') {
            self.i += 1;
        } else if !self.digits() {
            return Err(self.error("bad number"));
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !self.digits() {
                return Err(self.error("bad number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !self.digits() {
                return Err(self.error("bad number"));
            }
        }
        // Only ASCII was consumed.
        let text = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII");
        Ok(Value::Number(text.to_owned()))
    }
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

fn expected(what: &str, got: &Value) -> String {
    format!("expected {what}, found {}", got.kind())
}

/// Conversion from a parsed value, with serde's conventions: `Option<T>` is
/// `None` for `null` and for a missing key; unknown keys are ignored.
pub(crate) trait FromJson: Sized {
    fn from_json(v: &Value) -> Result<Self, String>;

    /// The value of a key the object lacks (an error but for `Option`).
    fn missing(key: &str) -> Result<Self, String> {
        Err(format!("missing field `{key}`"))
    }
}

/// An integer of type `$t` from a number without fraction or exponent.
macro_rules! integer {
    ($($t:ty),*) => {$(
        impl FromJson for $t {
            fn from_json(v: &Value) -> Result<Self, String> {
                match v {
                    Value::Number(n) => n.parse::<$t>().map_err(|_| {
                        format!("expected {}, found {n}", stringify!($t))
                    }),
                    other => Err(expected("an integer", other)),
                }
            }
        }
    )*};
}
integer!(u64, u32, i32);

impl FromJson for f64 {
    fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::Number(n) => n
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| format!("number {n} out of range")),
            other => Err(expected("a number", other)),
        }
    }
}

impl FromJson for bool {
    fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::Bool(b) => Ok(*b),
            other => Err(expected("a boolean", other)),
        }
    }
}

impl FromJson for String {
    fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(expected("a string", other)),
        }
    }
}

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_json(v).map(Some),
        }
    }

    fn missing(_key: &str) -> Result<Self, String> {
        Ok(None)
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| T::from_json(item).map_err(|e| format!("[{i}]: {e}")))
                .collect(),
            other => Err(expected("an array", other)),
        }
    }
}

impl<T: FromJson> FromJson for BTreeMap<String, T> {
    fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::Object(members) => members
                .iter()
                .map(|(k, item)| {
                    T::from_json(item)
                        .map(|t| (k.clone(), t))
                        .map_err(|e| format!("{k:?}: {e}"))
                })
                .collect(),
            other => Err(expected("an object", other)),
        }
    }
}

/// An object's members, to read a struct's fields from.
pub(crate) struct Fields<'a>(&'a [(String, Value)]);

impl<'a> Fields<'a> {
    pub(crate) fn of(v: &'a Value) -> Result<Fields<'a>, String> {
        match v {
            Value::Object(members) => Ok(Fields(members)),
            other => Err(expected("an object", other)),
        }
    }

    fn find(&self, key: &str) -> Option<&'a Value> {
        // The last of duplicate keys wins, as for a map.
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The field `key` (`None` for an absent `Option`, else an error).
    pub(crate) fn get<T: FromJson>(&self, key: &str) -> Result<T, String> {
        match self.find(key) {
            Some(v) => T::from_json(v).map_err(|e| format!("{key}: {e}")),
            None => T::missing(key),
        }
    }

    /// The field `key`, or `T::default()` when absent (serde's `#[serde(default)]`).
    pub(crate) fn get_or_default<T: FromJson + Default>(&self, key: &str) -> Result<T, String> {
        match self.find(key) {
            Some(v) => T::from_json(v).map_err(|e| format!("{key}: {e}")),
            None => Ok(T::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_value() {
        let v = parse(
            " {\"a\": [1, -2, 3.5e1, true, false, null, \"x\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"], \"b\": {}} ",
        )
        .unwrap();
        let m = match v {
            Value::Object(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(m[0].0, "a");
        assert_eq!(
            m[0].1,
            Value::Array(vec![
                Value::Number("1".into()),
                Value::Number("-2".into()),
                Value::Number("3.5e1".into()),
                Value::Bool(true),
                Value::Bool(false),
                Value::Null,
                Value::String("x\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1F600}".into()),
            ])
        );
        assert_eq!(m[1], ("b".to_string(), Value::Object(vec![])));
        assert_eq!(
            parse("\"h\u{e9}\"").unwrap(),
            Value::String("h\u{e9}".into())
        );
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            "",
            " ",
            "{",
            "}",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "[1 2]",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "NaN",
            "Infinity",
            "tru",
            "nul",
            "\"abc",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\u{1}b\"",
            "{} {}",
            "[1] x",
            "// c\n1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert!(parse(&deep).is_err());
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn numbers_convert_exactly_or_not_at_all() {
        assert_eq!(from_str::<u64>("18446744073709551615"), Ok(u64::MAX));
        assert!(from_str::<u64>("18446744073709551616").is_err());
        assert!(from_str::<u64>("-1").is_err());
        assert!(from_str::<u64>("1.0").is_err());
        assert!(from_str::<u64>("1e3").is_err());
        assert_eq!(from_str::<i32>("-7"), Ok(-7));
        assert!(from_str::<u32>("4294967296").is_err());
        assert_eq!(from_str::<f64>("0.4"), Ok(0.4));
        assert_eq!(from_str::<f64>("12"), Ok(12.0));
        assert!(from_str::<f64>("1e999").is_err());
        assert!(from_str::<u64>("\"1\"").is_err());
        assert_eq!(from_str::<Option<u64>>("null"), Ok(None));
        assert_eq!(
            from_str::<Vec<bool>>("[true, false]"),
            Ok(vec![true, false])
        );
    }

    #[test]
    fn fields_follow_serde_conventions() {
        let v = parse(r#"{"n": 1, "o": null, "x": "ignored", "n": 2}"#).unwrap();
        let f = Fields::of(&v).unwrap();
        assert_eq!(f.get::<u64>("n"), Ok(2)); // the last duplicate
        assert_eq!(f.get::<Option<u64>>("o"), Ok(None));
        assert_eq!(f.get::<Option<u64>>("absent"), Ok(None));
        assert_eq!(f.get_or_default::<u64>("absent"), Ok(0));
        let e = f.get::<u64>("absent").unwrap_err();
        assert!(e.contains("missing field `absent`"), "{e}");
        let e = f.get::<String>("n").unwrap_err();
        assert!(e.contains("n: expected a string"), "{e}");
    }
}
