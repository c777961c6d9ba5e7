//! The keyed event-time window operator (Flink DataStream semantics, `EventTimeTrigger`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use smallvec::SmallVec;

use crate::aggregate::{Aggregate, Aggregates};
use crate::event::Event;
use crate::time::{MIN_TIME, Millis, Watermark};
use crate::window::{TimeWindow, WindowAssigner, merge_sessions};

/// One window firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowResult {
    /// The group-by key.
    pub key: String,
    /// The window.
    pub window: TimeWindow,
    /// 1 for the first firing of this window; higher for re-firings caused by
    /// late-but-allowed elements (the result then replaces the earlier one).
    pub firing: u32,
    /// The aggregates' output names, shared by every result of an operator.
    pub names: Arc<[String]>,
    /// The aggregates' outputs, in the order of `names`.
    pub values: Vec<Value>,
}

impl WindowResult {
    /// The output named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| self.values.get(i))
    }

    /// The output line: `{"key", "window_start", "window_end", <aggregates>…}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("key".into(), Value::from(self.key.clone()));
        m.insert("window_start".into(), Value::from(self.window.start));
        m.insert("window_end".into(), Value::from(self.window.end));
        for (k, v) in self.names.iter().zip(&self.values) {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// An element every window rejected as late; it goes to the late side output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LateEvent {
    /// The event, unchanged.
    pub event: Event,
    /// The operator's watermark when it arrived.
    pub watermark: Millis,
}

/// What the operator emits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Output {
    /// A window result.
    Result(WindowResult),
    /// A late event.
    Late(LateEvent),
}

/// State of one window of one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowState<Acc> {
    /// The aggregate accumulator.
    pub acc: Acc,
    /// Lowest source offset of each partition whose event is in this window.
    pub held_offsets: HeldOffsets,
    /// How many times the window has fired.
    pub firings: u32,
}

/// Lowest source offset per partition, as `(partition, offset)` pairs sorted by partition
/// (one or two partitions inline: most windows hold events of one partition).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldOffsets(SmallVec<[(u32, i64); 2]>);

impl HeldOffsets {
    /// Records that `offset` of `partition` is held.
    pub fn hold(&mut self, partition: u32, offset: i64) {
        match self.0.binary_search_by_key(&partition, |p| p.0) {
            Ok(i) => self.0[i].1 = self.0[i].1.min(offset),
            Err(i) => self.0.insert(i, (partition, offset)),
        }
    }

    /// The `(partition, lowest offset)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u32, i64)> + '_ {
        self.0.iter().copied()
    }
}

/// Counters for run summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorStats {
    /// Events processed.
    pub events: u64,
    /// Events sent to the late output.
    pub late_events: u64,
    /// Window results emitted (including re-firings).
    pub results: u64,
}

/// All mutable operator state; serializable for snapshots.
///
/// Fixed-size windows (tumbling, hopping) are held window first: every key of a window
/// fires at the same watermark, so a window has one timer and its keys are emitted in key
/// order when it fires. Session windows differ per key and are held key first, with a
/// timer per key and window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "Acc: Serialize", deserialize = "Acc: Deserialize<'de>"))]
pub struct OperatorState<Acc> {
    /// Current event-time watermark.
    pub watermark: Millis,
    /// Open fixed-size windows, each with its keys' state (keys serialized in order).
    #[serde(with = "fixed_map")]
    pub fixed: BTreeMap<TimeWindow, KeyMap<Acc>>,
    /// Fixed-window timers `(time, window)`: at `window.max_timestamp()` the window fires
    /// for every key; at its cleanup time its state is dropped (both when they coincide).
    pub fixed_timers: BTreeSet<(Millis, TimeWindow)>,
    /// Open session windows by key (serialized in key order).
    #[serde(with = "session_map")]
    pub sessions: SessionMap<Acc>,
    /// Session timers `(time, key, window)`, with the same meaning per key.
    pub session_timers: BTreeSet<(Millis, Arc<str>, TimeWindow)>,
    /// Counters.
    pub stats: OperatorStats,
}

