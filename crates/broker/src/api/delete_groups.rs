//! DeleteGroups: empty groups only; their offsets and membership record are tombstoned
//! durably.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use std::sync::PoisonError;

use super::Ctx;
use crate::codes;

pub(crate) async fn handle(ctx: Ctx<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let b = ctx.broker;
    let mut resp = DeleteGroupsResponse::default();
    for g in req.groups_names {
        let mut r = DeletableGroupResult::default();
        r.group_id = g.clone();
        let result = b
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .delete_group(g.as_str());
        r.error_code = match result {
            Err(e) => codes::group(e),
            Ok(tombstones) => match async {
                b.persist_offsets(tombstones).await?;
                let gone = crate::group::GroupRecord {
                    group: g.to_string(),
                    value: None,
                };
                b.persist_groups(vec![gone]).await
            }
            .await
            {
                Ok(()) => codes::NONE,
                Err(e) => {
                    tracing::error!("deleting group {}: {e}", g.as_str());
                    kafka_protocol::ResponseError::CoordinatorNotAvailable.code()
                }
            },
        };
        resp.results.push(r);
    }
    resp
}
