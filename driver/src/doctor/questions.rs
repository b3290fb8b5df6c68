//! `rds-csi doctor --all`: a probe for each open RouterOS question (`../shared/routeros/
//! REFERENCE.md` §13) that the driver depends on and SSH alone can answer. Each answer says what
//! the RDS did, which rds-sim switch position (`rds-sim --quirk NAME=POSITION`) matches it, and a
//! line to paste back into the project's issue, so that the simulator follows the appliance.
//!
//! The grow, remove-exported, duplicate-nqn, slot-length, default-nqn, allocation and add-errors
//! probes write: each makes 1 MiB probe
//! disks in `<pool>/<baseDir>` (the exported ones admitting no host), tries the operation and
//! removes them again (and says so when it cannot).

use std::fmt;

use anyhow::Context;
use rand::Rng;

use crate::config::Config;
use crate::rds::allow_list::Reading;
use crate::rds::command::{Cmd, DiskQuery, DiskSpec, Form, NvmeExport};
use crate::rds::disk::{ErrorKind, RdsClient, RdsError};
use crate::rds::error::{RosError, classify};
use crate::rds::value::{ByteSize, RosPath, Slot};
use crate::service::Driver;

/// One question's answer on this RDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The §13 item.
    pub item: u8,
    /// The rds-sim switch that models it.
    pub switch: &'static str,
    /// The matching position, or `None` when the RDS answered in a way rds-sim has no position
    /// for (then the simulator must learn it: paste the line back).
    pub position: Option<&'static str>,
    /// What the RDS printed or did.
    pub saw: String,
    /// Probe disks or files that could not be removed.
    pub leftovers: Vec<String>,
}

impl Answer {
    fn new(
        item: u8,
        switch: &'static str,
        (position, saw): (Option<&'static str>, String),
        leftovers: Vec<String>,
    ) -> Answer {
        Answer {
            item,
            switch,
            position,
            saw,
            leftovers,
        }
    }
}

/// Every probe's answer.
#[derive(Debug, Clone, Default)]
pub struct QuestionsReport {
    pub answers: Vec<Answer>,
    /// The allow-list form the driver is set to: §13.3 takes NVMe/TCP connects from two hosts,
    /// which SSH cannot make, so the report only says where the answer comes from.
    pub allow_list: Reading,
}

impl QuestionsReport {
    /// True when every answer matches a position the driver is tested in.
    pub fn ok(&self) -> bool {
        self.answers
            .iter()
            .all(|a| a.position.is_some() && a.leftovers.is_empty())
    }
}

impl fmt::Display for QuestionsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "open RouterOS questions (REFERENCE.md §13):")?;
        for answer in &self.answers {
            let position = answer.position.unwrap_or("NONE");
            let mark = if answer.position.is_some() {
                " ok "
            } else {
                "NEW "
            };
            writeln!(
                f,
                "[{mark}] §13.{} {}: {} -> rds-sim --quirk {}={position}",
                answer.item, answer.switch, answer.saw, answer.switch
            )?;
            writeln!(
                f,
                "       paste back: \"§13.{} on RouterOS <version>: {} ({}={position})\"",
                answer.item, answer.saw, answer.switch
            )?;
            for leftover in &answer.leftovers {
                writeln!(f, "       left behind: {leftover}")?;
            }
        }
        let form = self.allow_list.as_str();
        writeln!(
            f,
            "[ -- ] §13.3 allow-list: not probed (it takes NVMe/TCP connects from two hosts): \
             HARDWARE_VALIDATION.md TC-04 step 1 decides; this driver is set to rds.allowList = \
             {form} -> rds-sim --quirk allow-list={form}"
        )
    }
}

