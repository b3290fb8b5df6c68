//! RouterOS output → records, and records → typed values.
//!
//! Every print form becomes the same [`Record`]: `print detail` ([`parse_detail`]), the `as-value`
//! line ([`parse_as_value`]), `:serialize to=json` ([`parse_json`]), and the key/value blocks of
//! `/system resource print` and friends ([`parse_key_values`]). Values stay text as RouterOS
//! printed them (quoted ones unescaped); [`DiskRecord`], [`PoolRecord`] and the `parse_*` value
//! helpers turn them into numbers, versions and disks.
//! Nothing here does I/O.

mod block;
mod detail;
mod script;
mod subvolume;
mod typed;

pub use block::parse_key_values;
pub use detail::parse_detail;
pub use script::{parse_as_value, parse_json};
pub use subvolume::SubvolumeRecord;
pub use typed::{
    DiskRecord, PoolRecord, RosVersion, Stage, parse_bool, parse_grouped_u64, parse_human_size,
    parse_routeros_version,
};

use super::command::Form;

/// Output that does not have the shape its command promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unexpected RouterOS output at line {line}: {reason}: {text:?}")]
    Line {
        line: usize,
        reason: &'static str,
        text: String,
    },
    #[error("malformed RouterOS string {text:?}: {reason}")]
    Quoted { text: String, reason: String },
    #[error("malformed RouterOS JSON: {0}")]
    Json(String),
    #[error("property {name} appears twice in one item")]
    Duplicate { name: String },
    #[error("RouterOS item lacks the {0} property")]
    Missing(&'static str),
    #[error("property {name}={value:?} is not {expected}")]
    Value {
        name: String,
        value: String,
        expected: &'static str,
    },
    #[error("{value:?} is not {expected}")]
    Malformed {
        value: String,
        expected: &'static str,
    },
}

/// One printed item: its properties in print order, its flags and its comment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The `print detail` index (position in the whole list); `None` in the script forms.
    pub index: Option<u32>,
    /// Flag letters from the item line (`['B', 't']`); the script forms show flags as
    /// boolean properties instead.
    pub flags: Vec<char>,
    /// `;;; text` in `print detail`, `comment=` in the script forms; `None` when empty.
    pub comment: Option<String>,
    /// `name → value`, quoted values unescaped, everything else exactly as printed.
    pub props: Vec<(String, String)>,
}

impl Record {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn has_flag(&self, flag: char) -> bool {
        self.flags.contains(&flag)
    }

    /// Adds a property; a repeated name means the output was misread.
    fn insert(&mut self, name: &str, value: String) -> Result<(), ParseError> {
        if self.get(name).is_some() {
            return Err(ParseError::Duplicate {
                name: name.to_owned(),
            });
        }
        self.props.push((name.to_owned(), value));
        Ok(())
    }
}

/// Reads the output of a print made with [`super::command::Cmd::disk_print`] or
/// [`super::command::Cmd::file_print_under`] in `form`.
pub fn records(form: Form, output: &str) -> Result<Vec<Record>, ParseError> {
    match form {
        Form::Detail => parse_detail(output),
        Form::AsValue => parse_as_value(output),
        Form::Json => parse_json(output),
    }
}

/// The text of a RouterOS double-quoted literal (quotes included): the inverse of
/// [`super::value::quote`].
///
/// Escapes: `\"` `\\` `\$` `\n` `\r` `\t` `\_` (space) `\a` `\b` `\f` `\v` and `\XX` with two
/// upper-case hex digits (lower-case letters after `\` are the named escapes, so `\ab` is a bell
/// and a `b`). Any other escape is an error, as it is to RouterOS. A bare `$` is kept: printed
/// values are not scripts, and RouterOS's escaping of `$` in output is not documented.
pub fn unquote(literal: &str) -> Result<String, ParseError> {
    let fail = |reason: &str| ParseError::Quoted {
        text: literal.to_owned(),
        reason: reason.to_owned(),
    };
    let body = literal
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .ok_or_else(|| fail("it is not enclosed in double quotes"))?;
    let mut bytes = Vec::with_capacity(body.len());
    let mut rest = body.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        if byte == b'"' {
            return Err(fail("it holds an unescaped '\"'"));
        }
        if byte != b'\\' {
            bytes.push(byte);
            continue;
        }
        let (&escape, tail) = rest
            .split_first()
            .ok_or_else(|| fail("it ends inside an escape"))?;
        rest = tail;
        let decoded = match escape {
            b'"' | b'\\' | b'$' => escape,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'_' => b' ',
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0C,
            b'v' => 0x0B,
            high @ (b'0'..=b'9' | b'A'..=b'F') => {
                let (&low, tail) = rest
                    .split_first()
                    .ok_or_else(|| fail("it ends inside a \\XX escape"))?;
                rest = tail;
                match (hex_digit(high), hex_digit(low)) {
                    (Some(high), Some(low)) => high << 4 | low,
                    _ => return Err(fail("a \\XX escape needs two upper-case hex digits")),
                }
            }
            other => return Err(fail(&format!("unknown escape \\{}", char::from(other)))),
        };
        bytes.push(decoded);
    }
    String::from_utf8(bytes).map_err(|_| fail("its bytes are not UTF-8"))
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The lines of RouterOS output, CRLF or LF, without their terminators.
fn lines(output: &str) -> impl Iterator<Item = &str> {
    output
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
}

/// Length of the property name at the start of `text` when it is followed by `=`
/// (`[a-z][a-z0-9-]*=`), the mark of a `name=value` token.
fn property_name_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    if !bytes.first()?.is_ascii_lowercase() {
        return None;
    }
    let len = bytes
        .iter()
        .position(|&b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))?;
    (bytes[len] == b'=').then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquote_reads_every_documented_escape() {
        assert_eq!(unquote(r#""""#).unwrap(), "");
        assert_eq!(unquote(r#""a\"b\\c\$d""#).unwrap(), "a\"b\\c$d");
        assert_eq!(
            unquote(r#""\n\r\t\_\a\b\f\v""#).unwrap(),
            "\n\r\t \x07\x08\x0c\x0b"
        );
        assert_eq!(unquote(r#""\48\45\4C\4C\4F""#).unwrap(), "HELLO");
        assert_eq!(unquote(r#""\C3\A9""#).unwrap(), "é");
        assert_eq!(unquote(r#""\ab""#).unwrap(), "\x07b");
        assert_eq!(unquote(r#""$x""#).unwrap(), "$x");
    }

    #[test]
    fn unquote_refuses_what_routeros_refuses() {
        for bad in [
            r#"x"#, r#""x"#, r#""a"b""#, r#""\y""#, r#""\4""#, r#""\4g""#, r#""\""#, r#""\FF""#,
        ] {
            assert!(unquote(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn property_names_need_an_equals_sign() {
        assert_eq!(property_name_len("slot=\"x\""), Some(4));
        assert_eq!(property_name_len("nvme-tcp-server-port=4420 x"), Some(20));
        for none in ["", "=x", "Slot=x", "slot", "1a=x", "file size=0", ".id=*1"] {
            assert_eq!(property_name_len(none), None, "{none:?}");
        }
    }

    #[test]
    fn record_lookup() {
        let mut record = Record {
            flags: vec!['B'],
            ..Record::default()
        };
        record.insert("slot", "x".into()).unwrap();
        assert_eq!(record.get("slot"), Some("x"));
        assert_eq!(record.get("size"), None);
        assert!(record.has_flag('B') && !record.has_flag('t'));
        assert_eq!(
            record.insert("slot", "y".into()),
            Err(ParseError::Duplicate {
                name: "slot".into()
            })
        );
    }
}
