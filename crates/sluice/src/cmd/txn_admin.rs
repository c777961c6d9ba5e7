//! `sluice txn list` and `sluice txn describe`: ListTransactions and DescribeTransactions
//! against a broker.
//!
//! librdkafka has no admin API for these, so this is a small blocking Kafka protocol
//! client: one request at a time over a `TcpStream` to the first reachable bootstrap
//! address (the transaction coordinator of a single-broker cluster such as `sluice serve`).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse, RequestHeader, ResponseHeader, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response accepted.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Print every transactional id.
pub fn list(bootstrap: &str) -> anyhow::Result<()> {
    let mut c = Client::connect(bootstrap)?;
    let resp: ListTransactionsResponse = c.call(
        ApiKey::ListTransactions,
        0,
        &ListTransactionsRequest::default(),
    )?;
    check(resp.error_code).context("ListTransactions")?;
    let mut rows: Vec<[String; 3]> = resp
        .transaction_states
        .iter()
        .map(|t| {
            [
                t.transactional_id.to_string(),
                t.producer_id.0.to_string(),
                t.transaction_state.to_string(),
            ]
        })
        .collect();
    rows.sort();
    let mut out = std::io::stdout().lock();
    out.write_all(list_table(&rows).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Print one transactional id's state.
pub fn describe(bootstrap: &str, id: &str) -> anyhow::Result<()> {
    let mut c = Client::connect(bootstrap)?;
    let mut req = DescribeTransactionsRequest::default();
    req.transactional_ids = vec![TransactionalId(StrBytes::from_string(id.to_string()))];
    let resp: DescribeTransactionsResponse = c.call(ApiKey::DescribeTransactions, 0, &req)?;
    let Some(t) = resp
        .transaction_states
        .iter()
        .find(|t| t.transactional_id.as_str() == id)
    else {
        bail!("DescribeTransactions: the broker did not answer for transactional id {id:?}");
    };
    check(t.error_code).with_context(|| format!("transactional id {id:?}"))?;
    let partitions: Vec<String> = t
        .topics
        .iter()
        .flat_map(|td| {
            td.partitions
                .iter()
                .map(move |p| format!("{}-{p}", td.topic.as_str()))
        })
        .collect();
    let lines = [
        ("transactional id", id.to_string()),
        ("state", t.transaction_state.to_string()),
        ("producer id", t.producer_id.0.to_string()),
        ("epoch", t.producer_epoch.to_string()),
        ("timeout ms", t.transaction_timeout_ms.to_string()),
        ("start time", iso8601(t.transaction_start_time_ms)),
        (
            "partitions",
            if partitions.is_empty() {
                "-".to_string()
            } else {
                partitions.join(", ")
            },
        ),
    ];
    let mut out = std::io::stdout().lock();
    for (k, v) in lines {
        writeln!(out, "{:<18}{v}", format!("{k}:"))?;
    }
    out.flush()?;
    Ok(())
}

/// A Kafka error code as an error naming it (`TRANSACTIONAL_ID_NOT_FOUND (105)`).
fn check(code: i16) -> anyhow::Result<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(e) => bail!("broker error {} ({code})", error_name(e)),
    }
}

/// Kafka's name of an error (`TransactionalIdNotFound` -> `TRANSACTIONAL_ID_NOT_FOUND`).
fn error_name(e: ResponseError) -> String {
    if let ResponseError::Unknown(code) = e {
        return format!("UNKNOWN_ERROR_CODE_{code}");
    }
    let mut name = String::new();
    for (i, ch) in e.to_string().chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(ch.to_ascii_uppercase());
    }
    name
}

/// The `txn list` table: a header and one left-aligned row per transactional id.
fn list_table(rows: &[[String; 3]]) -> String {
    let header = ["TRANSACTIONAL ID", "PRODUCER ID", "STATE"];
    let mut widths = header.map(str::len);
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 3]| {
        format!(
            "{:<w0$}  {:<w1$}  {}\n",
            cells[0],
            cells[1],
            cells[2],
            w0 = widths[0],
            w1 = widths[1]
        )
    };
    let mut out = line(header);
    for r in rows {
        out.push_str(&line([&r[0], &r[1], &r[2]]));
    }
    out
}

