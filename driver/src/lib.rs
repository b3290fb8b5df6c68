//! rds-csi: the CSI driver.

pub mod rds;
