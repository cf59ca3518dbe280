//! Decoding with a bound on nesting. postcard recurses once per level of a value and has no
//! limit of its own, so the arguments of a recursive type (`enum Filter { Not(Box<Filter>),
//! .. }`), a byte per level, could nest deeply enough to overflow the stack, which aborts the
//! process. The adapter here counts the levels as the value's `Deserialize` enters them and
//! fails the decoding past [`MAX_DEPTH`].
//!
//! A level is an enum, an option, a sequence or a map: what a recursive type must go through
//! (else its values would be infinite), and what takes at least a byte of the input (a tag or
//! a length). Structs, tuples and boxes between them add only the nesting their types spell
//! out. So an input of at most `MAX_DEPTH` bytes cannot nest too deeply, and is decoded as it
//! is, without the adapter.

use std::{cell::Cell, fmt};

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

/// The deepest a decoded value may nest, in enums, options, sequences and maps within one
/// another: far beyond any API's types, far below the stack.
pub const MAX_DEPTH: usize = 128;

/// Decodes a `T` from the front of `bytes`, as `postcard::take_from_bytes` does, but fails
/// with a message past [`MAX_DEPTH`] levels of nesting instead of overflowing the stack.
pub(crate) fn take_from_bytes<'de, T: de::Deserialize<'de>>(
    bytes: &'de [u8],
) -> Result<(T, &'de [u8]), String> {
    if bytes.len() <= MAX_DEPTH {
        // Each level takes a byte: these cannot nest deeper.
        return postcard::take_from_bytes(bytes).map_err(crate::dispatch::describe);
    }
    let tripped = Cell::new(false);
    let mut deserializer = postcard::Deserializer::from_bytes(bytes);
    let limited = Limited {
        inner: &mut deserializer,
        depth: MAX_DEPTH,
        tripped: &tripped,
    };
    match T::deserialize(limited) {
        Ok(value) => deserializer
            .finalize()
            .map(|rest| (value, rest))
            .map_err(crate::dispatch::describe),
        Err(_) if tripped.get() => Err(format!(
            "the value nests deeper than {MAX_DEPTH} levels, the most allowed"
        )),
        Err(e) => Err(crate::dispatch::describe(e)),
    }
}

/// A deserializer, visitor, seed or access of some nesting, `depth` levels from the limit.
struct Limited<'t, T> {
    inner: T,
    depth: usize,
    tripped: &'t Cell<bool>,
}

impl<'t, T> Limited<'t, T> {
    fn wrap<U>(&self, inner: U) -> Limited<'t, U> {
        Limited {
            inner,
            depth: self.depth,
            tripped: self.tripped,
        }
    }

    /// `inner`, one level further down; an error past the limit.
    fn deeper<U, E: de::Error>(&self, inner: U) -> Result<Limited<'t, U>, E> {
        if self.depth == 0 {
            self.tripped.set(true);
            return Err(E::custom("nested too deeply"));
        }
        Ok(Limited {
            inner,
            depth: self.depth - 1,
            tripped: self.tripped,
        })
    }
}

macro_rules! forward_deserialize {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            let visitor = self.wrap(visitor);
            self.inner.$method(visitor)
        }
    )*};
}

/// The kinds that are a level: their visitor is one level further down.
macro_rules! deeper_deserialize {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            let visitor = self.deeper(visitor)?;
            self.inner.$method(visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Limited<'_, D> {
    type Error = D::Error;

    deeper_deserialize!(
        deserialize_any,
        deserialize_option,
        deserialize_seq,
        deserialize_map,
    );

    forward_deserialize!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.deeper(visitor)?;
        self.inner.deserialize_enum(name, variants, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, value: $ty) -> Result<Self::Value, E> {
            self.inner.$method(value)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Limited<'_, V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(formatter)
    }

    forward_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let inner = self.wrap(deserializer);
        self.inner.visit_some(inner)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        let inner = self.wrap(deserializer);
        self.inner.visit_newtype_struct(inner)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let seq = self.wrap(seq);
        self.inner.visit_seq(seq)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let map = self.wrap(map);
        self.inner.visit_map(map)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let data = self.wrap(data);
        self.inner.visit_enum(data)
    }
}

/// A seed of a part of the value: its deserializer counts the levels on from here.
impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Limited<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        let inner = self.wrap(deserializer);
        self.inner.deserialize(inner)
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Limited<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Limited<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 't, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Limited<'t, A> {
    type Error = A::Error;
    type Variant = Limited<'t, A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let seed = self.wrap(seed);
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            Limited {
                inner: variant,
                depth: self.depth,
                tripped: self.tripped,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Limited<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.struct_variant(fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Filter {
        Not(Box<Filter>),
        And(Vec<Filter>),
        Eq(String),
    }

    /// `Not` `levels` times around `Eq("x")`.
    fn nested(levels: usize) -> Vec<u8> {
        let mut bytes = vec![0; levels];
        bytes.extend([2, 1, b'x']);
        bytes
    }

    #[test]
    fn values_decode_as_postcard_has_them_up_to_the_limit() {
        let filter = Filter::And(vec![
            Filter::Eq("a".into()),
            Filter::Not(Box::new(Filter::Eq("b".into()))),
        ]);
        let bytes = postcard::to_stdvec(&(filter, Some(7u8), "t")).unwrap();
        let (value, rest) = take_from_bytes::<(Filter, Option<u8>, String)>(&bytes).unwrap();
        assert_eq!(
            postcard::from_bytes::<(Filter, Option<u8>, String)>(&bytes).unwrap(),
            value
        );
        assert!(rest.is_empty());
        assert!(take_from_bytes::<Filter>(&nested(100)).is_ok());
    }

    #[test]
    fn a_value_nested_past_the_limit_is_an_error_not_a_stack_overflow() {
        // A million levels would overflow any thread's stack in postcard alone.
        // `Eq` inside 127 `Not`s is 128 levels of enums: the most.
        assert!(take_from_bytes::<Filter>(&nested(MAX_DEPTH - 1)).is_ok());
        for levels in [MAX_DEPTH, 1_000_000] {
            let error = take_from_bytes::<Filter>(&nested(levels)).unwrap_err();
            assert!(error.contains("deeper than 128"), "{error}");
        }
        let vecs = vec![0x01; 1_000_000];
        let error = take_from_bytes::<Filter>(&[&[1][..], &vecs].concat()).unwrap_err();
        assert!(error.contains("deeper"), "{error}");
    }
}
