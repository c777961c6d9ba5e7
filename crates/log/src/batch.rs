//! Kafka v2 record batches ("magic 2"), byte for byte.
//!
//! The log stores batches exactly as clients send them and only rewrites the base offset
//! (and, for `LogAppendTime` topics, the max timestamp and its CRC). This module parses and
//! validates batch headers, walks records, and builds batches for the CLI and compaction.
//!
//! Layout (all integers big-endian):
//!
//! | offset | field                  | type |
//! |-------:|------------------------|------|
//! | 0      | baseOffset             | i64  |
//! | 8      | batchLength            | i32 (bytes after this field) |
//! | 12     | partitionLeaderEpoch   | i32  |
//! | 16     | magic (= 2)            | i8   |
//! | 17     | crc (CRC-32C of 21..)  | u32  |
//! | 21     | attributes             | i16  |
//! | 23     | lastOffsetDelta        | i32  |
//! | 27     | baseTimestamp          | i64  |
//! | 35     | maxTimestamp           | i64  |
//! | 43     | producerId             | i64  |
//! | 51     | producerEpoch          | i16  |
//! | 53     | baseSequence           | i32  |
//! | 57     | recordCount            | i32  |
//! | 61     | records                | …    |

use crate::compression::Compression;

/// Bytes before `batchLength` counts: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// Size of a v2 batch header including the log overhead.
pub const HEADER_SIZE: usize = 61;
/// Offset of the CRC field.
pub const CRC_OFFSET: usize = 17;
/// First byte covered by the CRC (the attributes field).
pub const ATTRIBUTES_OFFSET: usize = 21;
/// Offset of the max timestamp field.
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
/// Smallest legal value of `batchLength`.
pub const MIN_BATCH_LENGTH: i32 = (HEADER_SIZE - LOG_OVERHEAD) as i32;

const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// Why a batch was rejected. Data, not text, so callers can map it to Kafka error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a batch header.
    #[error("truncated: {available} bytes where a batch needs at least {needed}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The batchLength field is impossible.
    #[error("batchLength {0} is out of range")]
    BadLength(i32),
    /// Not a v2 batch.
    #[error("magic byte {0} is not supported (only record batch v2 / magic 2)")]
    BadMagic(i8),
    /// Checksum mismatch.
    #[error("CRC-32C mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    Crc {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// Header fields disagree with each other or with the records.
    #[error("inconsistent batch: {0}")]
    Inconsistent(String),
    /// A record inside the batch cannot be decoded.
    #[error("bad record: {0}")]
    BadRecord(String),
    /// Compressed payload could not be handled.
    #[error("compression: {0}")]
    Compression(String),
}

/// Timestamp semantics of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the log on append.
    LogAppendTime,
}

/// Parsed fixed header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the batchLength field.
    pub batch_length: i32,
    /// Leader epoch (stored as sent).
    pub partition_leader_epoch: i32,
    /// Always 2.
    pub magic: i8,
    /// Stored CRC-32C.
    pub crc: u32,
    /// Attribute bits (compression, timestamp type, transactional, control).
    pub attributes: i16,
    /// Offset of the last record minus base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent / transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

