//! What the RDS must hold once faults have stopped: exactly the volumes and snapshots the
//! workload believes exist, each once, exported and allowed as published, with every
//! acknowledged block intact; on the node's host, an attachment per staged volume and mounts only
//! under the staged volumes' paths; and after everything is deleted, nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};

use rds_csi::rds::allow_list;
use rds_e2e::node_host::HostState;
use rds_e2e::sim_rds::{BASE_DIR, NQN_PREFIX, POOL};
use rds_sim::sim::Sim;
use rds_sim::store::Disk;

use crate::Failure;
use crate::kubelet::Kubelet;
use crate::model::{Blocks, Model, checksum};
use crate::node::BLOCK_BYTES;

/// Backing files under the driver's base directory.
fn images(sim: &Sim) -> BTreeSet<String> {
    let dir = format!("{POOL}/{BASE_DIR}/");
    sim.state()
        .files
        .into_iter()
        .map(|f| f.name)
        .filter(|name| name.starts_with(&dir) && name.ends_with(".img"))
        .collect()
}

pub fn check(sim: &Sim, model: &Model, nodes: &[&str]) -> Result<(), Failure> {
    let disks = sim.disks();
    let mut by_slot: BTreeMap<&str, Vec<&Disk>> = BTreeMap::new();
    for disk in &disks {
        by_slot.entry(&disk.slot).or_default().push(disk);
    }
    for (slot, found) in &by_slot {
        if found.len() > 1 {
            return Err(Failure::new(
                "duplicate",
                format!("{} disks in slot {slot}", found.len()),
            ));
        }
        if !model.volumes.contains_key(*slot) && !model.snapshots.contains_key(*slot) {
            return Err(Failure::new(
                "orphan-disk",
                format!(
                    "disk {slot} ({}) was never acknowledged or was deleted",
                    found[0].file_path
                ),
            ));
        }
    }
    let one = |id: &str| {
        by_slot.get(id).map(|found| found[0]).ok_or_else(|| {
            Failure::new("missing", format!("{id} was acknowledged but has no disk"))
        })
    };
    let files = images(sim);
    for (id, volume) in &model.volumes {
        let disk = one(id)?;
        let allowed: Vec<String> = volume
            .node
            .map(|n| nodes[usize::from(n)].to_owned())
            .into_iter()
            .collect();
        let nqn = format!("{NQN_PREFIX}:{id}");
        if !disk.nvme_tcp_export || disk.nvme_tcp_server_nqn != nqn {
            return Err(Failure::new(
                "export",
                format!(
                    "volume {id} ({}) is exported={} as {:?}, expected {nqn}",
                    volume.name, disk.nvme_tcp_export, disk.nvme_tcp_server_nqn
                ),
            ));
        }
        if allow_list::parse(&disk.nvme_tcp_server_allow_host_name) != allowed {
            return Err(Failure::new(
                "allow-list",
                format!(
                    "volume {id} allows {:?}, published to {allowed:?}",
                    disk.nvme_tcp_server_allow_host_name
                ),
            ));
        }
        if disk.file_size < volume.mib << 20 {
            return Err(Failure::new(
                "size",
                format!(
                    "volume {id} is {} bytes, expanded to {} MiB",
                    disk.file_size, volume.mib
                ),
            ));
        }
        same_data(sim, disk, &volume.blocks, &files)?;
    }
    for (id, snapshot) in &model.snapshots {
        let disk = one(id)?;
        if !allow_list::parse(&disk.nvme_tcp_server_allow_host_name).is_empty() {
            return Err(Failure::new(
                "allow-list",
                format!(
                    "snapshot {id} of {} admits {:?}",
                    snapshot.source, disk.nvme_tcp_server_allow_host_name
                ),
            ));
        }
        same_data(sim, disk, &snapshot.blocks, &files)?;
    }
    let used: BTreeSet<&str> = disks.iter().map(|d| d.file_path.as_str()).collect();
    if let Some(orphan) = files.iter().find(|f| !used.contains(f.as_str())) {
        return Err(Failure::new(
            "orphan-file",
            format!("{orphan} belongs to no disk"),
        ));
    }
    Ok(())
}

