//! Record batch compression codecs, as Kafka defines them (attribute bits 0–2).
//!
//! The log stores compressed batches as sent; it only decompresses where it must read
//! records itself (compaction, keyed-topic validation, the CLI consumer).
//!
//! * gzip: a gzip stream.
//! * snappy: raw snappy blocks, or Xerial's framed format (what the Java client writes),
//!   detected by its magic header on decode; encode writes the Xerial framing the Java
//!   client uses, which every Kafka client reads.
//! * lz4: the LZ4 frame format.
//! * zstd: a zstd frame.

use std::io::Read;

use crate::batch::BatchError;

/// A compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip (codec 1).
    Gzip,
    /// snappy (codec 2).
    Snappy,
    /// lz4 frames (codec 3).
    Lz4,
    /// zstd (codec 4).
    Zstd,
}

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

impl Compression {
    /// Codec from a batch's attribute bits.
    pub fn from_attributes(attributes: i16) -> Result<Self, BatchError> {
        match attributes & 0x07 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            n => Err(BatchError::Compression(format!("unknown codec id {n}"))),
        }
    }

    /// The attribute bits for this codec.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Parse a codec name as used by Kafka's `compression.type`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" | "uncompressed" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "snappy" => Some(Compression::Snappy),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Compress a record section.
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>, BatchError> {
        let err = |e: &dyn std::fmt::Display| BatchError::Compression(format!("{self:?}: {e}"));
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Gzip => {
                use std::io::Write;
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(data).map_err(|e| err(&e))?;
                enc.finish().map_err(|e| err(&e))
            }
            Compression::Snappy => {
                let mut out = Vec::with_capacity(data.len() / 2 + 32);
                out.extend_from_slice(XERIAL_MAGIC);
                out.extend_from_slice(&1i32.to_be_bytes());
                out.extend_from_slice(&1i32.to_be_bytes());
                let mut enc = snap::raw::Encoder::new();
                for chunk in data.chunks(32 * 1024) {
                    let block = enc.compress_vec(chunk).map_err(|e| err(&e))?;
                    out.extend_from_slice(&(block.len() as i32).to_be_bytes());
                    out.extend_from_slice(&block);
                }
                Ok(out)
            }
            Compression::Lz4 => {
                use std::io::Write;
                let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
                enc.write_all(data).map_err(|e| err(&e))?;
                enc.finish().map_err(|e| err(&e))
            }
            Compression::Zstd => zstd::bulk::compress(data, 3).map_err(|e| err(&e)),
        }
    }

    /// Decompress a record section, refusing output larger than `max_out` bytes.
    pub fn decompress(self, data: &[u8], max_out: usize) -> Result<Vec<u8>, BatchError> {
        let err = |e: &dyn std::fmt::Display| BatchError::Compression(format!("{self:?}: {e}"));
        let read_bounded = |r: &mut dyn Read| -> Result<Vec<u8>, BatchError> {
            let mut out = Vec::new();
            r.take(max_out as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| err(&e))?;
            if out.len() > max_out {
                return Err(BatchError::Compression(format!(
                    "{self:?}: decompresses to more than {max_out} bytes"
                )));
            }
            Ok(out)
        };
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Gzip => read_bounded(&mut flate2::read::GzDecoder::new(data)),
            Compression::Snappy => {
                if data.len() >= XERIAL_HEADER_LEN && &data[..8] == XERIAL_MAGIC {
                    let mut out = Vec::new();
                    let mut pos = XERIAL_HEADER_LEN;
                    while pos < data.len() {
                        if data.len() - pos < 4 {
                            return Err(err(&"truncated xerial chunk length"));
                        }
                        let n = i32::from_be_bytes(data[pos..pos + 4].try_into().expect("4"));
                        pos += 4;
                        if n < 0 || data.len() - pos < n as usize {
                            return Err(err(&"xerial chunk runs past the end"));
                        }
                        let block = &data[pos..pos + n as usize];
                        pos += n as usize;
                        let len = snap::raw::decompress_len(block).map_err(|e| err(&e))?;
                        if out.len() + len > max_out {
                            return Err(err(&format!("decompresses to more than {max_out} bytes")));
                        }
                        let start = out.len();
                        out.resize(start + len, 0);
                        snap::raw::Decoder::new()
                            .decompress(block, &mut out[start..])
                            .map_err(|e| err(&e))?;
                    }
                    Ok(out)
                } else {
                    let len = snap::raw::decompress_len(data).map_err(|e| err(&e))?;
                    if len > max_out {
                        return Err(err(&format!("decompresses to more than {max_out} bytes")));
                    }
                    snap::raw::Decoder::new()
                        .decompress_vec(data)
                        .map_err(|e| err(&e))
                }
            }
            Compression::Lz4 => read_bounded(&mut lz4_flex::frame::FrameDecoder::new(data)),
            Compression::Zstd => {
                let mut dec = zstd::stream::read::Decoder::new(data).map_err(|e| err(&e))?;
                read_bounded(&mut dec)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_snappy_is_read_too() {
        let data = b"hello hello hello hello".repeat(10);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(Compression::Snappy.decompress(&raw, 1 << 20).unwrap(), data);
    }

    #[test]
    fn bombs_are_refused() {
        let data = vec![0u8; 1 << 20];
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let z = c.compress(&data).unwrap();
            assert!(c.decompress(&z, 1000).is_err(), "{c:?}");
            assert_eq!(c.decompress(&z, 1 << 20).unwrap().len(), 1 << 20);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(c.decompress(b"\x00\x01garbage", 1 << 20).is_err(), "{c:?}");
        }
    }
}