/// Milliseconds since the epoch as ISO-8601 UTC (`-` for a negative time: none).
fn iso8601(ms: i64) -> String {
    if ms < 0 {
        return "-".to_string();
    }
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, sod) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (non-negative).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift to a calendar starting on 0000-03-01 so leap days end each 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year
    let mp = (5 * doy + 2) / 153; // March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One connection, one request at a time.
struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    /// Connect to the first reachable address of the comma-separated bootstrap list.
    fn connect(bootstrap: &str) -> anyhow::Result<Client> {
        let mut last_err = None;
        for host in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
        {
            let addrs = match host.to_socket_addrs() {
                Ok(a) => a,
                Err(e) => {
                    last_err = Some(anyhow::anyhow!("{host}: {e}"));
                    continue;
                }
            };
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                    Ok(stream) => {
                        stream.set_read_timeout(Some(TIMEOUT))?;
                        stream.set_write_timeout(Some(TIMEOUT))?;
                        stream.set_nodelay(true)?;
                        return Ok(Client {
                            stream,
                            correlation_id: 0,
                        });
                    }
                    Err(e) => last_err = Some(anyhow::anyhow!("{addr}: {e}")),
                }
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow::anyhow!("no address given"))
            .context(format!("connecting to {bootstrap}")))
    }

    /// Send `req` as `key` version `version` and decode the answer.
    fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        self.correlation_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str("sluice-cli"));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, key.request_header_version(version))
            .context("encoding request header")?;
        req.encode(&mut buf, version)
            .with_context(|| format!("encoding {key:?} v{version}"))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream
            .write_all(&buf)
            .with_context(|| format!("sending {key:?}"))?;

        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).with_context(|| {
            format!("reading the {key:?} v{version} response (does the broker support it?)")
        })?;
        let len = i32::from_be_bytes(len);
        if len < 0 || len as usize > MAX_RESPONSE {
            bail!("{key:?} response: bad frame length {len}");
        }
        let mut body = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut body)
            .with_context(|| format!("reading the {key:?} response"))?;
        let mut body = Bytes::from(body);
        let rh = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .with_context(|| format!("decoding the {key:?} response header"))?;
        if rh.correlation_id != self.correlation_id {
            bail!(
                "{key:?} response: correlation id {} (expected {})",
                rh.correlation_id,
                self.correlation_id
            );
        }
        Resp::decode(&mut body, version).with_context(|| format!("decoding the {key:?} response"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_formats_utc() {
        assert_eq!(iso8601(-1), "-");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(iso8601(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(
            error_name(ResponseError::TransactionalIdNotFound),
            "TRANSACTIONAL_ID_NOT_FOUND"
        );
        assert_eq!(
            error_name(ResponseError::CoordinatorNotAvailable),
            "COORDINATOR_NOT_AVAILABLE"
        );
        assert_eq!(
            error_name(ResponseError::Unknown(999)),
            "UNKNOWN_ERROR_CODE_999"
        );
        let e = check(105).unwrap_err().to_string();
        assert!(e.contains("TRANSACTIONAL_ID_NOT_FOUND (105)"), "{e}");
        assert!(check(0).is_ok());
    }

    #[test]
    fn list_table_aligns_columns() {
        let rows = [
            [
                "a-very-long-transactional-id".to_string(),
                "7".to_string(),
                "Ongoing".to_string(),
            ],
            [
                "b".to_string(),
                "1234567890123".to_string(),
                "Empty".to_string(),
            ],
        ];
        let t = list_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("TRANSACTIONAL ID "));
        let col = |l: &str, s: &str| l.find(s).unwrap();
        assert_eq!(col(lines[0], "PRODUCER ID"), col(lines[1], "7"));
        assert_eq!(col(lines[0], "STATE"), col(lines[2], "Empty"));
        assert_eq!(list_table(&[]), "TRANSACTIONAL ID  PRODUCER ID  STATE\n");
    }
}
