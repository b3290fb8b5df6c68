//! Identifiers and the metadata a disk carries (DESIGN.md, "Identifiers").
//!
//! A CSI name maps deterministically to a slot, so a retried CreateVolume finds the disk it
//! made. The slot is also the CSI volume or snapshot id, the file name and the NQN suffix. The
//! mapping is not injective (28 hex digits of 32, or of a hash): the full CSI name is kept in the
//! disk's comment, so a collision is seen, never silently shared.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::rds::value::{Comment, Nqn, RosPath, Slot, ValueError};
use crate::snapshot::Method;

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    Volume,
    Snapshot,
}

impl IdKind {
    fn as_str(self) -> &'static str {
        match self {
            IdKind::Volume => "volume",
            IdKind::Snapshot => "snapshot",
        }
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const VOLUME_HEX: usize = 28;
const SNAPSHOT_HEX: usize = 27;

/// `pvc-<uuid>` (external-provisioner's names) → `pvc-` + the first 28 hex digits of the UUID;
/// any other name → `vol-` + the first 28 hex digits of its SHA-256. 32 characters either way.
pub fn volume_id(csi_name: &str) -> Slot {
    let id = match csi_name.strip_prefix("pvc-").and_then(uuid_hex) {
        Some(hex) => format!("pvc-{}", &hex[..VOLUME_HEX]),
        None => format!("vol-{}", &sha256_hex(csi_name)[..VOLUME_HEX]),
    };
    Slot::parse(&id).expect("a prefix and lower-case hex digits make a valid slot")
}

/// `snapshot-<uuid>` (external-snapshotter's names) → `snap-` + the first 27 hex digits of the
/// UUID; any other name → `snap-` + the first 27 hex digits of its SHA-256.
pub fn snapshot_id(csi_name: &str) -> Slot {
    let hex = csi_name
        .strip_prefix("snapshot-")
        .and_then(uuid_hex)
        .unwrap_or_else(|| sha256_hex(csi_name));
    Slot::parse(&format!("snap-{}", &hex[..SNAPSHOT_HEX]))
        .expect("a prefix and lower-case hex digits make a valid slot")
}

/// The kind and slot of an id this driver could have made; `None` for anything else (an id from
/// another driver, or garbage), which CSI calls then treat as not found.
pub fn parse_id(id: &str) -> Option<(IdKind, Slot)> {
    let is_hex = |hex: &str, len| {
        hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let kind = if let Some(hex) = id.strip_prefix("pvc-").or_else(|| id.strip_prefix("vol-")) {
        is_hex(hex, VOLUME_HEX).then_some(IdKind::Volume)
    } else {
        id.strip_prefix("snap-")
            .filter(|hex| is_hex(hex, SNAPSHOT_HEX))
            .map(|_| IdKind::Snapshot)
    }?;
    Some((kind, Slot::parse(id).ok()?))
}

/// `<prefix>:<id>`, the subsystem NQN a volume is exported under.
pub fn volume_nqn(prefix: &Nqn, id: &Slot) -> Result<Nqn, ValueError> {
    prefix.with_suffix(id)
}

/// `<pool>/<dir>/<id>.img`, the backing file of a volume or snapshot.
pub fn disk_path(pool: &RosPath, dir: &RosPath, id: &Slot) -> RosPath {
    pool.join(dir)
        .child(&format!("{id}.img"))
        .expect("a slot plus .img is a valid path segment")
}

/// `<pool>/<id>/volume.img`, the backing file of a volume in its own Btrfs subvolume, named
/// `<id>` (StorageClass `layout: subvolume`). The file keeps its name in every snapshot and
/// restore of the subvolume, so any of them finds it without knowing where it came from.
pub fn subvolume_disk_path(pool: &RosPath, id: &Slot) -> RosPath {
    pool.child(id.as_str())
        .and_then(|dir| dir.child("volume.img"))
        .expect("a slot and volume.img are valid path segments")
}

/// The 32 hex digits of a canonical lower-case UUID (`8-4-4-4-12`).
fn uuid_hex(text: &str) -> Option<String> {
    let groups: Vec<&str> = text.split('-').collect();
    let shape_ok = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    shape_ok.then(|| groups.concat())
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// What the driver records in a disk's `comment`: enough to answer CSI calls from the RDS alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: IdKind,
    /// The CSI name the id was derived from, to detect id collisions.
    pub csi_name: String,
    /// The volume a snapshot was taken of, or the snapshot or volume a volume was made from.
    pub source: Option<Slot>,
    /// Creation time, Unix seconds.
    pub created: u64,
    /// The size CSI asked for, in bytes (0 when it gave none).
    pub requested_bytes: u64,
    /// The volume context the volume was created with (`fsType`, connect tunables), so a
    /// CreateVolume with the same name but other parameters is recognised as a conflict.
    pub context: BTreeMap<String, String>,
    /// The snapshot method that made the disk's data, for a snapshot or a volume made from a
    /// source.
    pub method: Option<Method>,
    /// True while the data is still being copied in: the disk is not usable yet.
    pub pending: bool,
}

/// Why a comment could not be read as [`Metadata`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("comment {0:?} was not written by rds-csi")]
    NotOurs(String),
    #[error(
        "comment {comment:?} is in rds-csi metadata version {version}, this driver reads version 1: upgrade the driver"
    )]
    UnsupportedVersion { comment: String, version: String },
    #[error(
        "comment {comment:?} is damaged rds-csi metadata: {reason}; fix or clear the disk's comment on the RDS"
    )]
    Malformed { comment: String, reason: String },
}