/// The keys of one fixed window: a hash map looked up once per event without cloning the
/// key.
pub type KeyMap<Acc> = hashbrown::HashMap<String, WindowState<Acc>>;

/// A key's session windows, by key.
pub type SessionMap<Acc> = hashbrown::HashMap<Arc<str>, BTreeMap<TimeWindow, WindowState<Acc>>>;

/// A hash map's entries sorted by key, so snapshots are deterministic.
fn sorted<K: Ord, V>(map: &hashbrown::HashMap<K, V>) -> Vec<(&K, &V)> {
    let mut pairs: Vec<(&K, &V)> = map.iter().collect();
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    pairs
}

mod fixed_map {
    use super::{BTreeMap, KeyMap, TimeWindow, WindowState, sorted};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Pairs<'a, Acc> = Vec<(&'a TimeWindow, Vec<(&'a String, &'a WindowState<Acc>)>)>;
    type OwnedPairs<Acc> = Vec<(TimeWindow, Vec<(String, WindowState<Acc>)>)>;

    pub(super) fn serialize<S: Serializer, Acc: Serialize>(
        map: &BTreeMap<TimeWindow, KeyMap<Acc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let pairs: Pairs<'_, Acc> = map.iter().map(|(w, keys)| (w, sorted(keys))).collect();
        pairs.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>, Acc: Deserialize<'de>>(
        d: D,
    ) -> Result<BTreeMap<TimeWindow, KeyMap<Acc>>, D::Error> {
        let pairs: OwnedPairs<Acc> = Vec::deserialize(d)?;
        Ok(pairs
            .into_iter()
            .map(|(w, keys)| (w, keys.into_iter().collect()))
            .collect())
    }
}

mod session_map {
    use super::{Arc, SessionMap, TimeWindow, WindowState, sorted};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Pairs<'a, Acc> = Vec<(&'a Arc<str>, Vec<(&'a TimeWindow, &'a WindowState<Acc>)>)>;
    type OwnedPairs<Acc> = Vec<(Arc<str>, Vec<(TimeWindow, WindowState<Acc>)>)>;

    pub(super) fn serialize<S: Serializer, Acc: Serialize>(
        map: &SessionMap<Acc>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let pairs: Pairs<'_, Acc> = sorted(map)
            .into_iter()
            .map(|(k, w)| (k, w.iter().collect()))
            .collect();
        pairs.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>, Acc: Deserialize<'de>>(
        d: D,
    ) -> Result<SessionMap<Acc>, D::Error> {
        let pairs: OwnedPairs<Acc> = Vec::deserialize(d)?;
        Ok(pairs
            .into_iter()
            .map(|(k, w)| (k, w.into_iter().collect()))
            .collect())
    }
}

impl<Acc> Default for OperatorState<Acc> {
    fn default() -> Self {
        Self {
            watermark: MIN_TIME,
            fixed: BTreeMap::new(),
            fixed_timers: BTreeSet::new(),
            sessions: SessionMap::new(),
            session_timers: BTreeSet::new(),
            stats: OperatorStats::default(),
        }
    }
}

/// A keyed window operator with Flink's default event-time trigger.
///
/// * On an element, for each window it is assigned to (for sessions: its window after
///   merging with the key's intersecting sessions), the element is added unless the
///   window is late: `end − 1 + allowed_lateness ≤ watermark`. If that window's
///   `end − 1 ≤ watermark` already (a late-but-allowed element), it fires again at once
///   with the updated result. If every window rejected the element, it is emitted as
///   [`Output::Late`].
/// * On a watermark `wm`, timers with time ≤ `wm` run in order `(time, key, window)`:
///   a window fires when `wm ≥ end − 1` and is purged when `wm ≥ end − 1 +
///   allowed_lateness` (fire first when both happen at once). Results are not purged on
///   firing (Flink's `FIRE`, not `FIRE_AND_PURGE`).
///
/// The watermark never decreases; an `Idle` or older watermark is ignored.
#[derive(Debug, Clone)]
pub struct WindowOperator<A: Aggregate = Aggregates> {
    assigner: WindowAssigner,
    allowed_lateness_ms: Millis,
    aggregate: A,
    names: Arc<[String]>,
    state: OperatorState<A::Acc>,
    scratch: Vec<TimeWindow>,
}