/// Every acknowledged block of `disk` holds what was acknowledged.
fn same_data(
    sim: &Sim,
    disk: &Disk,
    blocks: &Blocks,
    files: &BTreeSet<String>,
) -> Result<(), Failure> {
    if !files.contains(&disk.file_path) {
        return Err(Failure::new(
            "missing",
            format!("disk {} has no backing file {}", disk.slot, disk.file_path),
        ));
    }
    let path = sim.backing_path(disk);
    let mut file = std::fs::File::open(&path)
        .map_err(|e| Failure::new("missing", format!("{}: {e}", path.display())))?;
    for (block, want) in blocks {
        let mut data = vec![0; BLOCK_BYTES];
        file.seek(SeekFrom::Start(u64::from(*block) * BLOCK_BYTES as u64))
            .and_then(|_| file.read_exact(&mut data))
            .map_err(|e| Failure::new("lost-write", format!("{}: {e}", path.display())))?;
        let got = checksum(&data);
        if got != *want {
            return Err(Failure::new(
                "lost-write",
                format!(
                    "{} block {block} holds {got:08x}, acknowledged {want:08x}",
                    disk.slot
                ),
            ));
        }
    }
    Ok(())
}

/// After everything was deleted: no disk, no backing file.
pub fn check_empty(sim: &Sim) -> Result<(), Failure> {
    let disks = sim.disks();
    if let Some(disk) = disks.first() {
        return Err(Failure::new(
            "orphan-disk",
            format!(
                "disk {} ({}) left after deleting everything",
                disk.slot, disk.file_path
            ),
        ));
    }
    if let Some(file) = images(sim).first() {
        return Err(Failure::new(
            "orphan-file",
            format!("{file} left after deleting everything"),
        ));
    }
    Ok(())
}

/// The node's host holds one attachment (loop device) per volume staged there and mounts only
/// under those volumes' paths: an unstaged volume leaves nothing behind.
pub fn check_host(
    state: &HostState,
    kubelet: &Kubelet,
    staged: &BTreeSet<String>,
) -> Result<(), Failure> {
    if state.attachments.len() != staged.len() {
        return Err(Failure::new(
            "host-attachment",
            format!(
                "the node holds {:?} with {} volumes staged: {staged:?}",
                state.attachments,
                staged.len()
            ),
        ));
    }
    let owned = |mount: &str| {
        staged
            .iter()
            .any(|id| std::path::Path::new(mount).starts_with(kubelet.volume_dir(id)))
    };
    if let Some(stray) = state.mounts.iter().find(|m| !owned(m)) {
        return Err(Failure::new(
            "host-mount",
            format!("{stray} is mounted on the node, with {staged:?} staged"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(mounts: &[&str], attachments: &[&str]) -> HostState {
        HostState {
            mounts: mounts.iter().map(|m| m.to_string()).collect(),
            attachments: attachments.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn the_host_holds_what_is_staged_and_nothing_once_unstaged() {
        let kubelet = Kubelet::new("/n".into());
        let staged: BTreeSet<String> = ["vol-a".to_owned()].into();
        let published = state(&["/n/vol-a/pod/dev"], &["loop0 /rds/a.img"]);
        assert_eq!(check_host(&published, &kubelet, &staged), Ok(()));

        let none = BTreeSet::new();
        let left = check_host(&published, &kubelet, &none).unwrap_err();
        assert_eq!(left.kind, "host-attachment", "{left}");
        let mounted = check_host(&state(&["/n/vol-a/pod/dev"], &[]), &kubelet, &none);
        assert_eq!(mounted.unwrap_err().kind, "host-mount");
        let stray = state(&["/n/vol-b/staging"], &["loop0 /rds/a.img"]);
        assert_eq!(
            check_host(&stray, &kubelet, &staged).unwrap_err().kind,
            "host-mount"
        );
    }
}
