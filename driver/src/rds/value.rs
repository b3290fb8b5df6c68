//! Validated values a RouterOS command may carry, and how a string becomes a quoted literal.
//!
//! Every value the driver puts on a command line is one of these types, built only through a
//! validating constructor, so a slot, NQN or path that could change how RouterOS parses the line
//! never reaches it. Even so, every string value is sent quoted ([`quote`]): validation is the
//! first wall, quoting the second (routeros/README.md, "Driver rule").

use std::fmt::{self, Write as _};
use std::str::FromStr;

/// Why a value was refused. Each message names the value and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error(
        "slot {value:?} is not usable: {reason}; a slot is 1 to 32 characters of a-z, 0-9 and '-', \
         starting with a letter or digit"
    )]
    Slot { value: String, reason: &'static str },
    #[error(
        "NQN {value:?} is not usable: {reason}; an NQN is nqn.YYYY-MM.<reverse domain>[:<name>], \
         at most 223 bytes of A-Z a-z 0-9 . - : _"
    )]
    Nqn { value: String, reason: &'static str },
    #[error(
        "path {value:?} is not usable: {reason}; a RouterOS path is segments of A-Z a-z 0-9 . _ - \
         separated by '/', relative to the /file root (e.g. raid10/csi)"
    )]
    Path { value: String, reason: &'static str },
    #[error(
        "comment is not usable: {reason}; a comment is at most {max} bytes of printable ASCII \
         without ';' or '='",
        max = Comment::MAX_LEN
    )]
    Comment { reason: String },
    #[error("size {value} is not usable: a size is a whole number of bytes from 1 to {max}", max = ByteSize::MAX)]
    Size { value: String },
    #[error(
        "file text is not usable: {reason}; it is 1 to {max} bytes of printable ASCII",
        max = FileText::MAX_LEN
    )]
    FileText { reason: String },
}

/// A `/disk` slot: `^[a-z0-9][a-z0-9-]{0,31}$`.
///
/// 32 characters is the limit reported on RouterOS 7.24.4 (routeros/README.md, assumption 2).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(String);

impl Slot {
    pub const MAX_LEN: usize = 32;

    pub fn parse(value: &str) -> Result<Self, ValueError> {
        Self::parse_within(value, Self::MAX_LEN)
    }

    /// A slot of the same characters up to `max` long, past [`Slot::MAX_LEN`]: only for
    /// `rds-csi doctor`'s probe of how long a slot this appliance takes (REFERENCE.md §13.14).
    pub fn parse_probe(value: &str, max: usize) -> Result<Self, ValueError> {
        Self::parse_within(value, max)
    }

