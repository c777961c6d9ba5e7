//! Bounds on what a request may make the decoder reserve, checked before decoding.
//!
//! kafka-protocol 0.18 decodes an array by reserving room for as many elements as the
//! client claims (`Vec::with_capacity(n)`) before it reads any of them, so a 21-byte
//! Metadata request whose topic array claims 2^31 entries makes the broker reserve ~150 GB
//! and abort. [`check_request`] walks the request body first, following this module's own
//! description of each served request layout (the table at the end of the walker), and
//! refuses the frame unless every length claim (arrays, compact arrays, strings, bytes,
//! tagged fields) is backed by bytes actually present, and the elements claimed in all,
//! at a conservative [`BYTES_PER_ELEMENT`] decoded bytes each, stay within a budget.
//!
//! The walker reads in exactly the decoder's order (the tests check on generated, encoded
//! and mutated requests that both consume the same bytes), never allocates, and never
//! panics, whatever the bytes.

use kafka_protocol::messages::ApiKey;

/// Decoded bytes assumed per claimed array element (or tagged field) when checking a
/// request against its budget: more than any request element of kafka-protocol 0.18 takes
/// in memory (the largest, a Fetch partition or a Produce topic, are about 100 bytes).
pub(crate) const BYTES_PER_ELEMENT: usize = 256;

/// Walks a request body (the bytes after the request header) of `api_key` at `version`
/// and checks every array / compact-array / bytes / string length claim against the bytes
/// left, and that the sum of claimed array elements (and tagged fields) times
/// [`BYTES_PER_ELEMENT`] stays within `budget` bytes. Bytes after the request are allowed
/// (the decoder ignores them). An API or version missing from the layout table is an
/// error. `Err` is a sentence for the log.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "called by server.rs once the check is wired in")
)]
pub(crate) fn check_request(
    api_key: ApiKey,
    version: i16,
    body: &[u8],
    budget: usize,
) -> Result<(), String> {
    walk_request(api_key, version, body, budget)
        .map(|_| ())
        .map_err(|r| match r.at {
            Some(at) => format!(
                "{api_key:?} v{version} request refused before decoding: {} (at byte {at} of \
                 a {}-byte body)",
                r.reason,
                body.len()
            ),
            None => format!("{api_key:?} v{version} request refused: {}", r.reason),
        })
}

/// Why a body was refused.
#[derive(Debug)]
struct Refusal {
    /// Offset in the body of the claim or field (None: the API/version itself).
    at: Option<usize>,
    reason: String,
    /// Elements an array claimed when it is the refused claim (the tests use it to know
    /// whether the real decoder may be run on the body).
    #[cfg(test)]
    claim: Option<u64>,
}

fn refusal(at: Option<usize>, reason: String, _claim: Option<u64>) -> Refusal {
    Refusal {
        at,
        reason,
        #[cfg(test)]
        claim: _claim,
    }
}

/// Walk a body; Ok is the number of bytes the request takes (the decoder reads exactly
/// these; the rest is ignored).
fn walk_request(
    api_key: ApiKey,
    version: i16,
    body: &[u8],
    budget: usize,
) -> Result<usize, Refusal> {
    let Some(layout) = LAYOUTS.iter().find(|l| l.key == api_key) else {
        return Err(refusal(
            None,
            format!("{api_key:?} has no layout in the request bounds table"),
            None,
        ));
    };
    if !(layout.min..=layout.max).contains(&version) {
        return Err(refusal(
            None,
            format!(
                "version {version} is not in the request bounds table (v{}..=v{})",
                layout.min, layout.max
            ),
            None,
        ));
    }
    let mut w = Walker {
        buf: body,
        pos: 0,
        version,
        flexible: version >= layout.flexible,
        claimed: 0,
        budget: u64::try_from(budget).unwrap_or(u64::MAX),
    };
    w.structure(layout.body)?;
    Ok(w.pos)
}

// ---------------------------------------------------------------------------------------
// The notation.