impl BatchHeader {
    /// Parse the fixed header from the start of `buf` (no CRC check).
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_SIZE {
            // A header of a batch whose magic is not 2 may be shorter; report magic first
            // when we can see it.
            if buf.len() > 16 && buf[16] as i8 != 2 {
                return Err(BatchError::BadMagic(buf[16] as i8));
            }
            return Err(BatchError::Truncated {
                needed: HEADER_SIZE,
                available: buf.len(),
            });
        }
        let h = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: u32::from_be_bytes(buf[17..21].try_into().expect("4 bytes")),
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        };
        if h.magic != 2 {
            return Err(BatchError::BadMagic(h.magic));
        }
        if h.batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::BadLength(h.batch_length));
        }
        Ok(h)
    }

    /// Total bytes of the batch including the log overhead.
    pub fn total_size(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Offset right after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec from the attributes.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    /// Timestamp type from the attributes.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// A control batch (transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// CRC-32C over the CRC-covered part of a complete batch.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Check one complete batch (exactly `header.total_size()` bytes): framing, CRC, counts,
/// and for uncompressed batches every record's framing. Returns the header.
pub fn validate_batch(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(batch)?;
    if batch.len() != h.total_size() {
        return Err(BatchError::Truncated {
            needed: h.total_size(),
            available: batch.len(),
        });
    }
    let computed = compute_crc(batch);
    if computed != h.crc {
        return Err(BatchError::Crc {
            stored: h.crc,
            computed,
        });
    }
    check_counts(&h)?;
    let compression = h.compression()?;
    if compression == Compression::None {
        walk_records(&h, &batch[HEADER_SIZE..], |_| Ok(()))?;
    }
    Ok(h)
}

/// An empty batch (no records) holding the offsets `[base_offset, base_offset + count)`:
/// what recovery puts where damaged batches were, so the offsets stay dense, are never
/// handed out again, and readers skip them as they skip compacted-away records. Kafka
/// clients advance past an empty batch by its last offset delta.
pub fn placeholder_batch(base_offset: i64, count: i32, timestamp: i64) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_SIZE];
    b[0..8].copy_from_slice(&base_offset.to_be_bytes());
    b[8..12].copy_from_slice(&MIN_BATCH_LENGTH.to_be_bytes());
    b[12..16].copy_from_slice(&(-1i32).to_be_bytes());
    b[16] = 2;
    // attributes 0 (uncompressed, not transactional, not control)
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[27..35].copy_from_slice(&timestamp.to_be_bytes());
    b[35..43].copy_from_slice(&timestamp.to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&0i32.to_be_bytes());
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Check a batch's CRC only (used on reads of data validated at append).
pub fn verify_crc(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(batch)?;
    if batch.len() != h.total_size() {
        return Err(BatchError::Truncated {
            needed: h.total_size(),
            available: batch.len(),
        });
    }
    let computed = compute_crc(batch);
    if computed != h.crc {
        return Err(BatchError::Crc {
            stored: h.crc,
            computed,
        });
    }
    Ok(h)
}

fn check_counts(h: &BatchHeader) -> Result<(), BatchError> {
    if h.record_count < 0 {
        return Err(BatchError::Inconsistent(format!(
            "negative record count {}",
            h.record_count
        )));
    }
    if h.last_offset_delta < 0 {
        return Err(BatchError::Inconsistent(format!(
            "negative lastOffsetDelta {}",
            h.last_offset_delta
        )));
    }
    // Compaction may remove records but keeps lastOffsetDelta, so count <= delta + 1.
    if h.record_count as i64 > h.last_offset_delta as i64 + 1 {
        return Err(BatchError::Inconsistent(format!(
            "{} records but lastOffsetDelta {}",
            h.record_count, h.last_offset_delta
        )));
    }
    Ok(())
}

/// Iterate over complete batches laid end to end in `buf`, yielding `(position, header)`.
/// Stops with an error at the first bad frame. Does not verify CRCs.
pub fn frames(buf: &[u8]) -> impl Iterator<Item = Result<(usize, BatchHeader), BatchError>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= buf.len() {
            return None;
        }
        let rest = &buf[pos..];
        let r = BatchHeader::parse(rest).and_then(|h| {
            if rest.len() < h.total_size() {
                Err(BatchError::Truncated {
                    needed: h.total_size(),
                    available: rest.len(),
                })
            } else {
                Ok(h)
            }
        });
        match r {
            Ok(h) => {
                let at = pos;
                pos += h.total_size();
                Some(Ok((at, h)))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

/// Overwrite the base offset of the batch starting at `batch[0]` (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Turn a batch into a `LogAppendTime` batch stamped `now_ms`, recomputing its CRC.
pub fn stamp_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = be_i16(batch, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value (may be null).
    pub value: Option<Vec<u8>>,
}

/// One decoded record with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset.
    pub offset: i64,
    /// Absolute timestamp in epoch milliseconds.
    pub timestamp: i64,
    /// Key, `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Value, `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<Header>,
}

// ---- varints (zig-zag, as in protobuf and Kafka's ByteUtils) ----

fn read_uvarint(buf: &[u8], pos: &mut usize) -> Result<u64, BatchError> {
    let mut result: u64 = 0;
    let mut shift = 0u32;
    loop {
        let Some(&b) = buf.get(*pos) else {
            return Err(BatchError::BadRecord("varint runs past the end".into()));
        };
        *pos += 1;
        result |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(result);
        }
        shift += 7;
        if shift >= 64 {
            return Err(BatchError::BadRecord("varint longer than 10 bytes".into()));
        }
    }
}

fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, BatchError> {
    let u = read_uvarint(buf, pos)?;
    Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, BatchError> {
    let v = read_varlong(buf, pos)?;
    i32::try_from(v).map_err(|_| BatchError::BadRecord(format!("varint {v} overflows i32")))
}

/// Encoded size of a length-prefixed byte field (-1 for null).
fn bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        None => varlong_len(-1),
        Some(b) => varlong_len(b.len() as i64) + b.len(),
    }
}

/// Write a length-prefixed byte field (-1 for null).
fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => write_varlong(out, -1),
        Some(b) => {
            write_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Append a zig-zag varlong.
pub fn write_varlong(out: &mut Vec<u8>, v: i64) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}

fn varlong_len(v: i64) -> usize {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while u >= 0x80 {
        u >>= 7;
        n += 1;
    }
    n
}

fn read_bytes<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    what: &str,
) -> Result<Option<&'a [u8]>, BatchError> {
    let len = read_varint(buf, pos)?;
    if len < 0 {
        if len != -1 {
            return Err(BatchError::BadRecord(format!("{what} length {len}")));
        }
        return Ok(None);
    }
    let len = len as usize;
    if buf.len() - *pos < len {
        return Err(BatchError::BadRecord(format!(
            "{what} of {len} bytes runs past the record"
        )));
    }
    let s = &buf[*pos..*pos + len];
    *pos += len;
    Ok(Some(s))
}

/// A record borrowed from a batch's (decompressed) record bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// Offset delta from the batch base offset.
    pub offset_delta: i32,
    /// Timestamp delta from the batch base timestamp.
    pub timestamp_delta: i64,
    /// Key bytes.
    pub key: Option<&'a [u8]>,
    /// Value bytes.
    pub value: Option<&'a [u8]>,
    /// Raw header section (count + headers) for lazy decoding.
    headers_raw: &'a [u8],
    header_count: i32,
}

impl<'a> RecordRef<'a> {
    /// The header count and the encoded headers, as stored (for copying a record without
    /// decoding its headers).
    pub fn raw_headers(&self) -> (i32, &'a [u8]) {
        (self.header_count, self.headers_raw)
    }

    /// The record's absolute offset and timestamp in batch `h`.
    pub fn position_in(&self, h: &BatchHeader) -> (i64, i64) {
        let ts = if h.timestamp_type() == TimestampType::LogAppendTime {
            h.max_timestamp
        } else {
            h.base_timestamp + self.timestamp_delta
        };
        (h.base_offset + self.offset_delta as i64, ts)
    }

    /// Decode the headers.
    pub fn headers(&self) -> Result<Vec<Header>, BatchError> {
        let mut pos = 0;
        let mut out = Vec::with_capacity(self.header_count as usize);
        for _ in 0..self.header_count {
            let key = read_bytes(self.headers_raw, &mut pos, "header key")?
                .ok_or_else(|| BatchError::BadRecord("null header key".into()))?;
            let key = String::from_utf8(key.to_vec())
                .map_err(|_| BatchError::BadRecord("header key is not UTF-8".into()))?;
            let value = read_bytes(self.headers_raw, &mut pos, "header value")?.map(<[u8]>::to_vec);
            out.push(Header { key, value });
        }
        Ok(out)
    }
}

