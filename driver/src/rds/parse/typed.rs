//! Printed values → typed values, and records → the disks the driver works with.

use std::fmt;

use super::{ParseError, Record};

/// A big number as `print detail` shows it (`1 099 511 627 776`) or as the script forms do
/// (`1099511627776`).
pub fn parse_grouped_u64(text: &str) -> Result<u64, ParseError> {
    let invalid = || ParseError::Malformed {
        value: text.to_owned(),
        expected: "a whole number",
    };
    let mut groups = text.trim().split(' ');
    let first = groups.next().unwrap_or_default();
    let mut digits = first.to_owned();
    let mut grouped = false;
    for group in groups {
        if group.len() != 3 {
            return Err(invalid());
        }
        digits.push_str(group);
        grouped = true;
    }
    let first_ok = !first.is_empty() && (!grouped || first.len() <= 3);
    if !first_ok || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    digits.parse().map_err(|_| invalid())
}

/// A size as RouterOS shows `file-size` or `/file` `size`: `1024.0GiB`, `13.3MiB`, or plain
/// bytes (`5`). Binary units; the one decimal makes the result approximate (nearest byte of the
/// printed value), so read an exact size from `size=` instead.
pub fn parse_human_size(text: &str) -> Result<u64, ParseError> {
    const UNITS: [(&str, u32); 6] = [
        ("KiB", 10),
        ("MiB", 20),
        ("GiB", 30),
        ("TiB", 40),
        ("PiB", 50),
        ("EiB", 60),
    ];
    let invalid = || ParseError::Malformed {
        value: text.to_owned(),
        expected: "a size such as 1024.0GiB",
    };
    let text = text.trim();
    let (number, shift) = UNITS
        .iter()
        .find_map(|&(suffix, shift)| text.strip_suffix(suffix).map(|number| (number, shift)))
        .unwrap_or((text, 0));
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || (shift == 0 && number.contains('.'))
    {
        return Err(invalid());
    }
    let unit = 1u128 << shift;
    let whole: u128 = whole.parse().map_err(|_| invalid())?;
    let scale = 10u128
        .checked_pow(u32::try_from(fraction.len()).map_err(|_| invalid())?)
        .ok_or_else(invalid)?;
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| invalid())?
    };
    let bytes = whole
        .checked_mul(unit)
        .and_then(|b| b.checked_add((fraction * unit + scale / 2) / scale))
        .ok_or_else(invalid)?;
    u64::try_from(bytes).map_err(|_| invalid())
}

/// `yes`/`no` (`print detail`) or `true`/`false` (script forms).
pub fn parse_bool(text: &str) -> Result<bool, ParseError> {
    match text {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(ParseError::Malformed {
            value: text.to_owned(),
            expected: "yes/no or true/false",
        }),
    }
}

/// A RouterOS version, ordered: `7.24beta1 < 7.24rc2 < 7.24 < 7.24.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RosVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    pub stage: Stage,
}

/// Pre-releases sort before the release (variant order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Beta(u32),
    Rc(u32),
    Release,
}

impl RosVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        RosVersion {
            major,
            minor,
            patch,
            stage: Stage::Release,
        }
    }
}

impl fmt::Display for RosVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.patch != 0 {
            write!(f, ".{}", self.patch)?;
        }
        match self.stage {
            Stage::Beta(n) => write!(f, "beta{n}"),
            Stage::Rc(n) => write!(f, "rc{n}"),
            Stage::Release => Ok(()),
        }
    }
}

