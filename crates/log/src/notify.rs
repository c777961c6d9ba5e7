//! Append notification: readers learn that a partition's high watermark moved, whoever
//! appended (the broker's Produce, a transaction marker, a pipeline's topic sink).
//!
//! Two ways to listen, one source of events (every place a partition's high watermark
//! advances calls [`AppendNotifier::advanced`]):
//!
//! * [`AppendNotifier::subscribe`]: a callback per advance with the topic, partition and
//!   new high watermark. It runs on the appending thread, under the partition's locks: it
//!   must be quick and must not call back into the log (waking an async task is the
//!   intended use: the broker wakes its Fetch long-polls from here).
//! * [`AppendNotifier::wait`]: a blocking wait for any advance after a generation the
//!   caller saw (synchronous readers such as the embedded topic source in follow mode).

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::Duration;

/// A callback told `(topic, partition, new high watermark)`.
pub type AppendListener = Arc<dyn Fn(&str, i32, i64) + Send + Sync>;

/// One per [`crate::Log`], shared by its partitions.
#[derive(Default)]
pub struct AppendNotifier {
    listeners: RwLock<Vec<AppendListener>>,
    generation: Mutex<u64>,
    changed: Condvar,
}

impl fmt::Debug for AppendNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendNotifier")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl AppendNotifier {
    /// Calls `listener` after every high-watermark advance of every partition.
    pub fn subscribe(&self, listener: AppendListener) {
        self.listeners
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(listener);
    }

    /// Counts advances; pass it to [`AppendNotifier::wait`].
    pub fn generation(&self) -> u64 {
        *self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until some partition advanced after generation `seen` or `timeout` passed;
    /// returns the generation now.
    pub fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let g = self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (g, _) = self
            .changed
            .wait_timeout_while(g, timeout, |g| *g == seen)
            .unwrap_or_else(PoisonError::into_inner);
        *g
    }

    /// A partition's high watermark moved to `high_watermark`.
    pub(crate) fn advanced(&self, topic: &str, partition: i32, high_watermark: i64) {
        {
            let mut g = self
                .generation
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *g += 1;
        }
        self.changed.notify_all();
        for l in self
            .listeners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            l(topic, partition, high_watermark);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[test]
    fn listeners_and_waiters_see_advances() {
        let n = Arc::new(AppendNotifier::default());
        let last = Arc::new(AtomicI64::new(-1));
        let l = last.clone();
        n.subscribe(Arc::new(move |t, p, hw| {
            assert_eq!((t, p), ("t", 3));
            l.store(hw, Ordering::SeqCst);
        }));
        let g = n.generation();
        assert_eq!(n.wait(g, Duration::from_millis(1)), g, "nothing happened");
        let waiter = {
            let n = n.clone();
            std::thread::spawn(move || n.wait(g, Duration::from_secs(600)))
        };
        n.advanced("t", 3, 42);
        assert_eq!(waiter.join().unwrap(), g + 1);
        assert_eq!(last.load(Ordering::SeqCst), 42);
    }
}
