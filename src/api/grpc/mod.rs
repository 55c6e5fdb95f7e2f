//! gRPC: `clusterd.v1.ClusterService` and `clusterd.v1.CollectionService`, plus health
//! and reflection (wired in `api::server`).

mod cluster_service;
mod collection_service;
mod convert;
mod status;

pub use cluster_service::ClusterApi;
pub use collection_service::CollectionApi;
pub use status::to_status;

/// Generated protobuf and tonic code.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("clusterd.v1");

    /// The encoded descriptor set of our protos, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/clusterd_descriptor.bin"));
}

use crate::model::{ApiResult, Caller};

use super::AppState;

/// Authenticate from gRPC metadata (`authorization`, `x-namespace`).
fn caller_from_metadata(state: &AppState, md: &tonic::metadata::MetadataMap) -> ApiResult<Caller> {
    let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok());
    state.auth.authenticate(get("authorization"), get("x-namespace"))
}