/// Walk the records of a batch's record section (already decompressed), checking framing,
/// the record count and that offset deltas increase and stay within lastOffsetDelta.
pub fn walk_records<'a>(
    h: &BatchHeader,
    records: &'a [u8],
    mut f: impl FnMut(RecordRef<'a>) -> Result<(), BatchError>,
) -> Result<(), BatchError> {
    let mut pos = 0usize;
    let mut last_delta: i64 = -1;
    for i in 0..h.record_count {
        let len = read_varint(records, &mut pos)?;
        if len < 0 || records.len() - pos < len as usize {
            return Err(BatchError::BadRecord(format!(
                "record {i} claims {len} bytes, {} remain",
                records.len() - pos
            )));
        }
        let body = &records[pos..pos + len as usize];
        pos += len as usize;
        let mut p = 0usize;
        if body.is_empty() {
            return Err(BatchError::BadRecord(format!("record {i} is empty")));
        }
        p += 1; // attributes, unused
        let timestamp_delta = read_varlong(body, &mut p)?;
        let offset_delta = read_varint(body, &mut p)?;
        if (offset_delta as i64) <= last_delta || offset_delta > h.last_offset_delta {
            return Err(BatchError::BadRecord(format!(
                "record {i} has offset delta {offset_delta} (previous {last_delta}, lastOffsetDelta {})",
                h.last_offset_delta
            )));
        }
        last_delta = offset_delta as i64;
        let key = read_bytes(body, &mut p, "key")?;
        let value = read_bytes(body, &mut p, "value")?;
        let header_count = read_varint(body, &mut p)?;
        if header_count < 0 {
            return Err(BatchError::BadRecord(format!(
                "record {i} has {header_count} headers"
            )));
        }
        let headers_raw = &body[p..];
        // Check header framing now so that a validated batch never fails later.
        let r = RecordRef {
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers_raw,
            header_count,
        };
        let mut hp = 0usize;
        for _ in 0..header_count {
            read_bytes(headers_raw, &mut hp, "header key")?;
            read_bytes(headers_raw, &mut hp, "header value")?;
        }
        if hp != headers_raw.len() {
            return Err(BatchError::BadRecord(format!(
                "record {i} has {} trailing bytes",
                headers_raw.len() - hp
            )));
        }
        f(r)?;
    }
    if pos != records.len() {
        return Err(BatchError::BadRecord(format!(
            "{} bytes after the last of {} records",
            records.len() - pos,
            h.record_count
        )));
    }
    Ok(())
}

/// The record section of a batch, decompressed if needed. `max_decompressed` bounds the
/// output (a guard against decompression bombs).
pub fn record_bytes(
    batch: &[u8],
    max_decompressed: usize,
) -> Result<std::borrow::Cow<'_, [u8]>, BatchError> {
    let h = BatchHeader::parse(batch)?;
    let body = &batch[HEADER_SIZE..h.total_size().min(batch.len())];
    match h.compression()? {
        Compression::None => Ok(std::borrow::Cow::Borrowed(body)),
        c => Ok(std::borrow::Cow::Owned(
            c.decompress(body, max_decompressed)?,
        )),
    }
}

/// Default bound on decompressed batch size used by [`decode_records`].
pub const DEFAULT_MAX_DECOMPRESSED: usize = 256 << 20;

