//! Compiles the protos with protox (pure Rust: no system `protoc`), writes the descriptor
//! set for server reflection, and generates the tonic/prost code from it.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/clusterd/v1/clusters.proto",
        "proto/clusterd/v1/collections.proto",
    ];
    for p in protos.iter().chain(&[
        "proto/google/api/annotations.proto",
        "proto/google/api/http.proto",
    ]) {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("clusterd_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // Malformed protobuf is INVALID_ARGUMENT, not INTERNAL (see src/api/grpc/codec.rs).
        .codec_path("crate::api::grpc::codec::Codec")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
