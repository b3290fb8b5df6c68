//! The RouterOS client.

pub mod ssh;
