//! ControllerPublishVolume and ControllerUnpublishVolume: the disk's NVMe/TCP allow-list names
//! the nodes (by host NQN, which is the node id) that may connect, so a node the volume is not
//! published to is fenced out; unpublishing also ends every connection to the export, which
//! matters when Kubernetes detaches from a node that is gone without unstaging (fence.rs).
//!
//! A volume is published to one node at a time ([`decide`]), with one exception: a
//! ReadWriteMany raw block volume (MULTI_NODE_MULTI_WRITER, block) may be published to a second
//! node while a KubeVirt live migration of the VMI that uses it is in progress (migration.rs):
//! the migration's target, within the StorageClass's `migrationTimeoutSeconds`. Never a third.

use std::collections::HashMap;

use tonic::Status;

use super::migration::Window;
use super::volume::{not_found, require, require_complete, volume_slot};
use super::{ControllerService, capability};
use crate::csi::v1::{
    ControllerPublishVolumeRequest, ControllerPublishVolumeResponse,
    ControllerUnpublishVolumeRequest, ControllerUnpublishVolumeResponse,
};
use crate::rds::allow_list::Reading;
use crate::rds::parse::DiskRecord;
use crate::rds::value::{Nqn, Slot};

pub use crate::contract::{ADDRESS, FILE_PATH, NQN, PORT};

impl ControllerService {
    pub(super) async fn publish(
        &self,
        request: ControllerPublishVolumeRequest,
    ) -> Result<ControllerPublishVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        require("node_id", &request.node_id)?;
        let capability = request
            .volume_capability
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("volume_capability is required"))?;
        capability::check(capability)?;
        let slot = volume_slot(&request.volume_id).ok_or_else(|| not_found(&request.volume_id))?;
        let node = Nqn::parse(&request.node_id).map_err(|_| {
            Status::not_found(format!(
                "node {:?} does not exist: node ids of this driver are NVMe host NQNs",
                request.node_id
            ))
        })?;
        let _volume = self.locks.try_lock(slot.as_str())?;
        let _publishing = self.publishes.lock().await;
        self.fences.check(&node)?;
        let disk = self.volume_disk(&slot, &request.volume_id).await?;
        require_complete(&disk, &request.volume_id)?;
        let disk = if disk.export {
            disk
        } else {
            self.export_again(&slot, &disk, &[]).await?
        };
        let migration = self.migrations.get(&request.volume_id);
        let asked = Asked {
            slot: &slot,
            node: node.as_str(),
            readonly: request.readonly,
            shared_block: capability::is_shared_block(capability),
        };
        let fenced = |host: &str| self.fences.get(host).is_some();
        let window = migration.as_ref();
        let form = self.settings.allow_list;
        let disk = match decide(&asked, &disk.allowed_hosts, fenced, window, form)? {
            Outcome::Published => disk,
            Outcome::Admit { hosts, fence } => {
                if !disk.allowed_hosts.iter().any(|h| h == node.as_str()) {
                    self.check_attach_limit(&node).await?;
                }
                let hosts = host_nqns(&slot, &hosts)?;
                if fence {
                    self.release(&slot, &disk, &hosts).await?
                } else {
                    self.rds.set_allowed_hosts(&slot, &hosts).await?
                }
            }
        };
        Ok(ControllerPublishVolumeResponse {
            publish_context: self.publish_context(&slot, &disk)?,
        })
    }

    pub(super) async fn unpublish(
        &self,
        request: ControllerUnpublishVolumeRequest,
    ) -> Result<ControllerUnpublishVolumeResponse, Status> {
        require("volume_id", &request.volume_id)?;
        // An empty node id means every node. A volume that does not exist, or a disk this
        // driver did not make, is published nowhere.
        let node = request.node_id.as_str();
        self.take_off(&request.volume_id, |host| node.is_empty() || host == node)
            .await?;
        Ok(ControllerUnpublishVolumeResponse {})
    }

    /// RESOURCE_EXHAUSTED when `node` already has the most volumes it may have.
    async fn check_attach_limit(&self, node: &Nqn) -> Result<(), Status> {
        let published = self
            .volume_disks()
            .await?
            .iter()
            .filter(|disk| disk.allowed_hosts.iter().any(|host| host == node.as_str()))
            .count() as u64;
        let limit = self.settings.max_volumes_per_node;
        if published >= limit {
            return Err(Status::resource_exhausted(format!(
                "node {node} already has {published} volumes published, the most it may have \
                 (controller.maxVolumesPerNode = {limit}); unpublish one first"
            )));
        }
        Ok(())
    }

    fn publish_context(
        &self,
        slot: &Slot,
        disk: &DiskRecord,
    ) -> Result<HashMap<String, String>, Status> {
        let nqn = disk.nqn.as_deref().filter(|_| disk.export).ok_or_else(|| {
            Status::failed_precondition(format!(
                "disk {slot} is not exported over NVMe/TCP, so no node can attach it; set \
                 nvme-tcp-export=yes on the RDS"
            ))
        })?;
        let port = disk.port.unwrap_or(self.settings.nvme_port.get());
        let mut context = HashMap::from([
            (ADDRESS.to_owned(), self.settings.nvme_address.clone()),
            (PORT.to_owned(), port.to_string()),
            (NQN.to_owned(), nqn.to_owned()),
        ]);
        if let Some(path) = &disk.file_path {
            context.insert(FILE_PATH.to_owned(), path.clone());
        }
        Ok(context)
    }
}

