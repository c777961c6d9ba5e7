//! The coordinator's state: groups, their members and the [`GroupCoordinator`] that
//! owns them. The transitions live in `membership`, offsets and snapshots in `offsets`,
//! the read-only views in `describe`.

use std::collections::{BTreeMap, HashMap};

use super::types::{CommittedOffset, CoordinatorConfig, GroupState, Ms, Token};

#[derive(Debug, Clone)]
pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout_ms: i32,
    pub(super) rebalance_timeout_ms: i32,
    pub(super) protocols: Vec<(String, Vec<u8>)>,
    pub(super) assignment: Vec<u8>,
    pub(super) awaiting_join: Option<Token>,
    pub(super) awaiting_sync: Option<Token>,
    pub(super) last_heartbeat: Ms,
}

#[derive(Debug)]
pub(super) struct Group {
    pub(super) id: String,
    pub(super) state: GroupState,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pub(super) pending: HashMap<String, Ms>,
    pub(super) static_members: HashMap<String, String>,
    pub(super) rebalance_deadline: Ms,
    /// An empty group that got its first member waits until then for more
    /// (`group.initial.rebalance.delay.ms`).
    pub(super) hold_until: Ms,
    pub(super) offsets: BTreeMap<(String, i32), CommittedOffset>,
    pub(super) empty_since: Ms,
    pub(super) join_order: u64,
    /// Membership changed since it was last persisted (written once the group settles).
    pub(super) dirty: bool,
}

/// The coordinator for every group of this broker.
#[derive(Debug)]
pub struct GroupCoordinator {
    pub(super) cfg: CoordinatorConfig,
    pub(super) groups: BTreeMap<String, Group>,
    pub(super) next_member: u64,
}

impl GroupCoordinator {
    /// An empty coordinator.
    pub fn new(cfg: CoordinatorConfig) -> Self {
        GroupCoordinator {
            cfg,
            groups: BTreeMap::new(),
            next_member: 0,
        }
    }

    pub(super) fn group_mut(&mut self, id: &str, now: Ms) -> &mut Group {
        self.groups.entry(id.to_string()).or_insert_with(|| Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: 0,
            hold_until: 0,
            offsets: BTreeMap::new(),
            empty_since: now,
            join_order: 0,
            dirty: false,
        })
    }
}