/// Runs every probe against the configured RDS.
pub async fn probe(config: &Config) -> Result<QuestionsReport, anyhow::Error> {
    let driver = Driver::new(config.clone()).await?;
    let rds = driver
        .rds()
        .context("the driver was built without an RDS client")?;
    let pool = config.rds.pool_path().map_err(anyhow::Error::msg)?;
    let dir = pool.join(&config.rds.base_dir_path().map_err(anyhow::Error::msg)?);
    let nonce = format!("{:012x}", rand::rng().random::<u64>() & 0xffff_ffff_ffff);
    let port = std::num::NonZeroU16::new(config.rds.nvme_port).context("rds.nvmePort is 0")?;
    let prefix = config.rds.nqn_prefix_nqn().map_err(anyhow::Error::msg)?;
    Ok(QuestionsReport {
        answers: vec![
            empty_print(rds, &nonce).await,
            grow(rds, &dir, &nonce).await,
            remove_missing(rds, &nonce).await,
            remove_exported(rds, &dir, &nonce, port, &prefix).await,
            duplicate_nqn(rds, &dir, &nonce, port, &prefix).await,
            slot_length(rds, &dir, &nonce).await,
            default_nqn(rds, &dir, &nonce).await,
            error_stream(rds, &nonce).await,
            allocation(rds, &dir, &nonce).await,
            add_errors(rds, &dir, &nonce).await,
        ],
        allow_list: config.rds.allow_list,
    })
}

/// §13 item 6: what `remove [find …]` says when the find matches nothing.
async fn remove_missing(rds: &RdsClient, nonce: &str) -> Answer {
    let slot = Slot::parse(&format!("probe-{nonce}-none")).expect("a valid probe slot");
    let cmd = Cmd::disk_remove(&slot);
    let (position, saw) = match rds.output(&cmd).await {
        Ok(text) if text.trim().is_empty() => (Some("silent"), "printed nothing".to_owned()),
        Ok(text) if text.trim() == "no such item" => {
            (Some("no-such-item"), "printed `no such item`".to_owned())
        }
        Ok(text) => (None, format!("printed {:?}", text.trim())),
        Err(error) => (None, format!("failed: {error}")),
    };
    Answer::new(
        6,
        "remove-missing",
        (
            position,
            format!("`{cmd}` for a disk that does not exist {saw}"),
        ),
        Vec::new(),
    )
}

/// §13 item 11: whether a disk exported over NVMe/TCP can be removed.
async fn remove_exported(
    rds: &RdsClient,
    dir: &RosPath,
    nonce: &str,
    port: std::num::NonZeroU16,
    prefix: &crate::rds::value::Nqn,
) -> Answer {
    let (slot, file, mut spec) = probe_disk(dir, nonce, "x");
    let (position, saw) = match prefix.with_suffix(&slot) {
        Err(error) => (None, format!("no probe NQN: {error}")),
        Ok(nqn) => {
            spec.export = Some(NvmeExport { port, nqn });
            match rds.create(&spec).await {
                Err(error) => (
                    None,
                    format!("the exported probe disk could not be made: {error}"),
                ),
                Ok(_) => {
                    let cmd = Cmd::disk_remove(&slot);
                    match rds.output(&cmd).await {
                        Ok(text) if text.trim().is_empty() => (
                            Some("allowed"),
                            "`/disk remove` removed an exported disk".to_owned(),
                        ),
                        Ok(text) if text.trim_start().starts_with("failure:") => (
                            Some("refused"),
                            format!(
                                "`/disk remove` of an exported disk printed {:?}",
                                text.trim()
                            ),
                        ),
                        Ok(text) => (None, format!("`/disk remove` printed {:?}", text.trim())),
                        Err(error) => (None, format!("`/disk remove` failed: {error}")),
                    }
                }
            }
        }
    };
    answer_removing(11, "remove-exported", (position, saw), rds, &slot, &file).await
}

/// §13 item 12: whether a new file disk's size leaves the pool's free space at `add` (the probe
/// disk is 64 MiB and never written).
async fn allocation(rds: &RdsClient, dir: &RosPath, nonce: &str) -> Answer {
    const SIZE: u64 = 64 << 20;
    let (slot, file, mut spec) = probe_disk(dir, nonce, "a");
    spec.size = ByteSize::new(SIZE).expect("64 MiB is a valid size");
    let free = async || rds.capacity().await.map(|pool| pool.free);
    let (position, saw) = match free().await {
        Err(error) => (
            None,
            format!("the pool's free space could not be read: {error}"),
        ),
        Ok(before) => match rds.create(&spec).await {
            Err(error) => (
                None,
                format!("the 64 MiB probe disk could not be made: {error}"),
            ),
            Ok(_) => match free().await {
                Err(error) => (
                    None,
                    format!("the pool's free space could not be read: {error}"),
                ),
                Ok(after) => {
                    let taken = before.saturating_sub(after);
                    let saw = format!("`free` fell by {taken} bytes for a new 64 MiB file disk");
                    let position = match taken {
                        t if t >= SIZE => Some("preallocated"),
                        t if t < SIZE / 4 => Some("sparse"),
                        _ => None,
                    };
                    (position, saw)
                }
            },
        },
    };
    answer_removing(12, "allocation", (position, saw), rds, &slot, &file).await
}