/// What a ControllerPublishVolume asks for, as [`decide`] reads it.
struct Asked<'a> {
    slot: &'a Slot,
    node: &'a str,
    readonly: bool,
    /// MULTI_NODE_MULTI_WRITER as a raw block device: what KubeVirt's live migration asks for.
    shared_block: bool,
}

/// What a ControllerPublishVolume does to the allow-list.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The volume is published to the node already: nothing changes.
    Published,
    /// The allow-list becomes `hosts`; `fence`: a fenced node is taken off it, so every
    /// connection to the export must end.
    Admit { hosts: Vec<String>, fence: bool },
}

/// The publish decision, from the hosts the allow-list holds now. A fenced holder counts for
/// nothing (its node is lost: the fencing reconciler takes the volume from it anyway). Of the
/// rest, the node itself means published already; none means the node gets it; one means the
/// node gets it only as the target of a live migration of a ReadWriteMany block volume (`window`,
/// not expired) and only when the RDS reads a list (`form`); two, never.
fn decide(
    asked: &Asked<'_>,
    holders: &[String],
    fenced: impl Fn(&str) -> bool,
    window: Option<&Window>,
    form: Reading,
) -> Result<Outcome, Status> {
    let slot = asked.slot;
    let node = asked.node;
    let live: Vec<&String> = holders.iter().filter(|h| !fenced(h)).collect();
    let fence = live.len() < holders.len();
    if live.iter().any(|h| *h == node) {
        if asked.readonly {
            return Err(Status::already_exists(format!(
                "volume {slot} is published read-write to node {node}; it cannot also be \
                 published read-only"
            )));
        }
        return Ok(if fence {
            Outcome::Admit {
                hosts: vec![node.to_owned()],
                fence,
            }
        } else {
            Outcome::Published
        });
    }
    match live.as_slice() {
        [] => {}
        [holder] if asked.shared_block && form == Reading::Single => {
            return Err(Status::failed_precondition(format!(
                "volume {slot} is published to node {holder}; rds.allowList = \"single\" says \
                 this RDS's nvme-tcp-server-allow-host-name admits one host, so no second node \
                 can attach the volume, not even a KubeVirt live migration's target. \
                 HARDWARE_VALIDATION.md TC-04 step 1 checks whether the RDS reads a \
                 comma-separated list; if it does, set rds.allowList = \"list\""
            )));
        }
        [holder] if asked.shared_block => migration_target(slot, holder, node, window)?,
        [holder] => {
            return Err(Status::failed_precondition(format!(
                "volume {slot} is published to node {holder}: a volume is attached to one node \
                 at a time, unpublish it there first"
            )));
        }
        [first, second, ..] => {
            return Err(Status::failed_precondition(format!(
                "volume {slot} is published to nodes {first} and {second} (a live migration's \
                 source and target): no third node can attach it until one of them unpublishes it"
            )));
        }
    }
    if asked.readonly {
        return Err(Status::invalid_argument(
            "readonly publishing is not supported (this driver does not advertise \
             PUBLISH_READONLY): publish read-write and mount read-only on the node",
        ));
    }
    let mut hosts: Vec<String> = live.into_iter().cloned().collect();
    hosts.push(node.to_owned());
    Ok(Outcome::Admit { hosts, fence })
}

