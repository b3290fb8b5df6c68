//! The RouterOS client: typed commands, their output parsed, their errors classified, and the SSH
//! transport that carries them.
//!
//! Everything here but the transport is pure: [`command`] builds lines from [`value`]s, [`parse`]
//! reads what RouterOS prints, [`error`] reads what it prints when it refuses, and [`ssh`] moves
//! lines and text.

pub mod allow_list;
pub mod command;
pub mod disk;
pub mod error;
pub mod parse;
pub mod ssh;
pub mod value;
