//! Which of the driver's things on the RDS nothing in Kubernetes names: pure, from what the RDS
//! printed and what the API server listed, so every rule that keeps a thing is testable.
//!
//! A thing is an orphan only when all of these hold:
//! * it is the driver's: a disk in an id slot ([`ids::parse_id`]) whose comment is rds-csi
//!   metadata of that kind and whose file is under `<pool>/<baseDir>/`; or a file
//!   `<pool>/<baseDir>/<id>.img` that no disk, whoever's, uses; or a disk exported as
//!   `<nqnPrefix>:<slot>` with an id slot (the driver's naming) that is not the first kind;
//! * no PersistentVolume, claim or VolumeSnapshotContent names its id ([`Named`]); while
//!   VolumeSnapshotContents cannot be listed, no snapshot is an orphan;
//! * its comment does not mark it pending (a copy into it is running, or was cut off and its
//!   retry resumes it);
//! * it is older than the grace ([`FirstSeen::due`]), which covers a CreateVolume or
//!   CreateSnapshot whose object the API server does not hold yet.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;

use crate::ids::{self, IdKind, Metadata};
use crate::rds::parse::{DiskRecord, Record};
use crate::rds::value::{Nqn, RosPath, Slot};

/// What an orphan is, as the metric and the listing label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A disk (and its backing file).
    Disk,
    /// A backing file with no disk.
    File,
    /// An NVMe/TCP export of the driver's naming on a disk that is not otherwise the driver's.
    Export,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Disk, Kind::File, Kind::Export];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Disk => "disk",
            Kind::File => "file",
            Kind::Export => "export",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the driver keeps its things on the RDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub pool: RosPath,
    pub base_dir: RosPath,
    pub nqn_prefix: Nqn,
}

impl Place {
    /// `<pool>/<baseDir>`, as `/file` names it.
    pub fn dir(&self) -> RosPath {
        self.pool.join(&self.base_dir)
    }
}

/// What the RDS holds: every disk, and the `/file` entries under `<pool>/<baseDir>/`.
#[derive(Debug, Clone, Default)]
pub struct OnRds {
    pub disks: Vec<DiskRecord>,
    pub files: Vec<Record>,
}

/// The ids the API server names. Built from complete listings only ([`super::named`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Named {
    /// Volume ids: PersistentVolumes' handles, the ids of claims' volumes, snapshots' sources.
    pub volumes: BTreeSet<String>,
    /// Snapshot ids of VolumeSnapshotContents; `None` when they cannot be listed (the snapshot
    /// CRDs are not installed), which keeps every snapshot.
    pub snapshots: Option<BTreeSet<String>>,
}

impl Named {
    /// Whether something in the cluster names `slot`, a `kind` id.
    fn names(&self, kind: IdKind, slot: &Slot) -> bool {
        match kind {
            IdKind::Volume => self.volumes.contains(slot.as_str()),
            IdKind::Snapshot => self
                .snapshots
                .as_ref()
                .is_none_or(|snapshots| snapshots.contains(slot.as_str())),
        }
    }
}

/// One orphan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub kind: Kind,
    /// The disk's slot, or the id a file is named for.
    pub slot: Slot,
    /// What the id is.
    pub id_kind: IdKind,
    /// The backing file, as `/file` names it (a disk's `file-path`).
    pub file: Option<String>,
    /// When it was made, where the RDS records it (the comment of a disk the driver made).
    pub created: Option<Timestamp>,
    /// Why it is an orphan, for a person.
    pub why: String,
}

impl Orphan {
    /// What the listing and the logs call it.
    pub fn name(&self) -> &str {
        match (self.kind, &self.file) {
            (Kind::File, Some(file)) => file,
            _ => self.slot.as_str(),
        }
    }

    fn key(&self) -> (Kind, String) {
        (self.kind, self.name().to_owned())
    }
}

/// Every orphan among `rds`'s things, by the rules of the module documentation except the
/// grace; ordered by kind, then name.
pub fn find(rds: &OnRds, named: &Named, place: &Place) -> Vec<Orphan> {
    let dir = format!("{}/", place.dir());
    let mut orphans: Vec<Orphan> = rds
        .disks
        .iter()
        .filter_map(|disk| disk_orphan(disk, named, place, &dir))
        .collect();
    let used: HashSet<&str> = rds
        .disks
        .iter()
        .filter_map(|disk| disk.file_path.as_deref())
        .collect();
    orphans.extend(
        rds.files
            .iter()
            .filter_map(|file| file_orphan(file, &used, named, &dir)),
    );
    orphans.sort_by_key(Orphan::key);
    orphans
}