/// §13 item 5: the texts `/disk add` refuses a taken slot, a file another disk uses and a size
/// past the pool's with: `known` when the driver reads each as what it is, `opaque` when it
/// reads some as no cause at all (it then explains them by reading the RDS).
async fn add_errors(rds: &RdsClient, dir: &RosPath, nonce: &str) -> Answer {
    let (slot, file, spec) = probe_disk(dir, nonce, "e");
    let (other, other_file, _) = probe_disk(dir, nonce, "e2");
    let outcome = match (rds.create(&spec).await, rds.capacity().await) {
        (Err(error), _) => (
            None,
            format!("the 1 MiB probe disk could not be made: {error}"),
        ),
        (_, Err(error)) => (None, format!("the pool's size could not be read: {error}")),
        (Ok(_), Ok(pool)) => {
            let past_the_pool = pool.size.saturating_mul(2).max(1 << 40);
            let cases = [
                (
                    "a taken slot",
                    DiskSpec {
                        file_path: other_file.clone(),
                        ..spec.clone()
                    },
                    ErrorKind::AlreadyExists,
                ),
                (
                    "a file another disk uses",
                    DiskSpec {
                        slot: other.clone(),
                        ..spec.clone()
                    },
                    ErrorKind::Busy,
                ),
                (
                    "a size past the pool's",
                    DiskSpec {
                        slot: other.clone(),
                        file_path: other_file.clone(),
                        size: ByteSize::new(past_the_pool).expect("twice a pool is a valid size"),
                        ..spec.clone()
                    },
                    ErrorKind::OutOfSpace,
                ),
            ];
            let mut texts = Vec::new();
            let (mut opaque, mut unexpected) = (false, false);
            for (what, case, kind) in cases {
                let cmd = Cmd::disk_add(&case);
                let text = match rds.output(&cmd).await {
                    Ok(text) => text.trim().to_owned(),
                    Err(error) => {
                        unexpected = true;
                        texts.push(format!("{what}: {error}"));
                        continue;
                    }
                };
                match classify(&cmd, &text) {
                    Some(error) if RdsError::from(error.clone()).kind() == kind => {}
                    Some(RosError::Failure { .. }) => opaque = true,
                    _ => unexpected = true,
                }
                texts.push(format!("{what}: {text:?}"));
            }
            let position = match (unexpected, opaque) {
                (true, _) => None,
                (false, true) => Some("opaque"),
                (false, false) => Some("known"),
            };
            (position, format!("`/disk add` of {}", texts.join("; ")))
        }
    };
    let mut leftovers = remove_probe(rds, &other, &other_file).await;
    leftovers.extend(remove_probe(rds, &slot, &file).await);
    Answer::new(5, "add-errors", outcome, leftovers)
}

/// §13 item 8: which stream of an exec channel a refusal's text comes on (the driver reads both).
async fn error_stream(rds: &RdsClient, nonce: &str) -> Answer {
    let file = RosPath::parse(&format!("probe-{nonce}-none.img")).expect("a valid probe path");
    let cmd = Cmd::file_remove(&file);
    let (position, saw) = match rds.output_on_stderr(&cmd).await {
        Ok((text, _)) if text.trim().is_empty() => (
            None,
            format!("`{cmd}` of a file that does not exist printed nothing"),
        ),
        Ok((text, true)) => (
            Some("stderr"),
            format!("`{cmd}` printed {:?} on standard error", text.trim()),
        ),
        Ok((text, false)) => (
            Some("stdout"),
            format!("`{cmd}` printed {:?} on standard output", text.trim()),
        ),
        Err(error) => (None, format!("`{cmd}` failed: {error}")),
    };
    Answer::new(8, "error-stream", (position, saw), Vec::new())
}

