//! RouterOS output formatters: pure functions from typed items to the exact text RouterOS prints.
//!
//! Every line ends in CRLF, as on the wire. The layouts, and the evidence for each choice, are
//! documented on the functions: [`detail`] and [`terse`] (list prints), [`as_value`] and [`json`]
//! (script forms), [`key_values`] and [`monitor_block`] (singleton blocks), and the scalar helpers
//! [`human_size`], [`group_digits`] and [`quote`].

mod blocks;
#[cfg(test)]
mod fixtures;
mod listing;
mod script;

pub use blocks::{key_values, monitor_block};
pub use listing::{detail, legend, terse};
pub use script::{as_value, json};

use std::fmt::Write as _;

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

/// The line terminator of every line RouterOS sends.
const CRLF: &str = "\r\n";

impl Value {
    /// The value as `print detail` shows it.
    fn detail_text(&self) -> String {
        match self {
            Value::Str(s) => quote(s),
            Value::Num(n) => group_digits(*n),
            _ => self.terse_text(),
        }
    }

    /// The value as `print terse` shows it: like `detail`, but strings unquoted and numbers
    /// ungrouped. A `Size` stays human-readable, because terse prints the same display text as
    /// detail and only drops the quoting and digit grouping.
    fn terse_text(&self) -> String {
        match self {
            Value::Str(s) | Value::Bare(s) => s.clone(),
            Value::Bool(true) => "yes".to_owned(),
            Value::Bool(false) => "no".to_owned(),
            Value::Num(n) | Value::Int(n) => n.to_string(),
            Value::Size(n) => human_size(*n),
            Value::Percent(p) => format!("{p}%"),
        }
    }
}

/// A byte count the way RouterOS shows `file-size`, `/file` `size` and resource memory.
///
/// The largest binary unit (KiB, MiB, GiB, TiB) in which the value is at least 10, with one
/// decimal; below 10 KiB the plain number of bytes. Above TiB the value stays in TiB
/// (`10240.0TiB`). The decimal is **rounded half up** (10 292 bytes = 10.0508 KiB → `10.1KiB`):
/// RouterOS's choice between rounding and truncating is not in public material, every sample in
/// REFERENCE.md §6.4 holds under both, and rounding is what a C `%.1f` would do.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (suffix, shift) in UNITS {
        let unit = 1u64 << shift;
        if bytes >= 10 * unit {
            let unit = u128::from(unit);
            let tenths = (u128::from(bytes) * 10 + unit / 2) / unit;
            return format!("{}.{}{suffix}", tenths / 10, tenths % 10);
        }
    }
    bytes.to_string()
}

/// A number with a space every three digits from the right: `1 099 511 627 776`.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

