//! The coordinator's public vocabulary: errors, states, configuration, the decoded
//! requests and their results, and the records it asks the caller to persist.

/// Milliseconds (the caller's clock).
pub type Ms = i64;
/// Identifies a parked request so the caller can route its response later.
pub type Token = u64;

/// Group-level errors, mapped to Kafka error codes by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    /// No error.
    None,
    /// The member id is not (or no longer) in the group.
    UnknownMemberId,
    /// The generation is not the group's current one.
    IllegalGeneration,
    /// A rebalance is under way: rejoin.
    RebalanceInProgress,
    /// First join of a dynamic member: rejoin with the member id given.
    MemberIdRequired,
    /// The member's protocols do not match the group's.
    InconsistentGroupProtocol,
    /// Another member with the same group.instance.id replaced this one.
    FencedInstanceId,
    /// Session timeout outside the broker's limits.
    InvalidSessionTimeout,
    /// The group does not exist.
    GroupIdNotFound,
    /// The group still has members.
    NonEmptyGroup,
    /// The group id is empty.
    InvalidGroupId,
    /// The offsets are for a partition the group is consuming (OffsetDelete).
    GroupSubscribedToTopic,
}

/// Group states of the classic protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (may still hold offsets).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Members hold assignments.
    Stable,
    /// Deleted.
    Dead,
}

impl GroupState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Broker-side limits and defaults.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long an empty group waits for more members.
    pub initial_rebalance_delay_ms: i64,
    /// `offsets.retention.minutes` in ms: offsets of a group empty this long expire.
    pub offsets_retention_ms: i64,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Group id.
    pub group_id: String,
    /// Member id ("" on first join).
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// e.g. "consumer".
    pub protocol_type: String,
    /// (name, metadata) in preference order.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// JoinGroup v4+: dynamic members must first obtain a member id.
    pub require_known_member_id: bool,
}

/// A member in a JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Protocol metadata for the chosen protocol.
    pub metadata: Vec<u8>,
}

/// A JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    /// Error.
    pub error: GroupError,
    /// New generation.
    pub generation_id: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// Members with metadata (leader only).
    pub members: Vec<JoinMember>,
}

impl JoinResult {
    pub(super) fn error(error: GroupError, member_id: &str) -> Self {
        JoinResult {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: vec![],
        }
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Group id.
    pub group_id: String,
    /// Generation.
    pub generation_id: i32,
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Assignments (leader only).
    pub assignments: Vec<(String, Vec<u8>)>,
}

/// A SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    /// Error.
    pub error: GroupError,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Protocol name.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Vec<u8>,
}

impl SyncResult {
    pub(super) fn error(error: GroupError) -> Self {
        SyncResult {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: vec![],
        }
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommittedOffset {
    /// Offset (next record to consume).
    pub offset: i64,
    /// Leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: Option<String>,
    /// Commit time.
    pub commit_ms: Ms,
}

/// An offset write for the `__consumer_offsets` log (value `None` deletes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRecord {
    /// Group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// New value, or `None` to delete.
    pub value: Option<CommittedOffset>,
}

/// A member as persisted with its group (Kafka persists group metadata too, so a broker
/// restart does not force a rebalance).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberSnapshot {
    /// Member id.
    pub id: String,
    /// Static id (`group.instance.id`).
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Supported protocols with their metadata.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// Current assignment.
    pub assignment: Vec<u8>,
}

/// A group's membership as persisted once it is Stable (or Empty).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupSnapshot {
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// Members with their assignments (none: an Empty group).
    pub members: Vec<MemberSnapshot>,
}

/// A group metadata write for the `__consumer_offsets` log (`None` deletes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// Group.
    pub group: String,
    /// New value, or `None` to delete.
    pub value: Option<GroupSnapshot>,
}

/// What the caller must do after a step.
#[derive(Debug, Default)]
pub struct Ready {
    /// Parked JoinGroup requests to answer now.
    pub joins: Vec<(Token, JoinResult)>,
    /// Parked SyncGroup requests to answer now.
    pub syncs: Vec<(Token, SyncResult)>,
    /// Offset records to persist (expiry tombstones).
    pub offset_writes: Vec<OffsetRecord>,
    /// Group membership to persist (groups that settled as Stable or Empty).
    pub group_writes: Vec<GroupRecord>,
}

impl Ready {
    pub(super) fn extend(&mut self, o: Ready) {
        self.joins.extend(o.joins);
        self.syncs.extend(o.syncs);
        self.offset_writes.extend(o.offset_writes);
        self.group_writes.extend(o.group_writes);
    }
}