/// §13 item 4: whether a second disk may carry an NQN another disk has.
async fn duplicate_nqn(
    rds: &RdsClient,
    dir: &RosPath,
    nonce: &str,
    port: std::num::NonZeroU16,
    prefix: &crate::rds::value::Nqn,
) -> Answer {
    let (first, first_file, mut spec) = probe_disk(dir, nonce, "n1");
    let (second, second_file, mut twin) = probe_disk(dir, nonce, "n2");
    let (position, saw) = match prefix.with_suffix(&first) {
        Err(error) => (None, format!("no probe NQN: {error}")),
        Ok(nqn) => {
            spec.export = Some(NvmeExport {
                port,
                nqn: nqn.clone(),
            });
            twin.export = Some(NvmeExport { port, nqn });
            match rds.create(&spec).await {
                Err(error) => (
                    None,
                    format!("the first exported probe disk could not be made: {error}"),
                ),
                Ok(_) => match rds.create(&twin).await {
                    Ok(_) => (
                        Some("allowed"),
                        "`/disk add` made a second exported disk with the first one's NQN"
                            .to_owned(),
                    ),
                    Err(error) if error.is_refusal() => (
                        Some("refused"),
                        format!("`/disk add` with another disk's NQN was refused: {error}"),
                    ),
                    Err(error) => (None, format!("`/disk add` failed: {error}")),
                },
            }
        }
    };
    let mut leftovers = remove_probe(rds, &second, &second_file).await;
    leftovers.extend(remove_probe(rds, &first, &first_file).await);
    Answer::new(4, "duplicate-nqn", (position, saw), leftovers)
}

/// §13 item 14: whether `/disk add` takes a slot longer than the 32 characters the driver keeps
/// to (refused on RouterOS 7.24.4, 40 worked on 7.16: routeros/README.md assumption 2).
async fn slot_length(rds: &RdsClient, dir: &RosPath, nonce: &str) -> Answer {
    const LONG: usize = Slot::MAX_LEN + 1;
    let (_, _, spec) = probe_disk(dir, nonce, "l");
    let text = format!(
        "{}{}",
        spec.slot,
        "l".repeat(LONG - spec.slot.as_str().len())
    );
    let slot = Slot::parse_probe(&text, LONG).expect("a valid probe slot");
    let file = dir
        .child(&format!("{slot}.img"))
        .expect("a slot plus .img is a valid path segment");
    let spec = DiskSpec {
        slot: slot.clone(),
        file_path: file.clone(),
        ..spec
    };
    let (position, saw) = match rds.create(&spec).await {
        Ok(_) => (
            Some("unlimited"),
            format!("`/disk add` took a {LONG}-character slot"),
        ),
        Err(error) if error.is_refusal() => (
            Some("32"),
            format!("`/disk add` of a {LONG}-character slot was refused: {error}"),
        ),
        Err(error) => (None, format!("`/disk add` failed: {error}")),
    };
    answer_removing(14, "slot-length", (position, saw), rds, &slot, &file).await
}

/// §13 item 2: the NQN a disk gets when `/disk add` names none (the driver always names one).
async fn default_nqn(rds: &RdsClient, dir: &RosPath, nonce: &str) -> Answer {
    let (slot, file, spec) = probe_disk(dir, nonce, "q");
    let (position, saw) = match rds.create(&spec).await {
        Err(error) => (
            None,
            format!("the 1 MiB probe disk could not be made: {error}"),
        ),
        Ok(_) => match exported_as_it_is(rds, &slot).await {
            Err(error) => (None, format!("exporting the probe disk failed: {error}")),
            Ok(disk) => match disk.nqn.as_deref() {
                Some(nqn) if nqn == slot.as_str() => (
                    Some("slot"),
                    "a disk exported without `nvme-tcp-server-nqn` has its slot as NQN".to_owned(),
                ),
                None | Some("") => (
                    Some("empty"),
                    "a disk exported without `nvme-tcp-server-nqn` has an empty NQN".to_owned(),
                ),
                Some(nqn) => (
                    None,
                    format!("a disk exported without `nvme-tcp-server-nqn` has NQN {nqn:?}"),
                ),
            },
        },
    };
    answer_removing(2, "default-nqn", (position, saw), rds, &slot, &file).await
}

