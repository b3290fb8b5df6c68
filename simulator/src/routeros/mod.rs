//! The RouterOS command language: menus, parser and output formats. Pure: no I/O.

pub mod format;
pub mod menu;
pub mod script;
