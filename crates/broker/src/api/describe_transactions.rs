//! DescribeTransactions: state, timeout, start time, producer id/epoch and partitions of
//! each requested transactional id.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use kafka_protocol::ResponseError as E;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};

use super::{Ctx, s};
use crate::txn::TxnMeta;

pub(crate) fn handle(
    ctx: Ctx<'_>,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let coord = ctx
        .broker
        .txns
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut resp = DescribeTransactionsResponse::default();
    for id in req.transactional_ids {
        let mut ts = describe(coord.get(id.as_str()));
        ts.transactional_id = id;
        resp.transaction_states.push(ts);
    }
    resp
}

/// One entry (without the id): TRANSACTIONAL_ID_NOT_FOUND for an unknown id.
fn describe(meta: Option<&TxnMeta>) -> TransactionState {
    let mut ts = TransactionState::default();
    let Some(m) = meta else {
        ts.error_code = E::TransactionalIdNotFound.code();
        ts.producer_id = ProducerId(-1);
        ts.producer_epoch = -1;
        ts.transaction_start_time_ms = -1;
        return ts;
    };
    ts.transaction_state = s(m.state.name());
    ts.transaction_timeout_ms = m.timeout_ms;
    ts.transaction_start_time_ms = m.start_ms;
    ts.producer_id = ProducerId(m.producer_id);
    ts.producer_epoch = m.producer_epoch;
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &m.partitions {
        topics.entry(t).or_default().push(*p);
    }
    ts.topics = topics
        .into_iter()
        .map(|(t, partitions)| {
            let mut td = TopicData::default();
            td.topic = TopicName(s(t));
            td.partitions = partitions;
            td
        })
        .collect();
    ts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::TxnState;

    #[test]
    fn known_and_unknown_ids() {
        let nf = describe(None);
        assert_eq!(nf.error_code, E::TransactionalIdNotFound.code());
        let m = TxnMeta {
            producer_id: 7,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [
                ("b".to_string(), 1),
                ("a".to_string(), 2),
                ("b".to_string(), 0),
            ]
            .into_iter()
            .collect(),
            groups: Default::default(),
            offsets: Vec::new(),
            start_ms: 1_000,
            update_ms: 1_000,
            completing: false,
        };
        let ts = describe(Some(&m));
        assert_eq!(ts.error_code, 0);
        assert_eq!(ts.transaction_state.as_str(), "Ongoing");
        assert_eq!((ts.producer_id.0, ts.producer_epoch), (7, 3));
        assert_eq!(
            (ts.transaction_timeout_ms, ts.transaction_start_time_ms),
            (60_000, 1_000)
        );
        let topics: Vec<_> = ts
            .topics
            .iter()
            .map(|t| (t.topic.as_str().to_string(), t.partitions.clone()))
            .collect();
        assert_eq!(
            topics,
            vec![("a".to_string(), vec![2]), ("b".to_string(), vec![0, 1])]
        );
    }
}