/// Exports the probe disk `slot` without naming its NQN, and reads it back.
async fn exported_as_it_is(
    rds: &RdsClient,
    slot: &Slot,
) -> anyhow::Result<crate::rds::parse::DiskRecord> {
    let printed = rds.output(&Cmd::disk_export_as_it_is(slot)).await?;
    anyhow::ensure!(printed.trim().is_empty(), "it printed {:?}", printed.trim());
    rds.find(slot).await?.context("the probe disk is gone")
}

/// A 1 MiB probe disk `probe-<nonce>-<end>` in `dir`, not exported.
fn probe_disk(dir: &RosPath, nonce: &str, end: &str) -> (Slot, RosPath, DiskSpec) {
    let slot = Slot::parse(&format!("probe-{nonce}-{end}")).expect("a valid probe slot");
    let file = dir
        .child(&format!("{slot}.img"))
        .expect("a slot plus .img is a valid path segment");
    let spec = DiskSpec {
        slot: slot.clone(),
        file_path: file.clone(),
        size: ByteSize::new(1 << 20).expect("1 MiB is a valid size"),
        export: None,
        comment: None,
    };
    (slot, file, spec)
}

/// The answer to §13 item `item`, once the probe disk `slot` and its `file` are removed again.
async fn answer_removing(
    item: u8,
    switch: &'static str,
    outcome: (Option<&'static str>, String),
    rds: &RdsClient,
    slot: &Slot,
    file: &RosPath,
) -> Answer {
    Answer::new(item, switch, outcome, remove_probe(rds, slot, file).await)
}

/// Removes a probe disk and its file; what could not be removed, for the report.
async fn remove_probe(rds: &RdsClient, slot: &Slot, file: &RosPath) -> Vec<String> {
    match rds.remove(slot, file).await {
        Ok(()) => Vec::new(),
        Err(error) => vec![format!(
            "remove disk {slot} and file {file} by hand: {error}"
        )],
    }
}

/// §13 item 7: what `print` shows when nothing matches.
async fn empty_print(rds: &RdsClient, nonce: &str) -> Answer {
    let slot = Slot::parse(&format!("probe-{nonce}-none")).expect("a valid probe slot");
    let cmd = Cmd::disk_print(DiskQuery::Slot(&slot), Form::Detail);
    let (position, saw) = match rds.output(&cmd).await {
        Ok(text) if text.trim().is_empty() => (Some("nothing"), "printed nothing".to_owned()),
        Ok(text) if text.trim_start().starts_with("Flags:") => (
            Some("legend"),
            format!("printed the legend alone: {:?}", text.trim()),
        ),
        Ok(text) => (None, format!("printed {:?}", text.trim())),
        Err(error) => (None, format!("failed: {error}")),
    };
    Answer::new(
        7,
        "empty-print",
        (
            position,
            format!("`{cmd}` for a disk that does not exist {saw}"),
        ),
        Vec::new(),
    )
}

/// §13 item 10: whether `/disk set … file-size=` grows an existing file disk.
async fn grow(rds: &RdsClient, dir: &RosPath, nonce: &str) -> Answer {
    const MIB: u64 = 1 << 20;
    let (slot, file, spec) = probe_disk(dir, nonce, "g");
    let (position, saw) = match rds.create(&spec).await {
        Err(error) => (
            None,
            format!("the 1 MiB probe disk could not be made: {error}"),
        ),
        Ok(_) => match rds
            .resize(
                &slot,
                ByteSize::new(2 * MIB).expect("2 MiB is a valid size"),
            )
            .await
        {
            Ok(disk) => (
                Some("grows"),
                format!(
                    "`/disk set … file-size=` grew a 1 MiB disk to {} bytes",
                    disk.size.unwrap_or(0)
                ),
            ),
            Err(error) if error.is_refusal() => (
                Some("refused"),
                format!("`/disk set … file-size=` was refused: {error}"),
            ),
            Err(error) => (None, format!("`/disk set … file-size=` failed: {error}")),
        },
    };
    answer_removing(10, "grow", (position, saw), rds, &slot, &file).await
}
