//! Typed operations on the RDS's disks: [`RdsClient`].
//!
//! Each operation is one or a few [`Cmd`]s over the [`SshPool`], its output checked for RouterOS
//! error text and parsed into records. Two rules make the operations safe to retry:
//!
//! * **Mutations are serialised per appliance and read back.** `add`, `set` and `remove` run one
//!   at a time (one async mutex per client, that is per RDS), each followed by a read of the disk
//!   it changed; success is reported only when the read shows the change. RouterOS prints nothing
//!   when they succeed, and `set`/`remove` on `[find …]` that matches nothing are silent too, so
//!   the read is the only proof.
//! * **An unanswered command is settled by reading.** When the connection drops or a command
//!   times out after it was sent, the state on the RDS decides whether it took effect.
//!
//! Reads use `print detail`, not `:serialize to=json`: `print detail` is the form captured from a
//! real RDS (`routeros/captures.md` §1, §2, with the exact byte `size`), and the parser handles its
//! wrapping. The JSON form is documented but not captured from an RDS, and RouterOS has been seen
//! printing JSON numbers as `443.000000`, which would also lose precision above 2^53 bytes.

mod copy;
mod error;
mod subvolume;
mod verify;

use std::sync::Mutex as SyncMutex;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OnceCell};

pub use copy::CopyProgress;
pub use error::{ErrorKind, RdsError};

use super::command::{Cmd, DiskQuery, DiskSpec, Form, NvmeExport};
use super::error::RosError;
use super::error::{check_output, expect_silent};
use super::parse::{
    DiskRecord, ParseError, PoolRecord, Record, RosVersion, parse_key_values,
    parse_routeros_version, records,
};
use super::ssh::{PoolStats, SshError, SshPool};
use super::value::{ByteSize, Nqn, RosPath, Slot};

/// The oldest RouterOS with `nvme-tcp-server-nqn` (routeros/README.md, "Commands").
pub const MIN_ROUTEROS: RosVersion = RosVersion::new(7, 21, 0);

const FORM: Form = Form::Detail;

/// The disks of one RDS, reached over one SSH pool.
pub struct RdsClient {
    ssh: SshPool,
    pool: RosPath,
    mutations: Mutex<()>,
    /// Checked once, before the first mutation: an older RouterOS would misread the commands.
    version: OnceCell<RosVersion>,
    /// When the RDS last answered; cleared when it could not be reached.
    last_answer: SyncMutex<Option<Instant>>,
}

impl RdsClient {
    /// `pool` is the mount point of the pool disk the volumes' files live on.
    pub fn new(ssh: SshPool, pool: RosPath) -> Self {
        Self {
            ssh,
            pool,
            mutations: Mutex::new(()),
            version: OnceCell::new(),
            last_answer: SyncMutex::new(None),
        }
    }

    /// True when the RDS answered a command or probe within `age` and no connection to it has
    /// failed since.
    pub fn answered_within(&self, age: Duration) -> bool {
        let last = *self.last_answer.lock().unwrap_or_else(|p| p.into_inner());
        last.is_some_and(|at| at.elapsed() <= age)
    }

    /// The RouterOS version, or [`RdsError::Unsupported`] when it is older than
    /// [`MIN_ROUTEROS`].
    pub async fn version(&self) -> Result<RosVersion, RdsError> {
        let cmd = Cmd::system_resource();
        let output = self.run(&cmd).await?;
        let output = refused(&cmd, check_output(&cmd, &output))?;
        let parse_error = |source| RdsError::Parse {
            command: cmd.to_string(),
            source,
        };
        let block = parse_key_values(output).map_err(parse_error)?;
        let text = block
            .get("version")
            .ok_or(ParseError::Missing("version"))
            .map_err(parse_error)?;
        let found = parse_routeros_version(text).map_err(parse_error)?;
        if found < MIN_ROUTEROS {
            return Err(RdsError::Unsupported { found });
        }
        Ok(found)
    }

    /// The disk with this slot, if there is one.
    pub async fn find(&self, slot: &Slot) -> Result<Option<DiskRecord>, RdsError> {
        let cmd = Cmd::disk_print(DiskQuery::Slot(slot), FORM);
        let mut disks = self.disks(&cmd).await?;
        match disks.len() {
            0 | 1 => Ok(disks.pop()),
            count => Err(RdsError::DuplicateSlot {
                command: cmd.to_string(),
                slot: slot.to_string(),
                count,
            }),
        }
    }

