//! Kafka request frame decoding (header, version check, body) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The sluice binary runs on mimalloc (see crates/sluice/src/main.rs); fuzz the same way.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fuzz_target!(|data: &[u8]| {
    sluice_broker::testing::decode_request(data);
});
