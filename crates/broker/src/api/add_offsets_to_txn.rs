//! AddOffsetsToTxn: a consumer group's offsets become part of the open transaction
//! (committed with TxnOffsetCommit, visible only if the transaction commits).

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::{Ctx, blocking};
use crate::codes;

/// PRODUCER_FENCED is known from version 2 (KIP-588).
const FENCED_CODE_V: i16 = 2;

pub(crate) async fn handle(ctx: Ctx<'_>, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let b = ctx.broker.clone();
    let tid = req.transactional_id.to_string();
    let group = req.group_id.to_string();
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    let result = blocking(move || {
        b.txn_step(true, |c, now| {
            Ok((
                (),
                c.add_offsets(&tid, pid, epoch, &group, now)?
                    .into_iter()
                    .collect(),
            ))
        })
    })
    .await;
    let mut resp = AddOffsetsToTxnResponse::default();
    resp.error_code = match result {
        Ok(()) => codes::NONE,
        Err(e) => e.code(ctx.version, FENCED_CODE_V),
    };
    resp
}
