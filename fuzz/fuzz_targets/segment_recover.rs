//! Segment recovery on arbitrary file contents: keeps a dense, CRC-valid prefix, never
//! rewrites kept bytes, and is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("sluice-fuzz-recover-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    sluice_log::testing::fuzz_recover(&dir, data);
});
