//! Events: JSON objects with an event time and a key, and where they came from.

use serde::{Deserialize, Serialize};
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
    /// built with [`Event::typed`].
    pub value: Value,
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
            numbers: numbers.into_iter().collect(),
        }
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
            numbers,
        })
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
