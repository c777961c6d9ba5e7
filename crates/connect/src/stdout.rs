//! Standard output as a sink.

use std::io::{BufWriter, Stdout, Write};

use serde_json::Value;

use crate::{Error, Position, Result, Sink};

/// Writes one JSON value per line to standard output; [`Sink::commit`] flushes the buffer
/// (there is nothing to fsync).
#[derive(Debug)]
pub struct StdoutSink {
    out: BufWriter<Stdout>,
}

impl StdoutSink {
    /// A sink on this process's stdout.
    pub fn new() -> Self {
        Self {
            out: BufWriter::with_capacity(1 << 16, std::io::stdout()),
        }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for StdoutSink {
    fn write(&mut self, _key: Option<&str>, value: &Value) -> Result<()> {
        serde_json::to_writer(&mut self.out, value).map_err(|e| Error::Stdout(e.into()))?;
        self.out.write_all(b"\n").map_err(Error::Stdout)
    }

    fn commit(&mut self, _position: &Position) -> Result<()> {
        self.out.flush().map_err(Error::Stdout)
    }

    fn describe(&self) -> String {
        "stdout".into()
    }
}
