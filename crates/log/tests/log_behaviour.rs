//! Behaviour of the storage engine through its public API.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_log::{BatchBuilder, Error, Log, LogOptions, ManualClock, decode_records};

fn opts(clock: &ManualClock) -> LogOptions {
    LogOptions {
        clock: Arc::new(clock.clone()),
        background: false,
        ..LogOptions::default()
    }
}

fn cfg(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn batch(ts: i64, records: &[(&str, Option<&str>)]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for (i, (k, v)) in records.iter().enumerate() {
        b.push(ts + i as i64, Some(k.as_bytes()), v.map(str::as_bytes), &[]);
    }
    b.build().unwrap()
}

fn read_all(log: &Log, topic: &str, p: i32) -> Vec<(i64, String, Option<String>)> {
    let part = log.partition(topic, p).unwrap();
    let mut off = part.log_start_offset();
    let mut out = Vec::new();
    loop {
        let r = part.read(off, 1 << 20).unwrap();
        if r.bytes.is_empty() {
            break;
        }
        for f in sluice_log::frames(&r.bytes) {
            let (pos, h) = f.unwrap();
            for rec in decode_records(&r.bytes[pos..pos + h.total_size()]).unwrap() {
                if rec.offset >= off {
                    out.push((
                        rec.offset,
                        String::from_utf8(rec.key.unwrap()).unwrap(),
                        rec.value.map(|v| String::from_utf8(v).unwrap()),
                    ));
                }
            }
        }
        off = r.next_offset;
    }
    out
}

#[test]
fn append_assigns_dense_offsets_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    {
        let log = Log::open(dir.path(), opts(&clock)).unwrap();
        log.create_topic("t", 2, cfg(&[("segment.bytes", "300")]))
            .unwrap();
        let p = log.partition("t", 0).unwrap();
        for i in 0..20 {
            let mut b = batch(1000 + i, &[("a", Some("x")), ("b", Some("y"))]);
            let info = p.append(&mut b).unwrap();
            assert_eq!(info.base_offset, i * 2);
            assert_eq!(info.last_offset, i * 2 + 1);
        }
        assert!(p.summary().segments > 3, "small segment.bytes must roll");
        assert_eq!(p.high_watermark(), 40);
        log.close().unwrap();
    }
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    let recs = read_all(&log, "t", 0);
    assert_eq!(recs.len(), 40);
    assert!(recs.iter().enumerate().all(|(i, r)| r.0 == i as i64));
    assert_eq!(log.partition("t", 1).unwrap().high_watermark(), 0);
    assert_eq!(log.topic("t").unwrap().partition_count(), 2);
}

#[test]
fn reads_start_mid_batch_and_respect_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic("t", 1, cfg(&[("index.interval.bytes", "100")]))
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    let mut sizes = Vec::new();
    for i in 0..50 {
        let mut b = batch(i, &[("k", Some("0123456789")), ("k", Some("abcdefghij"))]);
        sizes.push(b.len());
        p.append(&mut b).unwrap();
    }
    // Offset 37 sits in the batch 36..=37.
    let r = p.read(37, 1).unwrap();
    assert_eq!(
        r.bytes.len(),
        sizes[18],
        "at least one whole batch even when max_bytes is tiny"
    );
    let h = sluice_log::BatchHeader::parse(&r.bytes).unwrap();
    assert_eq!(h.base_offset, 36);
    assert_eq!(r.next_offset, 38);
    let r = p.read(0, sizes[0] * 3).unwrap();
    assert_eq!(r.bytes.len(), sizes[0] * 3);
    assert!(matches!(
        p.read(101, 10),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(p.read(100, 10).unwrap().bytes.is_empty());
}

#[test]
fn timestamp_lookup_finds_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic(
        "t",
        1,
        cfg(&[("index.interval.bytes", "64"), ("segment.bytes", "1000")]),
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    for i in 0..100i64 {
        // record i has timestamp 10*i
        let mut b = BatchBuilder::new();
        b.push(10 * i, Some(b"k"), Some(b"v"), &[]);
        p.append(&mut b.build().unwrap()).unwrap();
    }
    assert_eq!(p.offset_for_timestamp(0).unwrap(), Some((0, 0)));
    assert_eq!(p.offset_for_timestamp(555).unwrap(), Some((56, 560)));
    assert_eq!(p.offset_for_timestamp(990).unwrap(), Some((99, 990)));
    assert_eq!(p.offset_for_timestamp(991).unwrap(), None);
    drop(log);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.offset_for_timestamp(555).unwrap(), Some((56, 560)));
}

