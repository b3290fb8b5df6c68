//! What the RDS holds at one moment, so a case can prove that a rejected request changed nothing.

use std::collections::BTreeMap;
use std::fmt::Debug;

use rds_sim::sim::Sim;
use rds_sim::store::Disk;

/// The RDS's contents as far as a target can see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// rds-sim's disks (every property) and files (path, type, size).
    Sim {
        disks: BTreeMap<String, Disk>,
        files: BTreeMap<String, (String, u64)>,
    },
    /// Without a simulator handle: the volumes the driver lists, with their capacities.
    Listed(BTreeMap<String, i64>),
}

impl Observed {
    pub fn of_sim(sim: &Sim) -> Observed {
        let state = sim.state();
        Observed::Sim {
            disks: state
                .disks
                .into_iter()
                .map(|disk| (disk.slot.clone(), disk))
                .collect(),
            files: state
                .files
                .into_iter()
                .map(|file| (file.name, (file.kind, file.size)))
                .collect(),
        }
    }

    /// One line per difference from `before` to `self`; empty when nothing changed.
    pub fn changes_since(&self, before: &Observed) -> Vec<String> {
        match (before, self) {
            (
                Observed::Sim {
                    disks: disks_before,
                    files: files_before,
                },
                Observed::Sim { disks, files },
            ) => {
                let mut lines = diff("disk", disks_before, disks);
                lines.extend(diff("file", files_before, files));
                lines
            }
            (Observed::Listed(before), Observed::Listed(after)) => diff("volume", before, after),
            _ => vec!["the two observations come from different kinds of target".to_owned()],
        }
    }
}

fn diff<V: PartialEq + Debug>(
    what: &str,
    before: &BTreeMap<String, V>,
    after: &BTreeMap<String, V>,
) -> Vec<String> {
    let removed = before
        .iter()
        .filter(|(key, _)| !after.contains_key(*key))
        .map(|(key, value)| format!("- {what} {key}: {value:?}"));
    let added_or_changed = after
        .iter()
        .filter_map(|(key, value)| match before.get(key) {
            None => Some(format!("+ {what} {key}: {value:?}")),
            Some(old) if old != value => {
                Some(format!("~ {what} {key}: {old:?}\n    became {value:?}"))
            }
            Some(_) => None,
        });
    removed.chain(added_or_changed).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_what_was_added_removed_and_changed() {
        let before = Observed::Listed(BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 2)]));
        let after = Observed::Listed(BTreeMap::from([("b".to_owned(), 3), ("c".to_owned(), 4)]));
        assert_eq!(
            after.changes_since(&before),
            vec![
                "- volume a: 1".to_owned(),
                "~ volume b: 2\n    became 3".to_owned(),
                "+ volume c: 4".to_owned(),
            ]
        );
        assert!(after.changes_since(&after).is_empty());
    }
}
