//! Lenient deserializers: a field of the wrong type reads as absent instead of failing
//! the whole event, and nothing here builds a JSON tree.
//!
//! Every wrapper deserializes from any JSON value through [`deserialize_any`]; only the
//! shape it expects yields something, anything else is skipped (maps and arrays drained
//! with [`IgnoredAny`], which allocates nothing).
//!
//! [`deserialize_any`]: serde::Deserializer::deserialize_any

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A value read from any JSON value, defaulting when the value has another shape.
pub(super) trait Lenient<'de>: Default {
    fn from_u64(_: u64) -> Self {
        Self::default()
    }
    fn from_i64(_: i64) -> Self {
        Self::default()
    }
    fn from_borrowed_str(v: &'de str) -> Self {
        Self::from_str(v)
    }
    fn from_str(_: &str) -> Self {
        Self::default()
    }
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Self::default())
    }
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Self::default())
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Lenient<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_u64<E>(self, v: u64) -> Result<T, E> {
        Ok(T::from_u64(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<T, E> {
        Ok(T::from_i64(v))
    }
    fn visit_f64<E>(self, _: f64) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<T, E> {
        Ok(T::from_borrowed_str(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<T, E> {
        Ok(T::from_str(v))
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_none<E>(self) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::from_seq(seq)
    }
}

fn lenient<'de, T: Lenient<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(LenientVisitor(PhantomData))
}

/// A token count: a non-negative integer that fits a `u64`. Anything else (null, a
/// negative, a float, a number too big, a string) reads as absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Count(pub(super) Option<u64>);

impl Lenient<'_> for Count {
    fn from_u64(v: u64) -> Self {
        Self(Some(v))
    }
    fn from_i64(v: i64) -> Self {
        Self(u64::try_from(v).ok())
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient(d)
    }
}

/// A string, borrowed from the input unless it had escapes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Text<'a>(pub(super) Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    pub(super) fn as_str(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de: 'a, 'a> Lenient<'de> for Text<'a> {
    fn from_borrowed_str(v: &'de str) -> Self {
        Self(Some(Cow::Borrowed(v)))
    }
    fn from_str(v: &str) -> Self {
        Self(Some(Cow::Owned(v.to_owned())))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient(d)
    }
}

/// A JSON object read as `T` (a struct whose fields are all lenient); anything else is
/// absent.
#[derive(Clone, Debug)]
pub(super) struct Obj<T>(pub(super) Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T> Obj<T> {
    pub(super) fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

impl<'de, T: Deserialize<'de>> Lenient<'de> for Obj<T> {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(|t| Self(Some(t)))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient(d)
    }
}

/// The first element of a JSON array, read as [`Obj<T>`]; the others are skipped
/// without being kept.
#[derive(Clone, Debug)]
pub(super) struct First<T> {
    /// The first element, when it was an object.
    pub(super) item: Option<T>,
    /// The array's length; `None` when the value was not an array.
    pub(super) len: Option<usize>,
}

impl<T> Default for First<T> {
    fn default() -> Self {
        Self {
            item: None,
            len: None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Lenient<'de> for First<T> {
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let Some(Obj(item)) = seq.next_element::<Obj<T>>()? else {
            return Ok(Self {
                item: None,
                len: Some(0),
            });
        };
        let mut len = 1;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            len += 1;
        }
        Ok(Self {
            item,
            len: Some(len),
        })
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient(d)
    }
}

/// The `text` of every object in a JSON array, concatenated: borrowed when there is one
/// (the common case of a streamed chunk), owned only when there are several.
#[derive(Clone, Debug, Default)]
pub(super) struct Texts<'a>(pub(super) Option<Cow<'a, str>>);

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct HasText<'a> {
    #[serde(borrow)]
    text: Text<'a>,
}

impl<'de: 'a, 'a> Lenient<'de> for Texts<'a> {
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut all: Option<Cow<'a, str>> = None;
        while let Some(Obj(part)) = seq.next_element::<Obj<HasText<'a>>>()? {
            let Some(text) = part.and_then(|p| p.text.0) else {
                continue;
            };
            match &mut all {
                None => all = Some(text),
                Some(all) => all.to_mut().push_str(&text),
            }
        }
        Ok(Self(all))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Texts<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default, Debug)]
    #[serde(default)]
    struct S<'a> {
        n: Count,
        #[serde(borrow)]
        t: Text<'a>,
        o: Obj<Inner>,
        f: First<Inner>,
        #[serde(borrow)]
        p: Texts<'a>,
    }

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    #[serde(default)]
    struct Inner {
        k: Count,
    }

    fn parse(s: &str) -> S<'_> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn counts() {
        assert_eq!(parse(r#"{"n":5}"#).n, Count(Some(5)));
        for bad in [
            "-1",
            "1.5",
            "1e3",
            "18446744073709551616",
            "\"5\"",
            "null",
            "true",
            "[1]",
            "{\"a\":1}",
        ] {
            assert_eq!(parse(&format!(r#"{{"n":{bad}}}"#)).n, Count(None), "{bad}");
        }
        assert_eq!(
            parse(r#"{"n":18446744073709551615}"#).n,
            Count(Some(u64::MAX))
        );
    }

    #[test]
    fn texts_borrow_unless_escaped() {
        let s = parse(r#"{"t":"plain"}"#);
        assert!(matches!(s.t.0, Some(Cow::Borrowed("plain"))));
        let s = parse(r#"{"t":"a\nb"}"#);
        assert_eq!(s.t.as_str(), Some("a\nb"));
        assert_eq!(parse(r#"{"t":7}"#).t, Text(None));
        let s = parse(r#"{"p":[{"text":"a"},{"x":1},{"text":"b"},3]}"#);
        assert_eq!(s.p.0.as_deref(), Some("ab"));
        let s = parse(r#"{"p":[{"text":"only"}]}"#);
        assert!(matches!(s.p.0, Some(Cow::Borrowed("only"))));
    }

    #[test]
    fn objects_and_first() {
        let s = parse(r#"{"o":{"k":2,"z":[1,{"y":null}]},"f":[{"k":1},{"k":2},"x"]}"#);
        assert_eq!(s.o.0, Some(Inner { k: Count(Some(2)) }));
        assert_eq!(s.f.item, Some(Inner { k: Count(Some(1)) }));
        assert_eq!(s.f.len, Some(3));
        let s = parse(r#"{"o":"str","f":[]}"#);
        assert_eq!(s.o.0, None);
        assert_eq!((s.f.item, s.f.len), (None, Some(0)));
        let s = parse(r#"{"f":{"k":1}}"#);
        assert_eq!((s.f.item, s.f.len), (None, None));
        let s = parse(r#"{"f":["x",{"k":1}]}"#);
        assert_eq!((s.f.item, s.f.len), (None, Some(2)));
    }
}
