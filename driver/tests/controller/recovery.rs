//! Concurrency rules, and how operations settle when the RDS misbehaves.

use crate::harness::*;

#[tokio::test]
async fn a_second_operation_on_a_busy_volume_is_aborted() {
    let mut plugin = Plugin::start().await;
    let id = plugin
        .create(create_request("busy", GIB, 0))
        .await
        .unwrap()
        .volume_id;
    // The delete holds the volume between removing the disk and removing its file.
    plugin
        .sim()
        .inject(&Fault::Latency {
            pattern: "^/file remove".into(),
            fixed_ms: 1_500,
            jitter_ms: 0,
        })
        .unwrap();
    let mut events = plugin.sim().subscribe_events();
    let mut deleting = plugin.controller.clone();
    let delete = tokio::spawn({
        let id = id.clone();
        async move {
            deleting
                .delete_volume(DeleteVolumeRequest {
                    volume_id: id,
                    ..Default::default()
                })
                .await
        }
    });
    loop {
        match events.recv().await.unwrap() {
            Event::Unexported { nqn } if nqn == volume_nqn(&id) => break,
            _ => continue,
        }
    }
    assert_eq!(plugin.publish(&id, NODE_A).await, Err(Code::Aborted));
    let expand = plugin
        .controller
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 2 * GIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(expand.code(), Code::Aborted);
    assert!(expand.message().contains(&id), "{}", expand.message());
    delete.await.unwrap().unwrap();
    assert!(!plugin.has_file(&file_of(&id)));
    // Free again once the delete is done.
    assert_eq!(plugin.publish(&id, NODE_A).await, Err(Code::NotFound));
}

#[tokio::test]
async fn concurrent_creates_respect_the_bound() {
    let plugin = Plugin::with(Setup {
        config: |c| c.controller.max_concurrent_creates = 1,
        ..Setup::default()
    })
    .await;
    let names: Vec<String> = (0..4).map(|n| format!("bounded-{n}")).collect();
    let creates: Vec<_> = names
        .iter()
        .map(|name| {
            let mut client = plugin.controller.clone();
            let request = create_request(name, 4096, 0);
            tokio::spawn(async move { client.create_volume(request).await })
        })
        .collect();
    for create in creates {
        create.await.unwrap().unwrap();
    }
    // With one create at a time, each volume's commands form one unbroken run in the log.
    let slots: Vec<String> = names
        .iter()
        .map(|n| ids::volume_id(n).to_string())
        .collect();
    let order: Vec<&String> = plugin
        .sim()
        .log_since(0)
        .into_iter()
        .filter_map(|record| {
            slots
                .iter()
                .find(|slot| record.line.contains(slot.as_str()))
        })
        .collect();
    let mut runs = order.clone();
    runs.dedup();
    assert_eq!(runs.len(), slots.len(), "interleaved creates: {order:?}");
}

#[tokio::test]
async fn an_unanswered_add_is_settled_by_reading_back() {
    let mut plugin = Plugin::start().await;
    plugin
        .sim()
        .inject(&Fault::Crash {
            pattern: "^/disk add".into(),
            point: CrashPoint::AfterCommit,
            count: 1,
        })
        .unwrap();
    let volume = plugin
        .create(create_request("crashy", GIB, 0))
        .await
        .unwrap();
    let again = plugin
        .create(create_request("crashy", GIB, 0))
        .await
        .unwrap();
    assert_eq!(volume, again);
    let volumes = plugin
        .state()
        .disks
        .iter()
        .filter(|d| d.slot != POOL)
        .count();
    assert_eq!(volumes, 1);
}

