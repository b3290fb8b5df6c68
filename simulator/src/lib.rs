//! rds-sim

pub mod ssh;