/// A RouterOS double-quoted string literal that the RouterOS lexer reads back as exactly `s`.
///
/// `\`, `"` and `$` are escaped (inside quotes `$name` would be substituted); newline, carriage
/// return and tab use their short forms `\n` `\r` `\t`; every other byte outside printable ASCII,
/// UTF-8 bytes included, becomes `\XX` with upper-case hex (RouterOS strings are bytes, and its
/// console prints non-ASCII the same way). The result is pure printable ASCII.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for byte in s.bytes() {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'$' => out.push_str("\\$"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7E => out.push(char::from(byte)),
            _ => {
                let _ = write!(out, "\\{byte:02X}");
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    const TIB: u64 = 1 << 40;

    #[test]
    fn human_size_reproduces_every_observed_sample() {
        // REFERENCE.md §6.4; the fractional samples use the byte count nearest to the shown value.
        let table = [
            (TIB, "1024.0GiB"),
            (50 * GIB, "50.0GiB"),
            (10 * GIB, "10.0GiB"),
            (GIB, "1024.0MiB"),
            (13_946_061, "13.3MiB"),      // 13.3 MiB
            (3_884_079_514, "3704.1MiB"), // free memory of 3.6 GiB
            (1_970_278, "1924.1KiB"),     // 1.88 MiB
            (1196 * KIB, "1196.0KiB"),    // 1.17 MiB
            (5, "5"),
            (0, "0"),
        ];
        for (bytes, shown) in table {
            assert_eq!(human_size(bytes), shown, "{bytes} bytes");
        }
    }

    #[test]
    fn human_size_switches_unit_at_ten_and_rounds_half_up() {
        assert_eq!(human_size(10 * KIB - 1), "10239");
        assert_eq!(human_size(10 * KIB), "10.0KiB");
        assert_eq!(human_size(10 * MIB - 1), "10240.0KiB");
        assert_eq!(human_size(10 * MIB), "10.0MiB");
        assert_eq!(human_size(10 * TIB), "10.0TiB");
        assert_eq!(human_size(10_291), "10.0KiB"); // 10.0498 KiB
        assert_eq!(human_size(10_292), "10.1KiB"); // 10.0508 KiB
        assert_eq!(human_size(10_240 * TIB), "10240.0TiB");
        assert_eq!(human_size(u64::MAX), "16777216.0TiB");
    }

    #[test]
    fn group_digits_puts_a_space_every_three_digits() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1 000");
        assert_eq!(group_digits(512_000), "512 000");
        assert_eq!(group_digits(1_562_806_656), "1 562 806 656");
        assert_eq!(group_digits(1_099_511_627_776), "1 099 511 627 776");
        assert_eq!(group_digits(u64::MAX), "18 446 744 073 709 551 615");
    }

    #[test]
    fn quote_escapes_what_the_lexer_would_interpret() {
        assert_eq!(quote(""), r#""""#);
        assert_eq!(quote("vm-storage-001"), r#""vm-storage-001""#);
        assert_eq!(quote(r#"a"b\c$d"#), r#""a\"b\\c\$d""#);
        assert_eq!(quote("l1\nl2\r\tx"), r#""l1\nl2\r\tx""#);
        assert_eq!(quote("\x07\x1b\x7f"), r#""\07\1B\7F""#);
        assert_eq!(quote("é"), r#""\C3\A9""#);
        assert_eq!(quote("a b;c=d[e]"), r#""a b;c=d[e]""#);
    }

    /// The RouterOS lexer's reading of a quoted literal (REFERENCE.md §3.2), or `None` where it
    /// would report a syntax error or substitute a variable.
    fn lex_quoted(literal: &str) -> Option<String> {
        let inner = literal.strip_prefix('"')?.strip_suffix('"')?.as_bytes();
        let mut bytes = Vec::new();
        let mut i = 0;
        while i < inner.len() {
            match inner[i] {
                b'\\' => {
                    let escape = *inner.get(i + 1)?;
                    let short = match escape {
                        b'"' | b'\\' | b'$' => Some(escape),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'_' => Some(b' '),
                        b'a' => Some(0x07),
                        b'b' => Some(0x08),
                        b'f' => Some(0x0C),
                        b'v' => Some(0x0B),
                        _ => None,
                    };
                    if let Some(byte) = short {
                        bytes.push(byte);
                        i += 2;
                    } else {
                        let hex = inner.get(i + 1..i + 3)?;
                        if !hex
                            .iter()
                            .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h))
                        {
                            return None;
                        }
                        bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                        i += 3;
                    }
                }
                b'"' | b'$' => return None,
                byte if byte.is_ascii_control() => return None,
                byte => {
                    bytes.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8(bytes).ok()
    }

    #[test]
    fn lex_quoted_rejects_what_routeros_rejects() {
        assert_eq!(lex_quoted(r#""x\y""#), None);
        assert_eq!(lex_quoted(r#""a$b""#), None);
        assert_eq!(lex_quoted(r#""a"b""#), None);
        assert_eq!(lex_quoted("\"a\nb\""), None);
        assert_eq!(lex_quoted(r#""\48\45\4C\4C\4F""#).as_deref(), Some("HELLO"));
    }

    proptest! {
        #[test]
        fn quote_is_one_safe_literal_that_reads_back_exactly(s in any::<String>()) {
            let literal = quote(&s);
            prop_assert!(literal.bytes().all(|b| (0x20..=0x7E).contains(&b)), "{literal}");
            prop_assert_eq!(lex_quoted(&literal), Some(s));
        }

        #[test]
        fn quote_round_trips_strings_dense_in_special_characters(
            s in proptest::string::string_regex("[\"$\\\\\\x00-\\x1f\\x7f a-zA-Z0-9é€]{0,40}").unwrap()
        ) {
            prop_assert_eq!(lex_quoted(&quote(&s)), Some(s));
        }
    }
}