#[test]
fn retention_by_size_and_time_moves_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic(
        "t",
        1,
        cfg(&[
            ("segment.bytes", "200"),
            ("retention.bytes", "600"),
            ("retention.ms", "10000"),
        ]),
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    for i in 0..30 {
        let mut b = batch(1_000_000 + i, &[("k", Some("some value bytes"))]);
        p.append(&mut b).unwrap();
    }
    let before = p.summary();
    let rep = p.apply_retention().unwrap();
    assert!(rep.segments_deleted > 0);
    let after = p.summary();
    assert!(after.size_bytes <= 600 + 200, "{after:?}");
    assert!(after.log_start_offset > 0 && after.log_start_offset < before.high_watermark);
    assert!(matches!(
        p.read(0, 100),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        read_all(&log, "t", 0).first().unwrap().0,
        after.log_start_offset
    );
    // Everything older than retention.ms goes, even the active segment (rolled first).
    clock.advance(60_000);
    p.apply_retention().unwrap();
    assert_eq!(p.log_start_offset(), 30);
    assert_eq!(p.high_watermark(), 30);
    let mut b = batch(clock_now(&clock), &[("k", Some("v"))]);
    assert_eq!(p.append(&mut b).unwrap().base_offset, 30);
    drop(log);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    assert_eq!(log.partition("t", 0).unwrap().log_start_offset(), 30);
}

fn clock_now(c: &ManualClock) -> i64 {
    use sluice_log::Clock;
    c.now_ms()
}

#[test]
fn delete_records_advances_start_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic("t", 1, cfg(&[("segment.bytes", "200")]))
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    for i in 0..20 {
        p.append(&mut batch(i, &[("k", Some("vvvvvvvvvvvvvvvv"))]))
            .unwrap();
    }
    assert_eq!(p.delete_records(13).unwrap(), 13);
    assert_eq!(read_all(&log, "t", 0).first().unwrap().0, 13);
    assert!(matches!(
        p.delete_records(21),
        Err(Error::OffsetOutOfRange { .. })
    ));
    drop(log);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    assert_eq!(log.partition("t", 0).unwrap().log_start_offset(), 13);
}

#[test]
fn compaction_keeps_latest_per_key_and_expires_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic(
        "c",
        1,
        cfg(&[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "300"),
            ("delete.retention.ms", "1000"),
        ]),
    )
    .unwrap();
    let p = log.partition("c", 0).unwrap();
    // Keys a..e, each written 10 times; d deleted (tombstone) at the end.
    for round in 0..10 {
        for k in ["a", "b", "c", "d", "e"] {
            let v = format!("{k}{round}");
            p.append(&mut batch(1_000_000, &[(k, Some(&v))])).unwrap();
        }
    }
    p.append(&mut batch(1_000_000, &[("d", None)])).unwrap();
    p.roll().unwrap();
    let rep = p.compact().unwrap();
    assert!(rep.records_removed >= 40, "{rep:?}");
    let recs = read_all(&log, "c", 0);
    let mut latest: BTreeMap<String, Option<String>> = BTreeMap::new();
    for r in &recs {
        latest.insert(r.1.clone(), r.2.clone());
    }
    assert_eq!(latest["a"].as_deref(), Some("a9"));
    assert_eq!(latest["e"].as_deref(), Some("e9"));
    assert_eq!(latest["d"], None, "fresh tombstone is kept");
    assert_eq!(recs.len(), 5);
    // Offsets keep their identity.
    assert!(recs.windows(2).all(|w| w[0].0 < w[1].0));
    clock.advance(5_000);
    p.compact().unwrap();
    let recs = read_all(&log, "c", 0);
    assert_eq!(recs.len(), 4, "old tombstone removed: {recs:?}");
    assert!(!recs.iter().any(|r| r.1 == "d"));
    // Appends continue at the old end, and the result survives reopen.
    assert_eq!(
        p.append(&mut batch(1, &[("z", Some("1"))]))
            .unwrap()
            .base_offset,
        51
    );
    drop(log);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    assert_eq!(read_all(&log, "c", 0).len(), 5);
}

