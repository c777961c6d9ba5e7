//! Record batch framing, validation, record decoding and decompression on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_log::testing::fuzz_batches(data);
});
