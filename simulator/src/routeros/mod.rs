//! The RouterOS side of the simulator: how it prints what it holds.

pub mod format;
