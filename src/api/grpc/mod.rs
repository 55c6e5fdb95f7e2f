//! gRPC: `clusterd.v1.ClusterService` and `clusterd.v1.CollectionService`, plus health
//! and reflection (wired in `api::server`).

mod cluster_service;
pub mod codec;
mod collection_service;
mod convert;
mod status;

pub use cluster_service::ClusterApi;
pub use collection_service::CollectionApi;
pub use status::to_status;

// The handler's request decoding, for `crate::fuzzing`.
pub(crate) use convert::execute_request_from_proto;

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
    state
        .auth
        .authenticate(get("authorization"), get("x-namespace"))
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::DescriptorProto;

    use super::pb;

    fn messages(fds: &prost_types::FileDescriptorSet) -> Vec<&DescriptorProto> {
        fn walk<'a>(m: &'a DescriptorProto, out: &mut Vec<&'a DescriptorProto>) {
            out.push(m);
            m.nested_type.iter().for_each(|n| walk(n, out));
        }
        let mut out = Vec::new();
        for f in fds.file.iter().filter(|f| f.package() == "clusterd.v1") {
            f.message_type.iter().for_each(|m| walk(m, &mut out));
        }
        out
    }

    #[test]
    fn every_field_prints_its_snake_case_name_in_proto_json() {
        let fds = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        let all = messages(&fds);
        assert!(all.len() > 10);
        for m in all {
            // Map entry messages are synthesised by protoc; their keys are not fields.
            if m.options.as_ref().is_some_and(|o| o.map_entry()) {
                continue;
            }
            for f in &m.field {
                assert_eq!(f.json_name(), f.name(), "{}.{}", m.name(), f.name());
            }
        }
    }

    #[test]
    fn fields_whose_default_is_not_zero_are_optional() {
        let fds = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        let all = messages(&fds);
        let field = |msg: &str, name: &str| {
            all.iter()
                .find(|m| m.name() == msg)
                .and_then(|m| m.field.iter().find(|f| f.name() == name))
                .cloned()
                .unwrap()
        };
        for (msg, name) in [
            ("ExecuteClusteringRequest", "store_results"),
            ("ExecuteClusteringRequest", "compute_metrics"),
            ("ExecuteClusteringRequest", "sample_size"),
            ("ClusteringConfig", "normalize_features"),
        ] {
            assert!(field(msg, name).proto3_optional(), "{msg}.{name}");
        }
        // Counts are 32-bit so that proto JSON prints numbers, not strings.
        use prost_types::field_descriptor_proto::Type;
        for (msg, name) in [
            ("ExecuteClusteringResponse", "num_clusters"),
            ("ExecuteClusteringResponse", "num_documents"),
            ("ExecuteClusteringResponse", "execution_time_ms"),
            ("ClusterCentroid", "num_members"),
        ] {
            assert_eq!(field(msg, name).r#type(), Type::Int32, "{msg}.{name}");
        }
    }
}