impl<A: Aggregate> WindowOperator<A> {
    /// A new operator with empty state.
    pub fn new(assigner: WindowAssigner, allowed_lateness_ms: u64, aggregate: A) -> Self {
        Self::restore(
            assigner,
            allowed_lateness_ms,
            aggregate,
            OperatorState::default(),
        )
    }

    /// An operator resuming from a snapshot of its state.
    pub fn restore(
        assigner: WindowAssigner,
        allowed_lateness_ms: u64,
        aggregate: A,
        state: OperatorState<A::Acc>,
    ) -> Self {
        Self {
            assigner,
            allowed_lateness_ms: Millis::try_from(allowed_lateness_ms).unwrap_or(Millis::MAX),
            names: aggregate.output_names().into(),
            aggregate,
            state,
            scratch: Vec::new(),
        }
    }

    /// The state, for snapshots.
    pub fn state(&self) -> &OperatorState<A::Acc> {
        &self.state
    }

    /// The current watermark.
    pub fn watermark(&self) -> Millis {
        self.state.watermark
    }

    /// Counters.
    pub fn stats(&self) -> OperatorStats {
        self.state.stats
    }

    /// Number of open (not yet purged) windows over all keys.
    pub fn open_windows(&self) -> usize {
        self.state.fixed.values().map(KeyMap::len).sum::<usize>()
            + self
                .state
                .sessions
                .values()
                .map(BTreeMap::len)
                .sum::<usize>()
    }

    /// For each partition, the lowest offset still held by an open window. A runtime may
    /// commit offsets below it (for partitions absent here: everything processed, once
    /// the emitted output is durable).
    pub fn lowest_held_offsets(&self) -> BTreeMap<u32, i64> {
        let mut low: BTreeMap<u32, i64> = BTreeMap::new();
        let fixed = self.state.fixed.values().flat_map(KeyMap::values);
        let sessions = self.state.sessions.values().flat_map(BTreeMap::values);
        for w in fixed.chain(sessions) {
            for (p, o) in w.held_offsets.iter() {
                low.entry(p).and_modify(|v| *v = (*v).min(o)).or_insert(o);
            }
        }
        low
    }

    /// Processes one element at the current watermark.
    pub fn process(&mut self, event: Event) -> Vec<Output> {
        let mut out = Vec::new();
        self.state.stats.events += 1;
        let accepted = if self.assigner.is_merging() {
            self.process_merging(&event, &mut out)
        } else {
            self.process_fixed(&event, &mut out)
        };
        if !accepted {
            self.state.stats.late_events += 1;
            out.push(Output::Late(LateEvent {
                event,
                watermark: self.state.watermark,
            }));
        }
        out
    }

    fn process_fixed(&mut self, event: &Event, out: &mut Vec<Output>) -> bool {
        let wm = self.state.watermark;
        let lateness = self.allowed_lateness_ms;
        let mut windows = std::mem::take(&mut self.scratch);
        windows.clear();
        self.assigner.assign(event.event_time, &mut windows);
        let mut accepted = false;
        for w in windows.iter().copied() {
            if w.is_late(lateness, wm) {
                continue;
            }
            accepted = true;
            let keys = self.state.fixed.entry(w).or_insert_with(|| {
                if w.max_timestamp() > wm {
                    self.state.fixed_timers.insert((w.max_timestamp(), w));
                }
                self.state
                    .fixed_timers
                    .insert((w.cleanup_time(lateness), w));
                KeyMap::new()
            });
            let st = keys
                .entry_ref(event.key.as_str())
                .or_insert_with(|| new_state(&self.aggregate));
            add_event(&self.aggregate, st, event);
            if w.max_timestamp() <= wm {
                let firing = Firing {
                    aggregate: &self.aggregate,
                    names: &self.names,
                    stats: &mut self.state.stats,
                };
                firing.emit(&event.key, w, st, out);
            }
        }
        self.scratch = windows;
        accepted
    }