/// Decode every record of one complete batch into owned records.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    let h = BatchHeader::parse(batch)?;
    let data = record_bytes(batch, DEFAULT_MAX_DECOMPRESSED)?;
    let mut out = Vec::with_capacity(h.record_count.max(0) as usize);
    walk_records(&h, &data, |r| {
        let (offset, timestamp) = r.position_in(&h);
        out.push(Record {
            offset,
            timestamp,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r.headers()?,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Builds a v2 record batch. Used by the CLI producer, tests, benchmarks and compaction.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    records: Vec<u8>,
    count: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    last_offset_delta: i32,
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    base_offset: i64,
    attributes_extra: i16,
    partition_leader_epoch: i32,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty, uncompressed batch with no producer id.
    pub fn new() -> Self {
        BatchBuilder {
            records: Vec::new(),
            count: 0,
            base_timestamp: None,
            max_timestamp: -1,
            last_offset_delta: -1,
            compression: Compression::None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            base_offset: 0,
            attributes_extra: 0,
            partition_leader_epoch: -1,
        }
    }

    /// Compress the record section with this codec.
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Set idempotent producer fields.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Mark the batch as part of a transaction (the producer fields must be set).
    pub fn transactional(mut self) -> Self {
        self.attributes_extra |= TRANSACTIONAL_BIT;
        self
    }

    /// Set the base offset written in the header.
    pub fn base_offset(mut self, base: i64) -> Self {
        self.base_offset = base;
        self
    }

    /// Copy the header fields a rewrite must keep (producer, epoch, flags) from `h`.
    pub fn like(h: &BatchHeader) -> Result<Self, BatchError> {
        let mut b = BatchBuilder::new()
            .compression(h.compression()?)
            .producer(h.producer_id, h.producer_epoch, h.base_sequence)
            .base_offset(h.base_offset);
        b.attributes_extra = h.attributes & !0x07;
        b.partition_leader_epoch = h.partition_leader_epoch;
        b.base_timestamp = Some(h.base_timestamp);
        b.max_timestamp = h.max_timestamp;
        b.last_offset_delta = h.last_offset_delta;
        Ok(b)
    }

    /// Number of records added so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when no record was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of (uncompressed) record data so far.
    pub fn size_bytes(&self) -> usize {
        self.records.len() + HEADER_SIZE
    }

    /// Add a record at the next offset delta.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        let delta = self.count;
        self.push_at(delta, timestamp, key, value, headers);
    }

    /// Add a record at an explicit offset delta (must increase).
    pub fn push_at(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        let headers_len: usize = headers
            .iter()
            .map(|h| bytes_len(Some(h.key.as_bytes())) + bytes_len(h.value.as_deref()))
            .sum();
        self.begin_record(
            offset_delta,
            timestamp,
            key,
            value,
            headers.len() as i32,
            headers_len,
        );
        for h in headers {
            put_bytes(&mut self.records, Some(h.key.as_bytes()));
            put_bytes(&mut self.records, h.value.as_deref());
        }
    }

    /// [`BatchBuilder::push_at`] with headers as stored (`RecordRef::raw_headers`): a
    /// record is copied without decoding its headers (compaction).
    pub fn push_at_raw(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        (header_count, headers_raw): (i32, &[u8]),
    ) {
        self.begin_record(
            offset_delta,
            timestamp,
            key,
            value,
            header_count,
            headers_raw.len(),
        );
        self.records.extend_from_slice(headers_raw);
    }

    /// Write a record up to its header count; `headers_len` encoded header bytes follow.
    fn begin_record(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        header_count: i32,
        headers_len: usize,
    ) {
        let base_ts = *self.base_timestamp.get_or_insert(timestamp);
        let ts_delta = timestamp - base_ts;
        let body_len = 1
            + varlong_len(ts_delta)
            + varlong_len(offset_delta as i64)
            + bytes_len(key)
            + bytes_len(value)
            + varlong_len(header_count as i64)
            + headers_len;
        let out = &mut self.records;
        write_varlong(out, body_len as i64);
        out.push(0);
        write_varlong(out, ts_delta);
        write_varlong(out, offset_delta as i64);
        put_bytes(out, key);
        put_bytes(out, value);
        write_varlong(out, header_count as i64);
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self.last_offset_delta = self.last_offset_delta.max(offset_delta);
    }

    /// Encode the batch.
    pub fn build(&self) -> Result<Vec<u8>, BatchError> {
        let body = match self.compression {
            Compression::None => std::borrow::Cow::Borrowed(&self.records[..]),
            c => std::borrow::Cow::Owned(c.compress(&self.records)?),
        };
        let mut out = Vec::with_capacity(HEADER_SIZE + body.len());
        let batch_length = (HEADER_SIZE - LOG_OVERHEAD + body.len()) as i32;
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&batch_length.to_be_bytes());
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(2);
        out.extend_from_slice(&[0; 4]); // crc, filled below
        let attributes = self.attributes_extra | self.compression.attribute_bits();
        out.extend_from_slice(&attributes.to_be_bytes());
        out.extend_from_slice(&self.last_offset_delta.max(0).to_be_bytes());
        out.extend_from_slice(&self.base_timestamp.unwrap_or(-1).to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&body);
        let crc = compute_crc(&out);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(out)
    }
}

/// The two transaction markers (Kafka's control record types 0 and 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    /// The producer's open transaction in this partition was aborted.
    Abort,
    /// The producer's open transaction in this partition was committed.
    Commit,
}

/// Encode a transaction marker batch as Kafka's coordinator writes it: transactional and
/// control attributes, no sequence, one record with key `{version: 0, type}` and value
/// `{version: 0, coordinator_epoch}` (all big-endian).
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    kind: ControlType,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&(kind as i16).to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut b = BatchBuilder::new().producer(producer_id, producer_epoch, -1);
    b.attributes_extra = TRANSACTIONAL_BIT | CONTROL_BIT;
    b.push(timestamp, Some(&key), Some(&value), &[]);
    b.build().expect("an uncompressed batch always encodes")
}