/// The `version:` of `/system resource print`: `7.24.4 (stable)`, `6.48.6 (long-term)`,
/// `7.24rc2`, `7.18beta2`. The channel in parentheses is ignored.
pub fn parse_routeros_version(text: &str) -> Result<RosVersion, ParseError> {
    let invalid = || ParseError::Malformed {
        value: text.to_owned(),
        expected: "a RouterOS version such as 7.24.4",
    };
    let word = text.split_whitespace().next().ok_or_else(invalid)?;
    let (numbers, stage) = match word.find(|c: char| c.is_ascii_alphabetic()) {
        None => (word, Stage::Release),
        Some(at) => {
            let (numbers, suffix) = word.split_at(at);
            let number = |digits: &str| digits.parse::<u32>().map_err(|_| invalid());
            let stage = if let Some(n) = suffix.strip_prefix("beta") {
                Stage::Beta(number(n)?)
            } else if let Some(n) = suffix.strip_prefix("rc") {
                Stage::Rc(number(n)?)
            } else {
                return Err(invalid());
            };
            (numbers, stage)
        }
    };
    let parts = numbers
        .split('.')
        .map(|part| {
            if part.bytes().all(|b| b.is_ascii_digit()) {
                part.parse::<u32>().ok()
            } else {
                None
            }
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(invalid)?;
    match parts[..] {
        [major, minor] => Ok(RosVersion {
            major,
            minor,
            patch: 0,
            stage,
        }),
        [major, minor, patch] => Ok(RosVersion {
            major,
            minor,
            patch,
            stage,
        }),
        _ => Err(invalid()),
    }
}

/// A `/disk` item as the driver needs it, from any print form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskRecord {
    pub slot: String,
    /// `type`: `file` for the driver's disks.
    pub disk_type: String,
    /// `file-path` without its leading `/` (the form `/file` names use).
    pub file_path: Option<String>,
    /// Exact bytes, from `size` (never from the rounded `file-size`).
    pub size: Option<u64>,
    pub export: bool,
    pub port: Option<u16>,
    pub nqn: Option<String>,
    /// The hosts `nvme-tcp-server-allow-host-name` admits: the nodes the volume is published
    /// to (none when it is empty or [`crate::rds::command::FENCED_HOST`]), read by
    /// [`crate::rds::allow_list::parse`].
    pub allowed_hosts: Vec<String>,
    pub comment: Option<String>,
}

impl TryFrom<&Record> for DiskRecord {
    type Error = ParseError;

    fn try_from(record: &Record) -> Result<Self, ParseError> {
        let text = |name| {
            record
                .get(name)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        Ok(DiskRecord {
            slot: required(record, "slot")?.to_owned(),
            disk_type: required(record, "type")?.to_owned(),
            file_path: text("file-path").map(|path| path.trim_start_matches('/').to_owned()),
            size: typed(record, "size", BYTES, |v| parse_grouped_u64(v).ok())?,
            export: typed(record, "nvme-tcp-export", "yes/no or true/false", |v| {
                parse_bool(v).ok()
            })?
            .unwrap_or(false),
            port: typed(record, "nvme-tcp-server-port", "a port number", |v| {
                parse_grouped_u64(v).ok()?.try_into().ok()
            })?,
            nqn: text("nvme-tcp-server-nqn"),
            // Fenced and empty both mean "published to no node".
            allowed_hosts: crate::rds::allow_list::parse(
                record
                    .get("nvme-tcp-server-allow-host-name")
                    .unwrap_or_default(),
            ),
            comment: record.comment.clone(),
        })
    }
}

/// The disk holding a pool's file system (`/disk print detail where mount-point="<pool>"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRecord {
    pub slot: String,
    pub mount_point: String,
    /// Exact bytes of the file system.
    pub size: u64,
    /// Exact free bytes.
    pub free: u64,
}

impl TryFrom<&Record> for PoolRecord {
    type Error = ParseError;

    fn try_from(record: &Record) -> Result<Self, ParseError> {
        Ok(PoolRecord {
            slot: required(record, "slot")?.to_owned(),
            mount_point: required(record, "mount-point")?.to_owned(),
            size: typed(record, "size", BYTES, |v| parse_grouped_u64(v).ok())?
                .ok_or(ParseError::Missing("size"))?,
            free: typed(record, "free", BYTES, |v| parse_grouped_u64(v).ok())?
                .ok_or(ParseError::Missing("free"))?,
        })
    }
}

fn required<'r>(record: &'r Record, name: &'static str) -> Result<&'r str, ParseError> {
    record.get(name).ok_or(ParseError::Missing(name))
}

const BYTES: &str = "a whole number of bytes";

/// The property converted by `parse`, `None` when absent; a failure names the property.
fn typed<T>(
    record: &Record,
    name: &'static str,
    expected: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ParseError> {
    record
        .get(name)
        .map(|value| {
            parse(value).ok_or_else(|| ParseError::Value {
                name: name.to_owned(),
                value: value.to_owned(),
                expected,
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_numbers() {
        assert_eq!(
            parse_grouped_u64("1 099 511 627 776").unwrap(),
            1_099_511_627_776
        );
        assert_eq!(
            parse_grouped_u64("16003143565312").unwrap(),
            16_003_143_565_312
        );
        assert_eq!(parse_grouped_u64("512").unwrap(), 512);
        assert_eq!(
            parse_grouped_u64("18 446 744 073 709 551 615").unwrap(),
            u64::MAX
        );
        for bad in [
            "",
            "1 09",
            "1234 567",
            "1  000",
            "12a",
            "-1",
            "18 446 744 073 709 551 616",
            "1.5",
        ] {
            assert!(parse_grouped_u64(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(parse_human_size("1024.0GiB").unwrap(), 1 << 40);
        assert_eq!(parse_human_size("50.0GiB").unwrap(), 50 << 30);
        assert_eq!(parse_human_size("1024.0MiB").unwrap(), 1 << 30);
        assert_eq!(parse_human_size("13.3MiB").unwrap(), 13_946_061);
        assert_eq!(parse_human_size("1924.1KiB").unwrap(), 1_970_278);
        assert_eq!(parse_human_size("5").unwrap(), 5);
        assert_eq!(parse_human_size("0").unwrap(), 0);
        for bad in [
            "",
            "GiB",
            "1.0",
            "1.0GB",
            "x1GiB",
            "-1GiB",
            "99999999999.0EiB",
        ] {
            assert!(parse_human_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn versions_parse_and_order() {
        let v = |s| parse_routeros_version(s).unwrap();
        assert_eq!(v("7.24.4 (stable)"), RosVersion::new(7, 24, 4));
        assert_eq!(v("6.48.6 (long-term)"), RosVersion::new(6, 48, 6));
        assert_eq!(
            v("7.24rc2"),
            RosVersion {
                stage: Stage::Rc(2),
                ..RosVersion::new(7, 24, 0)
            }
        );
        assert!(v("7.18beta2") < v("7.18rc1"));
        assert!(v("7.24rc2") < v("7.24"));
        assert!(v("7.24") < v("7.24.1"));
        assert!(v("7.9") < v("7.21"));
        assert!(v("7.20.8 (long-term)") < RosVersion::new(7, 21, 0));
        assert!(v("7.21") >= RosVersion::new(7, 21, 0));
        assert_eq!(v("7.24rc2").to_string(), "7.24rc2");
        assert_eq!(v("7.24.4").to_string(), "7.24.4");
        for bad in ["", "seven", "7", "7.24.4.1", "7.x", "7.24gamma1", "7.24rc"] {
            assert!(parse_routeros_version(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn booleans() {
        assert!(parse_bool("yes").unwrap() && parse_bool("true").unwrap());
        assert!(!parse_bool("no").unwrap() && !parse_bool("false").unwrap());
        assert!(parse_bool("").is_err());
    }

    fn record(props: &[(&str, &str)], comment: Option<&str>) -> Record {
        Record {
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            comment: comment.map(str::to_owned),
            ..Record::default()
        }
    }

    #[test]
    fn disk_record_from_detail_and_script_values() {
        let detail = record(
            &[
                ("type", "file"),
                ("slot", "pvc-a"),
                ("size", "1 073 741 824"),
                ("nvme-tcp-export", "yes"),
                ("nvme-tcp-server-port", "4420"),
                ("nvme-tcp-server-nqn", "nqn.2026-09.com.example:pvc-a"),
                ("nvme-tcp-server-allow-host-name", ""),
                ("file-path", "/raid10/csi/pvc-a.img"),
            ],
            Some("meta"),
        );
        let disk = DiskRecord::try_from(&detail).unwrap();
        assert_eq!(
            disk,
            DiskRecord {
                slot: "pvc-a".into(),
                disk_type: "file".into(),
                file_path: Some("raid10/csi/pvc-a.img".into()),
                size: Some(1 << 30),
                export: true,
                port: Some(4420),
                nqn: Some("nqn.2026-09.com.example:pvc-a".into()),
                allowed_hosts: Vec::new(),
                comment: Some("meta".into()),
            }
        );
        let script = record(
            &[
                ("type", "file"),
                ("slot", "pvc-a"),
                ("size", "1073741824"),
                ("nvme-tcp-export", "false"),
            ],
            None,
        );
        let disk = DiskRecord::try_from(&script).unwrap();
        assert_eq!(
            (disk.size, disk.export, disk.port, disk.file_path),
            (Some(1 << 30), false, None, None)
        );
    }

    #[test]
    fn disk_record_errors_name_the_property() {
        assert_eq!(
            DiskRecord::try_from(&record(&[("type", "file")], None)),
            Err(ParseError::Missing("slot"))
        );
        let bad_port = record(
            &[
                ("type", "file"),
                ("slot", "a"),
                ("nvme-tcp-server-port", "70000"),
            ],
            None,
        );
        assert!(
            matches!(DiskRecord::try_from(&bad_port), Err(ParseError::Value { name, .. }) if name == "nvme-tcp-server-port")
        );
        let bad_export = record(
            &[
                ("type", "file"),
                ("slot", "a"),
                ("nvme-tcp-export", "maybe"),
            ],
            None,
        );
        assert!(
            matches!(DiskRecord::try_from(&bad_export), Err(ParseError::Value { name, .. }) if name == "nvme-tcp-export")
        );
    }

    #[test]
    fn pool_record_needs_size_and_free() {
        let pool = record(
            &[
                ("slot", "raid10"),
                ("mount-point", "raid10"),
                ("size", "16 003 143 565 312"),
                ("free", "14 789 895 307 264"),
            ],
            None,
        );
        assert_eq!(
            PoolRecord::try_from(&pool).unwrap(),
            PoolRecord {
                slot: "raid10".into(),
                mount_point: "raid10".into(),
                size: 16_003_143_565_312,
                free: 14_789_895_307_264
            }
        );
        let no_free = record(
            &[("slot", "raid10"), ("mount-point", "raid10"), ("size", "1")],
            None,
        );
        assert_eq!(
            PoolRecord::try_from(&no_free),
            Err(ParseError::Missing("free"))
        );
    }
}