/// Why a disk is not the rds-csi volume or snapshot a request names; each reads after "disk X".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotA {
    #[error("has no comment, so rds-csi did not create it")]
    Commented,
    #[error("is an rds-csi {found}, not a {wanted}")]
    Kind { found: IdKind, wanted: IdKind },
    #[error("cannot be rds-csi's: its {0}")]
    Metadata(#[from] MetadataError),
}

/// The comment's leading mark: `rds-csi:<version>`.
const MARK: &str = "rds-csi:";
const VERSION: &str = "1";

impl Metadata {
    /// `rds-csi:1,kind:volume,name:<percent-encoded>,created:<secs>,requested:<bytes>[,source:<slot>]`
    /// `[,context:<percent-encoded>][,method:<method>][,pending:1]`.
    ///
    /// No spaces (so a comment wrapped by `print detail` rejoins exactly), no `;` or `=` (so the
    /// `as-value` form stays readable) and nothing [`crate::rds::value::quote`] must escape. The
    /// CSI name is percent-encoded: only `A-Z a-z 0-9 - . _ ~` stay as they are, so `pvc-<uuid>`
    /// reads plainly. Fails only for a CSI name too long for a [`Comment`].
    pub fn to_comment(&self) -> Result<Comment, ValueError> {
        let mut text = format!(
            "{MARK}{VERSION},kind:{},name:{},created:{},requested:{}",
            self.kind,
            percent_encode(&self.csi_name),
            self.created,
            self.requested_bytes
        );
        if let Some(source) = &self.source {
            text.push_str(",source:");
            text.push_str(source.as_str());
        }
        if !self.context.is_empty() {
            let pairs: Vec<String> = self
                .context
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            text.push_str(",context:");
            text.push_str(&percent_encode(&pairs.join("&")));
        }
        if let Some(method) = self.method {
            text.push_str(",method:");
            text.push_str(method.as_str());
        }
        if self.pending {
            text.push_str(",pending:1");
        }
        Comment::new(&text)
    }

    /// The metadata of a disk whose comment is `comment`, when it is an rds-csi `kind`; otherwise
    /// why not.
    pub fn of_disk(comment: Option<&str>, kind: IdKind) -> Result<Metadata, NotA> {
        let metadata = Metadata::parse(comment.ok_or(NotA::Commented)?)?;
        if metadata.kind != kind {
            return Err(NotA::Kind {
                found: metadata.kind,
                wanted: kind,
            });
        }
        Ok(metadata)
    }

    /// Reads a comment written by [`Metadata::to_comment`] of this or a later version-1 driver
    /// (unknown fields are skipped, so fields can be added without a version bump).
    pub fn parse(comment: &str) -> Result<Metadata, MetadataError> {
        let comment = comment.trim();
        let (mark, fields) = comment.split_once(',').unwrap_or((comment, ""));
        let Some(version) = mark.strip_prefix(MARK) else {
            return Err(MetadataError::NotOurs(comment.to_owned()));
        };
        if version != VERSION {
            return Err(MetadataError::UnsupportedVersion {
                comment: comment.to_owned(),
                version: version.to_owned(),
            });
        }
        parse_fields(fields).map_err(|reason| MetadataError::Malformed {
            comment: comment.to_owned(),
            reason,
        })
    }
}

