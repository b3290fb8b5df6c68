//! A validated schedule: which PVCs a run snapshots, into which class, and what it keeps.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

use jiff::SignedDuration;

use super::args::ArgsError;

/// The schedule's name: the value of its ownership label, so a DNS-1123 label (at most 63
/// characters of `a-z 0-9 -`, starting and ending with a letter or digit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleName(String);

impl ScheduleName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ScheduleName {
    type Err = ArgsError;

    fn from_str(name: &str) -> Result<Self, ArgsError> {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.chars().all(allowed)
            && !name.starts_with('-')
            && !name.ends_with('-');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(ArgsError::ScheduleName(name.to_owned()))
        }
    }
}

impl fmt::Display for ScheduleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the PVCs, and therefore their snapshots, live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Namespace(String),
    AllNamespaces,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Namespace(ns) => write!(f, "in namespace {ns}"),
            Scope::AllNamespaces => f.write_str("in all namespaces"),
        }
    }
}

/// Which PVCs are snapshotted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The PVCs of `scope` matching a Kubernetes label selector, passed to the API server as
    /// it is.
    Selector { scope: Scope, selector: String },
    /// PVCs by name, in one namespace.
    Names {
        namespace: String,
        names: Vec<String>,
    },
}

impl Target {
    /// Where the PVCs and their snapshots live; retention looks at the schedule's snapshots
    /// here.
    pub fn scope(&self) -> Scope {
        match self {
            Target::Selector { scope, .. } => scope.clone(),
            Target::Names { namespace, .. } => Scope::Namespace(namespace.clone()),
        }
    }
}

/// Which of the schedule's own snapshots a run keeps, per PVC. At least one bound is set; a
/// snapshot goes when it breaks either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep this many newest snapshots.
    pub keep: Option<NonZeroUsize>,
    /// Keep none older than this.
    pub max_age: Option<SignedDuration>,
}

/// Everything one run needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub name: ScheduleName,
    pub volume_snapshot_class: String,
    pub target: Target,
    pub retention: Retention,
    /// Snapshot names carry the start of the slot a run falls in, so every run (and retry)
    /// within one slot names the same snapshots.
    pub slot: SignedDuration,
}
