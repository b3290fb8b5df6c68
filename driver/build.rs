//! Generates the CSI gRPC code from `proto/csi.proto`.
//!
//! protox parses the proto in-process (it bundles the well-known types), so
//! building needs no `protoc` binary. Besides the tonic server and client
//! code, the encoded descriptor set is written to `OUT_DIR` with the custom
//! options (`csi_secret`, `alpha_*`) intact, for the spec-conformance tests.

use std::error::Error;
use std::path::PathBuf;

const PROTO: &str = "proto/csi.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO}");

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_file(PROTO)?;

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    std::fs::write(
        out_dir.join("csi_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    // The imported google.protobuf files must stay in the set: prost-build
    // inspects them (e.g. to decide on derives) even though it maps those
    // types onto prost-types instead of generating them.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