    /// Every disk whose slot starts with `prefix`, ordered by slot.
    pub async fn list(&self, prefix: &Slot) -> Result<Vec<DiskRecord>, RdsError> {
        let cmd = Cmd::disk_print(DiskQuery::SlotPrefix(prefix), FORM);
        let mut disks = self.disks(&cmd).await?;
        disks.sort_by(|a, b| a.slot.cmp(&b.slot));
        Ok(disks)
    }

    /// Every disk on the RDS, whoever made it.
    pub async fn all(&self) -> Result<Vec<DiskRecord>, RdsError> {
        self.disks(&Cmd::disk_print_all(FORM)).await
    }

    /// Every entry of the `/file` tree under `dir` (files and directories, at any depth).
    pub async fn files_under(&self, dir: &RosPath) -> Result<Vec<Record>, RdsError> {
        self.print(&Cmd::file_print_under(dir, FORM)).await
    }

    /// The disks whose comment may record `source` as what they were copied from (a longer
    /// slot starting with `source` matches too: the caller reads the comments).
    pub async fn made_from(&self, source: &Slot) -> Result<Vec<DiskRecord>, RdsError> {
        self.disks(&Cmd::disk_print(DiskQuery::Source(source), FORM))
            .await
    }

    /// Adds the disk and returns it as read back, identical to `spec`.
    ///
    /// A slot that is taken fails with [`ErrorKind::AlreadyExists`]: the caller reads the disk
    /// and decides. A backing file left without a disk (an earlier add that failed between
    /// creating the file and committing the disk) is removed and the add made once more.
    pub async fn create(&self, spec: &DiskSpec) -> Result<DiskRecord, RdsError> {
        self.add(&Cmd::disk_add(spec), spec).await
    }