fn disk_orphan(disk: &DiskRecord, named: &Named, place: &Place, dir: &str) -> Option<Orphan> {
    let (id_kind, slot) = ids::parse_id(&disk.slot)?;
    let metadata = disk
        .comment
        .as_deref()
        .and_then(|comment| Metadata::parse(comment).ok());
    let in_dir = disk
        .file_path
        .as_deref()
        .is_some_and(|path| path.starts_with(dir));
    let ours = metadata.as_ref().is_some_and(|m| m.kind == id_kind) && in_dir;
    let exported_as_ours = disk.export
        && place
            .nqn_prefix
            .with_suffix(&slot)
            .is_ok_and(|nqn| disk.nqn.as_deref() == Some(nqn.as_str()));
    let kind = match (ours, exported_as_ours) {
        (true, _) => Kind::Disk,
        (false, true) => Kind::Export,
        (false, false) => return None,
    };
    if metadata.as_ref().is_some_and(|m| m.pending) || named.names(id_kind, &slot) {
        return None;
    }
    let unnamed = unnamed(id_kind, &slot);
    let why = match kind {
        Kind::Export => format!(
            "exported as {}, {unnamed}",
            disk.nqn.as_deref().unwrap_or_default()
        ),
        _ => unnamed,
    };
    Some(Orphan {
        kind,
        id_kind,
        file: disk.file_path.clone(),
        created: metadata
            .filter(|m| m.created > 0)
            .and_then(|m| Timestamp::from_second(i64::try_from(m.created).ok()?).ok()),
        slot,
        why,
    })
}

fn file_orphan(file: &Record, used: &HashSet<&str>, named: &Named, dir: &str) -> Option<Orphan> {
    let name = file.get("name")?;
    let is_file = file
        .get("type")
        .is_some_and(|t| t == "file" || t.ends_with(" file"));
    let stem = name.strip_prefix(dir)?.strip_suffix(".img")?;
    let (id_kind, slot) = ids::parse_id(stem)?;
    if !is_file || used.contains(name) || named.names(id_kind, &slot) {
        return None;
    }
    Some(Orphan {
        kind: Kind::File,
        why: format!("no disk uses it, {}", unnamed(id_kind, &slot)),
        id_kind,
        slot,
        file: Some(name.to_owned()),
        created: None,
    })
}

fn unnamed(kind: IdKind, slot: &Slot) -> String {
    match kind {
        IdKind::Volume => format!("no PersistentVolume or claim names volume {slot}"),
        IdKind::Snapshot => format!("no VolumeSnapshotContent names snapshot {slot}"),
    }
}

/// When this process first saw each orphan whose age the RDS does not record (a file, a disk
/// another tool made). Kept in memory: a restarted controller, or a new leader, counts the
/// grace again, which only ever delays a deletion.
#[derive(Debug, Default)]
pub struct FirstSeen(HashMap<(Kind, String), Timestamp>);

impl FirstSeen {
    /// The orphans at least `grace` old at `now`, by their recorded creation or else by when
    /// they were first seen; forgets what is no longer an orphan.
    pub fn due(&mut self, orphans: Vec<Orphan>, now: Timestamp, grace: Duration) -> Vec<Orphan> {
        let mut seen = HashMap::new();
        let due = orphans
            .into_iter()
            .filter(|orphan| {
                let since = orphan.created.unwrap_or_else(|| {
                    let key = orphan.key();
                    let since = self.0.get(&key).copied().unwrap_or(now);
                    seen.insert(key, since);
                    since
                });
                age(since, now).is_some_and(|age| age >= grace)
            })
            .collect();
        self.0 = seen;
        due
    }
}

