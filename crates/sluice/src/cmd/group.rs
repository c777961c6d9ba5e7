//! `sluice group ...` (needs `--bootstrap`: groups live in a broker).

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups with their state.
    List,
    /// State, members and assignments, and per partition the committed offset, end offset
    /// and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets (refused while the group has members, as in Kafka).
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose partitions are reset.
        #[arg(long)]
        topic: String,
        /// To each partition's log start offset.
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// To each partition's end offset.
        #[arg(long, group = "target")]
        to_latest: bool,
        /// To this offset (clamped to each partition's range).
        #[arg(long, group = "target")]
        to_offset: Option<i64>,
        /// To the first offset at or after this time: epoch milliseconds or
        /// YYYY-MM-DDTHH:MM:SS[.mmm]Z (UTC).
        #[arg(long, group = "target")]
        to_datetime: Option<String>,
    },
}

/// Parse epoch milliseconds or an RFC 3339 UTC timestamp (`Z` suffix).
pub fn parse_datetime(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        anyhow::anyhow!(
            "--to-datetime {s:?}: expected epoch milliseconds or YYYY-MM-DDTHH:MM:SS[.mmm]Z"
        )
    };
    let t = s.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = t.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if d.len() != 3
        || h.len() != 3
        || !(1..=12).contains(&d[1])
        || !(1..=31).contains(&d[2])
        || h[0] > 23
        || h[1] > 59
        || h[2] > 60
    {
        return Err(bad());
    }
    let ms_frac: i64 = format!("{frac:0<3}")[..3].parse().map_err(|_| bad())?;
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 24 + h[0]) * 60 + h[1]) * 60_000 + h[2] * 1000 + ms_frac)
}

#[cfg(test)]
mod tests {
    use super::parse_datetime;

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("0").unwrap(), 0);
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_datetime("2024-02-29T12:34:56.789Z").unwrap(),
            1_709_210_096_789
        );
        assert_eq!(
            parse_datetime("2000-01-01T00:00:00Z").unwrap(),
            946_684_800_000
        );
        assert!(parse_datetime("2024-13-01T00:00:00Z").is_err());
        assert!(parse_datetime("yesterday").is_err());
    }
}