    fn process_merging(&mut self, event: &Event, out: &mut Vec<Output>) -> bool {
        let wm = self.state.watermark;
        let lateness = self.allowed_lateness_ms;
        self.scratch.clear();
        self.assigner.assign(event.event_time, &mut self.scratch);
        let Some(own) = self.scratch.first().copied() else {
            return false;
        };
        let (cover, merged, key) = match self.state.sessions.get_key_value(event.key.as_str()) {
            Some((key, live)) => {
                let (cover, merged) = merge_sessions(live.keys(), own);
                (cover, merged, Some(Arc::clone(key)))
            }
            None => (own, Vec::new(), None),
        };
        // Judged on the window after merging. A live window is never late (it would have
        // been purged), so a late cover means nothing was merged.
        if cover.is_late(lateness, wm) {
            return false;
        }
        // The key as stored (shared by the map and the timers; `Arc`: no copy per timer).
        let key = key.unwrap_or_else(|| Arc::from(event.key.as_str()));
        let key_windows = self.state.sessions.entry(Arc::clone(&key)).or_default();
        if merged.as_slice() != [cover] {
            // The merged windows' state, folded into the first of them (an extended session
            // keeps its state; a new one starts empty).
            let mut merged_state: Option<WindowState<A::Acc>> = None;
            for m in &merged {
                let Some(old) = key_windows.remove(m) else {
                    continue;
                };
                match &mut merged_state {
                    None => merged_state = Some(old),
                    Some(st) => {
                        self.aggregate.merge(&mut st.acc, old.acc);
                        for (p, o) in old.held_offsets.iter() {
                            st.held_offsets.hold(p, o);
                        }
                        st.firings = st.firings.max(old.firings);
                    }
                }
            }
            let timers = &mut self.state.session_timers;
            for m in &merged {
                timers.remove(&(m.cleanup_time(lateness), Arc::clone(&key), *m));
                if m.max_timestamp() != m.cleanup_time(lateness) {
                    timers.remove(&(m.max_timestamp(), Arc::clone(&key), *m));
                }
            }
            let st = merged_state.unwrap_or_else(|| new_state(&self.aggregate));
            if cover.max_timestamp() > wm {
                timers.insert((cover.max_timestamp(), Arc::clone(&key), cover));
            }
            timers.insert((cover.cleanup_time(lateness), key, cover));
            key_windows.insert(cover, st);
        }
        if let Some(st) = key_windows.get_mut(&cover) {
            add_event(&self.aggregate, st, event);
            if cover.max_timestamp() <= wm {
                let firing = Firing {
                    aggregate: &self.aggregate,
                    names: &self.names,
                    stats: &mut self.state.stats,
                };
                firing.emit(&event.key, cover, st, out);
            }
        }
        true
    }

    /// Advances the watermark, firing and purging windows. `Idle` and non-advancing
    /// watermarks change nothing.
    pub fn advance_watermark(&mut self, watermark: Watermark) -> Vec<Output> {
        let mut out = Vec::new();
        let Watermark::EventTime(wm) = watermark else {
            return out;
        };
        if wm <= self.state.watermark {
            return out;
        }
        self.state.watermark = wm;
        let lateness = self.allowed_lateness_ms;
        let mut firing = Firing {
            aggregate: &self.aggregate,
            names: &self.names,
            stats: &mut self.state.stats,
        };
        // Both timer sets are in time order; a pipeline uses one of them.
        while let Some(&(time, window)) = self.state.fixed_timers.first() {
            if time > wm {
                break;
            }
            self.state.fixed_timers.pop_first();
            let Some(keys) = self.state.fixed.get_mut(&window) else {
                continue;
            };
            if time == window.max_timestamp() {
                let mut by_key: Vec<(u64, &String, &mut WindowState<A::Acc>)> = keys
                    .iter_mut()
                    .map(|(k, st)| (key_prefix(k), k, st))
                    .collect();
                by_key.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
                for (_, key, st) in by_key {
                    firing.reborrow().emit(key, window, st, &mut out);
                }
            }
            if time == window.cleanup_time(lateness) {
                self.state.fixed.remove(&window);
            }
        }
        while let Some(first) = self.state.session_timers.first() {
            if first.0 > wm {
                break;
            }
            let Some((time, key, window)) = self.state.session_timers.pop_first() else {
                break;
            };
            let Some(key_windows) = self.state.sessions.get_mut(&key) else {
                continue;
            };
            if let Some(st) = key_windows.get_mut(&window) {
                if time == window.max_timestamp() {
                    firing.reborrow().emit(&key, window, st, &mut out);
                }
                if time == window.cleanup_time(lateness) {
                    key_windows.remove(&window);
                }
            }
            if key_windows.is_empty() {
                self.state.sessions.remove(&key);
            }
        }
        out
    }
}

