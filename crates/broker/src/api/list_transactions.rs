//! ListTransactions: every transactional id with its producer id and state, filtered by
//! state names, producer ids and (v1+) how long the open transaction has been running.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use std::sync::PoisonError;

use super::{Ctx, s};
use crate::broker::now_ms;
use crate::txn::TxnMeta;

/// Every state name Kafka knows (filters naming others are reported back as unknown).
/// `Dead` and `PrepareEpochFence` are valid filters that Sluice never lists.
const KAFKA_STATES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

pub(crate) fn handle(ctx: Ctx<'_>, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let coord = ctx
        .broker
        .txns
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    // Decoding v0 leaves the duration filter at its default, -1 (no filter).
    list(coord.all(), &req, now_ms())
}

/// The response for `req` over `txns` at `now` (pure).
fn list<'a>(
    txns: impl Iterator<Item = (&'a String, &'a TxnMeta)>,
    req: &ListTransactionsRequest,
    now: i64,
) -> ListTransactionsResponse {
    let mut resp = ListTransactionsResponse::default();
    let mut states: Vec<&str> = Vec::new();
    for f in &req.state_filters {
        // Kafka matches state names exactly.
        match KAFKA_STATES.iter().find(|k| **k == f.as_str()) {
            Some(k) => states.push(k),
            None => resp.unknown_state_filters.push(f.clone()),
        }
    }
    for (tid, m) in txns {
        let name = m.state.name();
        if !req.state_filters.is_empty() && !states.contains(&name) {
            continue;
        }
        if !req.producer_id_filters.is_empty()
            && !req.producer_id_filters.contains(&ProducerId(m.producer_id))
        {
            continue;
        }
        // Only transactions running longer than the filter (one without a start time
        // is not running).
        if req.duration_filter >= 0 && (m.start_ms < 0 || now - m.start_ms <= req.duration_filter) {
            continue;
        }
        let mut ts = TransactionState::default();
        ts.transactional_id = TransactionalId(s(tid.as_str()));
        ts.producer_id = ProducerId(m.producer_id);
        ts.transaction_state = s(name);
        resp.transaction_states.push(ts);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::TxnState;

    fn meta(pid: i64, state: TxnState, start_ms: i64) -> TxnMeta {
        TxnMeta {
            producer_id: pid,
            producer_epoch: 0,
            timeout_ms: 60_000,
            state,
            partitions: Default::default(),
            groups: Default::default(),
            offsets: Vec::new(),
            start_ms,
            update_ms: 0,
            completing: false,
        }
    }

    fn run(
        txns: &[(String, TxnMeta)],
        req: &ListTransactionsRequest,
    ) -> (Vec<String>, Vec<String>) {
        let resp = list(txns.iter().map(|(t, m)| (t, m)), req, 10_000);
        (
            resp.transaction_states
                .iter()
                .map(|t| {
                    format!(
                        "{}:{}:{}",
                        t.transactional_id.as_str(),
                        t.producer_id.0,
                        t.transaction_state.as_str()
                    )
                })
                .collect(),
            resp.unknown_state_filters
                .iter()
                .map(|f| f.to_string())
                .collect(),
        )
    }

    #[test]
    fn filters() {
        let txns = vec![
            ("a".to_string(), meta(1, TxnState::Ongoing, 1_000)),
            ("b".to_string(), meta(2, TxnState::CompleteCommit, -1)),
            ("c".to_string(), meta(3, TxnState::Ongoing, 9_500)),
            ("d".to_string(), meta(4, TxnState::Empty, -1)),
        ];
        let all = ListTransactionsRequest::default();
        assert_eq!(run(&txns, &all).0.len(), 4);

        let mut r = ListTransactionsRequest::default();
        r.state_filters = vec![s("Ongoing"), s("Bogus"), s("Dead")];
        assert_eq!(
            run(&txns, &r),
            (
                vec!["a:1:Ongoing".to_string(), "c:3:Ongoing".to_string()],
                vec!["Bogus".to_string()]
            )
        );
        // Only unknown names: nothing matches.
        r.state_filters = vec![s("ongoing")];
        assert_eq!(run(&txns, &r), (vec![], vec!["ongoing".to_string()]));

        let mut r = ListTransactionsRequest::default();
        r.producer_id_filters = vec![ProducerId(2), ProducerId(4)];
        assert_eq!(
            run(&txns, &r).0,
            vec!["b:2:CompleteCommit".to_string(), "d:4:Empty".to_string()]
        );

        // Running longer than 1s at now = 10s: only "a" (started at 1s).
        let mut r = ListTransactionsRequest::default();
        r.duration_filter = 1_000;
        assert_eq!(run(&txns, &r).0, vec!["a:1:Ongoing".to_string()]);
        r.duration_filter = 0;
        assert_eq!(
            run(&txns, &r).0,
            vec!["a:1:Ongoing".to_string(), "c:3:Ongoing".to_string()]
        );
    }
}
