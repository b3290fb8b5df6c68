//! rds-csi: the CSI driver.
