//! rds-csi: the CSI driver.

pub mod csi;
pub mod grpc;