    /// Runs `cmd`, a `/disk add` of `spec`, as [`RdsClient::create`] describes.
    ///
    /// The appliance-wide turn covers the add (and the settling of an ambiguous or refused one);
    /// the read-back runs after it, under the caller's guard of the volume, so that one create's
    /// read-back does not hold up the next create's add.
    async fn add(&self, cmd: &Cmd, spec: &DiskSpec) -> Result<DiskRecord, RdsError> {
        self.check_version().await?;
        let turn = self.mutations.lock().await;
        let added = match self.run_silent(cmd).await {
            Err(error) if error.is_unexplained_refusal() => {
                Err(self.explain_refused_add(spec, error).await)
            }
            added => added,
        };
        match added {
            Ok(()) => {}
            Err(error) if error.is_ambiguous() => {
                return match self.find(&spec.slot).await {
                    Ok(Some(disk)) => check_created(cmd, spec, disk),
                    Ok(None) | Err(_) => Err(error),
                };
            }
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                if self.find(&spec.slot).await?.is_some() {
                    return Err(error);
                }
                tracing::warn!(
                    file = %spec.file_path,
                    "removing a backing file that no disk uses, left by an earlier create"
                );
                self.remove_file(&spec.file_path).await?;
                self.run_silent(cmd).await?;
            }
            Err(error) => return Err(error),
        }
        drop(turn);
        let disk = self.read_back(cmd, &spec.slot).await?;
        check_created(cmd, spec, disk)
    }

    /// A refused `/disk add` whose text names no cause the driver knows (RouterOS publishes none
    /// of them: REFERENCE.md §13.5), explained by what the RDS shows: the slot taken, or the file
    /// there with no disk on it, is [`ErrorKind::AlreadyExists`]; the file used by another disk
    /// is [`ErrorKind::Busy`]; a pool with less free space than the disk's size is
    /// [`ErrorKind::OutOfSpace`]. RouterOS's own text stays in the message. A read that fails
    /// leaves the refusal as it was.
    async fn explain_refused_add(&self, spec: &DiskSpec, error: RdsError) -> RdsError {
        let RdsError::Ros(RosError::Failure { command, text }) = &error else {
            return error;
        };
        let (command, text) = (command.clone(), text.clone());
        let Ok(disks) = self.all().await else {
            return error;
        };
        let file = spec.file_path.as_str().trim_start_matches('/');
        let on_file = |path: Option<&str>| path.map(|p| p.trim_start_matches('/')) == Some(file);
        if disks.iter().any(|disk| disk.slot == spec.slot.as_str()) {
            return RosError::AlreadyExists { command, text }.into();
        }
        if disks.iter().any(|disk| on_file(disk.file_path.as_deref())) {
            return RosError::Busy { command, text }.into();
        }
        let files = match parent(&spec.file_path) {
            Some(dir) => self.files_under(&dir).await.unwrap_or_default(),
            None => Vec::new(),
        };
        if files.iter().any(|entry| on_file(entry.get("name"))) {
            return RosError::AlreadyExists { command, text }.into();
        }
        match self.capacity().await {
            Ok(pool) if pool.free < spec.size.get() => {
                RosError::OutOfSpace { command, text }.into()
            }
            _ => error,
        }
    }

    /// Grows the disk's file to `size` bytes.
    pub async fn resize(&self, slot: &Slot, size: ByteSize) -> Result<DiskRecord, RdsError> {
        self.check_version().await?;
        let _turn = self.mutations.lock().await;
        let cmd = Cmd::disk_set_size(slot, size);
        self.run_silent(&cmd).await?;
        let disk = self.read_back(&cmd, slot).await?;
        checked(&cmd, slot, disk, |disk| verify::resized(disk, size.get()))
    }

    /// Lets only `hosts` connect to the disk's NVMe/TCP subsystem (none: no host).
    pub async fn set_allowed_hosts(
        &self,
        slot: &Slot,
        hosts: &[Nqn],
    ) -> Result<DiskRecord, RdsError> {
        self.check_version().await?;
        let _turn = self.mutations.lock().await;
        let cmd = Cmd::disk_set_allowed_hosts(slot, hosts);
        self.run_silent(&cmd).await?;
        let disk = self.read_back(&cmd, slot).await?;
        checked(&cmd, slot, disk, |disk| verify::allowed_hosts(disk, hosts))
    }

    /// Ends every connection to the disk's export and admits only `hosts` (none: no host) to it
    /// again: the export is ended and made again with the same port and NQN (see
    /// [`Cmd::disk_unexport`]). A node that lost the volume this way cannot write to it again
    /// until it is published to it anew; a host in `hosts` reconnects by itself.
    pub async fn fence(
        &self,
        slot: &Slot,
        export: &NvmeExport,
        hosts: &[Nqn],
    ) -> Result<DiskRecord, RdsError> {
        self.check_version().await?;
        let _turn = self.mutations.lock().await;
        self.run_silent(&Cmd::disk_unexport(slot)).await?;
        let cmd = Cmd::disk_export_to(slot, export, hosts);
        self.run_silent(&cmd).await?;
        let disk = self.read_back(&cmd, slot).await?;
        checked(&cmd, slot, disk, |disk| {
            verify::reexported(disk, export, hosts)
        })
    }

    /// Ends the disk's NVMe/TCP export, and with it every connection to it; the disk and its
    /// file stay.
    pub async fn unexport(&self, slot: &Slot) -> Result<DiskRecord, RdsError> {
        self.check_version().await?;
        let _turn = self.mutations.lock().await;
        let cmd = Cmd::disk_unexport(slot);
        self.run_silent(&cmd).await?;
        let disk = self.read_back(&cmd, slot).await?;
        checked(&cmd, slot, disk, verify::unexported)
    }

    /// Removes the disk, then its backing file (`/disk remove` keeps the file), and checks that
    /// both are gone. Either one already missing is fine, so a retry completes a removal.
    pub async fn remove(&self, slot: &Slot, file: &RosPath) -> Result<(), RdsError> {
        self.check_version().await?;
        let _turn = self.mutations.lock().await;
        let cmd = Cmd::disk_remove(slot);
        // `remove [find …]` matching nothing prints nothing, but tolerate `no such item` too.
        match self.run_silent(&cmd).await {
            // Whether RouterOS removes an exported disk is an open question (REFERENCE.md §13
            // item 11): on a refusal, end the export (which ends its connections) and remove
            // again. A disk still published to a node never gets here: DeleteVolume refuses it.
            Err(error) if error.is_refusal() => {
                tracing::info!(%slot, %error, "removal refused; ending the export first");
                self.run_silent(&Cmd::disk_unexport(slot)).await?;
                tolerate_missing(self.run_silent(&cmd).await)?;
            }
            answer => tolerate_missing(answer)?,
        }
        // The file goes only once no disk uses it.
        if let Some(disk) = self.find(slot).await? {
            return Err(RdsError::ReadBack {
                command: cmd.to_string(),
                slot: disk.slot,
                differences: "the disk still exists".to_owned(),
            });
        }
        self.remove_file(file).await?;
        let Some(dir) = parent(file) else {
            tracing::warn!(%file, "not verifying the removal of a file outside any directory");
            return Ok(());
        };
        let list = Cmd::file_print_under(&dir, FORM);
        let files = self.print(&list).await?;
        if files.iter().any(|f| f.get("name") == Some(file.as_str())) {
            return Err(RdsError::ReadBack {
                command: Cmd::file_remove(file).to_string(),
                slot: slot.to_string(),
                differences: format!("its backing file {file} still exists"),
            });
        }
        Ok(())
    }

    /// The backing files left by a disk in slot `slot` that is gone: every `<slot>.img` in any
    /// directory of the pool. The directory the disk was made in (the `rds.baseDir` of that
    /// time, or a StorageClass `baseDir`) is recorded only in the disk, so a retried delete
    /// searches instead of trusting today's settings.
    pub async fn files_of(&self, slot: &Slot) -> Result<Vec<RosPath>, RdsError> {
        let cmd = Cmd::file_print_named(&self.pool, &format!("{slot}.img"), FORM);
        let parse_error = |source| RdsError::Parse {
            command: cmd.to_string(),
            source,
        };
        self.print(&cmd)
            .await?
            .iter()
            .map(|file| {
                let name = file.get("name").ok_or(ParseError::Missing("name"));
                let name = name.map_err(parse_error)?;
                RosPath::parse(name).map_err(|_| {
                    parse_error(ParseError::Value {
                        name: "name".to_owned(),
                        value: name.to_owned(),
                        expected: "a file path",
                    })
                })
            })
            .collect()
    }

    /// The pool disk: its size and free bytes.
    pub async fn capacity(&self) -> Result<PoolRecord, RdsError> {
        let cmd = Cmd::disk_print(DiskQuery::MountPoint(&self.pool), FORM);
        let records = self.print(&cmd).await?;
        let record = records.first().ok_or_else(|| RdsError::NoPool {
            command: cmd.to_string(),
            pool: self.pool.to_string(),
        })?;
        PoolRecord::try_from(record).map_err(|source| RdsError::Parse {
            command: cmd.to_string(),
            source,
        })
    }

    /// Checks that the RDS answers, by opening a channel on a pooled connection.
    pub async fn probe(&self) -> Result<(), RdsError> {
        let probed = self.ssh.probe().await.map_err(|source| RdsError::Ssh {
            command: "opening an SSH channel (liveness probe)".to_owned(),
            source,
        });
        self.note(probed)
    }

    async fn check_version(&self) -> Result<(), RdsError> {
        self.version.get_or_try_init(|| self.version()).await?;
        Ok(())
    }

    async fn remove_file(&self, file: &RosPath) -> Result<(), RdsError> {
        tolerate_missing(self.run_silent(&Cmd::file_remove(file)).await)
    }

    /// The disk a mutation just changed; a disk that vanished meanwhile is an error.
    async fn read_back(&self, cmd: &Cmd, slot: &Slot) -> Result<DiskRecord, RdsError> {
        self.find(slot).await?.ok_or_else(|| RdsError::NoDisk {
            command: cmd.to_string(),
            slot: slot.to_string(),
        })
    }

    async fn disks(&self, cmd: &Cmd) -> Result<Vec<DiskRecord>, RdsError> {
        self.print(cmd)
            .await?
            .iter()
            .map(DiskRecord::try_from)
            .collect::<Result<_, _>>()
            .map_err(|source| RdsError::Parse {
                command: cmd.to_string(),
                source,
            })
    }

    async fn print(&self, cmd: &Cmd) -> Result<Vec<Record>, RdsError> {
        let output = self.run(cmd).await?;
        let output = refused(cmd, check_output(cmd, &output))?;
        records(FORM, output).map_err(|source| RdsError::Parse {
            command: cmd.to_string(),
            source,
        })
    }

    async fn run_silent(&self, cmd: &Cmd) -> Result<(), RdsError> {
        let output = self.run(cmd).await?;
        refused(cmd, expect_silent(cmd, &output))
    }

    /// What `cmd` printed, unparsed: for `rds-csi doctor --all`, which reports how this RouterOS
    /// answers where the reference is silent.
    pub async fn output(&self, cmd: &Cmd) -> Result<String, RdsError> {
        self.run(cmd).await
    }

    /// [`RdsClient::output`], and whether any of it came on standard error: for `rds-csi doctor
    /// --all`'s probe of REFERENCE.md §13.8.
    pub async fn output_on_stderr(&self, cmd: &Cmd) -> Result<(String, bool), RdsError> {
        let sent = Instant::now();
        let exec = self.ssh.run_streams(cmd.as_str()).await;
        let on_stderr = exec.as_ref().is_ok_and(|exec| exec.stderr_bytes > 0);
        let text = self.answered(cmd, sent, exec.map(|exec| exec.text))?;
        Ok((text, on_stderr))
    }

    async fn run(&self, cmd: &Cmd) -> Result<String, RdsError> {
        let sent = Instant::now();
        let output = self.ssh.run(cmd.as_str()).await;
        self.answered(cmd, sent, output)
    }

    /// [`RdsClient::run`] for `/disk copy`, under the SSH pool's copy timeout.
    async fn run_copy(&self, cmd: &Cmd) -> Result<String, RdsError> {
        let sent = Instant::now();
        let output = self.ssh.run_copy(cmd.as_str()).await;
        self.answered(cmd, sent, output)
    }

    /// Counts the command (every command passes here once) and records whether the RDS answered.
    fn answered(
        &self,
        cmd: &Cmd,
        sent: Instant,
        output: Result<String, SshError>,
    ) -> Result<String, RdsError> {
        crate::metrics::command(cmd.verb(), sent.elapsed());
        let output = output.map_err(|source| RdsError::Ssh {
            command: cmd.to_string(),
            source,
        });
        if let Err(error) = &output {
            crate::metrics::command_error(cmd.verb(), error.kind());
        }
        self.note(output)
    }

    /// The SSH pool's sessions and breaker, for the metrics.
    pub fn pool_stats(&self) -> PoolStats {
        self.ssh.stats()
    }

    /// Records whether the RDS answered.
    fn note<T>(&self, result: Result<T, RdsError>) -> Result<T, RdsError> {
        let answered = match &result {
            Ok(_) => Some(Instant::now()),
            Err(error) if matches!(error.kind(), ErrorKind::Unavailable | ErrorKind::Timeout) => {
                None
            }
            Err(_) => return result,
        };
        *self.last_answer.lock().unwrap_or_else(|p| p.into_inner()) = answered;
        result
    }
}