#[test]
fn a_first_segment_emptied_by_compaction_moves_the_log_start_as_a_reopen_would() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic("c", 1, cfg(&[("cleanup.policy", "compact")]))
        .unwrap();
    let p = log.partition("c", 0).unwrap();
    p.append(&mut batch(1_000_000, &[("k", Some("v1"))]))
        .unwrap(); // 0
    p.roll().unwrap();
    p.append(&mut batch(1_000_000, &[("k", Some("v2"))]))
        .unwrap(); // 1
    p.roll().unwrap();
    p.append(&mut batch(1_000_000, &[("z", Some("z1"))]))
        .unwrap(); // 2
    let rep = p.compact().unwrap();
    assert_eq!(rep.records_removed, 1, "{rep:?}");
    assert_eq!(p.log_start_offset(), 1, "segment 0 is gone");
    assert_eq!(read_all(&log, "c", 0).len(), 2);
    drop(p);
    drop(log);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    assert_eq!(log.partition("c", 0).unwrap().log_start_offset(), 1);
}

#[test]
fn compacted_topics_refuse_null_keys() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic("c", 1, cfg(&[("cleanup.policy", "compact")]))
        .unwrap();
    let mut b = BatchBuilder::new();
    b.push(0, None, Some(b"v"), &[]);
    let e = log
        .partition("c", 0)
        .unwrap()
        .append(&mut b.build().unwrap())
        .unwrap_err();
    assert!(
        matches!(e, Error::MissingKeyForCompactedTopic { .. }),
        "{e}"
    );
}

#[test]
fn bad_input_is_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic("t", 1, cfg(&[("max.message.bytes", "200")]))
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    let good = batch(0, &[("k", Some("v"))]);
    let mut two = good.clone();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    two.extend_from_slice(&bad);
    assert!(matches!(
        p.append(&mut two),
        Err(Error::InvalidBatch { .. })
    ));
    let mut short = good[..30].to_vec();
    assert!(matches!(
        p.append(&mut short),
        Err(Error::InvalidBatch { .. })
    ));
    let mut big = batch(0, &[("k", Some(&"x".repeat(300)))]);
    assert!(matches!(
        p.append(&mut big),
        Err(Error::MessageTooLarge { .. })
    ));
    assert_eq!(p.high_watermark(), 0, "a rejected buffer writes nothing");
    assert_eq!(p.summary().size_bytes, 0);
    assert!(log.create_topic("bad/name", 1, BTreeMap::new()).is_err());
    assert!(log.create_topic("t", 1, BTreeMap::new()).is_err());
    assert!(log.create_topic("x", 0, BTreeMap::new()).is_err());
    assert!(
        log.create_topic("y", 1, cfg(&[("retention.msec", "1")]))
            .is_err()
    );
}

#[test]
fn log_append_time_stamps_batches() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(42_000);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic("t", 1, cfg(&[("message.timestamp.type", "LogAppendTime")]))
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    let info = p
        .append(&mut batch(5, &[("k", Some("v")), ("k2", Some("v"))]))
        .unwrap();
    assert_eq!(info.log_append_time, 42_000);
    let r = p.read(0, 1000).unwrap();
    let recs = decode_records(&r.bytes).unwrap();
    assert!(recs.iter().all(|r| r.timestamp == 42_000));
}

#[test]
fn second_writer_is_refused_with_the_holder_named() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let _log = Log::open(dir.path(), opts(&clock)).unwrap();
    let e = Log::open(dir.path(), opts(&clock)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Locked { .. }), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
}

#[test]
fn read_only_reader_follows_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic("t", 1, cfg(&[("segment.bytes", "200")]))
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(&mut batch(0, &[("k", Some("v"))])).unwrap();
    let ro = Log::open(
        dir.path(),
        LogOptions {
            read_only: true,
            ..opts(&clock)
        },
    )
    .unwrap();
    assert_eq!(ro.partition("t", 0).unwrap().high_watermark(), 1);
    for i in 0..20 {
        p.append(&mut batch(i, &[("k", Some("vvvvvvvvvvvvvvvvvvvvvvvvvv"))]))
            .unwrap();
    }
    log.create_topic("u", 1, BTreeMap::new()).unwrap();
    ro.refresh().unwrap();
    assert_eq!(ro.partition("t", 0).unwrap().high_watermark(), 21);
    assert_eq!(read_all(&ro, "t", 0).len(), 21);
    assert!(ro.topic("u").is_ok());
    assert!(matches!(
        ro.create_topic("v", 1, BTreeMap::new()),
        Err(Error::ReadOnly)
    ));
}

#[test]
fn delete_topic_removes_data() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic("t", 3, BTreeMap::new()).unwrap();
    log.delete_topic("t").unwrap();
    assert!(log.topic("t").is_err());
    assert!(!dir.path().join("topics/t").exists());
    log.create_topic("t", 1, BTreeMap::new()).unwrap();
    assert_eq!(log.topic("t").unwrap().partition_count(), 1);
    log.add_partitions("t", 4).unwrap();
    drop(log);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    assert_eq!(log.topic("t").unwrap().partition_count(), 4);
    assert!(log.add_partitions("t", 2).is_err());
}