/// The marker type of a control batch (the batch's bytes, whole).
pub fn control_type(batch: &[u8]) -> Result<ControlType, BatchError> {
    let h = BatchHeader::parse(batch)?;
    if !h.is_control() {
        return Err(BatchError::Inconsistent("not a control batch".into()));
    }
    let recs = decode_records(&batch[..h.total_size().min(batch.len())])?;
    let key = recs
        .first()
        .and_then(|r| r.key.as_deref())
        .ok_or_else(|| BatchError::BadRecord("control record without a key".into()))?;
    if key.len() < 4 {
        return Err(BatchError::BadRecord("control record key too short".into()));
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Ok(ControlType::Abort),
        1 => Ok(ControlType::Commit),
        t => Err(BatchError::BadRecord(format!(
            "unknown control record type {t}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v));
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos).unwrap(), v);
            assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn zigzag_matches_kafka_examples() {
        // Kafka's ByteUtils: -1 encodes as 0x01, 1 as 0x02, 150 as 0xac 0x02.
        let enc = |v| {
            let mut o = Vec::new();
            write_varlong(&mut o, v);
            o
        };
        assert_eq!(enc(-1), vec![0x01]);
        assert_eq!(enc(1), vec![0x02]);
        assert_eq!(enc(75), vec![0x96, 0x01]);
    }

    #[test]
    fn build_then_decode() {
        let mut b = BatchBuilder::new().base_offset(10);
        b.push(1000, Some(b"k1"), Some(b"v1"), &[]);
        b.push(
            1005,
            None,
            None,
            &[Header {
                key: "h".into(),
                value: Some(b"x".to_vec()),
            }],
        );
        let bytes = b.build().unwrap();
        let h = validate_batch(&bytes).unwrap();
        assert_eq!(h.base_offset, 10);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.record_count, 2);
        assert_eq!(h.max_timestamp, 1005);
        let recs = decode_records(&bytes).unwrap();
        assert_eq!(recs[0].offset, 10);
        assert_eq!(recs[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(recs[1].offset, 11);
        assert_eq!(recs[1].timestamp, 1005);
        assert_eq!(recs[1].value, None);
        assert_eq!(recs[1].headers[0].key, "h");
    }

    #[test]
    fn base_offset_rewrite_keeps_crc_valid() {
        let mut b = BatchBuilder::new();
        b.push(1, Some(b"a"), Some(b"b"), &[]);
        let mut bytes = b.build().unwrap();
        set_base_offset(&mut bytes, 12345);
        assert_eq!(validate_batch(&bytes).unwrap().base_offset, 12345);
    }

    #[test]
    fn log_append_time_restamps_crc() {
        let mut b = BatchBuilder::new();
        b.push(1, Some(b"a"), Some(b"b"), &[]);
        let mut bytes = b.build().unwrap();
        stamp_log_append_time(&mut bytes, 777);
        let h = validate_batch(&bytes).unwrap();
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(decode_records(&bytes).unwrap()[0].timestamp, 777);
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let mut b = BatchBuilder::new();
        for i in 0..5u8 {
            b.push(i as i64, Some(&[i]), Some(&[i; 20]), &[]);
        }
        let good = b.build().unwrap();
        for i in (8..12).chain(16..good.len()) {
            // base offset (0..8) and partition leader epoch (12..16) are outside the CRC
            // by Kafka's design
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(validate_batch(&bad).is_err(), "flip at {i} not detected");
        }
    }

    #[test]
    fn frames_stop_at_truncation() {
        let mut b = BatchBuilder::new();
        b.push(1, None, Some(b"x"), &[]);
        let one = b.build().unwrap();
        let mut buf = one.clone();
        buf.extend_from_slice(&one);
        buf.extend_from_slice(&one[..20]);
        let v: Vec<_> = frames(&buf).collect();
        assert_eq!(v.len(), 3);
        assert!(v[2].is_err());
    }

    #[test]
    fn compressed_round_trip() {
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut b = BatchBuilder::new().compression(c);
            for i in 0..100 {
                b.push(i, Some(format!("k{i}").as_bytes()), Some(&[b'v'; 100]), &[]);
            }
            let bytes = b.build().unwrap();
            let h = validate_batch(&bytes).unwrap();
            assert_eq!(h.compression().unwrap(), c);
            assert!(bytes.len() < 100 * 100, "{c:?} did not compress");
            let recs = decode_records(&bytes).unwrap();
            assert_eq!(recs.len(), 100);
            assert_eq!(recs[99].key.as_deref(), Some(&b"k99"[..]));
        }
    }
}
