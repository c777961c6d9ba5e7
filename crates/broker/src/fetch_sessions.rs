//! Incremental fetch sessions (KIP-227), as a cache with explicit time (no clock, no I/O).
//!
//! A client opens a session with a full fetch (session id 0, epoch 0) and gets an id back;
//! its next requests (epoch 1, 2, ...) list only partitions whose fetch position changed
//! (and the ones it drops, as forgotten topics), and the answers list only partitions with
//! something new: records, an error, or a changed high watermark, last stable offset or
//! log start offset. Epoch -1 is a full fetch without a session (and closes the named one).
//! The broker may decline a session (id 0 in the answer): clients then send full fetches.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::ResponseError;

/// Milliseconds (the caller's clock).
pub type Ms = i64;

/// Sessions kept at most (Kafka's `max.incremental.fetch.session.cache.slots` is 1000).
pub const MAX_SESSIONS: usize = 1000;
/// A session unused this long may be evicted for a new one.
pub const EVICT_IDLE_MS: Ms = 120_000;
/// Partitions cached across all sessions at most (about 100 bytes each): a session that
/// would take the cache past it is declined (its client sends full fetches, as KIP-227
/// allows), so a client listing a million partitions costs no session memory.
pub const MAX_CACHED_PARTITIONS: usize = 250_000;

/// A partition's position in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPartition {
    /// Next offset the client wants.
    pub fetch_offset: i64,
    /// Its partition_max_bytes.
    pub max_bytes: i32,
    /// (high watermark, last stable offset, log start offset) last sent for it.
    pub reported: Option<(i64, i64, i64)>,
}

#[derive(Debug)]
struct Session {
    next_epoch: i32,
    partitions: BTreeMap<(String, i32), SessionPartition>,
    last_used: Ms,
}

/// What to read for one Fetch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Session id to answer with (0: none).
    pub session_id: i32,
    /// Answer incrementally (only partitions with news).
    pub incremental: bool,
    /// Partitions to read: (topic, partition, fetch offset, max bytes).
    pub partitions: Vec<(String, i32, i64, i32)>,
}

/// The broker's fetch sessions.
#[derive(Debug)]
pub struct FetchSessions {
    sessions: HashMap<i32, Session>,
    last_id: i32,
    /// Partitions held by all sessions.
    cached: usize,
    /// The bound on `cached`.
    budget: usize,
}

impl Default for FetchSessions {
    fn default() -> Self {
        Self::with_budget(MAX_CACHED_PARTITIONS)
    }
}

