//! Bounded random-input runs of the fuzz entry points (the cargo-fuzz targets in `fuzz/`
//! run the same functions coverage-guided). Inputs are random bytes and mutated valid
//! segments, so both the reject paths and the accept paths are exercised.

use proptest::prelude::*;
use sluice_log::BatchBuilder;
use sluice_log::testing::{fuzz_batches, fuzz_recover};

fn valid_segment(batches: usize, records: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    for b in 0..batches {
        let mut bb = BatchBuilder::new().base_offset(offset);
        for r in 0..records {
            bb.push(
                r as i64,
                Some(format!("k{r}").as_bytes()),
                Some(&vec![b as u8; r * 7]),
                &[],
            );
        }
        out.extend(bb.build().unwrap());
        offset += records as i64;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        fuzz_batches(&data);
        let dir = tempfile::tempdir().unwrap();
        fuzz_recover(dir.path(), &data);
    }

    #[test]
    fn mutated_segments_recover_to_a_valid_prefix(
        batches in 1usize..6,
        records in 1usize..5,
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut data = valid_segment(batches, records);
        for (i, x) in flips {
            let i = i.index(data.len());
            data[i] ^= x;
        }
        if do_cut {
            data.truncate(cut.index(data.len() + 1));
        }
        fuzz_batches(&data);
        let dir = tempfile::tempdir().unwrap();
        fuzz_recover(dir.path(), &data);
    }
}