/// The version-1 fields after the mark.
fn parse_fields(fields: &str) -> Result<Metadata, String> {
    let (mut kind, mut name, mut created, mut requested, mut source, mut context) =
        (None, None, None, None, None, None);
    let (mut method, mut pending) = (None, None);
    for field in fields.split(',') {
        let (key, value) = field
            .split_once(':')
            .ok_or_else(|| format!("field {field:?} has no ':'"))?;
        let slot = match key {
            "kind" => &mut kind,
            "name" => &mut name,
            "created" => &mut created,
            "requested" => &mut requested,
            "source" => &mut source,
            "context" => &mut context,
            "method" => &mut method,
            "pending" => &mut pending,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(format!("field {key} appears twice"));
        }
    }
    let kind = match required(kind, "kind")? {
        "volume" => IdKind::Volume,
        "snapshot" => IdKind::Snapshot,
        other => return Err(format!("kind {other:?} is neither volume nor snapshot")),
    };
    Ok(Metadata {
        kind,
        csi_name: percent_decode(required(name, "name")?)?,
        source: source
            .map(Slot::parse)
            .transpose()
            .map_err(|e| e.to_string())?,
        created: number(created, "created")?,
        requested_bytes: number(requested, "requested")?,
        context: context.map_or(Ok(BTreeMap::new()), parse_context)?,
        method: method
            .map(|m| m.parse::<Method>())
            .transpose()
            .map_err(|e| e.to_string())?,
        pending: match pending {
            None => false,
            Some("1") => true,
            Some(other) => return Err(format!("pending {other:?} is not 1")),
        },
    })
}

/// `k=v&k=v`, percent-encoded as a whole.
fn parse_context(encoded: &str) -> Result<BTreeMap<String, String>, String> {
    let text = percent_decode(encoded)?;
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("context entry {pair:?} has no '='"))
        })
        .collect()
}

fn required<'f>(value: Option<&'f str>, key: &str) -> Result<&'f str, String> {
    value.ok_or_else(|| format!("field {key} is missing"))
}

