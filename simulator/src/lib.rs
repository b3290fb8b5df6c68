//! rds-sim
pub mod nvme;
