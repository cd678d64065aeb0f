//! Lazy JSON field access for validation: the top-level object is scanned once into raw values
//! of the fields we know; each is then checked for its type in the contract's order.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The JSON kind of a raw value, read from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

/// The kind of a raw JSON value.
pub fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'"') => Kind::String,
        Some(b'[') => Kind::Array,
        Some(b'{') => Kind::Object,
        _ => Kind::Number,
    }
}

/// A raw value that is a JSON string, decoded (borrowed when it has no escapes).
pub fn as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let s = raw.get();
    if !s.starts_with('"') {
        return None;
    }
    let inner = &s[1..s.len() - 1];
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(s).ok().map(Cow::Owned)
}

/// A raw value that is a JSON integer literal (no fraction, no exponent) fitting an `i64`.
/// `Err(true)` when it is an integer literal out of range, `Err(false)` when not an integer.
pub fn as_int(raw: &RawValue) -> Result<i64, bool> {
    let s = raw.get();
    if kind(raw) != Kind::Number || s.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) {
        return Err(false);
    }
    s.parse::<i64>().map_err(|_| true)
}

/// A raw value that is `true` or `false`.
pub fn as_bool(raw: &RawValue) -> Option<bool> {
    match raw.get() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Scans a JSON object, keeping the raw values of the fields named in `names` (last one wins on a
/// repeated key, as most JSON readers do) and skipping everything else. `None` when the text is
/// not valid JSON or not an object.
pub fn fields<'a, const N: usize>(
    text: &'a str,
    names: &[&str; N],
) -> Option<[Option<&'a RawValue>; N]> {
    let mut de = serde_json::Deserializer::from_str(text);
    let out = de::Deserializer::deserialize_map(&mut de, ObjVisitor { names }).ok()?;
    de.end().ok()?;
    Some(out)
}

struct ObjVisitor<'n, const N: usize> {
    names: &'n [&'n str; N],
}

struct KeySeed<'n, const N: usize> {
    names: &'n [&'n str; N],
}

impl<'de, const N: usize> DeserializeSeed<'de> for KeySeed<'_, N> {
    type Value = Option<usize>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for KeySeed<'_, N> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.names.iter().position(|n| *n == v))
    }
}

impl<'de, const N: usize> Visitor<'de> for ObjVisitor<'_, N> {
    type Value = [Option<&'de RawValue>; N];
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = [None; N];
        while let Some(idx) = map.next_key_seed(KeySeed { names: self.names })? {
            match idx {
                Some(i) => out[i] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A field's raw value unless it is absent or JSON `null`.
pub fn present(v: Option<&RawValue>) -> Option<&RawValue> {
    v.filter(|r| kind(r) != Kind::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_known_fields() {
        let f = fields(
            r#"{"a":1,"x":{"deep":[1,2]},"b":"h\u00e9","a":2}"#,
            &["a", "b", "c"],
        )
        .unwrap();
        assert_eq!(f[0].unwrap().get(), "2");
        assert_eq!(as_str(f[1].unwrap()).unwrap(), "hé");
        assert!(f[2].is_none());
        assert!(fields("[1,2]", &["a"]).is_none());
        assert!(fields("{\"a\":1", &["a"]).is_none());
        assert!(fields("{\"a\":NaN}", &["a"]).is_none());
        assert!(fields("{\"a\":1} x", &["a"]).is_none());
        assert!(fields("\"str\"", &["a"]).is_none());
    }

    #[test]
    fn integers() {
        let f = fields(
            r#"{"a":2,"b":2.0,"c":2e0,"d":"2","e":-3,"f":99999999999999999999}"#,
            &["a", "b", "c", "d", "e", "f"],
        )
        .unwrap();
        assert_eq!(as_int(f[0].unwrap()), Ok(2));
        assert_eq!(as_int(f[1].unwrap()), Err(false));
        assert_eq!(as_int(f[2].unwrap()), Err(false));
        assert_eq!(as_int(f[3].unwrap()), Err(false));
        assert_eq!(as_int(f[4].unwrap()), Ok(-3));
        assert_eq!(as_int(f[5].unwrap()), Err(true));
    }
}
