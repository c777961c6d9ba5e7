//! Aggregates computed per window: built-in count/sum/min/max/avg and user aggregates.

use std::cmp::Ordering;
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Event;
use crate::{Error, Result};

/// An incremental aggregate over the events of a window.
///
/// The accumulator is serde-serializable so operator state can be snapshotted. `merge` is
/// used when session windows merge.
pub trait Aggregate {
    /// Per-window accumulator.
    type Acc: Clone + Debug + Serialize + DeserializeOwned;
    /// An empty accumulator.
    fn create(&self) -> Self::Acc;
    /// Adds one event.
    fn add(&self, acc: &mut Self::Acc, event: &Event);
    /// Folds `other` into `into`.
    fn merge(&self, into: &mut Self::Acc, other: Self::Acc);
    /// The output field names (next to `key`, `window_start`, `window_end`), in the order
    /// [`Aggregate::result`] returns their values. Asked once per operator.
    fn output_names(&self) -> Vec<String>;
    /// The output values for a window firing, one per [`Aggregate::output_names`] entry.
    fn result(&self, acc: &Self::Acc) -> Vec<Value>;
}

/// A built-in aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggOp {
    /// Number of events.
    Count,
    /// Sum of a numeric field (integer while every value is an integer and it fits).
    Sum,
    /// Smallest value of a numeric field.
    Min,
    /// Largest value of a numeric field.
    Max,
    /// Mean of a numeric field (a float).
    Avg,
}

impl AggOp {
    /// The op's name, also its default output field.
    pub fn name(self) -> &'static str {
        match self {
            AggOp::Count => "count",
            AggOp::Sum => "sum",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Avg => "avg",
        }
    }

    /// Parses an op name.
    pub fn parse(s: &str) -> Option<Self> {
        [AggOp::Count, AggOp::Sum, AggOp::Min, AggOp::Max, AggOp::Avg]
            .into_iter()
            .find(|op| op.name() == s)
    }
}

/// One built-in aggregate: an op and, except for count, the numeric field it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateSpec {
    /// The function.
    pub op: AggOp,
    /// The numeric field (required for all ops but count). Events where it is missing or
    /// not a number are skipped by this aggregate (count still counts them).
    pub field: Option<String>,
}

impl AggregateSpec {
    /// `count`.
    pub fn count() -> Self {
        Self {
            op: AggOp::Count,
            field: None,
        }
    }
    /// `sum` of `field`.
    pub fn sum(field: &str) -> Self {
        Self {
            op: AggOp::Sum,
            field: Some(field.into()),
        }
    }
    /// `min` of `field`.
    pub fn min(field: &str) -> Self {
        Self {
            op: AggOp::Min,
            field: Some(field.into()),
        }
    }
    /// `max` of `field`.
    pub fn max(field: &str) -> Self {
        Self {
            op: AggOp::Max,
            field: Some(field.into()),
        }
    }
    /// `avg` of `field`.
    pub fn avg(field: &str) -> Self {
        Self {
            op: AggOp::Avg,
            field: Some(field.into()),
        }
    }
}

/// A number as read from JSON: kept integral while possible.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Num {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

impl Num {
    /// A JSON number as a `Num` (`None` for anything else).
    pub fn from_json(v: &Value) -> Option<Num> {
        match v {
            Value::Number(n) => n
                .as_i64()
                .map(Num::Int)
                .or_else(|| n.as_f64().map(Num::Float)),
            _ => None,
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn add(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a
                .checked_add(b)
                .map_or(Num::Float(a as f64 + b as f64), Num::Int),
            (a, b) => Num::Float(a.as_f64() + b.as_f64()),
        }
    }

    fn cmp(self, other: Num) -> Ordering {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            (a, b) => a.as_f64().total_cmp(&b.as_f64()),
        }
    }

    fn to_json(self) -> Value {
        match self {
            Num::Int(i) => Value::from(i),
            Num::Float(f) => float_json(f),
        }
    }
}

