//! ApiVersions: the served APIs and version ranges.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::Ctx;

fn ranges() -> Vec<ApiVersion> {
    super::all_supported()
        .into_iter()
        .map(|(k, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = k as i16;
            v.min_version = lo;
            v.max_version = hi;
            v
        })
        .collect()
}

pub(crate) fn handle(_ctx: Ctx<'_>, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = ranges();
    r
}

/// The answer to an ApiVersions request of a version we do not serve (sent as v0).
pub(crate) fn unsupported() -> kafka_protocol::messages::ResponseKind {
    let mut r = ApiVersionsResponse::default();
    r.error_code = ResponseError::UnsupportedVersion.code();
    r.api_keys = ranges();
    kafka_protocol::messages::ResponseKind::ApiVersions(r)
}
