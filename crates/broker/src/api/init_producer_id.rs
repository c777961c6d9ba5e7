//! InitProducerId for idempotent producers (no transactional id): a fresh producer id,
//! or an epoch bump of a known one (KIP-360).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Ctx;

pub(crate) fn handle(ctx: Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let b = ctx.broker;
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if req.transactional_id.is_some() {
        tracing::warn!(
            "InitProducerId with a transactional.id from {}: transactions are not supported yet by this Sluice build",
            ctx.peer
        );
        resp.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return resp;
    }
    let pid = req.producer_id.0;
    if pid >= 0 {
        match b.producers.known_epoch(pid) {
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