fn float_json(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Accumulator of one built-in aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Accumulator {
    /// Count so far.
    Count(u64),
    /// Sum so far (`None`: no numeric value yet).
    Sum(Option<Num>),
    /// Minimum so far.
    Min(Option<Num>),
    /// Maximum so far.
    Max(Option<Num>),
    /// Sum and count of numeric values.
    Avg {
        /// Sum of values.
        sum: Option<Num>,
        /// Number of values.
        count: u64,
    },
}

fn opt_add(a: Option<Num>, b: Num) -> Option<Num> {
    Some(a.map_or(b, |a| a.add(b)))
}

fn pick(a: Option<Num>, b: Num, keep: Ordering) -> Option<Num> {
    Some(match a {
        Some(a) if a.cmp(b) == keep => a,
        _ => b,
    })
}

impl Accumulator {
    fn new(op: AggOp) -> Self {
        match op {
            AggOp::Count => Accumulator::Count(0),
            AggOp::Sum => Accumulator::Sum(None),
            AggOp::Min => Accumulator::Min(None),
            AggOp::Max => Accumulator::Max(None),
            AggOp::Avg => Accumulator::Avg {
                sum: None,
                count: 0,
            },
        }
    }

    fn add(&mut self, v: Option<Num>) {
        match (self, v) {
            (Accumulator::Count(c), _) => *c += 1,
            (_, None) => {}
            (Accumulator::Sum(s), Some(v)) => *s = opt_add(*s, v),
            (Accumulator::Min(m), Some(v)) => *m = pick(*m, v, Ordering::Less),
            (Accumulator::Max(m), Some(v)) => *m = pick(*m, v, Ordering::Greater),
            (Accumulator::Avg { sum, count }, Some(v)) => {
                *sum = opt_add(*sum, v);
                *count += 1;
            }
        }
    }

    fn merge(&mut self, other: &Accumulator) {
        match (self, other) {
            (Accumulator::Count(a), Accumulator::Count(b)) => *a += b,
            (Accumulator::Sum(a), Accumulator::Sum(Some(b))) => *a = opt_add(*a, *b),
            (Accumulator::Min(a), Accumulator::Min(Some(b))) => *a = pick(*a, *b, Ordering::Less),
            (Accumulator::Max(a), Accumulator::Max(Some(b))) => {
                *a = pick(*a, *b, Ordering::Greater)
            }
            (
                Accumulator::Avg { sum, count },
                Accumulator::Avg {
                    sum: Some(s),
                    count: c,
                },
            ) => {
                *sum = opt_add(*sum, *s);
                *count += c;
            }
            _ => {}
        }
    }

    fn value(&self) -> Value {
        match self {
            Accumulator::Count(c) => Value::from(*c),
            Accumulator::Sum(v) | Accumulator::Min(v) | Accumulator::Max(v) => {
                v.map_or(Value::Null, Num::to_json)
            }
            Accumulator::Avg { sum, count } => match sum {
                Some(s) if *count > 0 => float_json(s.as_f64() / *count as f64),
                _ => Value::Null,
            },
        }
    }
}

/// Several built-in aggregates computed together, with resolved output names.
///
/// An aggregate's output field is its op name (`count`, `sum`, …); when two aggregates
/// share an op, those are named `<op>_<field>` instead (e.g. `sum_price`, `sum_qty`).
///
/// Each numeric field is read once per event: [`Aggregates::numeric_fields`] lists them
/// (first use first) and an event decoded with that list carries their values in
/// [`Event::numbers`]; an event without them (e.g. [`Event::new`]) is read from its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<AggregateSpec>", into = "Vec<AggregateSpec>")]
pub struct Aggregates {
    specs: Vec<AggregateSpec>,
    names: Vec<String>,
    /// Distinct numeric fields, in order of first use.
    fields: Vec<String>,
    /// Per spec, the index of its field in `fields` (`None` for count).
    slots: Vec<Option<usize>>,
}

impl TryFrom<Vec<AggregateSpec>> for Aggregates {
    type Error = Error;
    fn try_from(specs: Vec<AggregateSpec>) -> Result<Self> {
        Self::new(specs)
    }
}

impl From<Aggregates> for Vec<AggregateSpec> {
    fn from(a: Aggregates) -> Self {
        a.specs
    }
}

impl Aggregates {
    /// Validates the specs and resolves output names.
    pub fn new(specs: Vec<AggregateSpec>) -> Result<Self> {
        if specs.is_empty() {
            return Err(Error::pipeline(
                "aggregate",
                "is empty; add at least one [[aggregate]] with op = \"count\" (or sum/min/max/avg)",
            ));
        }
        for (i, s) in specs.iter().enumerate() {
            match (s.op, &s.field) {
                (AggOp::Count, Some(_)) => {
                    return Err(Error::pipeline(
                        format!("aggregate[{i}].field"),
                        "is not used by op = \"count\" (it counts events); remove it",
                    ));
                }
                (AggOp::Count, None) => {}
                (op, None) => {
                    return Err(Error::pipeline(
                        format!("aggregate[{i}].field"),
                        format!(
                            "is required for op = \"{}\": name the numeric field to read",
                            op.name()
                        ),
                    ));
                }
                (_, Some(f)) if f.is_empty() => {
                    return Err(Error::pipeline(format!("aggregate[{i}].field"), "is empty"));
                }
                _ => {}
            }
        }
        let names: Vec<String> = specs
            .iter()
            .map(|s| {
                let shared = specs.iter().filter(|o| o.op == s.op).count() > 1;
                match (&s.field, shared) {
                    (Some(f), true) => format!("{}_{}", s.op.name(), f),
                    _ => s.op.name().to_owned(),
                }
            })
            .collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(Error::pipeline(
                    format!("aggregate[{i}]"),
                    format!(
                        "repeats an earlier aggregate (both would be output as `{n}`); remove one"
                    ),
                ));
            }
        }
        let mut fields: Vec<String> = Vec::new();
        let slots = specs
            .iter()
            .map(|s| {
                s.field.as_ref().map(|f| {
                    fields.iter().position(|x| x == f).unwrap_or_else(|| {
                        fields.push(f.clone());
                        fields.len() - 1
                    })
                })
            })
            .collect();
        Ok(Self {
            specs,
            names,
            fields,
            slots,
        })
    }

    /// The distinct numeric fields the aggregates read, in order of first use: the list to
    /// decode events with ([`crate::EventFields::numbers`]).
    pub fn numeric_fields(&self) -> &[String] {
        &self.fields
    }

    /// The output field names, in spec order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The specs.
    pub fn specs(&self) -> &[AggregateSpec] {
        &self.specs
    }
}