impl FetchSessions {
    /// Sessions holding at most `budget` partitions together.
    pub fn with_budget(budget: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            last_id: 0,
            cached: 0,
            budget,
        }
    }

    fn remove(&mut self, id: i32) {
        if let Some(s) = self.sessions.remove(&id) {
            self.cached -= s.partitions.len();
        }
    }

    /// Resolve a request's session fields. `requested` are the partitions the request
    /// lists, `forgotten` the ones it drops. Err: the top-level error code to answer with.
    pub fn resolve(
        &mut self,
        session_id: i32,
        epoch: i32,
        requested: &[(String, i32, i64, i32)],
        forgotten: &[(String, i32)],
        now: Ms,
    ) -> Result<Resolved, i16> {
        let full = |id| Resolved {
            session_id: id,
            incremental: false,
            partitions: requested.to_vec(),
        };
        match epoch {
            -1 => {
                // Sessionless full fetch; it also closes the named session.
                self.remove(session_id);
                Ok(full(0))
            }
            0 => {
                self.remove(session_id);
                if self.cached + requested.len() > self.budget {
                    return Ok(full(0)); // the partition budget is spent: decline
                }
                let Some(id) = self.new_id(now) else {
                    return Ok(full(0)); // cache full of busy sessions: decline
                };
                let partitions = requested
                    .iter()
                    .map(|(t, p, off, max)| {
                        let sp = SessionPartition {
                            fetch_offset: *off,
                            max_bytes: *max,
                            reported: None,
                        };
                        ((t.clone(), *p), sp)
                    })
                    .collect::<BTreeMap<_, _>>();
                self.cached += partitions.len();
                self.sessions.insert(
                    id,
                    Session {
                        next_epoch: 1,
                        partitions,
                        last_used: now,
                    },
                );
                Ok(full(id))
            }
            e if e > 0 => {
                let s = self
                    .sessions
                    .get_mut(&session_id)
                    .ok_or(ResponseError::FetchSessionIdNotFound.code())?;
                if e != s.next_epoch {
                    return Err(ResponseError::InvalidFetchSessionEpoch.code());
                }
                let before = s.partitions.len();
                if self.cached - before + before.saturating_sub(forgotten.len()) + requested.len()
                    > self.budget
                {
                    // Growing past the budget: the session ends, its client starts over
                    // with a full fetch (which is declined while the budget is spent).
                    self.remove(session_id);
                    return Err(ResponseError::FetchSessionIdNotFound.code());
                }
                for (t, p) in forgotten {
                    s.partitions.remove(&(t.clone(), *p));
                }
                for (t, p, off, max) in requested {
                    let sp = s
                        .partitions
                        .entry((t.clone(), *p))
                        .or_insert(SessionPartition {
                            fetch_offset: *off,
                            max_bytes: *max,
                            reported: None,
                        });
                    sp.fetch_offset = *off;
                    sp.max_bytes = *max;
                }
                self.cached = self.cached - before + s.partitions.len();
                s.next_epoch = if e == i32::MAX { 1 } else { e + 1 };
                s.last_used = now;
                Ok(Resolved {
                    session_id,
                    incremental: true,
                    partitions: s
                        .partitions
                        .iter()
                        .map(|((t, p), sp)| (t.clone(), *p, sp.fetch_offset, sp.max_bytes))
                        .collect(),
                })
            }
            _ => Err(ResponseError::InvalidFetchSessionEpoch.code()),
        }
    }

    /// Record what was answered for a partition and say whether an incremental answer
    /// includes it: records, an error, or new positions.
    pub fn report(
        &mut self,
        session_id: i32,
        topic: &str,
        partition: i32,
        positions: (i64, i64, i64),
        has_records: bool,
        has_error: bool,
    ) -> bool {
        let Some(sp) = self
            .sessions
            .get_mut(&session_id)
            .and_then(|s| s.partitions.get_mut(&(topic.to_string(), partition)))
        else {
            return true;
        };
        let changed = sp.reported != Some(positions);
        sp.reported = Some(positions);
        has_records || has_error || changed
    }

    /// A new session id, evicting the longest-idle session when the cache is full (only
    /// one idle for at least [`EVICT_IDLE_MS`]).
    fn new_id(&mut self, now: Ms) -> Option<i32> {
        if self.sessions.len() >= MAX_SESSIONS {
            let (&victim, _) = self
                .sessions
                .iter()
                .filter(|(_, s)| now - s.last_used >= EVICT_IDLE_MS)
                .min_by_key(|(_, s)| s.last_used)?;
            self.remove(victim);
        }
        loop {
            self.last_id = if self.last_id == i32::MAX {
                1
            } else {
                self.last_id + 1
            };
            if !self.sessions.contains_key(&self.last_id) {
                return Some(self.last_id);
            }
        }
    }

    /// Open sessions.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(t: &str, p: i32, off: i64) -> (String, i32, i64, i32) {
        (t.to_string(), p, off, 1 << 20)
    }

    #[test]
    fn a_session_opens_goes_incremental_and_closes() {
        let mut s = FetchSessions::default();
        let r = s
            .resolve(0, 0, &[part("a", 0, 5), part("a", 1, 7)], &[], 0)
            .unwrap();
        assert!(!r.incremental);
        assert_ne!(r.session_id, 0);
        let id = r.session_id;
        // The full answer reports both partitions.
        assert!(s.report(id, "a", 0, (10, 10, 0), true, false));
        assert!(s.report(id, "a", 1, (7, 7, 0), false, false));
        // Epoch 1: only partition 0 moved; both are read, partition 1 has no news.
        let r = s.resolve(id, 1, &[part("a", 0, 10)], &[], 1).unwrap();
        assert!(r.incremental);
        assert_eq!(r.partitions, vec![part("a", 0, 10), part("a", 1, 7)]);
        assert!(
            !s.report(id, "a", 0, (10, 10, 0), false, false),
            "nothing new"
        );
        assert!(
            !s.report(id, "a", 1, (7, 7, 0), false, false),
            "nothing new"
        );
        assert!(
            s.report(id, "a", 1, (9, 9, 0), false, false),
            "high watermark moved"
        );
        assert!(
            s.report(id, "a", 0, (10, 10, 0), false, true),
            "an error is news"
        );
        // Forgetting a partition, adding another.
        let r = s
            .resolve(id, 2, &[part("b", 0, 0)], &[("a".into(), 1)], 2)
            .unwrap();
        assert_eq!(r.partitions, vec![part("a", 0, 10), part("b", 0, 0)]);
        // Wrong epochs and unknown ids.
        assert_eq!(
            s.resolve(id, 2, &[], &[], 3),
            Err(ResponseError::InvalidFetchSessionEpoch.code())
        );
        assert_eq!(
            s.resolve(id + 100, 1, &[], &[], 3),
            Err(ResponseError::FetchSessionIdNotFound.code())
        );
        // Epoch -1 closes it and answers in full without a session.
        let r = s.resolve(id, -1, &[part("a", 0, 10)], &[], 4).unwrap();
        assert_eq!((r.session_id, r.incremental), (0, false));
        assert_eq!(s.len(), 0);
        assert_eq!(
            s.resolve(id, 3, &[], &[], 5),
            Err(ResponseError::FetchSessionIdNotFound.code())
        );
    }

    #[test]
    fn a_full_cache_evicts_only_idle_sessions() {
        let mut s = FetchSessions::default();
        for i in 0..MAX_SESSIONS {
            let r = s.resolve(0, 0, &[part("a", 0, 0)], &[], i as Ms).unwrap();
            assert_ne!(r.session_id, 0);
        }
        // Everyone is busy: the new client is declined (id 0), nothing is evicted.
        let r = s.resolve(0, 0, &[part("a", 0, 0)], &[], 1_000).unwrap();
        assert_eq!(r.session_id, 0);
        assert_eq!(s.len(), MAX_SESSIONS);
        // Later the oldest idle session makes room.
        let r = s
            .resolve(0, 0, &[part("a", 0, 0)], &[], EVICT_IDLE_MS + 1)
            .unwrap();
        assert_ne!(r.session_id, 0);
        assert_eq!(s.len(), MAX_SESSIONS);
        assert_eq!(
            s.resolve(1, 1, &[], &[], EVICT_IDLE_MS + 2),
            Err(ResponseError::FetchSessionIdNotFound.code()),
            "session 1 was the oldest and went"
        );
    }

    #[test]
    fn sessions_hold_a_bounded_number_of_partitions() {
        let mut s = FetchSessions::with_budget(10);
        let many: Vec<_> = (0..11).map(|p| part("a", p, 0)).collect();
        // Too many partitions for the cache: answered in full without a session.
        let r = s.resolve(0, 0, &many, &[], 0).unwrap();
        assert_eq!(
            (r.session_id, r.incremental, r.partitions.len()),
            (0, false, 11)
        );
        let r = s.resolve(0, 0, &many[..6], &[], 0).unwrap();
        let id = r.session_id;
        assert_ne!(id, 0);
        // A second session of 6 would pass the budget: declined.
        assert_eq!(s.resolve(0, 0, &many[..6], &[], 0).unwrap().session_id, 0);
        // Growing the first past the budget ends it; forgetting as many as added is fine.
        let r = s.resolve(id, 1, &many[6..8], &[("a".into(), 0), ("a".into(), 1)], 1);
        assert!(r.is_ok());
        let more: Vec<_> = (0..5).map(|p| part("b", p, 0)).collect();
        assert_eq!(
            s.resolve(id, 2, &more, &[], 2),
            Err(ResponseError::FetchSessionIdNotFound.code())
        );
        assert_eq!(s.len(), 0);
        // The budget is free again.
        assert_ne!(s.resolve(0, 0, &many[..10], &[], 3).unwrap().session_id, 0);
    }
}