    fn parse_within(value: &str, max: usize) -> Result<Self, ValueError> {
        let fail = |reason| {
            Err(ValueError::Slot {
                value: value.to_owned(),
                reason,
            })
        };
        let bytes = value.as_bytes();
        match bytes.first() {
            None => return fail("it is empty"),
            Some(b) if !(b.is_ascii_lowercase() || b.is_ascii_digit()) => {
                return fail("it must start with a-z or 0-9");
            }
            Some(_) => {}
        }
        if bytes.len() > max {
            return fail("it is longer than 32 characters");
        }
        if !bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return fail("it holds a character other than a-z, 0-9 and '-'");
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An NVMe Qualified Name: `nqn.YYYY-MM.<reverse domain>` optionally followed by `:<name>`.
///
/// At most 223 bytes (the NVMe base specification's limit). Stricter than the specification on
/// purpose: only `A-Z a-z 0-9 . - : _`, so it needs no escaping anywhere (command line, sysfs,
/// `print detail`, `as-value`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nqn(String);

impl Nqn {
    pub const MAX_LEN: usize = 223;

    pub fn parse(value: &str) -> Result<Self, ValueError> {
        let fail = |reason| {
            Err(ValueError::Nqn {
                value: value.to_owned(),
                reason,
            })
        };
        if value.len() > Self::MAX_LEN {
            return fail("it is longer than 223 bytes");
        }
        let Some(rest) = value.strip_prefix("nqn.") else {
            return fail("it does not start with \"nqn.\"");
        };
        let date = rest.as_bytes().get(..8);
        let valid_date = date.is_some_and(|d| {
            d[..4].iter().all(u8::is_ascii_digit)
                && d[4] == b'-'
                && matches!(&d[5..7], [b'0', b'1'..=b'9'] | [b'1', b'0'..=b'2'])
                && d[7] == b'.'
        });
        if !valid_date {
            return fail("it lacks the YYYY-MM date and '.' after \"nqn.\"");
        }
        let (domain, name) = match rest[8..].split_once(':') {
            Some((domain, name)) => (domain, Some(name)),
            None => (&rest[8..], None),
        };
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if !labels_ok || !domain.contains('.') {
            return fail(
                "the reverse domain must be two or more dot-separated labels of A-Z a-z 0-9 -",
            );
        }
        if let Some(name) = name {
            if name.is_empty() {
                return fail("the name after ':' is empty");
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
            {
                return fail("the name after ':' holds a character other than A-Z a-z 0-9 . - : _");
            }
        }
        Ok(Self(value.to_owned()))
    }

    /// `<self>:<suffix>`, e.g. a volume's NQN from the configured prefix and the volume's slot.
    pub fn with_suffix(&self, suffix: &Slot) -> Result<Self, ValueError> {
        Self::parse(&format!("{}:{}", self.0, suffix.as_str()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A path in the RouterOS `/file` tree, relative to its root (`raid10/csi/pvc-1.img`).
///
/// Segments of `[A-Za-z0-9._-]`, at most 255 bytes each (the file-name limit of the pool's file
/// system), none empty, `.` or `..`. A leading `/` is accepted and dropped: RouterOS prints
/// `file-path` with one and `/file` names without.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RosPath(String);

impl RosPath {
    pub const MAX_SEGMENT_LEN: usize = 255;

    pub fn parse(value: &str) -> Result<Self, ValueError> {
        let fail = |reason| {
            Err(ValueError::Path {
                value: value.to_owned(),
                reason,
            })
        };
        let relative = value.strip_prefix('/').unwrap_or(value);
        if relative.is_empty() {
            return fail("it is empty");
        }
        for segment in relative.split('/') {
            let reason = match segment {
                "" => "it has an empty segment ('//' or a trailing '/')",
                "." | ".." => "it has a '.' or '..' segment",
                s if s.len() > Self::MAX_SEGMENT_LEN => "a segment is longer than 255 bytes",
                s if !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) =>
                {
                    "a segment holds a character other than A-Z a-z 0-9 . _ -"
                }
                _ => continue,
            };
            return fail(reason);
        }
        Ok(Self(relative.to_owned()))
    }

    /// `<self>/<rest>`.
    pub fn join(&self, rest: &RosPath) -> RosPath {
        RosPath(format!("{}/{}", self.0, rest.0))
    }

    /// `<self>/<name>`, where `name` must be a single valid segment.
    pub fn child(&self, name: &str) -> Result<RosPath, ValueError> {
        if name.contains('/') {
            return Err(ValueError::Path {
                value: name.to_owned(),
                reason: "a single segment may not contain '/'",
            });
        }
        Ok(self.join(&RosPath::parse(name)?))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The free text of an item's `comment`.
///
/// Printable ASCII (space to `~`) without `;` and `=`, at most [`Comment::MAX_LEN`] bytes.
/// `;` and `=` are refused rather than encoded because `:put [… as-value]` prints
/// `name=value;name=value` with no escaping, so either would corrupt that read path; control
/// characters are refused because `print detail` shows a comment as one `;;; text` line.
/// `"`, `\` and `$` are allowed: [`quote`] escapes them. Structured metadata is encoded by
/// `crate::ids` to fit these rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Comment(String);

impl Comment {
    /// RouterOS publishes no limit; this bound keeps command lines short and is well above what
    /// `crate::ids` writes (a 128-byte CSI name percent-encodes to at most 384 bytes).
    pub const MAX_LEN: usize = 1024;

    pub fn new(text: &str) -> Result<Self, ValueError> {
        if text.len() > Self::MAX_LEN {
            return Err(ValueError::Comment {
                reason: format!("it is {} bytes long", text.len()),
            });
        }
        if let Some(bad) = text
            .chars()
            .find(|&c| !matches!(c, ' '..='~') || c == ';' || c == '=')
        {
            return Err(ValueError::Comment {
                reason: format!("it contains {bad:?}"),
            });
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The contents of a small file written with `/file add … contents=`: printable ASCII only, so
/// `/file get … contents` prints it back unchanged and a comparison is exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileText(String);

impl FileText {
    /// Well under the 60 KiB that `/file get … contents` returns (REFERENCE.md §9.1).
    pub const MAX_LEN: usize = 4096;

    pub fn new(text: &str) -> Result<Self, ValueError> {
        let reason = if text.is_empty() {
            "it is empty".to_owned()
        } else if text.len() > Self::MAX_LEN {
            format!("it is {} bytes long", text.len())
        } else if let Some(bad) = text.chars().find(|&c| !matches!(c, ' '..='~')) {
            format!("it contains {bad:?}")
        } else {
            return Ok(Self(text.to_owned()));
        };
        Err(ValueError::FileText { reason })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A size in bytes for `file-size`: from 1 to 2^63 − 1.
///
/// RouterOS numbers are signed 64-bit (an inference: no public limit), and a zero-byte disk is
/// meaningless. Sent as an exact decimal byte count, never with a unit suffix (REFERENCE.md §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

impl ByteSize {
    pub const MAX: u64 = i64::MAX as u64;

    pub fn new(bytes: u64) -> Result<Self, ValueError> {
        if bytes == 0 || bytes > Self::MAX {
            return Err(ValueError::Size {
                value: bytes.to_string(),
            });
        }
        Ok(Self(bytes))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// CSI carries sizes as `int64`.
impl TryFrom<i64> for ByteSize {
    type Error = ValueError;

    fn try_from(bytes: i64) -> Result<Self, ValueError> {
        u64::try_from(bytes)
            .map_err(|_| ValueError::Size {
                value: bytes.to_string(),
            })
            .and_then(Self::new)
    }
}

/// Plain decimal digits only; any number that does not fit is refused, not truncated.
impl FromStr for ByteSize {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let refused = || ValueError::Size {
            value: text.to_owned(),
        };
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refused());
        }
        text.parse::<u64>()
            .map_err(|_| refused())
            .and_then(Self::new)
    }
}

macro_rules! display_as_str {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
display_as_str!(Slot, Nqn, RosPath, Comment, FileText);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A RouterOS double-quoted string literal that RouterOS reads back as exactly `text`.
///
/// `\`, `"` and `$` are backslash-escaped (inside quotes `$name` would be substituted); every byte
/// outside printable ASCII, control characters and UTF-8 alike, becomes `\XX` with upper-case hex,
/// so the literal is pure printable ASCII and the command line survives any transport.
/// [`crate::rds::parse::unquote`] is the inverse.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for byte in text.bytes() {
        match byte {
            b'\\' | b'"' | b'$' => {
                out.push('\\');
                out.push(char::from(byte));
            }
            b' '..=b'~' => out.push(char::from(byte)),
            _ => {
                // Writing to a String cannot fail.
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

    #[test]
    fn file_text_is_short_printable_ascii() {
        assert_eq!(FileText::new("known text").unwrap().as_str(), "known text");
        assert!(FileText::new(&"x".repeat(FileText::MAX_LEN)).is_ok());
        for bad in ["", "a\nb", "ü", &"x".repeat(FileText::MAX_LEN + 1)] {
            let error = FileText::new(bad).unwrap_err();
            assert!(error.to_string().contains("printable ASCII"), "{error}");
        }
    }

    #[test]
    fn slot_accepts_the_documented_pattern_only() {
        for ok in [
            "a",
            "0",
            "pvc-0123456789abcdef0123456789ab",
            "raid10-m0",
            "snap-",
        ] {
            assert_eq!(Slot::parse(ok).unwrap().as_str(), ok);
        }
        let too_long = "a".repeat(33);
        for bad in [
            "",
            "-a",
            "A",
            "pvc_1",
            "pvc 1",
            "pvc\"",
            "é",
            too_long.as_str(),
            "a;b",
            "a$b",
        ] {
            assert!(
                matches!(Slot::parse(bad), Err(ValueError::Slot { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(Slot::parse(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn nqn_follows_the_nvme_naming_rules() {
        for ok in [
            "nqn.2026-09.com.mikrotik:rds2216.vm-storage-001",
            "nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "nqn.2014-08.org.nvmexpress.discovery",
            "nqn.2000-12.io.example:a_b",
        ] {
            assert_eq!(Nqn::parse(ok).unwrap().as_str(), ok);
        }
        let long = format!("nqn.2026-09.com.example:{}", "a".repeat(200));
        for bad in [
            "",
            "iqn.2026-09.com.example:x",
            "nqn.26-09.com.example:x",
            "nqn.2026-13.com.example:x",
            "nqn.2026-00.com.example:x",
            "nqn.2026-09.example:x",
            "nqn.2026-09.com..example:x",
            "nqn.2026-09.com.example:",
            "nqn.2026-09.com.example:a b",
            "nqn.2026-09.com.example:a\"b",
            "nqn.2026-09.com.example:a;b",
            long.as_str(),
        ] {
            assert!(
                matches!(Nqn::parse(bad), Err(ValueError::Nqn { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn nqn_suffix_is_validated_again() {
        let prefix = Nqn::parse("nqn.2026-09.com.example:rds-csi").unwrap();
        let id = Slot::parse("pvc-1").unwrap();
        assert_eq!(
            prefix.with_suffix(&id).unwrap().as_str(),
            "nqn.2026-09.com.example:rds-csi:pvc-1"
        );
        let long = Nqn::parse(&format!("nqn.2026-09.com.example:{}", "a".repeat(195))).unwrap();
        assert!(long.with_suffix(&id).is_err());
    }

    #[test]
    fn paths_are_relative_and_plain() {
        assert_eq!(
            RosPath::parse("/raid10/csi").unwrap().as_str(),
            "raid10/csi"
        );
        assert_eq!(
            RosPath::parse("raid10/csi/pvc-1.img").unwrap().as_str(),
            "raid10/csi/pvc-1.img"
        );
        for bad in [
            "", "/", "//raid10", "raid10/", "a//b", "a/../b", "./a", "a b", "a\"b", "a;b", "a$b",
            "é",
        ] {
            assert!(
                matches!(RosPath::parse(bad), Err(ValueError::Path { .. })),
                "{bad:?} accepted"
            );
        }
        let pool = RosPath::parse("raid10").unwrap();
        assert_eq!(pool.child("x.img").unwrap().as_str(), "raid10/x.img");
        assert!(pool.child("a/b").is_err());
        assert!(pool.child("..").is_err());
    }

    #[test]
    fn comments_refuse_what_as_value_cannot_carry() {
        assert!(Comment::new("a \"quoted\" \\ $var [x]").is_ok());
        assert!(Comment::new("").is_ok());
        for bad in ["a;b", "a=b", "line\nbreak", "tab\t", "é"] {
            assert!(
                matches!(Comment::new(bad), Err(ValueError::Comment { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(Comment::new(&"x".repeat(Comment::MAX_LEN)).is_ok());
        assert!(Comment::new(&"x".repeat(Comment::MAX_LEN + 1)).is_err());
    }

    #[test]
    fn sizes_are_positive_and_signed_64_bit() {
        assert_eq!(ByteSize::new(1).unwrap().get(), 1);
        assert_eq!(ByteSize::new(ByteSize::MAX).unwrap().get(), i64::MAX as u64);
        assert!(ByteSize::new(0).is_err());
        assert!(ByteSize::new(1 << 63).is_err());
        assert!(ByteSize::try_from(-1i64).is_err());
        assert_eq!(
            ByteSize::try_from(1_073_741_824i64).unwrap().get(),
            1_073_741_824
        );
        assert_eq!(
            "1073741824".parse::<ByteSize>().unwrap().get(),
            1_073_741_824
        );
        for bad in [
            "",
            "0",
            "1G",
            "-1",
            " 1",
            "1180591620717411303424",
            "9223372036854775808",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn quote_escapes_specials_and_non_ascii() {
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("pvc-1"), "\"pvc-1\"");
        assert_eq!(quote(r#"a"b\c$d"#), r#""a\"b\\c\$d""#);
        assert_eq!(quote("a\nb\x7f"), r#""a\0Ab\7F""#);
        assert_eq!(quote("é"), r#""\C3\A9""#);
        assert_eq!(quote("[x];y"), "\"[x];y\"");
    }
}