/// `checked` (RouterOS's verdict on the answer to `cmd`), counting a refusal as a failed command.
fn refused<T>(cmd: &Cmd, checked: Result<T, RosError>) -> Result<T, RdsError> {
    checked.map_err(|error| {
        let error = RdsError::from(error);
        crate::metrics::command_error(cmd.verb(), error.kind());
        error
    })
}

fn check_created(cmd: &Cmd, spec: &DiskSpec, disk: DiskRecord) -> Result<DiskRecord, RdsError> {
    checked(cmd, &spec.slot, disk, |disk| verify::created(spec, disk))
}

fn checked(
    cmd: &Cmd,
    slot: &Slot,
    disk: DiskRecord,
    differences: impl Fn(&DiskRecord) -> Vec<String>,
) -> Result<DiskRecord, RdsError> {
    let found = differences(&disk);
    if found.is_empty() {
        return Ok(disk);
    }
    Err(RdsError::ReadBack {
        command: cmd.to_string(),
        slot: slot.to_string(),
        differences: found.join(", "),
    })
}

fn tolerate_missing(result: Result<(), RdsError>) -> Result<(), RdsError> {
    match result {
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The directory holding `path`, if it is not at the root.
fn parent(path: &RosPath) -> Option<RosPath> {
    let (dir, _) = path.as_str().rsplit_once('/')?;
    RosPath::parse(dir).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_of_paths() {
        let path = |s| RosPath::parse(s).unwrap();
        assert_eq!(parent(&path("pool/csi/a.img")), Some(path("pool/csi")));
        assert_eq!(parent(&path("a.img")), None);
    }
}
