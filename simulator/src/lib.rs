//! rds-sim

pub mod routeros;