fn number(value: Option<&str>, key: &str) -> Result<u64, String> {
    let value = required(value, key)?;
    value
        .parse()
        .map_err(|_| format!("{key} {value:?} is not a number"))
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Strict: only what [`percent_encode`] writes (any hex case accepted), decoding to UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let digit = |b: u8| char::from(b).to_digit(16);
            let [high, low, after @ ..] = tail else {
                return Err(format!("name {text:?} ends inside a %XX escape"));
            };
            let (Some(high), Some(low)) = (digit(*high), digit(*low)) else {
                return Err(format!("name {text:?} has a bad %XX escape"));
            };
            bytes.push(u8::try_from(high << 4 | low).expect("two hex digits make a byte"));
            rest = after;
        } else if is_unreserved(byte) {
            bytes.push(byte);
            rest = tail;
        } else {
            return Err(format!(
                "name {text:?} holds {:?} unescaped",
                char::from(byte)
            ));
        }
    }
    String::from_utf8(bytes).map_err(|_| format!("name {text:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const UUID: &str = "8f2e4b1c-3d5a-4e6f-9a7b-0c1d2e3f4a5b";

    #[test]
    fn pvc_names_keep_their_uuid() {
        let id = volume_id(&format!("pvc-{UUID}"));
        assert_eq!(id.as_str(), "pvc-8f2e4b1c3d5a4e6f9a7b0c1d2e3f");
        assert_eq!(id.as_str().len(), 32);
    }

    #[test]
    fn other_names_are_hashed() {
        let id = volume_id("my-volume");
        assert_eq!(
            id.as_str(),
            format!("vol-{}", &sha256_hex("my-volume")[..28])
        );
        assert_eq!(id.as_str().len(), 32);
        for not_canonical in [
            format!("pvc-{}", UUID.to_uppercase()),
            "pvc-".into(),
            format!("pvc-{UUID}-x"),
            format!("PVC-{UUID}"),
        ] {
            assert!(
                volume_id(&not_canonical).as_str().starts_with("vol-"),
                "{not_canonical}"
            );
        }
    }

    #[test]
    fn snapshot_ids() {
        let id = snapshot_id(&format!("snapshot-{UUID}"));
        assert_eq!(id.as_str(), "snap-8f2e4b1c3d5a4e6f9a7b0c1d2e3");
        let hashed = snapshot_id("nightly");
        assert_eq!(
            hashed.as_str(),
            format!("snap-{}", &sha256_hex("nightly")[..27])
        );
        assert_eq!((id.as_str().len(), hashed.as_str().len()), (32, 32));
    }

    #[test]
    fn ids_are_deterministic() {
        for name in [
            format!("pvc-{UUID}"),
            "x".into(),
            "ünïcode ✓".into(),
            "a".repeat(128),
        ] {
            assert_eq!(volume_id(&name), volume_id(&name));
            assert_eq!(snapshot_id(&name), snapshot_id(&name));
        }
    }

    #[test]
    fn distinct_names_get_distinct_ids() {
        let mut volumes = HashSet::new();
        let mut snapshots = HashSet::new();
        for n in 0..20_000u32 {
            let uuid = format!(
                "{:08x}-0000-4000-8000-{:012x}",
                n.wrapping_mul(2_654_435_761),
                n
            );
            for name in [
                format!("pvc-{uuid}"),
                format!("volume-{n}"),
                format!("snapshot-{uuid}"),
            ] {
                assert!(
                    volumes.insert(volume_id(&name)),
                    "volume id collision for {name}"
                );
                assert!(
                    snapshots.insert(snapshot_id(&name)),
                    "snapshot id collision for {name}"
                );
            }
        }
    }

    #[test]
    fn uuids_differing_only_after_28_digits_collide_and_the_comment_tells() {
        let a = "pvc-8f2e4b1c-3d5a-4e6f-9a7b-0c1d2e3f0000";
        let b = "pvc-8f2e4b1c-3d5a-4e6f-9a7b-0c1d2e3f1111";
        assert_eq!(volume_id(a), volume_id(b));
        let stored = Metadata {
            kind: IdKind::Volume,
            csi_name: a.into(),
            source: None,
            created: 0,
            requested_bytes: 0,
            context: BTreeMap::new(),
            method: None,
            pending: false,
        };
        let read = Metadata::parse(stored.to_comment().unwrap().as_str()).unwrap();
        assert_ne!(read.csi_name, b);
    }

    #[test]
    fn parse_id_accepts_only_our_shapes() {
        let volume = volume_id(&format!("pvc-{UUID}"));
        assert_eq!(
            parse_id(volume.as_str()),
            Some((IdKind::Volume, volume.clone()))
        );
        let hashed = volume_id("x");
        assert_eq!(parse_id(hashed.as_str()), Some((IdKind::Volume, hashed)));
        let snapshot = snapshot_id("x");
        assert_eq!(
            parse_id(snapshot.as_str()),
            Some((IdKind::Snapshot, snapshot))
        );
        for foreign in [
            "",
            "pvc-1",
            "raid10",
            "snap-8f2e4b1c3d5a4e6f9a7b0c1d2e3f",
            "pvc-8F2E4B1C3D5A4E6F9A7B0C1D2E3F",
            "vol-8f2e4b1c3d5a4e6f9a7b0c1d2e3g",
        ] {
            assert_eq!(parse_id(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn nqn_and_path() {
        let id = volume_id(&format!("pvc-{UUID}"));
        let prefix = Nqn::parse("nqn.2026-09.com.example:rds-csi").unwrap();
        assert_eq!(
            volume_nqn(&prefix, &id).unwrap().as_str(),
            "nqn.2026-09.com.example:rds-csi:pvc-8f2e4b1c3d5a4e6f9a7b0c1d2e3f"
        );
        let pool = RosPath::parse("raid10").unwrap();
        let dir = RosPath::parse("csi").unwrap();
        assert_eq!(
            disk_path(&pool, &dir, &id).as_str(),
            "raid10/csi/pvc-8f2e4b1c3d5a4e6f9a7b0c1d2e3f.img"
        );
    }

    #[test]
    fn metadata_format_is_stable() {
        let metadata = Metadata {
            kind: IdKind::Snapshot,
            csi_name: "snapshot-1 ü,x:y;z=w%".into(),
            source: Some(volume_id(&format!("pvc-{UUID}"))),
            created: 1_732_550_000,
            requested_bytes: 1_073_741_824,
            context: BTreeMap::new(),
            method: None,
            pending: false,
        };
        let comment = metadata.to_comment().unwrap();
        assert_eq!(
            comment.as_str(),
            "rds-csi:1,kind:snapshot,name:snapshot-1%20%C3%BC%2Cx%3Ay%3Bz%3Dw%25,created:1732550000,\
             requested:1073741824,source:pvc-8f2e4b1c3d5a4e6f9a7b0c1d2e3f"
        );
        assert_eq!(Metadata::parse(comment.as_str()).unwrap(), metadata);
    }

    #[test]
    fn snapshot_method_and_pending_copy_round_trip() {
        let metadata = Metadata {
            kind: IdKind::Snapshot,
            csi_name: "s".into(),
            source: Some(volume_id("v")),
            created: 1,
            requested_bytes: 4096,
            context: BTreeMap::new(),
            method: Some(Method::DiskCopy),
            pending: true,
        };
        let comment = metadata.to_comment().unwrap();
        assert!(
            comment.as_str().ends_with(",method:disk-copy,pending:1"),
            "{comment}"
        );
        assert_eq!(Metadata::parse(comment.as_str()).unwrap(), metadata);
        let done = Metadata {
            pending: false,
            ..metadata
        };
        let comment = done.to_comment().unwrap();
        assert!(!comment.as_str().contains("pending"), "{comment}");
        assert_eq!(Metadata::parse(comment.as_str()).unwrap(), done);
        assert_malformed(&[
            "rds-csi:1,kind:snapshot,name:s,created:1,requested:2,method:rsync",
            "rds-csi:1,kind:snapshot,name:s,created:1,requested:2,pending:yes",
        ]);
    }

    fn assert_malformed(comments: &[&str]) {
        for damaged in comments {
            assert!(
                matches!(
                    Metadata::parse(damaged),
                    Err(MetadataError::Malformed { .. })
                ),
                "{damaged}"
            );
        }
    }

    #[test]
    fn a_disk_that_is_not_an_rds_csi_volume_says_why() {
        let volume = "rds-csi:1,kind:volume,name:a,created:1,requested:2";
        assert!(Metadata::of_disk(Some(volume), IdKind::Volume).is_ok());
        for (comment, kind, says) in [
            (
                None,
                IdKind::Volume,
                "has no comment, so rds-csi did not create it",
            ),
            (
                Some(volume),
                IdKind::Snapshot,
                "is an rds-csi volume, not a snapshot",
            ),
            (
                Some("made by hand"),
                IdKind::Volume,
                "cannot be rds-csi's: its comment \"made by hand\" was not written by rds-csi",
            ),
            (
                Some("rds-csi:2,kind:volume"),
                IdKind::Volume,
                "upgrade the driver",
            ),
            (
                Some("rds-csi:1,kind:volume,name:a"),
                IdKind::Volume,
                "fix or clear the disk's comment",
            ),
        ] {
            let why = Metadata::of_disk(comment, kind).unwrap_err().to_string();
            assert!(why.contains(says), "{comment:?}: {why}");
        }
    }

    #[test]
    fn metadata_tolerates_unknown_fields_and_refuses_damage() {
        let parsed =
            Metadata::parse("rds-csi:1,kind:volume,name:a,created:1,requested:2,future:x").unwrap();
        assert_eq!(parsed.csi_name, "a");
        assert!(matches!(
            Metadata::parse("made by hand"),
            Err(MetadataError::NotOurs(_))
        ));
        assert!(matches!(
            Metadata::parse("rds-csi:2,kind:volume"),
            Err(MetadataError::UnsupportedVersion { .. })
        ));
        assert_malformed(&[
            "rds-csi:1,kind:volume,name:a,created:1",
            "rds-csi:1,kind:disk,name:a,created:1,requested:2",
            "rds-csi:1,kind:volume,name:a b,created:1,requested:2",
            "rds-csi:1,kind:volume,name:%zz,created:1,requested:2",
            "rds-csi:1,kind:volume,name:%+1,created:1,requested:2",
            "rds-csi:1,kind:volume,name:%FF,created:1,requested:2",
            "rds-csi:1,kind:volume,name:a,created:x,requested:2",
            "rds-csi:1,kind:volume,name:a,name:b,created:1,requested:2",
            "rds-csi:1,kind:volume,name:a,created:1,requested:2,source:Bad",
            "rds-csi:1,kind",
        ]);
    }

    #[test]
    fn a_128_byte_name_fits_a_comment() {
        let metadata = Metadata {
            kind: IdKind::Volume,
            csi_name: "€".repeat(42) + "xx",
            source: Some(snapshot_id("s")),
            created: u64::MAX,
            requested_bytes: u64::MAX,
            context: BTreeMap::new(),
            method: None,
            pending: false,
        };
        assert_eq!(metadata.csi_name.len(), 128);
        assert!(metadata.to_comment().is_ok());
        let too_long = Metadata {
            csi_name: "€".repeat(200),
            ..metadata
        };
        assert!(too_long.to_comment().is_err());
    }
}
