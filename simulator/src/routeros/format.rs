//! RouterOS output formatters: pure functions from typed items to the exact text RouterOS prints.
//! (Interface fixed; bodies being written.)

/// How a property's value is typed decides how RouterOS prints it (quoting is by type, not content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string property: always double-quoted in `detail` (even when empty), with `"`, `\` and
    /// control characters escaped; raw in `terse`/`as-value`.
    Str(String),
    /// An enum, path or other bare token printed as is (`fs=-`, `file-path=/raid10/x.img`).
    Bare(String),
    /// A boolean: `yes`/`no` in `detail`/`terse`, `true`/`false` in `as-value` and JSON.
    Bool(bool),
    /// A big number: space-grouped in `detail` (`size=1 099 511 627 776`), raw elsewhere.
    Num(u64),
    /// A small number printed plainly everywhere (`sector-size=512`, `nvme-tcp-server-port=4420`).
    Int(u64),
    /// A byte count printed human-readable in `detail` (`1024.0GiB`), raw bytes elsewhere.
    Size(u64),
    /// A percentage: `8%`.
    Percent(u8),
}

/// One flag a menu knows, e.g. `B - BLOCK-DEVICE` in group 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagDef {
    pub letter: char,
    pub name: &'static str,
    /// Flags in the same group share one column on the item line.
    pub group: u8,
}

/// One printed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Position in the whole unfiltered list.
    pub index: usize,
    /// Internal id (`*1A` prints as `.id=*1A` in as-value).
    pub id: u32,
    /// Letters of the flags this item carries.
    pub flags: Vec<char>,
    pub comment: Option<String>,
    /// Properties in print order.
    pub props: Vec<(&'static str, Value)>,
}

// TEMPORARY until the formatter branch merges.
pub fn detail(_: &[Item], _: &[FlagDef], _: usize) -> String { unimplemented!() }
pub fn terse(_: &[Item], _: &[FlagDef]) -> String { unimplemented!() }
pub fn as_value(_: &[Item]) -> String { unimplemented!() }
pub fn json(_: &[Item]) -> String { unimplemented!() }
pub fn group_digits(_: u64) -> String { unimplemented!() }
pub fn key_values(_: &[(&str, String)]) -> String { unimplemented!() }
pub fn monitor_block(_: &[(&str, String)]) -> String { unimplemented!() }
