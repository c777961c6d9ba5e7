//! EndTxn: commit or abort. PrepareCommit/PrepareAbort is synced first; the markers are
//! then written and synced to every partition of the transaction (and on commit its
//! offsets applied) before the answer, so a consumer reading read_committed sees the
//! outcome as soon as the producer does. If writing markers fails, the prepared state is
//! durable and the coordinator's tick finishes the transaction later (as Kafka does).

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::{Ctx, blocking};
use crate::codes;

/// PRODUCER_FENCED is known from version 2 (KIP-588).
const FENCED_CODE_V: i16 = 2;

pub(crate) async fn handle(ctx: Ctx<'_>, req: EndTxnRequest) -> EndTxnResponse {
    let b = ctx.broker.clone();
    let tid = req.transactional_id.to_string();
    let (pid, epoch, commit) = (req.producer_id.0, req.producer_epoch, req.committed);
    let result = blocking(move || {
        let prepared = b.txn_step(true, |c, now| {
            match c.end_txn(&tid, pid, epoch, commit, now)? {
                Some((completion, write)) => Ok((Some(completion), vec![write])),
                None => Ok((None, Vec::new())),
            }
        })?;
        if let Some(c) = prepared {
            // Errors are logged and retried by the tick; the outcome is already decided.
            let _ = b.finish_txn(&c);
        }
        Ok::<(), crate::transactions::TxnFailure>(())
    })
    .await;
    let mut resp = EndTxnResponse::default();
    resp.producer_id = kafka_protocol::messages::ProducerId(-1);
    resp.producer_epoch = -1;
    resp.error_code = match result {
        Ok(()) => codes::NONE,
        Err(e) => e.code(ctx.version, FENCED_CODE_V),
    };
    resp
}
