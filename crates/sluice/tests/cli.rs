//! The `sluice` CLI on an embedded data directory, run as a user would.

mod common;

use std::process::{Command, Output, Stdio};

use common::run_sluice_in as sluice;

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn produce_and_consume_100k_keyed_records() {
    let dir = tempfile::tempdir().unwrap();
    ok(&sluice(
        dir.path(),
        &["topic", "create", "t", "--partitions", "3"],
        None,
    ));
    let input: String = (1..=100_000).map(|i| format!("k{i}:v{i}\n")).collect();
    let o = sluice(
        dir.path(),
        &["produce", "t", "--key-separator", ":"],
        Some(input.as_bytes()),
    );
    ok(&o);
    let summary = String::from_utf8_lossy(&o.stderr);
    assert!(summary.contains("produced 100000 records"), "{summary}");
    let out = ok(&sluice(
        dir.path(),
        &[
            "consume",
            "t",
            "--from-beginning",
            "--max-messages",
            "100000",
        ],
        None,
    ));
    assert_eq!(out.lines().count(), 100_000);
    let mut values: Vec<u64> = out.lines().map(|l| l[1..].parse().unwrap()).collect();
    values.sort_unstable();
    assert_eq!(values, (1..=100_000).collect::<Vec<_>>());
    // Keys land where Kafka's murmur2 partitioner puts them.
    let out = ok(&sluice(
        dir.path(),
        &["consume", "t", "--from-beginning", "--format", "%p %k\\n"],
        None,
    ));
    for line in out.lines() {
        let (p, k) = line.split_once(' ').unwrap();
        assert_eq!(
            p.parse::<i32>().unwrap(),
            sluice_log::partition_for_key(k.as_bytes(), 3)
        );
    }
    let desc = ok(&sluice(dir.path(), &["topic", "describe", "t"], None));
    assert!(desc.contains("100000"), "{desc}");
    let list = ok(&sluice(dir.path(), &["topic", "list"], None));
    assert_eq!(list.trim(), "t\tpartitions=3");
}

#[test]
fn consume_options_select_partition_offset_and_format() {
    let dir = tempfile::tempdir().unwrap();
    ok(&sluice(
        dir.path(),
        &["topic", "create", "t", "--partitions", "2"],
        None,
    ));
    let input: String = (0..10).map(|i| format!("line{i}\n")).collect();
    ok(&sluice(
        dir.path(),
        &["produce", "t", "--partition", "1"],
        Some(input.as_bytes()),
    ));
    let out = ok(&sluice(
        dir.path(),
        &[
            "consume",
            "t",
            "--partition",
            "1",
            "--offset",
            "7",
            "--format",
            "%t/%p/%o %v|%K\\n",
        ],
        None,
    ));
    assert_eq!(out, "t/1/7 line7|-1\nt/1/8 line8|-1\nt/1/9 line9|-1\n");
    let o = sluice(dir.path(), &["consume", "t"], None);
    assert_eq!(
        ok(&o),
        "",
        "default start is the end, as Kafka's console consumer"
    );
    let o = sluice(
        dir.path(),
        &["consume", "t", "--partition", "5", "--from-beginning"],
        None,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--partition 5 does not exist"));
}

#[test]
fn bad_input_gets_a_clear_error_and_loses_nothing_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = sluice(dir.path(), &["produce", "missing"], Some(b"x\n"));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("topic \"missing\" does not exist"));
    ok(&sluice(dir.path(), &["topic", "create", "t"], None));
    let o = sluice(
        dir.path(),
        &["produce", "t", "--key-separator", ":"],
        Some(b"a:1\nb:2\nno separator here\nc:3\n"),
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 3 has no key separator"), "{err}");
    let out = ok(&sluice(
        dir.path(),
        &["consume", "t", "--from-beginning", "--format", "%k=%v\\n"],
        None,
    ));
    assert_eq!(out, "a=1\nb=2\n");
    let o = sluice(
        dir.path(),
        &["topic", "create", "u", "--config", "retention.msec=5"],
        None,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown config"));
    let o = sluice(dir.path(), &["topic", "create", "t"], None);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
}

#[test]
fn a_second_writer_is_told_who_holds_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut holder = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["debug", "append-loop", "--topic", "busy", "--threads", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it has the lock and is appending.
    let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert!(first.starts_with("ack "), "{first}");
    let o = sluice(dir.path(), &["topic", "create", "other"], None);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("locked by another process"), "{err}");
    assert!(err.contains(&format!("pid {}", holder.id())), "{err}");
    // Readers work beside a writer (and after it is gone).
    let o = sluice(dir.path(), &["topic", "list"], None);
    assert!(ok(&o).contains("busy"));
}