/// RouterOS prints nothing for a successful `set` or `remove`; a command that printed nothing
/// but changed nothing is caught by reading the disk back.
#[tokio::test]
async fn a_mutation_that_did_nothing_is_caught_by_the_read_back() {
    let mut plugin = Plugin::start().await;
    let id = plugin
        .create(create_request("unchanged", GIB, 0))
        .await
        .unwrap()
        .volume_id;
    for pattern in ["^/disk set", "^/disk remove"] {
        plugin
            .sim()
            .inject(&Fault::Error {
                pattern: pattern.into(),
                text: String::new(),
                count: 1,
            })
            .unwrap();
    }
    let publish = plugin
        .controller
        .controller_publish_volume(publish_request(&id, NODE_A))
        .await
        .unwrap_err();
    assert_eq!(publish.code(), Code::Internal);
    assert!(
        publish.message().contains(&format!(
            "nvme-tcp-server-allow-host-name=\"\" (expected {NODE_A})"
        )),
        "{}",
        publish.message()
    );
    let delete = plugin
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::Internal);
    assert!(
        delete.message().contains("still exists"),
        "{}",
        delete.message()
    );
    // The faults are spent: the retries converge.
    plugin.publish(&id, NODE_A).await.unwrap();
    assert_eq!(
        plugin.disk(&id).unwrap().nvme_tcp_server_allow_host_name,
        NODE_A
    );
}

#[tokio::test]
async fn a_file_left_without_its_disk_is_replaced() {
    let mut plugin = Plugin::start().await;
    let slot = ids::volume_id("orphan");
    let file = file_of(slot.as_str());
    plugin
        .routeros(&format!(
            "/disk add type=file file-path=\"{file}\" file-size=4096 slot=\"{slot}\""
        ))
        .await;
    plugin
        .routeros(&format!("/disk remove [find where slot=\"{slot}\"]"))
        .await;
    assert!(plugin.has_file(&file));
    let volume = plugin
        .create(create_request("orphan", GIB, 0))
        .await
        .unwrap();
    assert_eq!(volume.capacity_bytes, GIB);
    assert_eq!(plugin.disk(slot.as_str()).unwrap().file_size, GIB as u64);
}

/// Found by rds-chaos (a restart of the RDS during a clone): a source volume the RDS could not
/// be asked about is a passing failure, not a missing source. NOT_FOUND would tell the
/// provisioner the claim's data source is gone.
#[tokio::test]
async fn a_clone_whose_source_the_rds_cannot_answer_for_is_not_missing() {
    let mut plugin = Plugin::start().await;
    let source = plugin
        .create(create_request("clone-source", GIB, 0))
        .await
        .unwrap();
    let clone = crate::snapshot_data::from_volume("clone", &source.volume_id, GIB);
    plugin
        .sim()
        .inject(&Fault::Error {
            pattern: "^/disk print".into(),
            text: "failure: execution error".into(),
            count: 1,
        })
        .unwrap();
    let failed = plugin.create(clone.clone()).await.unwrap_err();
    assert_ne!(failed.code(), Code::NotFound, "{failed:?}");
    assert!(failed.message().contains("execution error"), "{failed:?}");
    let made = plugin.create(clone).await.unwrap();
    assert_eq!(made.volume_id, ids::volume_id("clone").to_string());
}

/// Found by rds-chaos, like the clone above: a snapshot of a volume the RDS could not be asked
/// about is refused with the RDS's failure, which the snapshotter retries, not NOT_FOUND.
#[tokio::test]
async fn a_snapshot_whose_source_the_rds_cannot_answer_for_is_not_missing() {
    let mut plugin = Plugin::start().await;
    let source = plugin
        .create(create_request("snapshot-source", GIB, 0))
        .await
        .unwrap();
    plugin
        .sim()
        .inject(&Fault::Error {
            pattern: "^/disk print detail where slot=\"vol-".into(),
            text: "failure: execution error".into(),
            count: 1,
        })
        .unwrap();
    let request = crate::snapshot_data::snapshot_request(
        "snap",
        &source.volume_id,
        rds_csi::snapshot::Method::DiskCopy,
    );
    let failed = plugin
        .controller
        .create_snapshot(request.clone())
        .await
        .unwrap_err();
    assert_ne!(failed.code(), Code::NotFound, "{failed:?}");
    assert!(failed.message().contains("execution error"), "{failed:?}");
    plugin.controller.create_snapshot(request).await.unwrap();
}
