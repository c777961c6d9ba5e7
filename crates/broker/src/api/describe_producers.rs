//! DescribeProducers: the active producers of each requested partition, with the first
//! offset of the transaction each one has open there.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::Ctx;
use crate::codes;

pub(crate) fn handle(ctx: Ctx<'_>, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let b = ctx.broker;
    let mut resp = DescribeProducersResponse::default();
    for t in req.topics {
        let mut tr = TopicResponse::default();
        tr.name = t.name.clone();
        for index in t.partition_indexes {
            let mut pr = PartitionResponse::default();
            pr.partition_index = index;
            match b.log.partition(t.name.as_str(), index) {
                Err(e) => pr.error_code = codes::log(&e),
                Ok(part) => {
                    pr.active_producers = part.with_producers(|st| {
                        active_producers(&st.describe(), &st.open_transactions())
                    });
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

/// Kafka's `ProducerState` rows from a partition's producers (id, epoch, last sequence,
/// last batch offset) and its open transactions (id, first offset). The last timestamp
/// and coordinator epoch are not tracked (-1). Sorted by producer id.
fn active_producers(known: &[(i64, i16, i32, i64)], open: &[(i64, i64)]) -> Vec<ProducerState> {
    let start = |pid: i64| {
        open.iter()
            .find(|(p, _)| *p == pid)
            .map_or(-1, |(_, first)| *first)
    };
    let mut rows: Vec<ProducerState> = known
        .iter()
        .map(|&(pid, epoch, last_sequence, _)| row(pid, epoch as i32, last_sequence, start(pid)))
        .collect();
    // An open transaction of a producer without sequence state (cannot happen with
    // well-formed batches, but never hide an open transaction).
    for &(pid, first) in open {
        if !known.iter().any(|k| k.0 == pid) {
            rows.push(row(pid, -1, -1, first));
        }
    }
    rows.sort_by_key(|r| r.producer_id.0);
    rows
}

fn row(pid: i64, epoch: i32, last_sequence: i32, txn_start: i64) -> ProducerState {
    let mut r = ProducerState::default();
    r.producer_id = ProducerId(pid);
    r.producer_epoch = epoch;
    r.last_sequence = last_sequence;
    r.last_timestamp = -1;
    r.coordinator_epoch = -1;
    r.current_txn_start_offset = txn_start;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_open_transaction_start() {
        let rows = active_producers(&[(5, 2, 9, 40), (3, 0, 1, 12)], &[(5, 30), (8, 50)]);
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.producer_id.0,
                    r.producer_epoch,
                    r.last_sequence,
                    r.current_txn_start_offset,
                )
            })
            .collect();
        assert_eq!(got, vec![(3, 0, 1, -1), (5, 2, 9, 30), (8, -1, -1, 50)]);
        assert!(
            rows.iter()
                .all(|r| r.last_timestamp == -1 && r.coordinator_epoch == -1)
        );
        assert!(active_producers(&[], &[]).is_empty());
    }
}
