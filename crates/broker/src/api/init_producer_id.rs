//! InitProducerId: for idempotent producers a fresh producer id, or an epoch bump of a
//! known one (KIP-360); with a transactional id, the transaction coordinator binds the id
//! to a producer id and bumps its epoch, fencing older instances and aborting (or
//! finishing) their open transaction first.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{Ctx, blocking};
use crate::transactions::TxnFailure;
use crate::txn::{Completion, InitOutcome, TxnError};

/// PRODUCER_FENCED is known from version 4 (KIP-588).
const FENCED_CODE_V: i16 = 4;

enum Step {
    Ready(i64, i16),
    Complete(Completion),
}

fn transactional(
    b: &std::sync::Arc<crate::broker::Broker>,
    tid: &str,
    req: &InitProducerIdRequest,
) -> Result<(i64, i16), TxnFailure> {
    // A previous instance's transaction may need finishing first; a few rounds at most.
    for _ in 0..8 {
        let fresh = b
            .producers
            .allocate_id()
            .map_err(|e| TxnFailure::Storage(format!("allocating a producer id: {e}")))?;
        let step = b.txn_step(true, |c, now| {
            match c.init_producer_id(
                tid,
                req.transaction_timeout_ms,
                (req.producer_id.0, req.producer_epoch),
                now,
                &mut || fresh,
            )? {
                InitOutcome::Ready {
                    producer_id,
                    producer_epoch,
                    write,
                } => Ok((Step::Ready(producer_id, producer_epoch), vec![write])),
                InitOutcome::CompleteFirst(c, w) => {
                    Ok((Step::Complete(c), w.into_iter().collect()))
                }
            }
        })?;
        match step {
            Step::Ready(pid, epoch) => return Ok((pid, epoch)),
            Step::Complete(c) => b
                .finish_txn(&c)
                .map_err(|e| TxnFailure::Storage(e.to_string()))?,
        }
    }
    Err(TxnFailure::Refused(TxnError::Concurrent))
}

pub(crate) async fn handle(ctx: Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let b = ctx.broker;
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if let Some(tid) = req.transactional_id.as_ref().map(|t| t.to_string()) {
        let (bb, version) = (b.clone(), ctx.version);
        match blocking(move || transactional(&bb, &tid, &req)).await {
            Ok((pid, epoch)) => {
                resp.producer_id = ProducerId(pid);
                resp.producer_epoch = epoch;
            }
            Err(e) => {
                if let TxnFailure::Storage(msg) = &e {
                    tracing::error!("InitProducerId: {msg}");
                }
                resp.error_code = e.code(version, FENCED_CODE_V);
            }
        }
        return resp;
    }
    let pid = req.producer_id.0;
    if pid >= 0 {
        match crate::producers::known_epoch(&b.log, pid) {
            Some(e) if e == req.producer_epoch && e < i16::MAX - 1 => {
                resp.producer_id = ProducerId(pid);
                resp.producer_epoch = e + 1;
                return resp;
            }
            Some(e) if e != req.producer_epoch => {
                resp.error_code = ResponseError::InvalidProducerEpoch.code();
                return resp;
            }
            _ => {}
        }
    }
    match b.producers.allocate_id() {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!("allocating a producer id: {e}");
            resp.error_code = ResponseError::KafkaStorageError.code();
        }
    }
    resp
}
