//! rds-csi: the CSI driver.

pub mod ids;
pub mod rds;