/// A key's first 8 bytes as a big-endian number (zero-padded): ordering by it, then by
/// the whole key, is the keys' byte order, with most comparisons settled by one integer
/// comparison.
fn key_prefix(key: &str) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key.as_bytes()[..n]);
    u64::from_be_bytes(b)
}

fn new_state<A: Aggregate>(aggregate: &A) -> WindowState<A::Acc> {
    WindowState {
        acc: aggregate.create(),
        held_offsets: HeldOffsets::default(),
        firings: 0,
    }
}

fn add_event<A: Aggregate>(aggregate: &A, st: &mut WindowState<A::Acc>, event: &Event) {
    aggregate.add(&mut st.acc, event);
    st.held_offsets.hold(event.partition, event.offset);
}

/// What emitting a window result needs besides the window's state.
struct Firing<'a, A> {
    aggregate: &'a A,
    names: &'a Arc<[String]>,
    stats: &'a mut OperatorStats,
}

impl<A: Aggregate> Firing<'_, A> {
    fn reborrow(&mut self) -> Firing<'_, A> {
        Firing {
            aggregate: self.aggregate,
            names: self.names,
            stats: self.stats,
        }
    }

    fn emit(
        self,
        key: &str,
        window: TimeWindow,
        st: &mut WindowState<A::Acc>,
        out: &mut Vec<Output>,
    ) {
        st.firings += 1;
        self.stats.results += 1;
        out.push(Output::Result(WindowResult {
            key: key.to_owned(),
            window,
            firing: st.firings,
            names: Arc::clone(self.names),
            values: self.aggregate.result(&st.acc),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::AggregateSpec;
    use serde_json::json;

    fn op(assigner: WindowAssigner, lateness: u64) -> WindowOperator {
        let aggs = Aggregates::new(vec![AggregateSpec::count(), AggregateSpec::sum("v")]).unwrap();
        WindowOperator::new(assigner, lateness, aggs)
    }

    fn ev(key: &str, ts: i64, v: i64) -> Event {
        Event::new(key, ts, json!({"k": key, "ts": ts, "v": v}))
    }

    /// Renders outputs compactly: `R key [start,end) count sum #firing` or `L ts`.
    fn show(out: &[Output]) -> Vec<String> {
        out.iter()
            .map(|o| match o {
                Output::Result(r) => format!(
                    "R {} [{},{}) {} {} #{}",
                    r.key,
                    r.window.start,
                    r.window.end,
                    r.get("count").unwrap(),
                    r.get("sum").unwrap(),
                    r.firing
                ),
                Output::Late(l) => format!("L {}", l.event.event_time),
            })
            .collect()
    }

    fn wm(t: i64) -> Watermark {
        Watermark::EventTime(t)
    }

    #[test]
    fn tumbling_fires_at_end_minus_one_and_rejects_late() {
        let mut o = op(WindowAssigner::tumbling(10).unwrap(), 0);
        assert!(o.process(ev("a", 3, 1)).is_empty());
        assert!(o.process(ev("a", 9, 2)).is_empty());
        assert!(o.advance_watermark(wm(8)).is_empty());
        assert_eq!(show(&o.advance_watermark(wm(9))), ["R a [0,10) 2 3 #1"]);
        assert_eq!(o.open_windows(), 0);
        // end - 1 + 0 <= 9: late.
        assert_eq!(show(&o.process(ev("a", 5, 1))), ["L 5"]);
        assert_eq!(o.stats().late_events, 1);
        // Not late: next window.
        assert!(o.process(ev("a", 10, 1)).is_empty());
        // Idle and backwards watermarks change nothing.
        assert!(o.advance_watermark(Watermark::Idle).is_empty());
        assert!(o.advance_watermark(wm(3)).is_empty());
        assert_eq!(o.watermark(), 9);
    }

    #[test]
    fn allowed_lateness_refires_then_purges() {
        let mut o = op(WindowAssigner::tumbling(10).unwrap(), 5);
        o.process(ev("a", 1, 1));
        assert_eq!(show(&o.advance_watermark(wm(9))), ["R a [0,10) 1 1 #1"]);
        assert_eq!(o.open_windows(), 1);
        // 9 + 5 = 14 > 12: allowed, fires at once with the updated result.
        o.advance_watermark(wm(12));
        assert_eq!(show(&o.process(ev("a", 2, 10))), ["R a [0,10) 2 11 #2"]);
        assert!(o.advance_watermark(wm(13)).is_empty());
        assert_eq!(o.open_windows(), 1);
        assert!(o.advance_watermark(wm(14)).is_empty());
        assert_eq!(o.open_windows(), 0);
        assert_eq!(show(&o.process(ev("a", 3, 1))), ["L 3"]);
    }

    #[test]
    fn a_fixed_window_fires_its_keys_in_key_order_from_one_timer() {
        let mut o = op(WindowAssigner::tumbling(10).unwrap(), 5);
        for k in ["c", "a", "b"] {
            o.process(ev(k, 1, 1));
        }
        // One window, three keys: a firing timer (9) and a cleanup timer (14), not six.
        assert_eq!(o.state().fixed_timers.len(), 2);
        assert_eq!(
            show(&o.advance_watermark(wm(9))),
            [
                "R a [0,10) 1 1 #1",
                "R b [0,10) 1 1 #1",
                "R c [0,10) 1 1 #1"
            ]
        );
        // A new key arriving late but allowed fires at once, alone, and not again later.
        assert_eq!(show(&o.process(ev("d", 2, 5))), ["R d [0,10) 1 5 #1"]);
        assert!(o.advance_watermark(wm(13)).is_empty());
        assert_eq!(o.open_windows(), 4);
        assert!(o.advance_watermark(wm(14)).is_empty());
        assert_eq!(o.open_windows(), 0);
        assert!(o.state().fixed_timers.is_empty());
    }

    #[test]
    fn hopping_element_late_for_one_window_not_the_next() {
        let mut o = op(WindowAssigner::hopping(10, 5).unwrap(), 0);
        o.process(ev("a", 12, 1)); // [5,15) and [10,20)
        assert!(o.advance_watermark(wm(9)).is_empty());
        // ts 8 belongs to [0,10) (late: 9 <= 9) and [5,15) (open).
        assert!(o.process(ev("a", 8, 100)).is_empty());
        assert_eq!(
            show(&o.advance_watermark(Watermark::END)),
            ["R a [5,15) 2 101 #1", "R a [10,20) 1 1 #1"]
        );
    }

    #[test]
    fn sessions_merge_bridge_and_are_judged_after_merging() {
        let mut o = op(WindowAssigner::session(10).unwrap(), 0);
        o.process(ev("a", 0, 1)); // [0,10)
        o.process(ev("a", 15, 2)); // [15,25)
        o.process(ev("b", 5, 7));
        assert_eq!(o.open_windows(), 3);
        o.process(ev("a", 8, 4)); // [8,18) bridges both -> [0,25)
        assert_eq!(o.open_windows(), 2);
        assert_eq!(show(&o.advance_watermark(wm(20))), ["R b [5,15) 1 7 #1"]);
        // [18,28) touches [0,25): merged window [0,28) is not late although ts 18 <= 20.
        assert!(o.process(ev("a", 18, 8)).is_empty());
        // [0,10) for key b: 9 <= 20, late, nothing to merge with.
        assert_eq!(show(&o.process(ev("b", 0, 1))), ["L 0"]);
        // touching exactly at the end: [25+3..] no; [28,38) touches [0,28)
        assert!(o.process(ev("a", 28, 16)).is_empty());
        assert_eq!(show(&o.advance_watermark(wm(100))), ["R a [0,38) 5 31 #1"]);
    }

    #[test]
    fn extending_a_session_keeps_one_timer_pair() {
        for (lateness, per_window) in [(0, 1), (50, 2)] {
            let mut o = op(WindowAssigner::session(10).unwrap(), lateness);
            for ts in (0..1000).step_by(3) {
                o.process(ev("a", ts, 1));
            }
            o.process(ev("b", 5, 1));
            assert_eq!(o.open_windows(), 2);
            // Timers of the windows merged away were removed, not left behind.
            assert_eq!(o.state().session_timers.len(), 2 * per_window);
        }
    }

    #[test]
    fn session_with_lateness_refires_merged_window() {
        let mut o = op(WindowAssigner::session(10).unwrap(), 100);
        o.process(ev("a", 0, 1));
        assert_eq!(show(&o.advance_watermark(wm(50))), ["R a [0,10) 1 1 #1"]);
        // [5,15) merges with the fired [0,10) -> [0,15), max ts 14 <= 50: fires again.
        assert_eq!(show(&o.process(ev("a", 5, 2))), ["R a [0,15) 2 3 #2"]);
        // the old window's timers are gone: nothing fires for [0,10) later
        assert!(o.advance_watermark(wm(113)).is_empty());
        assert_eq!(o.open_windows(), 1);
        assert!(o.advance_watermark(wm(114)).is_empty());
        assert_eq!(o.open_windows(), 0);
        assert!(o.state().session_timers.is_empty());
    }

    #[test]
    fn lowest_held_offsets_follow_open_windows() {
        let mut o = op(WindowAssigner::tumbling(10).unwrap(), 0);
        o.process(ev("a", 1, 1).at(0, 100));
        o.process(ev("a", 12, 1).at(0, 101));
        o.process(ev("b", 3, 1).at(1, 7));
        o.process(ev("b", 4, 1).at(0, 102));
        let held = o.lowest_held_offsets();
        assert_eq!(held, BTreeMap::from([(0, 100), (1, 7)]));
        o.advance_watermark(wm(9));
        assert_eq!(o.lowest_held_offsets(), BTreeMap::from([(0, 101)]));
        o.advance_watermark(wm(19));
        assert!(o.lowest_held_offsets().is_empty());
    }

    #[test]
    fn state_survives_a_serde_round_trip() {
        let mut a = op(WindowAssigner::session(10).unwrap(), 5);
        a.process(ev("a", 0, 1));
        a.process(ev("b", 3, 2));
        a.advance_watermark(wm(2));
        let json = serde_json::to_string(a.state()).unwrap();
        let state: OperatorState<Vec<crate::aggregate::Accumulator>> =
            serde_json::from_str(&json).unwrap();
        let aggs = Aggregates::new(vec![AggregateSpec::count(), AggregateSpec::sum("v")]).unwrap();
        let mut b = WindowOperator::restore(WindowAssigner::session(10).unwrap(), 5, aggs, state);
        for o in [&mut a, &mut b] {
            o.process(ev("a", 9, 5));
        }
        assert_eq!(
            show(&a.advance_watermark(Watermark::END)),
            show(&b.advance_watermark(Watermark::END))
        );
        assert_eq!(a.stats(), b.stats());
    }

    #[test]
    fn snapshots_list_keys_in_order_whatever_the_insertion_order() {
        let snapshot = |keys: &[&str]| {
            let mut o = op(WindowAssigner::tumbling(10).unwrap(), 0);
            for k in keys {
                o.process(ev(k, 1, 1));
            }
            serde_json::to_string(o.state()).unwrap()
        };
        let forward = snapshot(&["a", "b", "c", "d", "e"]);
        assert_eq!(forward, snapshot(&["e", "c", "a", "d", "b"]));
        let at = |k: &str| forward.find(&format!("\"{k}\"")).unwrap();
        assert!(at("a") < at("b") && at("b") < at("c") && at("d") < at("e"));
    }

    proptest::proptest! {
        /// Ordering by prefix, then key, is the keys' own order.
        #[test]
        fn key_prefix_order_is_byte_order(a in ".{0,12}", b in ".{0,12}") {
            let by_prefix = key_prefix(&a).cmp(&key_prefix(&b)).then_with(|| a.cmp(&b));
            proptest::prop_assert_eq!(by_prefix, a.cmp(&b));
        }

        /// Tumbling and hopping windows against a counting model: every event counted in
        /// each window containing it; at the end every window fires once, in order of window
        /// end, then key (the order timers `(time, key, window)` would give).
        #[test]
        fn fixed_windows_match_a_counting_model(
            events in proptest::collection::vec((0usize..4, -60i64..200), 0..60),
            size in 1u64..40,
            slide_div in 1u64..4,
        ) {
            let slide = (size / slide_div).max(1);
            for assigner in [
                WindowAssigner::tumbling(size).unwrap(),
                WindowAssigner::hopping(size, slide).unwrap(),
            ] {
                let mut o = op(assigner.clone(), 0);
                let keys = ["b", "a", "ab", "b\u{0}"];
                for (k, ts) in &events {
                    proptest::prop_assert!(o.process(ev(keys[*k], *ts, 1)).is_empty());
                }
                let got: Vec<(i64, String, i64, u64)> = o
                    .advance_watermark(Watermark::END)
                    .into_iter()
                    .map(|out| match out {
                        Output::Result(r) => (r.window.end, r.key.clone(), r.window.start, r.get("count").unwrap().as_u64().unwrap()),
                        Output::Late(_) => unreachable!("nothing is late below an infinite-past watermark"),
                    })
                    .collect();
                let mut want: BTreeMap<(i64, String, i64), u64> = BTreeMap::new();
                for (k, ts) in &events {
                    let mut ws = Vec::new();
                    assigner.assign(*ts, &mut ws);
                    for w in ws {
                        *want.entry((w.end, keys[*k].to_string(), w.start)).or_default() += 1;
                    }
                }
                let want: Vec<(i64, String, i64, u64)> =
                    want.into_iter().map(|((e, k, s), n)| (e, k, s, n)).collect();
                proptest::prop_assert_eq!(got, want);
                proptest::prop_assert_eq!(o.open_windows(), 0);
            }
        }

        /// With every event processed before the watermark moves, sessions must match a
        /// simple model: per key, sorted times split wherever a time is beyond the running
        /// session end (`ts > end`; `ts == end` touches and merges).
        #[test]
        fn sessions_match_a_sorting_model(
            events in proptest::collection::vec((0usize..3, -50i64..200), 0..40),
            gap in 1u64..30,
        ) {
            let mut o = op(WindowAssigner::session(gap).unwrap(), 0);
            for (k, ts) in &events {
                proptest::prop_assert!(o.process(ev(["a", "b", "c"][*k], *ts, 1)).is_empty());
            }
            let mut got: Vec<(String, i64, i64, u64)> = o
                .advance_watermark(Watermark::END)
                .into_iter()
                .map(|out| match out {
                    Output::Result(r) => (r.key.clone(), r.window.start, r.window.end, r.get("count").unwrap().as_u64().unwrap()),
                    Output::Late(_) => unreachable!("nothing is late below an infinite-past watermark"),
                })
                .collect();
            got.sort();
            let mut want = Vec::new();
            for (k, key) in ["a", "b", "c"].iter().enumerate() {
                let mut ts: Vec<i64> = events.iter().filter(|e| e.0 == k).map(|e| e.1).collect();
                ts.sort_unstable();
                let mut cur: Option<(i64, i64, u64)> = None;
                for t in ts {
                    cur = match cur {
                        Some((s, e, n)) if t <= e => Some((s, e.max(t + gap as i64), n + 1)),
                        Some(done) => {
                            want.push((key.to_string(), done.0, done.1, done.2));
                            Some((t, t + gap as i64, 1))
                        }
                        None => Some((t, t + gap as i64, 1)),
                    };
                }
                if let Some(done) = cur {
                    want.push((key.to_string(), done.0, done.1, done.2));
                }
            }
            want.sort();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
