//! Raw source records, their decoding into engine events, and the JSON written to the
//! late/error output.

use std::sync::Arc;

use serde_json::{Map, Value};
use sluice_engine::{Event, EventFields, LateEvent};
pub use sluice_log::Header;

/// One record as a source hands it over: where it came from and everything a Kafka
/// record carries, so later steps (dead-letter envelopes, projections) keep the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// Source topic (`None` for a file).
    pub topic: Option<Arc<str>>,
    /// Source partition (0 for a file).
    pub partition: u32,
    /// Offset within the partition (0-based line number for a file).
    pub offset: i64,
    /// The record's key (`None`: null key, or a file line).
    pub key: Option<Vec<u8>>,
    /// The record's headers in order.
    pub headers: Vec<Header>,
    /// The record's timestamp in epoch ms (`None` when the source has none: a file).
    pub timestamp: Option<i64>,
    /// The record's bytes (`None` for a null value, e.g. a tombstone).
    pub payload: Option<Vec<u8>>,
}

impl SourceRecord {
    /// A record with only a position and a value (files, generators, tests).
    pub fn value(partition: u32, offset: i64, payload: Option<Vec<u8>>) -> Self {
        Self {
            topic: None,
            partition,
            offset,
            key: None,
            headers: Vec::new(),
            timestamp: None,
            payload,
        }
    }
}

/// A record that is not a valid event, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct BadEvent {
    /// The original content: the parsed JSON when it was JSON, else the text (lossy UTF-8)
    /// or `null`.
    pub original: Value,
    /// Group-by key if it could be read (used as the record key on topic outputs).
    pub key: Option<String>,
    /// Why it was rejected.
    pub reason: String,
    /// Source partition.
    pub partition: u32,
    /// Source offset.
    pub offset: i64,
}

/// Parses a record into an event. Errors are event errors (bad data), never pipeline
/// errors: the caller sends them to the late/error output.
pub fn decode(record: &SourceRecord, fields: &EventFields) -> Result<Event, Box<BadEvent>> {
    let bad = |original: Value, reason: String| {
        let key = original
            .get(&fields.key)
            .and_then(|k| k.as_str().map(str::to_owned));
        Box::new(BadEvent {
            original,
            key,
            reason,
            partition: record.partition,
            offset: record.offset,
        })
    };
    let Some(bytes) = &record.payload else {
        return Err(bad(
            Value::Null,
            "bad event: record has no value (null)".into(),
        ));
    };
    // One pass over the text for a valid event; anything else is parsed again below, so
    // its error names the problem.
    if let Some(ev) = Event::from_json_text(bytes, fields, record.partition, record.offset) {
        return Ok(ev);
    }
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return Err(bad(
                Value::String(String::from_utf8_lossy(bytes).into_owned()),
                format!("bad event: not JSON ({e})"),
            ));
        }
    };
    match Event::from_json(value, fields, record.partition, record.offset) {
        Ok(ev) => Ok(ev),
        Err(e) => {
            debug_assert!(e.is_event_error());
            // `from_json` consumed the value; parse again (rare path).
            let original = serde_json::from_slice(bytes).unwrap_or(Value::Null);
            Err(bad(original, format!("bad event: {e}")))
        }
    }
}

/// The original JSON with a `reason` field added; a non-object, or an object that already
/// has a `reason` field, is wrapped as `{"raw": original, "reason": ...}` so nothing of it
/// is overwritten.
pub fn with_reason(original: &Value, reason: &str, partition: u32, offset: i64) -> Value {
    match original {
        Value::Object(m) if !m.contains_key("reason") => {
            let mut m = m.clone();
            m.insert("reason".into(), Value::from(reason));
            Value::Object(m)
        }
        other => {
            let mut m = Map::new();
            m.insert("raw".into(), other.clone());
            m.insert("reason".into(), Value::from(reason));
            m.insert("partition".into(), Value::from(partition));
            m.insert("offset".into(), Value::from(offset));
            Value::Object(m)
        }
    }
}

/// The late-output line for a bad event.
pub fn bad_event_json(bad: &BadEvent) -> Value {
    with_reason(&bad.original, &bad.reason, bad.partition, bad.offset)
}

/// The late-output line for a late event: its original JSON plus
/// `"reason": "late: ... watermark W"`.
pub fn late_event_json(late: &LateEvent) -> Value {
    let reason = format!(
        "late: every window of event time {} had closed at watermark {}",
        late.event.event_time, late.watermark
    );
    with_reason(
        &late.event.original(),
        &reason,
        late.event.partition,
        late.event.offset,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(bytes: Option<&str>) -> SourceRecord {
        SourceRecord::value(1, 7, bytes.map(|b| b.as_bytes().to_vec()))
    }

    fn fields() -> EventFields {
        EventFields {
            event_time: "ts".into(),
            key: "key".into(),
            numbers: vec!["v".into()],
        }
    }

    #[test]
    fn decodes_valid_events_with_position() {
        let e = decode(&rec(Some(r#"{"ts": 5, "key": "a", "v": 1}"#)), &fields()).unwrap();
        assert_eq!(
            (e.key.as_str(), e.event_time, e.partition, e.offset),
            ("a", 5, 1, 7)
        );
    }

    #[test]
    fn late_output_shows_a_decoded_event_as_it_was_sent() {
        let text = r#"{"ts": 5, "key": "a", "v": 1, "extra": [1, {"z": null}]}"#;
        let e = decode(&rec(Some(text)), &fields()).unwrap();
        assert_eq!(e.numbers.as_slice(), [Some(sluice_engine::Num::Int(1))]);
        let j = late_event_json(&LateEvent {
            event: e,
            watermark: 9,
        });
        let mut want: Value = serde_json::from_str(text).unwrap();
        want["reason"] = json!("late: every window of event time 5 had closed at watermark 9");
        assert_eq!(j, want);
        assert_eq!(
            serde_json::to_string(&j).unwrap(),
            serde_json::to_string(&want).unwrap(),
            "field order kept"
        );
    }

    #[test]
    fn bad_events_keep_their_content_and_reason() {
        let b = decode(&rec(Some("not json")), &fields()).unwrap_err();
        assert!(b.reason.starts_with("bad event: not JSON"), "{}", b.reason);
        assert_eq!(
            bad_event_json(&b),
            json!({"raw": "not json", "reason": b.reason, "partition": 1, "offset": 7})
        );
        let b = decode(&rec(Some(r#"{"key": "a"}"#)), &fields()).unwrap_err();
        assert_eq!(b.key.as_deref(), Some("a"));
        assert_eq!(
            bad_event_json(&b),
            json!({"key": "a", "reason": "bad event: event has no field `ts` (it holds the event time)"})
        );
        let b = decode(
            &rec(Some(r#"{"ts": "x", "key": "a", "reason": 1}"#)),
            &fields(),
        )
        .unwrap_err();
        let j = bad_event_json(&b);
        assert_eq!(j["raw"], json!({"ts": "x", "key": "a", "reason": 1}));
        assert!(decode(&rec(None), &fields()).is_err());
    }
}