#[test]
fn group_commit_shares_syncs_between_threads() {
    // On the build directory's file system, not a possible tmpfs: syncs must cost time
    // for threads to share them.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let log = Arc::new(
        Log::open(
            dir.path(),
            LogOptions {
                background: false,
                ..LogOptions::default()
            },
        )
        .unwrap(),
    );
    log.create_topic("t", 1, BTreeMap::new()).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let p = log.partition("t", 0).unwrap();
                let mut offsets = Vec::new();
                for i in 0..50 {
                    let v = format!("{t}-{i}");
                    let info = p.append(&mut batch(0, &[("k", Some(&v))])).unwrap();
                    // Acknowledged means durable under fsync=always.
                    assert!(p.durable_offset() > info.last_offset);
                    offsets.push(info.base_offset);
                }
                offsets
            })
        })
        .collect();
    let mut all: Vec<i64> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..400).collect::<Vec<_>>());
    // Every append waited for a sync covering it; appends waiting together shared one.
    let syncs = log.partition("t", 0).unwrap().sync_count();
    eprintln!("400 acknowledged appends from 8 threads, {syncs} fdatasyncs");
    assert!(
        (1..400).contains(&syncs),
        "{syncs} syncs: group commit shared none"
    );
}

#[test]
fn topic_creation_is_bounded_and_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || sluice_log::LogOptions {
        background: false,
        max_partitions: 50,
        ..sluice_log::LogOptions::default()
    };
    let log = sluice_log::Log::open(dir.path(), opts()).unwrap();
    log.create_topic("a", 40, Default::default()).unwrap();
    // Over the budget: a clear error, nothing on disk, the name still free.
    let err = log
        .create_topic("b", 1_000_000, Default::default())
        .unwrap_err();
    assert!(
        matches!(err, sluice_log::Error::InvalidPartitions { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("max_partitions"), "{err}");
    assert!(log.add_partitions("a", 51).is_err());
    assert!(!dir.path().join("topics/b").exists());
    log.create_topic("b", 10, Default::default()).unwrap();
    // The longest legal Kafka topic name (249 characters) works, and can be deleted.
    let long = "x".repeat(249);
    drop(log);
    let log = sluice_log::Log::open(
        dir.path(),
        sluice_log::LogOptions {
            max_partitions: 100,
            ..opts()
        },
    )
    .unwrap();
    log.create_topic(&long, 1, Default::default()).unwrap();
    log.delete_topic(&long).unwrap();
    log.create_topic(&long, 1, Default::default()).unwrap();
    drop(log);
    // A creation interrupted before its commit point leaves a staging directory that the
    // next open removes; the data directory always opens.
    std::fs::create_dir_all(dir.path().join("topics/.creating-deadbeef/0")).unwrap();
    let log = sluice_log::Log::open(dir.path(), opts()).unwrap();
    assert!(!dir.path().join("topics/.creating-deadbeef").exists());
    assert_eq!(log.topic_names().len(), 3);
}

/// An uncompressed batch of `n` keyed records: (header bytes, record section).
fn parts(n: i64) -> (Vec<u8>, Vec<u8>) {
    let mut b = BatchBuilder::new();
    for i in 0..n {
        b.push(i, Some(b"k"), Some(format!("v{i}").as_bytes()), &[]);
    }
    let mut bytes = b.build().unwrap();
    let section = bytes.split_off(sluice_log::HEADER_SIZE);
    (bytes, section)
}

/// A batch with `header` claiming `count` records, compressed with `codec`, whose payload
/// is `payload` as given — CRC right, contents whatever the caller made them.
fn crafted(
    mut header: Vec<u8>,
    payload: &[u8],
    count: i32,
    codec: sluice_log::Compression,
) -> Vec<u8> {
    header.extend_from_slice(payload);
    let len = (header.len() - sluice_log::LOG_OVERHEAD) as i32;
    header[8..12].copy_from_slice(&len.to_be_bytes());
    header[21..23].copy_from_slice(&codec.attribute_bits().to_be_bytes());
    header[23..27].copy_from_slice(&(count - 1).max(0).to_be_bytes());
    header[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&header[21..]);
    header[17..21].copy_from_slice(&crc.to_be_bytes());
    header
}

#[test]
fn compressed_batches_are_validated_on_append() {
    use sluice_log::Compression::{Gzip, Lz4, Snappy, Zstd};
    let clock = ManualClock::new(1_000);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic("t", 1, BTreeMap::new()).unwrap();
    let p = log.partition("t", 0).unwrap();
    for codec in [Gzip, Snappy, Lz4, Zstd] {
        let (header, section) = parts(3);
        // A well-formed compressed batch is accepted.
        let mut good = crafted(header.clone(), &codec.compress(&section).unwrap(), 3, codec);
        p.append(&mut good).unwrap();
        // The payload is not in the codec's format.
        let mut not_compressed = crafted(header.clone(), &section, 3, codec);
        // The header claims more (or fewer) records than the payload holds.
        let mut too_many = crafted(header.clone(), &codec.compress(&section).unwrap(), 5, codec);
        let (_, two) = parts(2);
        let mut more = two.clone();
        more.extend_from_slice(&section);
        let mut too_few = crafted(header.clone(), &codec.compress(&more).unwrap(), 3, codec);
        // A record whose key length is negative (and not -1).
        let mut bad_key = section.clone();
        assert_eq!(bad_key[4], 2, "the first record's key length (varint 1)");
        bad_key[4] = 9; // zig-zag -5
        let mut bad_key = crafted(header.clone(), &codec.compress(&bad_key).unwrap(), 3, codec);
        for (what, batch) in [
            ("not compressed", &mut not_compressed),
            ("too many records claimed", &mut too_many),
            ("too few records claimed", &mut too_few),
            ("negative key length", &mut bad_key),
        ] {
            let end = p.high_watermark();
            let err = p.append(batch).unwrap_err();
            assert!(
                matches!(err, Error::InvalidBatch { .. }),
                "{codec:?} {what}: {err}"
            );
            assert_eq!(p.high_watermark(), end, "{codec:?} {what}: nothing written");
        }
    }
    assert_eq!(
        read_all(&log, "t", 0).len(),
        12,
        "every stored batch reads back"
    );
}

#[test]
fn a_decompression_bomb_is_refused_within_its_bound() {
    let clock = ManualClock::new(1_000);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic("t", 1, BTreeMap::new()).unwrap();
    let p = log.partition("t", 0).unwrap();
    let (header, _) = parts(1);
    let zeros = vec![0u8; sluice_log::decode_budget::APPEND_MAX_DECOMPRESSED + 1];
    let bomb = sluice_log::Compression::Zstd.compress(&zeros).unwrap();
    assert!(bomb.len() < 64 * 1024, "a small batch");
    let mut batch = crafted(header, &bomb, 1, sluice_log::Compression::Zstd);
    let err = p.append(&mut batch).unwrap_err();
    assert!(
        err.to_string().contains("decompresses to more than"),
        "{err}"
    );
}

#[test]
fn compaction_copies_kept_records_with_their_headers_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let log = Log::open(dir.path(), opts(&clock)).unwrap();
    log.create_topic("c", 1, cfg(&[("cleanup.policy", "compact")]))
        .unwrap();
    let p = log.partition("c", 0).unwrap();
    let headers = vec![
        sluice_log::Header {
            key: "trace".into(),
            value: Some(b"abc".to_vec()),
        },
        sluice_log::Header {
            key: "empty".into(),
            value: None,
        },
    ];
    // One batch: a (with headers) and b; then b again, so the first batch is rewritten
    // with a alone.
    let mut first = BatchBuilder::new();
    first.push(1_000_100, Some(b"a"), Some(b"a1"), &headers);
    first.push(1_000_200, Some(b"b"), Some(b"b1"), &[]);
    p.append(&mut first.build().unwrap()).unwrap();
    p.append(&mut batch(1_000_300, &[("b", Some("b2"))]))
        .unwrap();
    p.roll().unwrap();
    assert_eq!(p.compact().unwrap().records_removed, 1);
    let r = p.read(0, 1 << 20).unwrap();
    let (pos, h) = sluice_log::frames(&r.bytes).next().unwrap().unwrap();
    let recs = decode_records(&r.bytes[pos..pos + h.total_size()]).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].offset, 0);
    assert_eq!(recs[0].timestamp, 1_000_100);
    assert_eq!(recs[0].key.as_deref(), Some(&b"a"[..]));
    assert_eq!(recs[0].headers, headers, "headers copied as stored");
    assert_eq!(
        p.offset_for_timestamp(1_000_250).unwrap(),
        Some((2, 1_000_300)),
        "time lookup walks records"
    );
}
