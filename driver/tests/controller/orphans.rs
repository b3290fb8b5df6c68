//! Orphans on the RDS as the controller sees them (its inventory of the simulator) and deletes
//! them: only as the driver's own deletes allow.

use std::collections::BTreeSet;

use crate::harness::*;
use rds_csi::orphans::{self, Kind, Named, Orphan};

/// Nothing in the cluster names anything.
fn nothing_named() -> Named {
    Named {
        volumes: BTreeSet::new(),
        snapshots: Some(BTreeSet::new()),
    }
}

async fn find(plugin: &Plugin) -> Vec<Orphan> {
    let rds = plugin.service.inventory().await.unwrap();
    orphans::find(&rds, &nothing_named(), &plugin.service.place())
}

fn kinds(found: &[Orphan]) -> Vec<(Kind, String)> {
    found
        .iter()
        .map(|o| (o.kind, o.name().to_owned()))
        .collect()
}

#[tokio::test]
async fn orphans_are_deleted_as_the_drivers_deletes_allow() {
    let mut plugin = Plugin::start().await;
    let published = plugin
        .create(create_request("pvc-orphan-published", GIB, 0))
        .await
        .unwrap()
        .volume_id;
    plugin.publish(&published, NODE_A).await.unwrap();
    let unpublished = plugin
        .create(create_request("pvc-orphan-free", GIB, 0))
        .await
        .unwrap()
        .volume_id;
    let loose = format!("pvc-{:028x}", 1);
    plugin
        .routeros(&format!(
            r#"/file add name="{}" contents="left behind""#,
            file_of(&loose)
        ))
        .await;
    // Exported as the driver names exports, but in the pool's root, without its comment.
    let foreign = format!("pvc-{:028x}", 2);
    plugin
        .routeros(&format!(
            r#"/disk add type=file file-path="{POOL}/{foreign}.img" file-size=1048576 slot="{foreign}" nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn="{}""#,
            volume_nqn(&foreign)
        ))
        .await;

    let found = find(&plugin).await;
    let mut expected = vec![
        (Kind::Disk, published.clone()),
        (Kind::Disk, unpublished.clone()),
        (Kind::File, file_of(&loose)),
        (Kind::Export, foreign.clone()),
    ];
    expected.sort();
    assert_eq!(kinds(&found), expected);

    for orphan in &found {
        let deleted = plugin.service.delete_orphan(orphan).await;
        if orphan.slot.as_str() == published {
            // DeleteVolume's own rule: a volume published to a node stays.
            let refused = deleted.unwrap_err();
            assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
            assert!(refused.message().contains("published"), "{refused:?}");
        } else {
            deleted.unwrap();
        }
    }
    assert!(plugin.disk(&published).is_some() && plugin.has_file(&file_of(&published)));
    assert!(plugin.disk(&unpublished).is_none() && !plugin.has_file(&file_of(&unpublished)));
    assert!(!plugin.has_file(&file_of(&loose)));
    // An export ends; the disk, not provably the driver's, stays.
    let foreign_disk = plugin.disk(&foreign).expect("the exported disk stays");
    assert!(!foreign_disk.nvme_tcp_export, "{foreign_disk:?}");
    assert_eq!(
        kinds(&find(&plugin).await),
        [(Kind::Disk, published.clone())]
    );
}

#[tokio::test]
async fn a_file_that_a_disk_took_meanwhile_is_not_deleted() {
    let plugin = Plugin::start().await;
    let slot = format!("pvc-{:028x}", 3);
    let file = file_of(&slot);
    plugin
        .routeros(&format!(
            r#"/file add name="{file}" contents="left behind""#
        ))
        .await;
    let found = find(&plugin).await;
    assert_eq!(kinds(&found), [(Kind::File, file.clone())]);
    // Between the listing and the deletion, a disk is made over the file.
    plugin
        .routeros(&format!(
            r#"/disk add type=file file-path="{file}" slot="{slot}" mount-filesystem=no"#
        ))
        .await;
    let refused = plugin.service.delete_orphan(&found[0]).await.unwrap_err();
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert!(plugin.has_file(&file) && plugin.disk(&slot).is_some());
}

#[tokio::test]
async fn an_export_that_admits_a_node_is_not_ended() {
    let plugin = Plugin::start().await;
    let slot = format!("pvc-{:028x}", 4);
    plugin
        .routeros(&format!(
            r#"/disk add type=file file-path="{POOL}/{slot}.img" file-size=1048576 slot="{slot}" nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn="{}" nvme-tcp-server-allow-host-name="{NODE_A}""#,
            volume_nqn(&slot)
        ))
        .await;
    let found = find(&plugin).await;
    assert_eq!(kinds(&found), [(Kind::Export, slot.clone())]);
    let refused = plugin.service.delete_orphan(&found[0]).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains(NODE_A), "{refused:?}");
    assert!(plugin.disk(&slot).unwrap().nvme_tcp_export);
}
