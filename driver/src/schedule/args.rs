//! The `snapshot-schedule` command line. Every value is checked while clap parses it, so a bad
//! flag is reported before anything talks to Kubernetes.

use std::num::NonZeroUsize;

use clap::ArgGroup;
use jiff::{SignedDuration, Span, SpanRelativeTo};

use super::settings::{Retention, Schedule, ScheduleName, Scope, Target};

/// A flag value that cannot be used, and how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error(
        "schedule name {0:?} is not a valid label value: use 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
    )]
    ScheduleName(String),
    #[error(
        "duration {value:?} cannot be used: {reason}; write it like 30d, 12h, 1w or 1h30m (days count as 24 hours; months and years are not accepted)"
    )]
    Duration { value: String, reason: String },
    #[error("--slot {0:?} must be a whole number of minutes, at least 1m")]
    Slot(String),
    #[error("{flag} must not be empty")]
    Empty { flag: &'static str },
    #[error(
        "--selector must not be empty: an empty selector matches every PVC; label the PVCs to snapshot and select that label"
    )]
    EmptySelector,
}

/// One run of a snapshot schedule: snapshot the selected PVCs, then expire the schedule's own
/// old snapshots.
#[derive(Debug, Clone, clap::Args)]
#[command(group(ArgGroup::new("target").required(true).args(["selector", "pvcs"])))]
#[command(group(ArgGroup::new("retention").required(true).multiple(true).args(["keep", "max_age"])))]
pub struct Args {
    /// Name of the schedule. Its snapshots carry it as a label, and retention only ever
    /// deletes snapshots with this label: give each schedule in a namespace its own name.
    #[arg(long, env = "RDS_CSI_SNAPSHOT_SCHEDULE", value_parser = parse_schedule_name)]
    pub schedule: ScheduleName,
    /// VolumeSnapshotClass of the new snapshots.
    #[arg(long, env = "RDS_CSI_VOLUME_SNAPSHOT_CLASS", value_parser = parse_class)]
    pub volume_snapshot_class: String,
    /// Namespace of the PVCs [default: the namespace of the kubeconfig context, or of the pod].
    #[arg(
        long,
        short = 'n',
        env = "RDS_CSI_SNAPSHOT_NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,
    /// Snapshot the selected PVCs of every namespace.
    #[arg(long, short = 'A', env = "RDS_CSI_SNAPSHOT_ALL_NAMESPACES")]
    pub all_namespaces: bool,
    /// Label selector of the PVCs to snapshot, e.g. `backup=daily` or `tier in (db,queue)`.
    #[arg(long, short = 'l', env = "RDS_CSI_SNAPSHOT_SELECTOR", value_parser = parse_selector)]
    pub selector: Option<String>,
    /// Names of the PVCs to snapshot (repeat the flag or separate with commas).
    #[arg(
        long = "pvc",
        value_name = "NAME",
        env = "RDS_CSI_SNAPSHOT_PVCS",
        value_delimiter = ',',
        conflicts_with = "all_namespaces"
    )]
    pub pvcs: Vec<String>,
    /// Keep this many newest snapshots of each PVC; older ones are deleted.
    #[arg(long, env = "RDS_CSI_SNAPSHOT_KEEP")]
    pub keep: Option<NonZeroUsize>,
    /// Delete the schedule's snapshots older than this, e.g. 30d or 12h.
    #[arg(long, env = "RDS_CSI_SNAPSHOT_MAX_AGE", value_parser = parse_age)]
    pub max_age: Option<SignedDuration>,
    /// Length of a naming slot: a run names its snapshots after the start of its slot (UTC), so
    /// a retried run within the same slot finds them instead of taking new ones. Use at most
    /// the interval of the schedule.
    #[arg(long, env = "RDS_CSI_SNAPSHOT_SLOT", default_value = "1h", value_parser = parse_slot)]
    pub slot: SignedDuration,
}

impl Args {
    /// The schedule these flags describe; `default_namespace` is used when no namespace and
    /// not all namespaces were asked for.
    pub fn into_schedule(self, default_namespace: &str) -> Schedule {
        let namespace = || {
            self.namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_owned())
        };
        let target = match self.selector {
            Some(selector) => Target::Selector {
                scope: if self.all_namespaces {
                    Scope::AllNamespaces
                } else {
                    Scope::Namespace(namespace())
                },
                selector,
            },
            None => Target::Names {
                namespace: namespace(),
                names: self.pvcs,
            },
        };
        Schedule {
            name: self.schedule,
            volume_snapshot_class: self.volume_snapshot_class,
            target,
            retention: Retention {
                keep: self.keep,
                max_age: self.max_age,
            },
            slot: self.slot,
        }
    }
}

fn parse_schedule_name(value: &str) -> Result<ScheduleName, ArgsError> {
    value.parse()
}

fn parse_class(value: &str) -> Result<String, ArgsError> {
    if value.is_empty() {
        return Err(ArgsError::Empty {
            flag: "--volume-snapshot-class",
        });
    }
    Ok(value.to_owned())
}

fn parse_selector(value: &str) -> Result<String, ArgsError> {
    if value.trim().is_empty() {
        return Err(ArgsError::EmptySelector);
    }
    Ok(value.to_owned())
}

