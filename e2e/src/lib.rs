//! e2e
pub mod qemu;
