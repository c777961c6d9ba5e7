//! Events: JSON objects with an event time and a key, and where they came from.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use smallvec::SmallVec;

use crate::aggregate::Num;
use crate::time::Millis;
use crate::{Error, Result};

/// One input event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Group-by key (a JSON string as is; numbers and booleans as their JSON text).
    pub key: String,
    /// Event time in epoch ms.
    pub event_time: Millis,
    /// Source partition (0 for single-partition sources such as a file).
    pub partition: u32,
    /// Offset within the partition (line number for a file).
    pub offset: i64,
    /// The original event (what the late output shows). `Value::Null` for a typed event
    /// built with [`Event::typed`], and for an event decoded by [`Event::from_json_text`],
    /// which keeps the text instead: [`Event::original`] gives the JSON either way.
    pub value: Value,
    /// The original JSON text of an event decoded by [`Event::from_json_text`] (parsed only
    /// when needed, e.g. for the late output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Box<str>>,
    /// Numeric fields read once when the event was decoded: the fields named by
    /// [`EventFields::numbers`], in that order (`None` where missing or not a number).
    /// Built-in aggregates whose [`crate::Aggregates::numeric_fields`] list has the same
    /// length read these instead of looking fields up in `value`; empty when not read.
    #[serde(default, skip_serializing_if = "SmallVec::is_empty")]
    pub numbers: Numbers,
}

/// Numeric fields of an event, in the order of [`EventFields::numbers`] (two inline, more
/// on the heap).
pub type Numbers = SmallVec<[Option<Num>; 2]>;

/// Which fields of a JSON event hold the event time and the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFields {
    /// Field with epoch milliseconds (an integer).
    pub event_time: String,
    /// Group-by field.
    pub key: String,
    /// Numeric fields the aggregates read (a pipeline sets these from
    /// [`crate::Aggregates::numeric_fields`]); read once into [`Event::numbers`].
    #[serde(default)]
    pub numbers: Vec<String>,
}

impl Event {
    /// An event at partition 0, offset 0.
    pub fn new(key: impl Into<String>, event_time: Millis, value: Value) -> Self {
        Self {
            key: key.into(),
            event_time,
            partition: 0,
            offset: 0,
            value,
            text: None,
            numbers: Numbers::new(),
        }
    }

    /// A typed event: no JSON, just the numbers aggregates read (in the order of their
    /// [`crate::Aggregates::numeric_fields`]), at partition 0, offset 0. Its late output
    /// shows `null` as the original event.
    pub fn typed(
        key: impl Into<String>,
        event_time: Millis,
        numbers: impl IntoIterator<Item = Option<Num>>,
    ) -> Self {
        Self {
            key: key.into(),
            event_time,
            partition: 0,
            offset: 0,
            value: Value::Null,
            text: None,
            numbers: numbers.into_iter().collect(),
        }
    }

    /// The original event as JSON: `value`, or the kept text parsed.
    pub fn original(&self) -> Cow<'_, Value> {
        match &self.text {
            Some(t) => Cow::Owned(serde_json::from_str(t).unwrap_or(Value::Null)),
            None => Cow::Borrowed(&self.value),
        }
    }

    /// Decodes a JSON text in one pass, reading only the event time, the key and the
    /// numeric fields (every other field is checked for syntax and skipped) and keeping the
    /// text for [`Event::original`]. `None` when the text is not a valid event: the caller
    /// then parses it with [`Event::from_json`], whose error explains what is wrong (this
    /// fast path gives the same event as that one for every valid text).
    pub fn from_json_text(
        text: &[u8],
        fields: &EventFields,
        partition: u32,
        offset: i64,
    ) -> Option<Self> {
        let mut de = serde_json::Deserializer::from_slice(text);
        let picked = FieldPicker { fields }.deserialize(&mut de).ok()?;
        de.end().ok()?; // nothing but whitespace after the object
        let event_time = picked.time.as_ref()?.as_i64()?;
        let key = match picked.key? {
            Value::String(s) => s, // moved, not copied
            v => key_text(Some(&v), &fields.key).ok()?,
        };
        let numbers = picked
            .numbers
            .iter()
            .map(|v| v.as_ref().and_then(Num::from_json))
            .collect();
        let text = std::str::from_utf8(text).ok()?.into();
        Some(Self {
            key,
            event_time,
            partition,
            offset,
            value: Value::Null,
            text: Some(text),
            numbers,
        })
    }

    /// The same event with its source position set.
    pub fn at(mut self, partition: u32, offset: i64) -> Self {
        self.partition = partition;
        self.offset = offset;
        self
    }

    /// Reads event time and key out of a JSON object.
    pub fn from_json(
        value: Value,
        fields: &EventFields,
        partition: u32,
        offset: i64,
    ) -> Result<Self> {
        let obj = value.as_object().ok_or(Error::NotAnObject {
            got: json_type(&value),
        })?;
        let ts = obj
            .get(&fields.event_time)
            .ok_or_else(|| Error::MissingField {
                field: fields.event_time.clone(),
                role: "event time",
            })?;
        let event_time = ts.as_i64().ok_or_else(|| Error::InvalidField {
            field: fields.event_time.clone(),
            reason: format!(
                "must be an integer number of epoch milliseconds, got {}",
                json_type(ts)
            ),
        })?;
        let key = key_text(obj.get(&fields.key), &fields.key)?;
        let numbers = fields
            .numbers
            .iter()
            .map(|f| obj.get(f).and_then(Num::from_json))
            .collect();
        Ok(Self {
            key,
            event_time,
            partition,
            offset,
            value,
            text: None,
            numbers,
        })
    }
}

