//! Btrfs subvolumes of the pool: the `btrfs` snapshot method's volumes and snapshots
//! (REFERENCE.md §8.2).
//!
//! The pool's Btrfs label is taken to be its mount point, as MikroTik's Btrfs guide sets them
//! (`label=BtrfsDisk`, mounted at `BtrfsDisk`); a pool whose label differs reads as not Btrfs.

use super::{FORM, RdsClient, RdsError, check_created, refused, tolerate_missing};
use crate::ids;
use crate::rds::command::{Cmd, DiskSpec, SubvolumeQuery};
use crate::rds::error::check_output;
use crate::rds::parse::{DiskRecord, SubvolumeRecord, parse_grouped_u64};
use crate::rds::value::{RosPath, Slot};

impl RdsClient {
    /// True when the pool is a Btrfs file system labelled as its mount point.
    pub async fn pool_is_btrfs(&self) -> Result<bool, RdsError> {
        let cmd = Cmd::btrfs_filesystem_print(&self.pool, FORM);
        Ok(!self.print(&cmd).await?.is_empty())
    }

    /// The disk file inside subvolume `name` of the pool ([`ids::subvolume_disk_path`]).
    pub fn subvolume_file(&self, name: &Slot) -> RosPath {
        ids::subvolume_disk_path(&self.pool, name)
    }

    /// The subvolume named `name`, if there is one.
    pub async fn subvolume(&self, name: &Slot) -> Result<Option<SubvolumeRecord>, RdsError> {
        let cmd = Cmd::subvolume_print(SubvolumeQuery::Name(name), FORM);
        Ok(self.subvolumes_of(&cmd).await?.pop())
    }

    /// Every subvolume whose name starts with `prefix`, ordered by name.
    pub async fn subvolumes(&self, prefix: &Slot) -> Result<Vec<SubvolumeRecord>, RdsError> {
        let cmd = Cmd::subvolume_print(SubvolumeQuery::NamePrefix(prefix), FORM);
        let mut found = self.subvolumes_of(&cmd).await?;
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    /// Adds subvolume `name` to the pool, a snapshot of `parent` when one is given, and checks
    /// it reads back so. A name that is taken fails with
    /// [`super::ErrorKind::AlreadyExists`]: the caller reads the subvolume and decides. An
    /// unanswered add is settled by reading.
    pub async fn add_subvolume(
        &self,
        name: &Slot,
        parent: Option<&Slot>,
        read_only: bool,
    ) -> Result<SubvolumeRecord, RdsError> {
        self.check_version().await?;
        let _turn = self.mutations.lock().await;
        let cmd = Cmd::subvolume_add(&self.pool, name, parent, read_only);
        if let Err(error) = self.run_silent(&cmd).await {
            let committed =
                error.is_ambiguous() && matches!(self.subvolume(name).await, Ok(Some(_)));
            if !committed {
                return Err(error);
            }
        }
        let found = self.subvolume(name).await?;
        let mismatch = |differences: String| RdsError::Subvolume {
            command: cmd.to_string(),
            name: name.to_string(),
            differences,
        };
        let found = found.ok_or_else(|| mismatch("nothing: it does not exist".to_owned()))?;
        let wanted_parent = parent.map(Slot::as_str);
        if found.parent.as_deref() != wanted_parent || found.read_only != read_only {
            return Err(mismatch(format!(
                "parent {:?} and read-only={} (expected {wanted_parent:?} and {read_only})",
                found.parent, found.read_only
            )));
        }
        Ok(found)
    }

    /// Removes subvolume `name` with everything in it and checks it is gone; one already gone
    /// is fine. RouterOS refuses while a disk's file is inside: remove the disk first.
    pub async fn remove_subvolume(&self, name: &Slot) -> Result<(), RdsError> {
        self.check_version().await?;
        let _turn = self.mutations.lock().await;
        let cmd = Cmd::subvolume_remove(name);
        tolerate_missing(self.run_silent(&cmd).await)?;
        if self.subvolume(name).await?.is_some() {
            return Err(RdsError::Subvolume {
                command: cmd.to_string(),
                name: name.to_string(),
                differences: "that it still exists".to_owned(),
            });
        }
        Ok(())
    }

    /// Adds the disk `spec` over the file already at `spec.file_path`, whose size must be
    /// `spec.size`, and returns it as read back. A slot that is taken fails with
    /// [`super::ErrorKind::AlreadyExists`]; an unanswered add is settled by reading. Unlike
    /// [`RdsClient::create`] it never removes the file: the file is the data.
    pub async fn attach_as(&self, spec: &DiskSpec) -> Result<DiskRecord, RdsError> {
        self.check_version().await?;
        let _turn = self.mutations.lock().await;
        let cmd = Cmd::disk_attach_as(spec);
        if let Err(error) = self.run_silent(&cmd).await {
            let committed =
                error.is_ambiguous() && matches!(self.find(&spec.slot).await, Ok(Some(_)));
            if !committed {
                return Err(error);
            }
        }
        let disk = self.read_back(&cmd, &spec.slot).await?;
        check_created(&cmd, spec, disk)
    }

    /// The exact size in bytes of the file at `path`.
    pub async fn file_size(&self, path: &RosPath) -> Result<u64, RdsError> {
        let cmd = Cmd::file_get_size(path);
        let output = self.run(&cmd).await?;
        let output = refused(&cmd, check_output(&cmd, &output))?;
        parse_grouped_u64(output.trim()).map_err(|source| RdsError::Parse {
            command: cmd.to_string(),
            source,
        })
    }

    async fn subvolumes_of(&self, cmd: &Cmd) -> Result<Vec<SubvolumeRecord>, RdsError> {
        self.print(cmd)
            .await?
            .iter()
            .map(SubvolumeRecord::try_from)
            .collect::<Result<_, _>>()
            .map_err(|source| RdsError::Parse {
                command: cmd.to_string(),
                source,
            })
    }
}
