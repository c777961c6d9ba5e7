//! A process-wide bound on memory spent decompressing record batches to validate them.
//!
//! Every compressed batch appended is decompressed and its records walked (as Kafka
//! does), so a producer cannot store a batch that readers then fail on. Decompression
//! output is bounded per batch ([`APPEND_MAX_DECOMPRESSED`]) and each decompression first
//! reserves that bound here: at most [`DECODE_BUDGET`] bytes are in flight across all
//! threads, whatever the number of concurrent producers (a zstd bomb costs its bound, once
//! at a time per reservation, never more). Walks over stored batches' records
//! (compaction, time lookups) go through the same budget (`stored_records`).

use std::sync::{Condvar, Mutex, PoisonError};

/// The most one batch's records may decompress to when validated on append.
pub const APPEND_MAX_DECOMPRESSED: usize = 64 << 20;

/// Bytes of decompression output in flight across the process at most.
pub const DECODE_BUDGET: usize = 256 << 20;

#[derive(Debug)]
struct Budget {
    used: Mutex<usize>,
    freed: Condvar,
}

static BUDGET: Budget = Budget {
    used: Mutex::new(0),
    freed: Condvar::new(),
};

/// A reservation of decode memory, given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    bytes: usize,
}

/// Wait until `bytes` (at most [`DECODE_BUDGET`]) fit the budget, then hold them.
pub(crate) fn reserve(bytes: usize) -> Reservation {
    let bytes = bytes.min(DECODE_BUDGET);
    let mut used = BUDGET.used.lock().unwrap_or_else(PoisonError::into_inner);
    while *used + bytes > DECODE_BUDGET {
        used = BUDGET
            .freed
            .wait(used)
            .unwrap_or_else(PoisonError::into_inner);
    }
    *used += bytes;
    Reservation { bytes }
}

/// The record section of a stored batch for a walk over its records (compaction, time
/// lookups): decompressed under the same per-batch bound as on append and holding a share
/// of the process-wide budget while the bytes live (the reservation is returned with
/// them; `None` for an uncompressed batch, which is borrowed, not copied).
pub(crate) fn stored_records(
    batch: &[u8],
) -> Result<(std::borrow::Cow<'_, [u8]>, Option<Reservation>), crate::BatchError> {
    let h = crate::BatchHeader::parse(batch)?;
    let reserved =
        (h.compression()? != crate::Compression::None).then(|| reserve(APPEND_MAX_DECOMPRESSED));
    let data = crate::batch::record_bytes(batch, APPEND_MAX_DECOMPRESSED)?;
    Ok((data, reserved))
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut used = BUDGET.used.lock().unwrap_or_else(PoisonError::into_inner);
        *used -= self.bytes;
        BUDGET.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn a_reservation_waits_until_the_budget_has_room() {
        let whole = reserve(DECODE_BUDGET);
        let got = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let _r = reserve(1);
                got.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(
                !got.load(Ordering::SeqCst),
                "waits while the budget is held"
            );
            drop(whole);
        });
        assert!(
            got.load(Ordering::SeqCst),
            "gets it once the budget is given back"
        );
    }
}