/// The fields [`Event::from_json_text`] reads out of one JSON object (a repeated field:
/// the last one, as when parsing into a `Value`).
struct Picked {
    time: Option<Value>,
    key: Option<Value>,
    numbers: SmallVec<[Option<Value>; 2]>,
}

/// Reads a top-level JSON object, keeping only the fields named in `fields`.
struct FieldPicker<'f> {
    fields: &'f EventFields,
}

/// What a field name is: the event time, the key, or neither (`Other`); separately, the
/// index of the numeric field it also is, if any (a field may be both, e.g. summing the key).
enum Slot {
    Time,
    Key,
    Other,
}

struct SlotSeed<'f>(&'f EventFields);

impl<'de> DeserializeSeed<'de> for SlotSeed<'_> {
    type Value = (Slot, Option<usize>);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for SlotSeed<'_> {
    type Value = (Slot, Option<usize>);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<Self::Value, E> {
        let slot = if k == self.0.event_time {
            Slot::Time
        } else if k == self.0.key {
            Slot::Key
        } else {
            Slot::Other
        };
        Ok((slot, self.0.numbers.iter().position(|n| n == k)))
    }
}

impl<'de> DeserializeSeed<'de> for FieldPicker<'_> {
    type Value = Picked;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Picked, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldPicker<'_> {
    type Value = Picked;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Picked, M::Error> {
        let mut picked = Picked {
            time: None,
            key: None,
            numbers: (0..self.fields.numbers.len()).map(|_| None).collect(),
        };
        while let Some((slot, number)) = map.next_key_seed(SlotSeed(self.fields))? {
            let named = match slot {
                Slot::Time => Some(&mut picked.time),
                Slot::Key => Some(&mut picked.key),
                Slot::Other => None,
            };
            match (named, number) {
                (None, None) => {
                    map.next_value::<IgnoredAny>()?;
                }
                (None, Some(i)) => picked.numbers[i] = Some(map.next_value()?),
                (Some(named), None) => *named = Some(map.next_value()?),
                (Some(named), Some(i)) => {
                    let v: Value = map.next_value()?;
                    picked.numbers[i] = Some(v.clone());
                    *named = Some(v);
                }
            }
        }
        Ok(picked)
    }
}

