//! `/disk btrfs subvolume` items, and the `creation-time` they print.

use super::typed::parse_bool;
use super::{ParseError, Record};

/// A Btrfs subvolume as the driver needs it (REFERENCE.md §8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubvolumeRecord {
    /// The last part of its path, unique on the file system.
    pub name: String,
    /// The subvolume it is a snapshot of; kept after that one is removed.
    pub parent: Option<String>,
    pub read_only: bool,
    /// Seconds since the Unix epoch, reading the printed time as UTC.
    pub created: Option<u64>,
}

impl TryFrom<&Record> for SubvolumeRecord {
    type Error = ParseError;

    fn try_from(record: &Record) -> Result<Self, ParseError> {
        let name = record.get("name").ok_or(ParseError::Missing("name"))?;
        // `print detail` shows `r` and `read-only=`; the script forms only the property.
        let read_only = match record.get("read-only") {
            Some(value) => parse_bool(value).map_err(|_| ParseError::Value {
                name: "read-only".to_owned(),
                value: value.to_owned(),
                expected: "yes/no or true/false",
            })?,
            None => record.has_flag('r'),
        };
        let created = record
            .get("creation-time")
            .map(|value| {
                parse_time(value).ok_or_else(|| ParseError::Value {
                    name: "creation-time".to_owned(),
                    value: value.to_owned(),
                    expected: "a time as YYYY-MM-DD HH:MM:SS",
                })
            })
            .transpose()?;
        Ok(SubvolumeRecord {
            name: name.to_owned(),
            parent: record
                .get("parent")
                .filter(|parent| !parent.is_empty())
                .map(str::to_owned),
            read_only,
            created,
        })
    }
}

/// `YYYY-MM-DD HH:MM:SS` → seconds since the epoch. RouterOS prints the router's local time;
/// rds-csi reads it as UTC, so an RDS whose clock is set to another zone reports snapshot times
/// shifted by its offset (the order of snapshots is unaffected).
fn parse_time(text: &str) -> Option<u64> {
    let (date, time) = text.trim().split_once(' ')?;
    let number = |part: &str| part.parse::<u64>().ok();
    let mut date = date.split('-').map(number);
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let mut time = time.split(':').map(number);
    let (hour, minute, second) = (time.next()??, time.next()??, time.next()??);
    if date.next().is_some()
        || time.next().is_some()
        || !(1970..10_000).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), with March as the first month so the
    // leap day ends the year.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y % 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(props: &[(&str, &str)], flags: &[char]) -> Record {
        Record {
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            flags: flags.to_vec(),
            ..Record::default()
        }
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(parse_time("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_time("2000-03-01 00:00:00"), Some(951_868_800));
        assert_eq!(parse_time("2026-11-25 20:25:07"), Some(1_795_638_307));
        for bad in [
            "2026-13-01 00:00:00",
            "2026-11-25",
            "jan/02/2025 00:00:00",
            "",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn snapshots_name_their_parent() {
        let snapshot = SubvolumeRecord::try_from(&record(
            &[
                ("name", "snap-1"),
                ("parent", "pvc-a"),
                ("read-only", "yes"),
                ("creation-time", "2026-11-25 20:25:07"),
            ],
            &['S', 'r'],
        ))
        .unwrap();
        assert_eq!(
            snapshot,
            SubvolumeRecord {
                name: "snap-1".into(),
                parent: Some("pvc-a".into()),
                read_only: true,
                created: Some(1_795_638_307),
            }
        );
        let flagged = SubvolumeRecord::try_from(&record(&[("name", "snap-1")], &['r'])).unwrap();
        assert!(flagged.read_only);
        let plain = SubvolumeRecord::try_from(&record(&[("name", "pvc-a")], &[])).unwrap();
        assert_eq!((plain.parent, plain.read_only), (None, false));
    }

    #[test]
    fn malformed_items_name_the_property() {
        assert_eq!(
            SubvolumeRecord::try_from(&record(&[], &[])),
            Err(ParseError::Missing("name"))
        );
        let error = SubvolumeRecord::try_from(&record(
            &[("name", "a"), ("creation-time", "yesterday")],
            &[],
        ))
        .unwrap_err();
        assert!(error.to_string().contains("creation-time"), "{error}");
    }
}