/// FAILED_PRECONDITION unless `node` is the target of a live migration in `window` of a volume
/// that `holder` holds as its source.
fn migration_target(
    slot: &Slot,
    holder: &str,
    node: &str,
    window: Option<&Window>,
) -> Result<(), Status> {
    let refuse = |why: String| {
        Err(Status::failed_precondition(format!(
            "volume {slot} is published to node {holder}; {why}"
        )))
    };
    let Some(window) = window else {
        return refuse(
            "a ReadWriteMany block volume is attached to a second node only while a KubeVirt \
             live migration of the VirtualMachineInstance that uses it is in progress, and none \
             is"
            .to_owned(),
        );
    };
    let (migration, vmi) = (&window.migration, &window.vmi);
    if window.expired {
        return refuse(format!(
            "the live migration {migration} of VMI {vmi} has run longer than the \
             StorageClass's migrationTimeoutSeconds ({}s), so no second node is admitted and \
             the source keeps the volume",
            window.timeout.as_secs()
        ));
    }
    if let Some(source) = window.source.as_deref().filter(|s| *s != holder) {
        return refuse(format!(
            "the live migration {migration} moves VMI {vmi} from node {source}, which does not \
             hold the volume"
        ));
    }
    if let Some(target) = window.target.as_deref().filter(|t| *t != node) {
        return refuse(format!(
            "the live migration {migration} moves VMI {vmi} to node {target}, not to {node}"
        ));
    }
    Ok(())
}

