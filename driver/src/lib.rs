//! rds-csi: a Kubernetes CSI driver for MikroTik RDS. See ARCHITECTURE.md at the repository root.

pub mod config;
pub mod contract;
pub mod controller;
pub mod csi;
#[cfg(feature = "dev")]
pub mod dev;
pub mod doctor;
pub mod grpc;
pub mod guard;
pub mod identity;
pub mod ids;
pub mod kubernetes;
pub mod metrics;
pub mod node;
pub mod orphans;
pub mod rds;
mod rpc_trace;
pub mod schedule;
pub mod service;
pub mod snapshot;
