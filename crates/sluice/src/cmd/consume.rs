//! `sluice consume TOPIC`: print records.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use sluice_log::{Record, decode_records, frames};

use super::open_reader;

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Start at the log start offset (default: the end, as Kafka's console consumer).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at this offset (in every selected partition).
    #[arg(long)]
    pub offset: Option<i64>,
    /// Read only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Stop after this many records.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long)]
    pub follow: bool,
    /// Output format (kcat style): %t topic, %p partition, %o offset, %k key, %v value,
    /// %T timestamp (ms), %h headers, %K key length, %S value length, \n \t \\ escapes.
    #[arg(long, default_value = "%v\\n")]
    pub format: String,
}

pub fn run(dir: &Path, args: ConsumeArgs) -> anyhow::Result<()> {
    let log = open_reader(dir)?;
    let topic = log.topic(&args.topic)?;
    let n = topic.partition_count();
    let selected: Vec<i32> = match args.partition {
        Some(p) if (0..n).contains(&p) => vec![p],
        Some(p) => bail!(
            "topic {} has partitions 0..{}; --partition {p} does not exist",
            args.topic,
            n - 1
        ),
        None => (0..n).collect(),
    };
    let mut cursors: Vec<(i32, i64)> = Vec::new();
    for &p in &selected {
        let part = log.partition(&args.topic, p)?;
        let start = if args.from_beginning {
            part.log_start_offset()
        } else if let Some(o) = args.offset {
            if o < part.log_start_offset() || o > part.high_watermark() {
                bail!(
                    "--offset {o} is outside partition {p}'s range {}..={}",
                    part.log_start_offset(),
                    part.high_watermark()
                );
            }
            o
        } else {
            part.high_watermark()
        };
        cursors.push((p, start));
    }
    let format = Format::parse(&args.format);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut printed = 0u64;
    let limit = args.max_messages.unwrap_or(u64::MAX);
    loop {
        let mut progressed = false;
        for (p, off) in cursors.iter_mut() {
            if printed >= limit {
                break;
            }
            let part = log.partition(&args.topic, *p)?;
            let r = match part.read(*off, 1 << 20) {
                Ok(r) => r,
                Err(sluice_log::Error::OffsetOutOfRange { start, .. }) if *off < start => {
                    // Retention removed what we were about to read: carry on from the start.
                    eprintln!("partition {p}: offsets before {start} were deleted; skipping ahead");
                    *off = start;
                    progressed = true;
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}-{p}", args.topic)),
            };
            if r.bytes.is_empty() {
                continue;
            }
            progressed = true;
            for f in frames(&r.bytes) {
                let (pos, h) = f.context("framing batches")?;
                if h.is_control() {
                    continue;
                }
                let recs =
                    decode_records(&r.bytes[pos..pos + h.total_size()]).with_context(|| {
                        format!(
                            "decoding batch at offset {} of {}-{p}",
                            h.base_offset, args.topic
                        )
                    })?;
                for rec in recs {
                    if rec.offset < *off || printed >= limit {
                        continue;
                    }
                    format.write(&mut out, &args.topic, *p, &rec)?;
                    printed += 1;
                }
            }
            *off = r.next_offset;
        }
        if printed >= limit {
            break;
        }
        if !progressed {
            if !args.follow {
                break;
            }
            out.flush()?;
            std::thread::sleep(Duration::from_millis(100));
            log.refresh()?;
        }
    }
    out.flush()?;
    if printed == 0 && !args.from_beginning && args.offset.is_none() && !args.follow {
        eprintln!("no records after the current end; use --from-beginning, --offset N or --follow");
    }
    Ok(())
}

pub(crate) enum Piece {
    Lit(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
    KeyLen,
    ValueLen,
}

/// A kcat-style output format.
pub(crate) struct Format(Vec<Piece>);

impl Format {
    pub(crate) fn parse(s: &str) -> Format {
        let mut pieces = Vec::new();
        let mut lit = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            let next = b.get(i + 1).copied();
            let piece = match (c, next) {
                (b'%', Some(b't')) => Some(Piece::Topic),
                (b'%', Some(b'p')) => Some(Piece::Partition),
                (b'%', Some(b'o')) => Some(Piece::Offset),
                (b'%', Some(b'k')) => Some(Piece::Key),
                (b'%', Some(b'v')) => Some(Piece::Value),
                (b'%', Some(b'T')) => Some(Piece::Timestamp),
                (b'%', Some(b'h')) => Some(Piece::Headers),
                (b'%', Some(b'K')) => Some(Piece::KeyLen),
                (b'%', Some(b'S')) => Some(Piece::ValueLen),
                (b'%', Some(b'%')) => {
                    lit.push(b'%');
                    i += 2;
                    continue;
                }
                (b'\\', Some(b'n')) => {
                    lit.push(b'\n');
                    i += 2;
                    continue;
                }
                (b'\\', Some(b't')) => {
                    lit.push(b'\t');
                    i += 2;
                    continue;
                }
                (b'\\', Some(b'\\')) => {
                    lit.push(b'\\');
                    i += 2;
                    continue;
                }
                _ => None,
            };
            match piece {
                Some(p) => {
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(p);
                    i += 2;
                }
                None => {
                    lit.push(c);
                    i += 1;
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Format(pieces)
    }

    pub(crate) fn write(
        &self,
        out: &mut impl Write,
        topic: &str,
        p: i32,
        r: &Record,
    ) -> std::io::Result<()> {
        for piece in &self.0 {
            match piece {
                Piece::Lit(l) => out.write_all(l)?,
                Piece::Topic => out.write_all(topic.as_bytes())?,
                Piece::Partition => write!(out, "{p}")?,
                Piece::Offset => write!(out, "{}", r.offset)?,
                Piece::Key => out.write_all(r.key.as_deref().unwrap_or_default())?,
                Piece::Value => out.write_all(r.value.as_deref().unwrap_or_default())?,
                Piece::Timestamp => write!(out, "{}", r.timestamp)?,
                Piece::Headers => {
                    for (i, h) in r.headers.iter().enumerate() {
                        if i > 0 {
                            out.write_all(b",")?;
                        }
                        write!(out, "{}=", h.key)?;
                        out.write_all(h.value.as_deref().unwrap_or_default())?;
                    }
                }
                Piece::KeyLen => write!(out, "{}", r.key.as_ref().map_or(-1, |k| k.len() as i64))?,
                Piece::ValueLen => {
                    write!(out, "{}", r.value.as_ref().map_or(-1, |v| v.len() as i64))?
                }
            }
        }
        Ok(())
    }
}
