//! rds-csi: a Kubernetes CSI driver for MikroTik RDS. See ARCHITECTURE.md at the repository root.

pub mod csi;
pub mod grpc;
pub mod ids;
pub mod rds;
