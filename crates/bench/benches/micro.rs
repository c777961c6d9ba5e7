//! Micro-benchmarks of the hot paths, each printed beside a limit measured in the same run:
//! `cargo bench -p sluice-bench` (about a second per case); `cargo bench -p sluice-bench --
//! --test` runs every case once, and so does `cargo test -p sluice-bench --benches` (an
//! unoptimized build), which scripts/test runs so the suite keeps compiling and working.
//!
//! * batch validation (the log's append check: framing and CRC-32C of a 256-record batch)
//!   beside CRC-32C alone over the same bytes;
//! * JSON event decoding (what the runtime does per record) beside `serde_json` parsing the
//!   same text into a `Value`;
//! * the window operator (continuous driver, tumbling count over typed events);
//! * murmur2 key partitioning.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sluice_connect::SourceRecord;
use sluice_connect::record::decode;
use sluice_engine::pipeline::PipelineDef;
use sluice_engine::{ContinuousDriver, Event, EventFields, Num};
use sluice_log::{BatchBuilder, partition_for_key, validate_batch};

struct Case {
    quick: bool,
}

impl Case {
    /// Runs `f` (one operation over `units` items) for about a second (once when quick);
    /// returns items per second.
    fn measure(&self, name: &str, units: u64, mut f: impl FnMut()) -> f64 {
        let budget = if self.quick {
            Duration::ZERO
        } else {
            Duration::from_secs(1)
        };
        let start = Instant::now();
        let mut n = 0u64;
        loop {
            f();
            n += 1;
            if start.elapsed() >= budget {
                break;
            }
        }
        let per_sec = (n * units) as f64 / start.elapsed().as_secs_f64().max(1e-9);
        println!("{name:<52} {per_sec:>16.0} /s");
        per_sec
    }
}

fn batch(records: usize, value: usize) -> Vec<u8> {
    let v = vec![b'x'; value];
    let mut b = BatchBuilder::new();
    for i in 0..records {
        b.push(i as i64, Some(format!("k{i}").as_bytes()), Some(&v), &[]);
    }
    b.build().expect("batch")
}

fn main() {
    // Once per case under `--test`, and in unoptimized builds (`cargo test --benches`),
    // whose figures would mean nothing.
    let c = Case {
        quick: std::env::args().any(|a| a == "--test") || cfg!(debug_assertions),
    };
    // Batch validation vs the CRC alone.
    let b = batch(256, 100);
    let bytes = b.len() as u64;
    let ours = c.measure("batch validation (256 x 100 B), bytes", bytes, || {
        black_box(validate_batch(black_box(&b)).expect("valid"));
    });
    let limit = c.measure("crc32c alone over the same bytes, bytes", bytes, || {
        black_box(crc32c::crc32c(black_box(&b[21..])));
    });
    println!("  ratio validation / crc32c: {:.2}", ours / limit);

    // Event decoding vs parsing the same JSON into a Value.
    let fields = EventFields {
        event_time: "ts".into(),
        key: "key".into(),
        numbers: vec!["v".into()],
    };
    let text = br#"{"ts":1700000000123,"key":"user-42","v":17,"page":"/item/9"}"#.to_vec();
    let rec = SourceRecord::value(0, 0, Some(text.clone()));
    let ours = c.measure("event decoding (runtime), events", 1, || {
        black_box(decode(black_box(&rec), &fields).expect("valid"));
    });
    let limit = c.measure("serde_json::from_slice to Value, events", 1, || {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(&text)).expect("json"));
    });
    println!("  ratio decoding / parse: {:.2}", ours / limit);

    // The window operator over typed events.
    let def = PipelineDef::from_toml(
        "name = \"m\"\n[source]\nkind = \"topic\"\ntopic = \"t\"\nevent_time = \"ts\"\nkey = \"key\"\n[window]\nkind = \"tumbling\"\nsize_ms = 1000\n[[aggregate]]\nop = \"count\"\n[[aggregate]]\nop = \"sum\"\nfield = \"v\"\n[sink]\nkind = \"stdout\"",
    )
    .expect("pipeline");
    let keys: Vec<String> = (0..1000).map(|k| format!("k{k}")).collect();
    const EVENTS: u64 = 100_000;
    c.measure(
        "tumbling count+sum, continuous driver, events",
        EVENTS,
        || {
            let mut d = ContinuousDriver::new(
                def.watermark_tracker().expect("tracker"),
                def.window_operator().expect("operator"),
            );
            d.add_partition(0, 0);
            let mut out = 0usize;
            for i in 0..EVENTS {
                let e = Event::typed(
                    keys[(i % 1000) as usize].clone(),
                    (i / 10) as i64,
                    [Some(Num::Int(i as i64))],
                )
                .at(0, i as i64);
                out += d.process(e, 0).len();
            }
            out += d.finish().len();
            black_box(out);
        },
    );

    c.measure("murmur2 partition_for_key (8-byte keys), keys", 1, || {
        black_box(partition_for_key(black_box(b"user-042"), 12));
    });
}
