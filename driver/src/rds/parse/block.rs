//! Key/value blocks: `/system resource print`, `/system identity print`,
//! `/disk monitor-traffic … once`.
//!
//! ```text
//!                   version: 7.24.4 (stable)
//!               free-memory: 94.2MiB
//! ```
//! Keys are right-aligned before `: `; values are kept as printed, trimmed.

use super::{ParseError, Record, lines};

/// The block as one record. A line that is not `key: value` continues the previous value without
/// a separator (RouterOS 7.24.3 split `/system identity print` over lines).
pub fn parse_key_values(output: &str) -> Result<Record, ParseError> {
    let mut record = Record::default();
    for (number, line) in lines(output).enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some((key, value)) = key_value(line) {
            record.insert(key, value.to_owned())?;
            continue;
        }
        let Some((_, value)) = record.props.last_mut() else {
            return Err(ParseError::Line {
                line: number + 1,
                reason: "expected `key: value`",
                text: line.to_owned(),
            });
        };
        value.push_str(line.trim());
    }
    Ok(record)
}

fn key_value(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_start();
    let (key, value) = line.split_once(':')?;
    let key_ok = key.as_bytes().first()?.is_ascii_lowercase()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (key_ok && (value.is_empty() || value.starts_with(' '))).then(|| (key, value.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESOURCE: &str = "                   uptime: 29s\r\n                  version: 7.24rc2\r\n               build-time: 2023-08-31 13:55:47\r\n          minimum-version: 7.6\r\n              free-memory: 94.2MiB\r\n  write-sect-since-reboot: 85\r\n               board-name: hAP ax lite LTE6\r\n";

    #[test]
    fn resource_block() {
        let record = parse_key_values(RESOURCE).unwrap();
        assert_eq!(record.get("version"), Some("7.24rc2"));
        assert_eq!(record.get("build-time"), Some("2023-08-31 13:55:47"));
        assert_eq!(record.get("write-sect-since-reboot"), Some("85"));
        assert_eq!(record.get("board-name"), Some("hAP ax lite LTE6"));
        assert_eq!(record.props.len(), 7);
    }

    #[test]
    fn identity_whole_and_split() {
        assert_eq!(
            parse_key_values("  name: MikroTik-RDS\r\n")
                .unwrap()
                .get("name"),
            Some("MikroTik-RDS")
        );
        assert_eq!(
            parse_key_values("  name: MikroTik\r\n-RDS\r\n")
                .unwrap()
                .get("name"),
            Some("MikroTik-RDS")
        );
        assert_eq!(
            parse_key_values("  name:\r\n").unwrap().get("name"),
            Some("")
        );
    }

    #[test]
    fn monitor_values_keep_grouping() {
        let record = parse_key_values(
            "                  slot: pvc-1\r\n              read-ops:        113 229\r\n",
        )
        .unwrap();
        assert_eq!(record.get("read-ops"), Some("113 229"));
    }

    #[test]
    fn errors() {
        assert!(parse_key_values("no such item\r\n").is_err());
        assert!(parse_key_values("  a: 1\r\n  a: 2\r\n").is_err());
        assert_eq!(parse_key_values("").unwrap(), Record::default());
    }
}