/// The wire type of a field. Strings, bytes and arrays are written once for all versions:
/// in a flexible version of the request they are the compact encodings (unsigned varint of
/// length + 1, 0 = null), otherwise an `i16` (strings) or `i32` (bytes, arrays) length,
/// -1 = null. In flexible versions every struct (the request itself, every array element
/// of struct type) ends with a tagged-field section: a varint count, then per field a
/// varint tag, a varint size and the value.
#[derive(Debug, Clone, Copy)]
enum F {
    Bool,
    I8,
    I16,
    I32,
    I64,
    Uuid,
    /// A string that may not be null.
    Str,
    /// A string that may be null.
    NStr,
    /// Bytes that may not be null.
    Bytes,
    /// Record batches: bytes that may be null, opaque here.
    Records,
    /// An array that may not be null, of elements of the given type.
    Arr(&'static F),
    /// An array that may be null.
    NArr(&'static F),
    /// A struct: its fields in order, then (flexible versions) its tagged fields.
    S(&'static [Fd]),
    /// A tagged field the decoder knows: no place among the struct's fields; in its
    /// tagged-field section, tag `.0` is a value of type `.1`, which the decoder reads as
    /// that type (not as `size` bytes), and so does the walker.
    Tag(u32, &'static F),
}

/// A field: name (for the log), the versions it is in, its type.
#[derive(Debug)]
struct Fd {
    name: &'static str,
    since: i16,
    until: i16,
    ty: F,
}

impl Fd {
    fn present(&self, version: i16) -> bool {
        (self.since..=self.until).contains(&version)
    }
}

/// "And every later version".
const ALL: i16 = i16::MAX;

/// A field in versions `since..=until`.
const fn f(name: &'static str, since: i16, until: i16, ty: F) -> Fd {
    Fd {
        name,
        since,
        until,
        ty,
    }
}

/// One request: the versions described, the first flexible version (`NEVER`: none), the
/// body's fields.
#[derive(Debug)]
struct Layout {
    key: ApiKey,
    min: i16,
    max: i16,
    flexible: i16,
    body: &'static [Fd],
}

const NEVER: i16 = i16::MAX;

/// Fewest bytes a value of `ty` takes at `version`.
fn min_size(ty: &F, version: i16, flexible: bool) -> u64 {
    let length_prefix = |classic: u64| if flexible { 1 } else { classic };
    match ty {
        F::Bool | F::I8 => 1,
        F::I16 => 2,
        F::I32 => 4,
        F::I64 => 8,
        F::Uuid => 16,
        F::Str | F::NStr => length_prefix(2),
        F::Bytes | F::Records | F::Arr(_) | F::NArr(_) => length_prefix(4),
        F::S(fields) => {
            let fixed: u64 = fields
                .iter()
                .filter(|fd| fd.present(version))
                .map(|fd| min_size(&fd.ty, version, flexible))
                .sum();
            fixed + u64::from(flexible)
        }
        F::Tag(..) => 0,
    }
}

// ---------------------------------------------------------------------------------------
// The walker.

#[derive(Debug)]
struct Walker<'a> {
    buf: &'a [u8],
    /// Next byte to read; never beyond `buf.len()`.
    pos: usize,
    version: i16,
    flexible: bool,
    /// Array elements and tagged fields claimed so far.
    claimed: u64,
    /// Bytes the claimed elements may take once decoded.
    budget: u64,
}

impl Walker<'_> {
    fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn refuse<T>(&self, at: usize, reason: String) -> Result<T, Refusal> {
        Err(refusal(Some(at), reason, None))
    }

    /// Step over `n` bytes of `what`.
    fn skip(&mut self, n: usize, what: &str) -> Result<(), Refusal> {
        if n > self.left() {
            return self.refuse(
                self.pos,
                format!("{what} needs {n} bytes but {} remain", self.left()),
            );
        }
        self.pos += n;
        Ok(())
    }

    fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Refusal> {
        let at = self.pos;
        self.skip(N, what)?;
        let mut out = [0; N];
        out.copy_from_slice(self.buf.get(at..at + N).unwrap_or(&[0; N]));
        Ok(out)
    }

    /// An unsigned varint as kafka-protocol reads it: at most 5 bytes, bits beyond 32
    /// dropped.
    fn uvarint(&mut self, what: &str) -> Result<u32, Refusal> {
        let mut value = 0u32;
        for i in 0..5 {
            let Some(&b) = self.buf.get(self.pos) else {
                return self.refuse(self.pos, format!("{what}: the varint is cut off"));
            };
            self.pos += 1;
            value |= u32::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A length prefix; None is null. `long`: `i32` rather than `i16` in classic versions.
    fn length(&mut self, what: &str, long: bool) -> Result<Option<u64>, Refusal> {
        let at = self.pos;
        if self.flexible {
            return Ok(self.uvarint(what)?.checked_sub(1).map(u64::from));
        }
        let n = if long {
            i32::from_be_bytes(self.fixed(what)?)
        } else {
            i32::from(i16::from_be_bytes(self.fixed(what)?))
        };
        match n {
            -1 => Ok(None),
            n => match u64::try_from(n) {
                Ok(n) => Ok(Some(n)),
                Err(_) => self.refuse(at, format!("{what} has a negative length ({n})")),
            },
        }
    }

    /// A string or bytes of `n` claimed bytes (None: null).
    fn blob(
        &mut self,
        what: &str,
        n: Option<u64>,
        nullable: bool,
        at: usize,
    ) -> Result<(), Refusal> {
        match n {
            None if nullable => Ok(()),
            None => self.refuse(at, format!("{what} is null but may not be")),
            Some(n) => {
                if n > self.left() as u64 {
                    return self.refuse(
                        at,
                        format!("{what} claims {n} bytes but {} remain", self.left()),
                    );
                }
                self.skip(n as usize, what)
            }
        }
    }

    /// Count `n` more claimed elements against the budget.
    fn claim(&mut self, n: u64, at: usize, what: &str) -> Result<(), Refusal> {
        self.claimed = self.claimed.saturating_add(n);
        let cost = self.claimed.saturating_mul(BYTES_PER_ELEMENT as u64);
        if cost > self.budget {
            return Err(refusal(
                Some(at),
                format!(
                    "{what} brings the claimed elements to {}, which at {BYTES_PER_ELEMENT} \
                     bytes each is over the decode budget of {} bytes",
                    self.claimed, self.budget
                ),
                Some(n),
            ));
        }
        Ok(())
    }

    fn value(&mut self, ty: &'static F, name: &'static str) -> Result<(), Refusal> {
        let at = self.pos;
        match ty {
            F::Bool | F::I8 => self.skip(1, name),
            F::I16 => self.skip(2, name),
            F::I32 => self.skip(4, name),
            F::I64 => self.skip(8, name),
            F::Uuid => self.skip(16, name),
            F::Str | F::NStr => {
                let what = format!("string `{name}`");
                let n = self.length(&what, false)?;
                self.blob(&what, n, matches!(ty, F::NStr), at)
            }
            F::Bytes | F::Records => {
                let what = format!("bytes `{name}`");
                let n = self.length(&what, true)?;
                self.blob(&what, n, matches!(ty, F::Records), at)
            }
            F::Arr(elem) | F::NArr(elem) => {
                let what = format!("array `{name}`");
                let Some(n) = self.length(&what, true)? else {
                    if matches!(ty, F::NArr(_)) {
                        return Ok(());
                    }
                    return self.refuse(at, format!("{what} is null but may not be"));
                };
                // No element of a served request is empty on the wire (a test checks).
                let min = min_size(elem, self.version, self.flexible).max(1);
                if n.saturating_mul(min) > self.left() as u64 {
                    return Err(refusal(
                        Some(at),
                        format!(
                            "{what} claims {n} elements of at least {min} bytes but {} bytes \
                             remain",
                            self.left()
                        ),
                        Some(n),
                    ));
                }
                self.claim(n, at, &what)?;
                for _ in 0..n {
                    self.value(elem, name)?;
                }
                Ok(())
            }
            F::S(fields) => self.structure(fields),
            F::Tag(..) => self.refuse(
                at,
                format!("bounds table error: tagged field `{name}` outside a struct"),
            ),
        }
    }

    /// A struct's fields, then its tagged fields in flexible versions.
    fn structure(&mut self, fields: &'static [Fd]) -> Result<(), Refusal> {
        for fd in fields {
            if fd.present(self.version) && !matches!(fd.ty, F::Tag(..)) {
                self.value(&fd.ty, fd.name)?;
            }
        }
        if self.flexible {
            self.tagged_fields(fields)?;
        }
        Ok(())
    }

    fn tagged_fields(&mut self, fields: &'static [Fd]) -> Result<(), Refusal> {
        let at = self.pos;
        let n = u64::from(self.uvarint("tagged-field count")?);
        // Each tagged field takes at least a tag and a size byte.
        if n.saturating_mul(2) > self.left() as u64 {
            return self.refuse(
                at,
                format!(
                    "{n} tagged fields need at least {} bytes but {} remain",
                    n.saturating_mul(2),
                    self.left()
                ),
            );
        }
        self.claim(n, at, "the tagged-field count")?;
        for _ in 0..n {
            let tag = self.uvarint("tagged-field tag")?;
            let size_at = self.pos;
            let size = self.uvarint("tagged-field size")?;
            let known = fields.iter().find_map(|fd| match fd.ty {
                F::Tag(t, inner) if t == tag && fd.present(self.version) => Some((fd.name, inner)),
                _ => None,
            });
            match known {
                Some((name, inner)) => self.value(inner, name)?,
                None => {
                    let what = format!("tagged field {tag}");
                    self.blob(&what, Some(u64::from(size)), false, size_at)?;
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The table: request layouts of the served APIs and versions, as kafka-protocol 0.18
// decodes them. A field is `f(name, first version, last version, type)`.

use F::{Arr, Bool, Bytes, I8, I16, I32, I64, NArr, NStr, Records, S, Str, Tag, Uuid};

/// Every array of this table is one of a struct or of one of these.
const ARR_I32: F = Arr(&I32);
const ARR_I64: F = Arr(&I64);
const ARR_STR: F = Arr(&Str);

static PRODUCE: &[Fd] = &[
    f("transactional_id", 0, ALL, NStr),
    f("acks", 0, ALL, I16),
    f("timeout_ms", 0, ALL, I32),
    f(
        "topic_data",
        0,
        ALL,
        Arr(&S(&[
            f("name", 0, ALL, Str),
            f(
                "partition_data",
                0,
                ALL,
                Arr(&S(&[
                    f("index", 0, ALL, I32),
                    f("records", 0, ALL, Records),
                ])),
            ),
        ])),
    ),
];

static FETCH: &[Fd] = &[
    f("cluster_id", 12, ALL, Tag(0, &NStr)),
    f("replica_id", 0, ALL, I32),
    f("max_wait_ms", 0, ALL, I32),
    f("min_bytes", 0, ALL, I32),
    f("max_bytes", 3, ALL, I32),
    f("isolation_level", 4, ALL, I8),
    f("session_id", 7, ALL, I32),
    f("session_epoch", 7, ALL, I32),
    f(
        "topics",
        0,
        ALL,
        Arr(&S(&[
            f("topic", 0, ALL, Str),
            f(
                "partitions",
                0,
                ALL,
                Arr(&S(&[
                    f("partition", 0, ALL, I32),
                    f("current_leader_epoch", 9, ALL, I32),
                    f("fetch_offset", 0, ALL, I64),
                    f("last_fetched_epoch", 12, ALL, I32),
                    f("log_start_offset", 5, ALL, I64),
                    f("partition_max_bytes", 0, ALL, I32),
                ])),
            ),
        ])),
    ),
    f(
        "forgotten_topics_data",
        7,
        ALL,
        Arr(&S(&[
            f("topic", 7, ALL, Str),
            f("partitions", 7, ALL, ARR_I32),
        ])),
    ),
    f("rack_id", 11, ALL, Str),
];

static LIST_OFFSETS: &[Fd] = &[
    f("replica_id", 0, ALL, I32),
    f("isolation_level", 2, ALL, I8),
    f(
        "topics",
        0,
        ALL,
        Arr(&S(&[
            f("name", 0, ALL, Str),
            f(
                "partitions",
                0,
                ALL,
                Arr(&S(&[
                    f("partition_index", 0, ALL, I32),
                    f("current_leader_epoch", 4, ALL, I32),
                    f("timestamp", 0, ALL, I64),
                ])),
            ),
        ])),
    ),
];

static METADATA: &[Fd] = &[
    f(
        "topics",
        0,
        ALL,
        NArr(&S(&[f("topic_id", 10, ALL, Uuid), f("name", 0, ALL, NStr)])),
    ),
    f("allow_auto_topic_creation", 4, ALL, Bool),
    f("include_cluster_authorized_operations", 8, 10, Bool),
    f("include_topic_authorized_operations", 8, ALL, Bool),
];

static OFFSET_COMMIT: &[Fd] = &[
    f("group_id", 0, ALL, Str),
    f("generation_id_or_member_epoch", 1, ALL, I32),
    f("member_id", 1, ALL, Str),
    f("group_instance_id", 7, ALL, NStr),
    f("retention_time_ms", 2, 4, I64),
    f(
        "topics",
        0,
        ALL,
        Arr(&S(&[
            f("name", 0, ALL, Str),
            f(
                "partitions",
                0,
                ALL,
                Arr(&S(&[
                    f("partition_index", 0, ALL, I32),
                    f("committed_offset", 0, ALL, I64),
                    f("committed_leader_epoch", 6, ALL, I32),
                    f("committed_metadata", 0, ALL, NStr),
                ])),
            ),
        ])),
    ),
];

static OFFSET_FETCH: &[Fd] = &[
    f("group_id", 0, 7, Str),
    f(
        "topics",
        0,
        7,
        NArr(&S(&[
            f("name", 0, 7, Str),
            f("partition_indexes", 0, 7, ARR_I32),
        ])),
    ),
    f("require_stable", 7, ALL, Bool),
];

static FIND_COORDINATOR: &[Fd] = &[
    f("key", 0, 3, Str),
    f("key_type", 1, ALL, I8),
    f("coordinator_keys", 4, ALL, ARR_STR),
];

static JOIN_GROUP: &[Fd] = &[
    f("group_id", 0, ALL, Str),
    f("session_timeout_ms", 0, ALL, I32),
    f("rebalance_timeout_ms", 1, ALL, I32),
    f("member_id", 0, ALL, Str),
    f("group_instance_id", 5, ALL, NStr),
    f("protocol_type", 0, ALL, Str),
    f(
        "protocols",
        0,
        ALL,
        Arr(&S(&[f("name", 0, ALL, Str), f("metadata", 0, ALL, Bytes)])),
    ),
    f("reason", 8, ALL, NStr),
];

static HEARTBEAT: &[Fd] = &[
    f("group_id", 0, ALL, Str),
    f("generation_id", 0, ALL, I32),
    f("member_id", 0, ALL, Str),
    f("group_instance_id", 3, ALL, NStr),
];

static LEAVE_GROUP: &[Fd] = &[
    f("group_id", 0, ALL, Str),
    f("member_id", 0, 2, Str),
    f(
        "members",
        3,
        ALL,
        Arr(&S(&[
            f("member_id", 3, ALL, Str),
            f("group_instance_id", 3, ALL, NStr),
            f("reason", 5, ALL, NStr),
        ])),
    ),
];

static SYNC_GROUP: &[Fd] = &[
    f("group_id", 0, ALL, Str),
    f("generation_id", 0, ALL, I32),
    f("member_id", 0, ALL, Str),
    f("group_instance_id", 3, ALL, NStr),
    f("protocol_type", 5, ALL, NStr),
    f("protocol_name", 5, ALL, NStr),
    f(
        "assignments",
        0,
        ALL,
        Arr(&S(&[
            f("member_id", 0, ALL, Str),
            f("assignment", 0, ALL, Bytes),
        ])),
    ),
];

static DESCRIBE_GROUPS: &[Fd] = &[
    f("groups", 0, ALL, ARR_STR),
    f("include_authorized_operations", 3, ALL, Bool),
];

static LIST_GROUPS: &[Fd] = &[f("states_filter", 4, ALL, ARR_STR)];

static API_VERSIONS: &[Fd] = &[
    f("client_software_name", 3, ALL, Str),
    f("client_software_version", 3, ALL, Str),
];

static CREATE_TOPICS: &[Fd] = &[
    f(
        "topics",
        0,
        ALL,
        Arr(&S(&[
            f("name", 0, ALL, Str),
            f("num_partitions", 0, ALL, I32),
            f("replication_factor", 0, ALL, I16),
            f(
                "assignments",
                0,
                ALL,
                Arr(&S(&[
                    f("partition_index", 0, ALL, I32),
                    f("broker_ids", 0, ALL, ARR_I32),
                ])),
            ),
            f(
                "configs",
                0,
                ALL,
                Arr(&S(&[f("name", 0, ALL, Str), f("value", 0, ALL, NStr)])),
            ),
        ])),
    ),
    f("timeout_ms", 0, ALL, I32),
    f("validate_only", 1, ALL, Bool),
];

static DELETE_TOPICS: &[Fd] = &[
    f(
        "topics",
        6,
        ALL,
        Arr(&S(&[f("name", 6, ALL, NStr), f("topic_id", 6, ALL, Uuid)])),
    ),
    f("topic_names", 0, 5, ARR_STR),
    f("timeout_ms", 0, ALL, I32),
];

static DELETE_RECORDS: &[Fd] = &[
    f(
        "topics",
        0,
        ALL,
        Arr(&S(&[
            f("name", 0, ALL, Str),
            f(
                "partitions",
                0,
                ALL,
                Arr(&S(&[
                    f("partition_index", 0, ALL, I32),
                    f("offset", 0, ALL, I64),
                ])),
            ),
        ])),
    ),
    f("timeout_ms", 0, ALL, I32),
];

static INIT_PRODUCER_ID: &[Fd] = &[
    f("transactional_id", 0, ALL, NStr),
    f("transaction_timeout_ms", 0, ALL, I32),
    f("producer_id", 3, ALL, I64),
    f("producer_epoch", 3, ALL, I16),
];

static OFFSET_FOR_LEADER_EPOCH: &[Fd] = &[
    f("replica_id", 3, ALL, I32),
    f(
        "topics",
        0,
        ALL,
        Arr(&S(&[
            f("topic", 0, ALL, Str),
            f(
                "partitions",
                0,
                ALL,
                Arr(&S(&[
                    f("partition", 0, ALL, I32),
                    f("current_leader_epoch", 2, ALL, I32),
                    f("leader_epoch", 0, ALL, I32),
                ])),
            ),
        ])),
    ),
];

static DESCRIBE_CONFIGS: &[Fd] = &[
    f(
        "resources",
        0,
        ALL,
        Arr(&S(&[
            f("resource_type", 0, ALL, I8),
            f("resource_name", 0, ALL, Str),
            f("configuration_keys", 0, ALL, NArr(&Str)),
        ])),
    ),
    f("include_synonyms", 1, ALL, Bool),
    f("include_documentation", 3, ALL, Bool),
];

static ALTER_CONFIGS: &[Fd] = &[
    f(
        "resources",
        0,
        ALL,
        Arr(&S(&[
            f("resource_type", 0, ALL, I8),
            f("resource_name", 0, ALL, Str),
            f(
                "configs",
                0,
                ALL,
                Arr(&S(&[f("name", 0, ALL, Str), f("value", 0, ALL, NStr)])),
            ),
        ])),
    ),
    f("validate_only", 0, ALL, Bool),
];

static INCREMENTAL_ALTER_CONFIGS: &[Fd] = &[
    f(
        "resources",
        0,
        ALL,
        Arr(&S(&[
            f("resource_type", 0, ALL, I8),
            f("resource_name", 0, ALL, Str),
            f(
                "configs",
                0,
                ALL,
                Arr(&S(&[
                    f("name", 0, ALL, Str),
                    f("config_operation", 0, ALL, I8),
                    f("value", 0, ALL, NStr),
                ])),
            ),
        ])),
    ),
    f("validate_only", 0, ALL, Bool),
];

static CREATE_PARTITIONS: &[Fd] = &[
    f(
        "topics",
        0,
        ALL,
        Arr(&S(&[
            f("name", 0, ALL, Str),
            f("count", 0, ALL, I32),
            f(
                "assignments",
                0,
                ALL,
                NArr(&S(&[f("broker_ids", 0, ALL, ARR_I32)])),
            ),
        ])),
    ),
    f("timeout_ms", 0, ALL, I32),
    f("validate_only", 0, ALL, Bool),
];

static DELETE_GROUPS: &[Fd] = &[f("groups_names", 0, ALL, ARR_STR)];

static OFFSET_DELETE: &[Fd] = &[
    f("group_id", 0, ALL, Str),
    f(
        "topics",
        0,
        ALL,
        Arr(&S(&[
            f("name", 0, ALL, Str),
            f(
                "partitions",
                0,
                ALL,
                Arr(&S(&[f("partition_index", 0, ALL, I32)])),
            ),
        ])),
    ),
];

static DESCRIBE_CLUSTER: &[Fd] = &[
    f("include_cluster_authorized_operations", 0, ALL, Bool),
    f("endpoint_type", 1, ALL, I8),
];

static ADD_PARTITIONS_TO_TXN: &[Fd] = &[
    f("v3_and_below_transactional_id", 0, 3, Str),
    f("v3_and_below_producer_id", 0, 3, I64),
    f("v3_and_below_producer_epoch", 0, 3, I16),
    f(
        "v3_and_below_topics",
        0,
        3,
        Arr(&S(&[
            f("name", 0, ALL, Str),
            f("partitions", 0, ALL, ARR_I32),
        ])),
    ),
];

static ADD_OFFSETS_TO_TXN: &[Fd] = &[
    f("transactional_id", 0, ALL, Str),
    f("producer_id", 0, ALL, I64),
    f("producer_epoch", 0, ALL, I16),
    f("group_id", 0, ALL, Str),
];

static END_TXN: &[Fd] = &[
    f("transactional_id", 0, ALL, Str),
    f("producer_id", 0, ALL, I64),
    f("producer_epoch", 0, ALL, I16),
    f("committed", 0, ALL, Bool),
];

static TXN_OFFSET_COMMIT: &[Fd] = &[
    f("transactional_id", 0, ALL, Str),
    f("group_id", 0, ALL, Str),
    f("producer_id", 0, ALL, I64),
    f("producer_epoch", 0, ALL, I16),
    f("generation_id", 3, ALL, I32),
    f("member_id", 3, ALL, Str),
    f("group_instance_id", 3, ALL, NStr),
    f(
        "topics",
        0,
        ALL,
        Arr(&S(&[
            f("name", 0, ALL, Str),
            f(
                "partitions",
                0,
                ALL,
                Arr(&S(&[
                    f("partition_index", 0, ALL, I32),
                    f("committed_offset", 0, ALL, I64),
                    f("committed_leader_epoch", 2, ALL, I32),
                    f("committed_metadata", 0, ALL, NStr),
                ])),
            ),
        ])),
    ),
];

static DESCRIBE_PRODUCERS: &[Fd] = &[f(
    "topics",
    0,
    ALL,
    Arr(&S(&[
        f("name", 0, ALL, Str),
        f("partition_indexes", 0, ALL, ARR_I32),
    ])),
)];

static DESCRIBE_TRANSACTIONS: &[Fd] = &[f("transactional_ids", 0, ALL, ARR_STR)];

static LIST_TRANSACTIONS: &[Fd] = &[
    f("state_filters", 0, ALL, ARR_STR),
    f("producer_id_filters", 0, ALL, ARR_I64),
    f("duration_filter", 1, ALL, I64),
];

/// `(api, first, last version described, first flexible version, body)`.
const fn api(key: ApiKey, min: i16, max: i16, flexible: i16, body: &'static [Fd]) -> Layout {
    Layout {
        key,
        min,
        max,
        flexible,
        body,
    }
}

static LAYOUTS: &[Layout] = &[
    api(ApiKey::Produce, 3, 9, 9, PRODUCE),
    api(ApiKey::Fetch, 4, 12, 12, FETCH),
    api(ApiKey::ListOffsets, 1, 6, 6, LIST_OFFSETS),
    api(ApiKey::Metadata, 0, 12, 9, METADATA),
    api(ApiKey::OffsetCommit, 2, 8, 8, OFFSET_COMMIT),
    api(ApiKey::OffsetFetch, 1, 7, 6, OFFSET_FETCH),
    api(ApiKey::FindCoordinator, 0, 4, 3, FIND_COORDINATOR),
    api(ApiKey::JoinGroup, 0, 9, 6, JOIN_GROUP),
    api(ApiKey::Heartbeat, 0, 4, 4, HEARTBEAT),
    api(ApiKey::LeaveGroup, 0, 5, 4, LEAVE_GROUP),
    api(ApiKey::SyncGroup, 0, 5, 4, SYNC_GROUP),
    api(ApiKey::DescribeGroups, 0, 5, 5, DESCRIBE_GROUPS),
    api(ApiKey::ListGroups, 0, 4, 3, LIST_GROUPS),
    api(ApiKey::ApiVersions, 0, 3, 3, API_VERSIONS),
    api(ApiKey::CreateTopics, 2, 7, 5, CREATE_TOPICS),
    api(ApiKey::DeleteTopics, 1, 6, 4, DELETE_TOPICS),
    api(ApiKey::DeleteRecords, 0, 2, 2, DELETE_RECORDS),
    api(ApiKey::InitProducerId, 0, 4, 2, INIT_PRODUCER_ID),
    api(
        ApiKey::OffsetForLeaderEpoch,
        2,
        4,
        4,
        OFFSET_FOR_LEADER_EPOCH,
    ),
    api(ApiKey::DescribeConfigs, 1, 4, 4, DESCRIBE_CONFIGS),
    api(ApiKey::AlterConfigs, 0, 2, 2, ALTER_CONFIGS),
    api(ApiKey::CreatePartitions, 0, 3, 2, CREATE_PARTITIONS),
    api(ApiKey::DeleteGroups, 0, 2, 2, DELETE_GROUPS),
    api(
        ApiKey::IncrementalAlterConfigs,
        0,
        1,
        1,
        INCREMENTAL_ALTER_CONFIGS,
    ),
    api(ApiKey::OffsetDelete, 0, 0, NEVER, OFFSET_DELETE),
    api(ApiKey::DescribeCluster, 0, 1, 0, DESCRIBE_CLUSTER),
    api(ApiKey::AddPartitionsToTxn, 0, 3, 3, ADD_PARTITIONS_TO_TXN),
    api(ApiKey::AddOffsetsToTxn, 0, 3, 3, ADD_OFFSETS_TO_TXN),
    api(ApiKey::EndTxn, 0, 3, 3, END_TXN),
    api(ApiKey::TxnOffsetCommit, 0, 3, 3, TXN_OFFSET_COMMIT),
    api(ApiKey::DescribeProducers, 0, 0, 0, DESCRIBE_PRODUCERS),
    api(ApiKey::DescribeTransactions, 0, 0, 0, DESCRIBE_TRANSACTIONS),
    api(ApiKey::ListTransactions, 0, 1, 0, LIST_TRANSACTIONS),
];