/// The key string for a JSON key value.
pub(crate) fn key_text(v: Option<&Value>, field: &str) -> Result<String> {
    match v {
        None | Some(Value::Null) => Err(Error::MissingField {
            field: field.to_owned(),
            role: "key",
        }),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
        Some(v) => Err(Error::InvalidField {
            field: field.to_owned(),
            reason: format!(
                "must be a string, number or boolean to be a key, got {}",
                json_type(v)
            ),
        }),
    }
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a fractional number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields() -> EventFields {
        EventFields {
            event_time: "ts".into(),
            key: "k".into(),
            numbers: vec!["v".into(), "w".into()],
        }
    }

    #[test]
    fn reads_time_and_key() {
        let e = Event::from_json(json!({"ts": 5, "k": "a"}), &fields(), 2, 7).unwrap();
        assert_eq!(
            (e.key.as_str(), e.event_time, e.partition, e.offset),
            ("a", 5, 2, 7)
        );
        let e = Event::from_json(json!({"ts": 5, "k": 12}), &fields(), 0, 0).unwrap();
        assert_eq!(e.key, "12");
        assert_eq!(e.numbers.as_slice(), [None, None]);
        let e = Event::from_json(
            json!({"ts": 5, "k": "a", "v": 2, "w": 0.5}),
            &fields(),
            0,
            0,
        )
        .unwrap();
        assert_eq!(
            e.numbers.as_slice(),
            [Some(Num::Int(2)), Some(Num::Float(0.5))]
        );
        let e = Event::from_json(json!({"ts": 5, "k": "a", "v": "2"}), &fields(), 0, 0).unwrap();
        assert_eq!(e.numbers.as_slice(), [None, None]);
    }

    #[test]
    fn text_decoding_matches_value_decoding() {
        let f = fields();
        let valid = [
            r#"{"ts": 5, "k": "a", "v": 2, "w": 0.5}"#,
            r#"{"k": 12, "x": {"deep": [1, {"v": 9}]}, "ts": -3}"#,
            r#"{"ts": 5, "k": "a", "v": "2", "w": null, "v": 7}"#,
            r#"{"ts": 5, "k": true, "w": 1e3}"#,
            "  {\"ts\": 1, \"k\": \"\\u00e9\"}\n",
        ];
        for text in valid {
            let fast = Event::from_json_text(text.as_bytes(), &f, 3, 9).expect(text);
            let slow = Event::from_json(serde_json::from_str(text).unwrap(), &f, 3, 9).expect(text);
            assert_eq!(
                (
                    &fast.key,
                    fast.event_time,
                    &fast.numbers,
                    fast.partition,
                    fast.offset
                ),
                (
                    &slow.key,
                    slow.event_time,
                    &slow.numbers,
                    slow.partition,
                    slow.offset
                ),
                "{text}"
            );
            assert_eq!(fast.original().as_ref(), &slow.value, "{text}");
        }
        // A numeric field that is also the event time or the key.
        let both = EventFields {
            numbers: vec!["k".into(), "ts".into()],
            ..fields()
        };
        let text = r#"{"ts": 7, "k": 3}"#;
        let fast = Event::from_json_text(text.as_bytes(), &both, 0, 0).unwrap();
        assert_eq!(
            (fast.key.as_str(), fast.event_time, fast.numbers.as_slice()),
            ("3", 7, [Some(Num::Int(3)), Some(Num::Int(7))].as_slice())
        );
        // Anything that is not a valid event is left to `from_json` (which explains it).
        let invalid = [
            r#"{"k": "a"}"#,
            r#"{"ts": "5", "k": "a"}"#,
            r#"{"ts": 1.5, "k": "a"}"#,
            r#"{"ts": 1, "k": {}}"#,
            r#"{"ts": 1, "k": "a"} x"#,
            r#"{"ts": 1, "k": "a", "z": [1,}"#,
            "[1]",
            "7",
            "",
        ];
        for text in invalid {
            assert!(
                Event::from_json_text(text.as_bytes(), &f, 0, 0).is_none(),
                "{text}"
            );
        }
    }

    /// A field value: mostly scalars (integers most of all, so that many generated objects
    /// are valid events), sometimes arrays and objects with the field names events use.
    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            1 => Just(Value::Null),
            1 => any::<bool>().prop_map(Value::from),
            4 => any::<i64>().prop_map(Value::from),
            1 => (-1e6f64..1e6).prop_map(Value::from),
            2 => "[a-z\\u{e9}\"]{0,4}".prop_map(Value::from),
        ];
        let nested = leaf.clone().prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                proptest::collection::btree_map("ts|k|v|w|x", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        prop_oneof![4 => leaf, 1 => nested]
    }

    proptest::proptest! {
        /// The one-pass decoder and the `Value` path agree on every object: the same event,
        /// or both refuse it.
        #[test]
        fn text_and_value_decoding_agree(
            fields in proptest::collection::vec(("ts|k|v|w|x", arb_json()), 0..7),
        ) {
            let f = EventFields {
                event_time: "ts".into(),
                key: "k".into(),
                numbers: vec!["v".into(), "w".into()],
            };
            // Written by hand so repeated names stay repeated.
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), v))
                .collect();
            let text = format!("{{{}}}", body.join(", "));
            let fast = Event::from_json_text(text.as_bytes(), &f, 1, 2);
            let slow = Event::from_json(serde_json::from_str(&text).unwrap(), &f, 1, 2).ok();
            match (fast, slow) {
                (Some(a), Some(b)) => {
                    proptest::prop_assert_eq!(
                        (&a.key, a.event_time, &a.numbers),
                        (&b.key, b.event_time, &b.numbers)
                    );
                    let original = a.original();
                    proptest::prop_assert_eq!(original.as_ref(), &b.value);
                }
                (None, None) => {}
                (a, b) => proptest::prop_assert!(false, "{text}: fast {a:?}, slow {b:?}"),
            }
        }
    }

    #[test]
    fn bad_events_are_explained() {
        let f = fields();
        let err = Event::from_json(json!([1]), &f, 0, 0).unwrap_err();
        assert!(matches!(err, Error::NotAnObject { got: "an array" }));
        let err = Event::from_json(json!({"k": "a"}), &f, 0, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event has no field `ts` (it holds the event time)"
        );
        let err = Event::from_json(json!({"ts": "5", "k": "a"}), &f, 0, 0).unwrap_err();
        assert!(
            err.to_string()
                .contains("integer number of epoch milliseconds")
        );
        let err = Event::from_json(json!({"ts": 1.5, "k": "a"}), &f, 0, 0).unwrap_err();
        assert!(err.to_string().contains("fractional"));
        assert!(Event::from_json(json!({"ts": 1}), &f, 0, 0).is_err());
        assert!(Event::from_json(json!({"ts": 1, "k": {}}), &f, 0, 0).is_err());
    }
}