/// A positive duration in jiff's friendly (`30d`, `1h30m`) or ISO 8601 (`P30D`) form.
pub(super) fn parse_age(value: &str) -> Result<SignedDuration, ArgsError> {
    let invalid = |reason: String| ArgsError::Duration {
        value: value.to_owned(),
        reason,
    };
    let span: Span = value
        .parse()
        .map_err(|e: jiff::Error| invalid(e.to_string()))?;
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| invalid("a month or a year has no fixed length".to_owned()))?;
    if !duration.is_positive() {
        return Err(invalid("it must be longer than zero".to_owned()));
    }
    Ok(duration)
}

fn parse_slot(value: &str) -> Result<SignedDuration, ArgsError> {
    let slot = parse_age(value)?;
    if slot.as_secs() % 60 != 0 || slot.subsec_nanos() != 0 {
        return Err(ArgsError::Slot(value.to_owned()));
    }
    Ok(slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(flags: &[&str]) -> Result<Schedule, clap::Error> {
        let argv = ["snapshot-schedule"].iter().chain(flags);
        Cli::try_parse_from(argv).map(|cli| cli.args.into_schedule("apps"))
    }

    const BASE: [&str; 4] = ["--schedule", "daily", "--volume-snapshot-class", "rds"];

    fn with_base(extra: &[&'static str]) -> Vec<&'static str> {
        BASE.iter().chain(extra).copied().collect()
    }

    #[test]
    fn selector_with_both_retention_bounds() {
        let schedule = parse(&with_base(&[
            "-l",
            "backup=daily",
            "--keep",
            "7",
            "--max-age",
            "30d",
        ]))
        .unwrap();
        assert_eq!(
            schedule.target,
            Target::Selector {
                scope: Scope::Namespace("apps".into()),
                selector: "backup=daily".into()
            }
        );
        assert_eq!(schedule.retention.keep, NonZeroUsize::new(7));
        assert_eq!(
            schedule.retention.max_age,
            Some(SignedDuration::from_hours(720))
        );
        assert_eq!(schedule.slot, SignedDuration::from_hours(1));
    }

    #[test]
    fn names_split_on_commas_and_repeat() {
        let schedule = parse(&with_base(&[
            "--pvc", "db,cache", "--pvc", "queue", "-n", "prod", "--keep", "3",
        ]))
        .unwrap();
        assert_eq!(
            schedule.target,
            Target::Names {
                namespace: "prod".into(),
                names: vec!["db".into(), "cache".into(), "queue".into()]
            }
        );
    }

    #[test]
    fn all_namespaces_takes_a_selector_but_not_names() {
        let schedule = parse(&with_base(&["-A", "-l", "backup", "--max-age", "12h"])).unwrap();
        assert_eq!(schedule.target.scope(), Scope::AllNamespaces);
        let err = parse(&with_base(&["-A", "--pvc", "db", "--keep", "1"])).err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(clap::error::ErrorKind::ArgumentConflict)
        );
    }

    #[test]
    fn a_target_and_a_retention_are_required() {
        let no_target = parse(&with_base(&["--keep", "1"])).unwrap_err();
        assert_eq!(
            no_target.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        let no_retention = parse(&with_base(&["-l", "a=b"])).unwrap_err();
        assert_eq!(
            no_retention.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        let both_targets =
            parse(&with_base(&["-l", "a=b", "--pvc", "x", "--keep", "1"])).unwrap_err();
        assert_eq!(
            both_targets.kind(),
            clap::error::ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_fix() {
        for (flags, expected) in [
            (vec!["-l", "a", "--keep", "0"], "invalid value '0'"),
            (vec!["-l", "a", "--max-age", "1 month"], "months and years"),
            (vec!["-l", "a", "--max-age", "0s"], "longer than zero"),
            (
                vec!["-l", "a", "--keep", "1", "--slot", "90s"],
                "whole number of minutes",
            ),
            (
                vec!["-l", " ", "--keep", "1"],
                "empty selector matches every PVC",
            ),
        ] {
            let flags: Vec<&str> = BASE.iter().copied().chain(flags).collect();
            let err = parse(&flags).expect_err("refused").to_string();
            assert!(err.contains(expected), "{flags:?}: {err}");
        }
        let err = parse(&[
            "--schedule",
            "Daily",
            "--volume-snapshot-class",
            "x",
            "-l",
            "a",
            "--keep",
            "1",
        ])
        .expect_err("refused")
        .to_string();
        assert!(err.contains("not a valid label value"), "{err}");
    }

    #[test]
    fn schedule_names_are_label_values() {
        for good in ["daily", "a", "every-6-hours", &"x".repeat(63)] {
            assert!(good.parse::<ScheduleName>().is_ok(), "{good}");
        }
        for bad in ["", "-daily", "daily-", "Daily", "daily.db", &"x".repeat(64)] {
            assert!(bad.parse::<ScheduleName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_accept_days_and_weeks() {
        assert_eq!(parse_age("1w").unwrap(), SignedDuration::from_hours(168));
        assert_eq!(parse_age("1h30m").unwrap(), SignedDuration::from_mins(90));
        assert_eq!(parse_age("P2D").unwrap(), SignedDuration::from_hours(48));
        assert!(parse_age("soon").is_err());
    }
}