/// How long ago `since` was; `None` when it is in the future (a clock ahead of this one).
pub fn age(since: Timestamp, now: Timestamp) -> Option<Duration> {
    Duration::try_from(now.duration_since(since)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "pool/csi";
    const VOLUME: &str = "pvc-0123456789abcdef0123456789ab";
    const SNAPSHOT: &str = "snap-0123456789abcdef0123456789a";

    fn place() -> Place {
        Place {
            pool: RosPath::parse("pool").unwrap(),
            base_dir: RosPath::parse("csi").unwrap(),
            nqn_prefix: Nqn::parse("nqn.2000-02.com.mikrotik").unwrap(),
        }
    }

    fn metadata(kind: IdKind, pending: bool) -> Metadata {
        Metadata {
            kind,
            csi_name: "x".to_owned(),
            source: None,
            created: 1_000,
            requested_bytes: 0,
            context: Default::default(),
            method: None,
            pending,
        }
    }

    fn disk(slot: &str, kind: IdKind) -> DiskRecord {
        DiskRecord {
            slot: slot.to_owned(),
            disk_type: "file".to_owned(),
            file_path: Some(format!("{DIR}/{slot}.img")),
            size: Some(1 << 20),
            export: kind == IdKind::Volume,
            port: Some(4420),
            nqn: (kind == IdKind::Volume).then(|| format!("nqn.2000-02.com.mikrotik:{slot}")),
            allowed_hosts: Vec::new(),
            comment: Some(
                metadata(kind, false)
                    .to_comment()
                    .unwrap()
                    .as_str()
                    .to_owned(),
            ),
        }
    }

    fn file(name: &str) -> Record {
        Record {
            props: vec![
                ("name".to_owned(), name.to_owned()),
                ("type".to_owned(), ".img file".to_owned()),
            ],
            ..Record::default()
        }
    }

    fn nothing_named() -> Named {
        Named {
            volumes: BTreeSet::new(),
            snapshots: Some(BTreeSet::new()),
        }
    }

    fn names(rds: &OnRds, named: &Named) -> Vec<(Kind, String)> {
        find(rds, named, &place())
            .iter()
            .map(|orphan| (orphan.kind, orphan.name().to_owned()))
            .collect()
    }

    fn one_of_each() -> OnRds {
        OnRds {
            disks: vec![
                disk(VOLUME, IdKind::Volume),
                disk(SNAPSHOT, IdKind::Snapshot),
            ],
            files: vec![
                file(&format!("{DIR}/{VOLUME}.img")),
                file(&format!("{DIR}/{SNAPSHOT}.img")),
            ],
        }
    }

    #[test]
    fn unnamed_disks_are_orphans_and_their_files_are_not_counted_twice() {
        let orphans = find(&one_of_each(), &nothing_named(), &place());
        let got: Vec<_> = orphans
            .iter()
            .map(|o| (o.kind, o.slot.as_str(), o.id_kind))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::Disk, VOLUME, IdKind::Volume),
                (Kind::Disk, SNAPSHOT, IdKind::Snapshot)
            ]
        );
        assert_eq!(
            orphans[0].created,
            Some(Timestamp::from_second(1_000).unwrap())
        );
        assert!(
            orphans[0].why.contains("no PersistentVolume"),
            "{orphans:?}"
        );
        assert!(
            orphans[1].why.contains("VolumeSnapshotContent"),
            "{orphans:?}"
        );
    }

    #[test]
    fn what_the_api_server_names_is_never_an_orphan() {
        let named = Named {
            volumes: [VOLUME.to_owned()].into(),
            snapshots: Some([SNAPSHOT.to_owned()].into()),
        };
        assert_eq!(names(&one_of_each(), &named), []);
        // Each name keeps only its own.
        let only_volume = Named {
            snapshots: Some(BTreeSet::new()),
            ..named.clone()
        };
        assert_eq!(
            names(&one_of_each(), &only_volume),
            [(Kind::Disk, SNAPSHOT.to_owned())]
        );
    }

    #[test]
    fn no_snapshot_is_an_orphan_while_contents_cannot_be_listed() {
        let named = Named {
            volumes: BTreeSet::new(),
            snapshots: None,
        };
        assert_eq!(
            names(&one_of_each(), &named),
            [(Kind::Disk, VOLUME.to_owned())]
        );
    }

    #[test]
    fn a_pending_disk_is_never_an_orphan() {
        let mut rds = one_of_each();
        rds.disks[1].comment = Some(
            metadata(IdKind::Snapshot, true)
                .to_comment()
                .unwrap()
                .as_str()
                .to_owned(),
        );
        assert_eq!(
            names(&rds, &nothing_named()),
            [(Kind::Disk, VOLUME.to_owned())]
        );
    }

    #[test]
    fn only_the_drivers_disks_under_its_directory_count() {
        let mut rds = one_of_each();
        // Another directory of the pool, a foreign comment, a slot of another kind's metadata.
        rds.disks[0].file_path = Some(format!("pool/other/{VOLUME}.img"));
        rds.disks[0].export = false;
        rds.disks[1].comment = Some("made by hand".to_owned());
        let mut wrong_kind = disk("pvc-ffffffffffffffffffffffffffff", IdKind::Snapshot);
        wrong_kind.slot = "pvc-ffffffffffffffffffffffffffff".to_owned();
        rds.disks.push(wrong_kind);
        rds.disks.push(disk("data", IdKind::Volume));
        rds.files.clear();
        assert_eq!(names(&rds, &nothing_named()), []);
    }

    #[test]
    fn an_export_of_the_drivers_naming_outside_its_disks_is_one() {
        let mut rds = one_of_each();
        rds.disks[0].file_path = Some(format!("pool/other/{VOLUME}.img"));
        rds.disks[1].export = false;
        rds.files.clear();
        assert_eq!(
            names(&rds, &nothing_named()),
            [
                (Kind::Disk, SNAPSHOT.to_owned()),
                (Kind::Export, VOLUME.to_owned())
            ]
        );
        // Exported under another prefix, or under another name: not the driver's.
        rds.disks[0].nqn = Some(format!("nqn.2000-02.com.example:{VOLUME}"));
        assert_eq!(
            names(&rds, &nothing_named()),
            [(Kind::Disk, SNAPSHOT.to_owned())]
        );
        rds.disks[0].nqn = Some("nqn.2000-02.com.mikrotik:pvc-1".to_owned());
        assert_eq!(
            names(&rds, &nothing_named()),
            [(Kind::Disk, SNAPSHOT.to_owned())]
        );
    }

    #[test]
    fn a_file_is_an_orphan_only_when_no_disk_uses_it() {
        let loose = format!("{DIR}/{VOLUME}.img");
        let rds = OnRds {
            disks: vec![],
            files: vec![file(&loose)],
        };
        assert_eq!(names(&rds, &nothing_named()), [(Kind::File, loose.clone())]);
        // Any disk using it keeps it, whatever its slot.
        let mut user = disk("probe-a", IdKind::Volume);
        user.file_path = Some(loose.clone());
        let used = OnRds {
            disks: vec![user],
            ..rds.clone()
        };
        assert_eq!(names(&used, &nothing_named()), []);
        let named = Named {
            volumes: [VOLUME.to_owned()].into(),
            ..nothing_named()
        };
        assert_eq!(names(&rds, &named), []);
    }

    #[test]
    fn files_not_named_like_an_id_in_the_directory_itself_are_left_alone() {
        let mut dir = file(&format!("{DIR}/{VOLUME}.img"));
        dir.props[1].1 = "directory".to_owned();
        let rds = OnRds {
            disks: vec![],
            files: vec![
                dir,
                file(&format!("{DIR}/probe-a.img")),
                file(&format!("{DIR}/sub/{VOLUME}.img")),
                file(&format!("pool/other/{VOLUME}.img")),
                file(&format!("{DIR}/{VOLUME}.raw")),
            ],
        };
        assert_eq!(names(&rds, &nothing_named()), []);
    }

    #[test]
    fn the_grace_counts_from_creation_or_from_first_sight() {
        let grace = Duration::from_secs(60);
        let mut rds = one_of_each();
        rds.files = vec![file(&format!("{DIR}/pvc-ffffffffffffffffffffffffffff.img"))];
        let orphans = find(&rds, &nothing_named(), &place());
        let created = Timestamp::from_second(1_000).unwrap();
        let at = |secs: i64| created + jiff::SignedDuration::from_secs(secs);
        let due_names = |first: &mut FirstSeen, now| -> Vec<Kind> {
            first
                .due(orphans.clone(), now, grace)
                .iter()
                .map(|o| o.kind)
                .collect()
        };
        let mut first = FirstSeen::default();
        // Disks made 59 s ago are young; the file is new to this process.
        assert_eq!(due_names(&mut first, at(59)), []);
        assert_eq!(due_names(&mut first, at(60)), [Kind::Disk, Kind::Disk]);
        assert_eq!(due_names(&mut first, at(118)), [Kind::Disk, Kind::Disk]);
        assert_eq!(
            due_names(&mut first, at(119)),
            [Kind::Disk, Kind::Disk, Kind::File]
        );
        // A file gone for one pass starts over.
        first.due(Vec::new(), at(120), grace);
        assert_eq!(due_names(&mut first, at(121)), [Kind::Disk, Kind::Disk]);
        // A creation time ahead of this clock is never due.
        assert_eq!(due_names(&mut FirstSeen::default(), at(-10)), []);
    }
}
