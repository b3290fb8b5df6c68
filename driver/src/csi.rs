//! The CSI v1.12.0 protocol types and gRPC services, generated from
//! `proto/csi.proto` by `build.rs`.
//!
//! Servers implement `v1::identity_server::Identity`,
//! `v1::controller_server::Controller` and `v1::node_server::Node`; clients
//! use the matching `*_client` modules.

/// The `csi.v1` protobuf package.
pub mod v1 {
    tonic::include_proto!("csi.v1");
}

/// The encoded `FileDescriptorSet` of `csi.proto` and its imports, custom
/// options (`csi_secret`, `alpha_*`) included.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/csi_descriptor.bin"));