impl Aggregate for Aggregates {
    type Acc = Vec<Accumulator>;

    fn create(&self) -> Self::Acc {
        self.specs.iter().map(|s| Accumulator::new(s.op)).collect()
    }

    fn add(&self, acc: &mut Self::Acc, event: &Event) {
        if event.numbers.len() == self.fields.len() {
            for (a, slot) in acc.iter_mut().zip(&self.slots) {
                a.add(slot.and_then(|i| event.numbers[i]));
            }
        } else {
            for (a, s) in acc.iter_mut().zip(&self.specs) {
                let v = s
                    .field
                    .as_ref()
                    .and_then(|f| event.value.get(f))
                    .and_then(Num::from_json);
                a.add(v);
            }
        }
    }

    fn merge(&self, into: &mut Self::Acc, other: Self::Acc) {
        for (a, b) in into.iter_mut().zip(&other) {
            a.merge(b);
        }
    }

    fn output_names(&self) -> Vec<String> {
        self.names.clone()
    }

    fn result(&self, acc: &Self::Acc) -> Vec<Value> {
        acc.iter().map(Accumulator::value).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    /// The result as a JSON object.
    fn obj(aggs: &Aggregates, acc: &<Aggregates as Aggregate>::Acc) -> Map<String, Value> {
        aggs.output_names()
            .into_iter()
            .zip(aggs.result(acc))
            .collect()
    }

    fn run(aggs: &Aggregates, values: &[Value]) -> Map<String, Value> {
        let mut acc = aggs.create();
        for v in values {
            aggs.add(&mut acc, &Event::new("k", 0, v.clone()));
        }
        obj(aggs, &acc)
    }

    #[test]
    fn builtins_over_ints_floats_and_missing() {
        let aggs = Aggregates::new(vec![
            AggregateSpec::count(),
            AggregateSpec::sum("v"),
            AggregateSpec::min("v"),
            AggregateSpec::max("v"),
            AggregateSpec::avg("v"),
        ])
        .unwrap();
        let r = run(
            &aggs,
            &[
                json!({"v": 3}),
                json!({"v": -1}),
                json!({"x": 1}),
                json!({"v": "7"}),
            ],
        );
        assert_eq!(
            Value::Object(r),
            json!({"count": 4, "sum": 2, "min": -1, "max": 3, "avg": 1.0})
        );
        let r = run(&aggs, &[json!({"v": 1.5}), json!({"v": 2})]);
        assert_eq!(
            Value::Object(r),
            json!({"count": 2, "sum": 3.5, "min": 1.5, "max": 2, "avg": 1.75})
        );
        let r = run(&aggs, &[json!({})]);
        assert_eq!(
            Value::Object(r),
            json!({"count": 1, "sum": null, "min": null, "max": null, "avg": null})
        );
    }

    #[test]
    fn decoded_numbers_and_json_lookups_agree() {
        let aggs = Aggregates::new(vec![
            AggregateSpec::count(),
            AggregateSpec::sum("v"),
            AggregateSpec::max("w"),
            AggregateSpec::avg("v"),
        ])
        .unwrap();
        assert_eq!(aggs.numeric_fields(), ["v", "w"]);
        let fields = crate::EventFields {
            event_time: "ts".into(),
            key: "k".into(),
            numbers: aggs.numeric_fields().to_vec(),
        };
        let values = [
            json!({"ts": 1, "k": "a", "v": 3, "w": 1.5}),
            json!({"ts": 2, "k": "a", "v": "x"}),
            json!({"ts": 3, "k": "a", "w": -2, "v": 4}),
        ];
        let (mut decoded, mut looked_up) = (aggs.create(), aggs.create());
        for v in &values {
            let e = Event::from_json(v.clone(), &fields, 0, 0).unwrap();
            assert_eq!(e.numbers.len(), 2);
            aggs.add(&mut decoded, &e);
            aggs.add(&mut looked_up, &Event::new("a", 0, v.clone()));
        }
        assert_eq!(obj(&aggs, &decoded), obj(&aggs, &looked_up));
        assert_eq!(
            Value::Object(obj(&aggs, &decoded)),
            json!({"count": 3, "sum": 7, "max": 1.5, "avg": 3.5})
        );
        let mut typed = aggs.create();
        aggs.add(
            &mut typed,
            &Event::typed("a", 0, [Some(Num::Int(5)), Some(Num::Int(-1))]),
        );
        assert_eq!(
            Value::Object(obj(&aggs, &typed)),
            json!({"count": 1, "sum": 5, "max": -1, "avg": 5.0})
        );
        let json = serde_json::to_string(&aggs).unwrap();
        assert_eq!(serde_json::from_str::<Aggregates>(&json).unwrap(), aggs);
    }

    #[test]
    fn sum_overflow_falls_back_to_float() {
        let aggs = Aggregates::new(vec![AggregateSpec::sum("v")]).unwrap();
        let r = run(&aggs, &[json!({"v": i64::MAX}), json!({"v": 1})]);
        assert_eq!(r["sum"], json!(i64::MAX as f64 + 1.0));
    }

    #[test]
    fn merge_combines_accumulators() {
        let aggs = Aggregates::new(vec![
            AggregateSpec::count(),
            AggregateSpec::min("v"),
            AggregateSpec::avg("v"),
        ])
        .unwrap();
        let mut a = aggs.create();
        aggs.add(&mut a, &Event::new("k", 0, json!({"v": 4})));
        let mut b = aggs.create();
        aggs.add(&mut b, &Event::new("k", 0, json!({"v": 2})));
        aggs.add(&mut b, &Event::new("k", 0, json!({"v": 6})));
        aggs.merge(&mut a, b);
        assert_eq!(
            Value::Object(obj(&aggs, &a)),
            json!({"count": 3, "min": 2, "avg": 4.0})
        );
    }

    #[test]
    fn names_collide_only_when_needed() {
        let aggs = Aggregates::new(vec![
            AggregateSpec::count(),
            AggregateSpec::sum("a"),
            AggregateSpec::sum("b"),
            AggregateSpec::max("a"),
        ])
        .unwrap();
        assert_eq!(aggs.names(), ["count", "sum_a", "sum_b", "max"]);
        let err =
            Aggregates::new(vec![AggregateSpec::sum("a"), AggregateSpec::sum("a")]).unwrap_err();
        assert!(err.to_string().contains("aggregate[1]"));
        assert!(Aggregates::new(vec![AggregateSpec::count(), AggregateSpec::count()]).is_err());
        assert!(Aggregates::new(vec![]).is_err());
        let err = Aggregates::new(vec![AggregateSpec {
            op: AggOp::Sum,
            field: None,
        }])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "pipeline setting `aggregate[0].field` is required for op = \"sum\": name the numeric field to read"
        );
    }
}
