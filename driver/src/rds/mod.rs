//! The RouterOS client: typed commands, their output parsed, their errors classified.
//!
//! Everything here but the transport is pure: [`command`] builds lines from [`value`]s, [`parse`]
//! reads what RouterOS prints, [`error`] reads what it prints when it refuses.

pub mod command;
pub mod error;
pub mod parse;
pub mod value;