/// The allow-list's hosts as NQNs; one that is not (a hand-made entry) fails the call.
pub(super) fn host_nqns(slot: &Slot, hosts: &[String]) -> Result<Vec<Nqn>, Status> {
    hosts
        .iter()
        .map(|host| {
            Nqn::parse(host).map_err(|e| {
                Status::failed_precondition(format!(
                    "the allow-list of disk {slot} holds {host:?}, which is not a host NQN ({e}); \
                     correct nvme-tcp-server-allow-host-name on the RDS"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::Code;

    use super::*;

    const A: &str = "nqn.2014-08.org.nvmexpress:uuid:a";
    const B: &str = "nqn.2014-08.org.nvmexpress:uuid:b";
    const C: &str = "nqn.2014-08.org.nvmexpress:uuid:c";

    fn slot() -> Slot {
        Slot::parse("pvc-1").unwrap()
    }

    fn ask<'a>(slot: &'a Slot, node: &'a str, shared_block: bool) -> Asked<'a> {
        Asked {
            slot,
            node,
            readonly: false,
            shared_block,
        }
    }

    fn window(source: Option<&str>, target: Option<&str>, expired: bool) -> Window {
        Window {
            migration: "vms/migrate-1".into(),
            vmi: "vms/vm-1".into(),
            source: source.map(str::to_owned),
            target: target.map(str::to_owned),
            timeout: Duration::from_secs(300),
            expired,
        }
    }

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|h| h.to_string()).collect()
    }

    fn none(_: &str) -> bool {
        false
    }

    fn refused(outcome: Result<Outcome, Status>, says: &[&str]) {
        let status = outcome.expect_err("refused");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        for word in says {
            assert!(
                status.message().contains(word),
                "{word}: {}",
                status.message()
            );
        }
    }

    fn admitted(list: &[&str], fence: bool) -> Outcome {
        Outcome::Admit {
            hosts: hosts(list),
            fence,
        }
    }

    #[test]
    fn first_node_gets_it_and_the_same_node_again_changes_nothing() {
        let s = slot();
        for shared in [false, true] {
            assert_eq!(
                decide(&ask(&s, A, shared), &[], none, None, Reading::List).unwrap(),
                admitted(&[A], false)
            );
            assert_eq!(
                decide(&ask(&s, A, shared), &hosts(&[A]), none, None, Reading::List).unwrap(),
                Outcome::Published
            );
        }
    }

    #[test]
    fn rwo_second_node_is_refused_naming_the_holder() {
        let s = slot();
        // Even during a migration: only a ReadWriteMany block volume is shared.
        let during = window(Some(A), Some(B), false);
        for w in [None, Some(&during)] {
            refused(
                decide(&ask(&s, B, false), &hosts(&[A]), none, w, Reading::List),
                &[A, "one node at a time"],
            );
        }
    }

    #[test]
    fn rwo_second_node_gets_it_when_the_holder_is_fenced() {
        let s = slot();
        let fenced = |h: &str| h == A;
        assert_eq!(
            decide(
                &ask(&s, B, false),
                &hosts(&[A]),
                fenced,
                None,
                Reading::List
            )
            .unwrap(),
            admitted(&[B], true)
        );
        // The fenced node's own entry is renewed without it keeping its connections.
        assert_eq!(
            decide(
                &ask(&s, B, false),
                &hosts(&[A, B]),
                fenced,
                None,
                Reading::List
            )
            .unwrap(),
            admitted(&[B], true)
        );
    }

    #[test]
    fn rwx_block_second_node_only_as_the_target_of_a_migration_in_progress() {
        let s = slot();
        let a = hosts(&[A]);
        refused(
            decide(&ask(&s, B, true), &a, none, None, Reading::List),
            &[A, "live migration", "none is"],
        );
        for w in [window(Some(A), Some(B), false), window(None, None, false)] {
            assert_eq!(
                decide(&ask(&s, B, true), &a, none, Some(&w), Reading::List).unwrap(),
                admitted(&[A, B], false),
                "{w:?}"
            );
        }
        refused(
            decide(
                &ask(&s, B, true),
                &a,
                none,
                Some(&window(Some(A), Some(B), true)),
                Reading::List,
            ),
            &["migrationTimeoutSeconds (300s)", "vms/vm-1", "source keeps"],
        );
        let elsewhere = format!("to node {C}, not to {B}");
        refused(
            decide(
                &ask(&s, B, true),
                &a,
                none,
                Some(&window(Some(A), Some(C), false)),
                Reading::List,
            ),
            &[&elsewhere],
        );
        refused(
            decide(
                &ask(&s, B, true),
                &a,
                none,
                Some(&window(Some(C), None, false)),
                Reading::List,
            ),
            &["from node ", C, "does not hold"],
        );
    }

    #[test]
    fn with_a_one_host_allow_list_no_second_node_is_admitted_even_for_a_migration() {
        let s = slot();
        let w = window(Some(A), Some(B), false);
        refused(
            decide(
                &ask(&s, B, true),
                &hosts(&[A]),
                none,
                Some(&w),
                Reading::Single,
            ),
            &[A, "rds.allowList", "TC-04 step 1"],
        );
        // One node is served as with a list, and a fenced holder still gives way.
        assert_eq!(
            decide(&ask(&s, A, true), &[], none, None, Reading::Single).unwrap(),
            admitted(&[A], false)
        );
        assert_eq!(
            decide(
                &ask(&s, B, true),
                &hosts(&[A]),
                |h| h == A,
                Some(&w),
                Reading::Single
            )
            .unwrap(),
            admitted(&[B], true)
        );
    }

    #[test]
    fn third_node_is_refused_naming_both_holders() {
        let s = slot();
        let w = window(Some(A), Some(B), false);
        refused(
            decide(
                &ask(&s, C, true),
                &hosts(&[A, B]),
                none,
                Some(&w),
                Reading::List,
            ),
            &[A, B, "no third node"],
        );
        // Either holder asking again changes nothing.
        for node in [A, B] {
            assert_eq!(
                decide(
                    &ask(&s, node, true),
                    &hosts(&[A, B]),
                    none,
                    Some(&w),
                    Reading::List
                )
                .unwrap(),
                Outcome::Published
            );
        }
    }

    #[test]
    fn readonly_is_refused_as_before() {
        let s = slot();
        let readonly = |node| Asked {
            readonly: true,
            ..ask(&s, node, false)
        };
        let same = decide(&readonly(A), &hosts(&[A]), none, None, Reading::List).unwrap_err();
        assert_eq!(same.code(), Code::AlreadyExists);
        let first = decide(&readonly(A), &[], none, None, Reading::List).unwrap_err();
        assert_eq!(first.code(), Code::InvalidArgument);
    }
}
