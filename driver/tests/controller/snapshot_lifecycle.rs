//! CreateSnapshot, GetSnapshot, ListSnapshots and DeleteSnapshot, for every method.

use rds_csi::rds::value::Slot;
use rds_csi::snapshot::Method;

use crate::harness::*;
use crate::snapshot_data::*;

#[tokio::test]
async fn a_snapshot_lives_and_dies_on_the_rds() {
    for method in Method::ALL {
        let mut plugin = plugin_for(method).await;
        let volume = plugin
            .create(laid_out_for(create_request("origin", SIZE, 0), method))
            .await
            .unwrap();
        let name = "snapshot-8f2e4b1c-3d5a-4e6f-9a7b-0c1d2e3f4a5b";
        let snapshot = plugin
            .snapshot(name, &volume.volume_id, method)
            .await
            .unwrap();
        assert_eq!(
            snapshot.snapshot_id, "snap-8f2e4b1c3d5a4e6f9a7b0c1d2e3",
            "{method}"
        );
        assert_eq!(snapshot.source_volume_id, volume.volume_id);
        assert_eq!(snapshot.size_bytes, SIZE);
        assert!(snapshot.ready_to_use, "{method}");
        assert!(snapshot.creation_time.unwrap().seconds > 1_700_000_000);

        if method == Method::Btrfs {
            assert!(plugin.disk(&snapshot.snapshot_id).is_none(), "not a disk");
            let subvolume = plugin
                .rds
                .subvolume(&Slot::parse(&snapshot.snapshot_id).unwrap())
                .await
                .unwrap()
                .expect("the snapshot's subvolume");
            assert!(subvolume.read_only);
            assert_eq!(subvolume.parent.as_deref(), Some(volume.volume_id.as_str()));
        } else {
            let disk = plugin
                .disk(&snapshot.snapshot_id)
                .expect("the snapshot's disk");
            assert!(
                !disk.nvme_tcp_export,
                "{method}: a snapshot is never exported"
            );
            assert_eq!(disk.file_path, file_of(&snapshot.snapshot_id));
            let recorded = ids::Metadata::parse(disk.comment.as_deref().unwrap()).unwrap();
            assert_eq!(recorded.kind, ids::IdKind::Snapshot);
            assert_eq!(recorded.csi_name, name);
            assert_eq!(recorded.method, Some(method));
            assert!(!recorded.pending);
        }

        // Same name and source: the same snapshot; another source or an unknown one: refused.
        let again = plugin
            .snapshot(name, &volume.volume_id, method)
            .await
            .unwrap();
        assert_eq!(again, snapshot, "{method}");
        let other = plugin
            .create(laid_out_for(create_request("other", SIZE, 0), method))
            .await
            .unwrap();
        let conflict = plugin
            .snapshot(name, &other.volume_id, method)
            .await
            .unwrap_err();
        assert_eq!(
            conflict.code(),
            Code::AlreadyExists,
            "{}",
            conflict.message()
        );
        let missing = plugin
            .snapshot("orphan", &ids::volume_id("never-made").to_string(), method)
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound, "{}", missing.message());
        assert!(
            plugin
                .disk(&ids::snapshot_id("orphan").to_string())
                .is_none()
        );

        let got = plugin
            .controller
            .get_snapshot(GetSnapshotRequest {
                snapshot_id: snapshot.snapshot_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.snapshot.unwrap(), snapshot);

        plugin.delete_snapshot(&snapshot.snapshot_id).await.unwrap();
        assert!(plugin.disk(&snapshot.snapshot_id).is_none(), "{method}");
        assert!(
            !plugin.has_file(&snapshot_file(&snapshot.snapshot_id, method)),
            "{method}"
        );
        // Gone, unknown and foreign ids are all fine to delete.
        for id in [
            snapshot.snapshot_id.as_str(),
            "snap-0000000000000000000000000ff",
            "x",
        ] {
            plugin.delete_snapshot(id).await.unwrap();
        }
        let gone = plugin
            .controller
            .get_snapshot(GetSnapshotRequest {
                snapshot_id: snapshot.snapshot_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
    }
}

#[tokio::test]
async fn requests_without_name_source_or_id_are_invalid() {
    let mut plugin = Plugin::start().await;
    let volume = plugin.create(create_request("v", SIZE, 0)).await.unwrap();
    for (name, source) in [("", volume.volume_id.as_str()), ("s", "")] {
        let error = plugin
            .snapshot(name, source, Method::CopyFrom)
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{}", error.message());
    }
    let mut request = snapshot_request("s", &volume.volume_id, Method::CopyFrom);
    request.parameters.insert("retention".into(), "7d".into());
    let error = plugin
        .controller
        .create_snapshot(request)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("retention"), "{}", error.message());
    assert_eq!(
        plugin.delete_snapshot("").await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn list_filters_and_pages() {
    let mut plugin = Plugin::start().await;
    let a = plugin.create(create_request("a", SIZE, 0)).await.unwrap();
    let b = plugin.create(create_request("b", SIZE, 0)).await.unwrap();
    let mut of_a = Vec::new();
    for n in 0..3 {
        let s = plugin
            .snapshot(&format!("a-{n}"), &a.volume_id, Method::CopyFrom)
            .await
            .unwrap();
        of_a.push(s.snapshot_id);
    }
    let of_b = plugin
        .snapshot("b-0", &b.volume_id, Method::CopyFrom)
        .await
        .unwrap()
        .snapshot_id;
    let list = |request: ListSnapshotsRequest| {
        let mut client = plugin.controller.clone();
        async move { client.list_snapshots(request).await.map(|r| r.into_inner()) }
    };
    let ids = |answer: &ListSnapshotsResponse| -> Vec<String> {
        answer
            .entries
            .iter()
            .map(|e| e.snapshot.as_ref().unwrap().snapshot_id.clone())
            .collect()
    };

    let mut everything: Vec<String> = of_a.iter().cloned().chain([of_b.clone()]).collect();
    everything.sort();
    let all = list(ListSnapshotsRequest::default()).await.unwrap();
    assert_eq!(ids(&all), everything);
    assert!(all.next_token.is_empty());

    let mut sorted_a = of_a.clone();
    sorted_a.sort();
    let by_source = list(ListSnapshotsRequest {
        source_volume_id: a.volume_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&by_source), sorted_a);
    let by_id = list(ListSnapshotsRequest {
        snapshot_id: of_b.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&by_id), std::slice::from_ref(&of_b));
    for (snapshot_id, source_volume_id) in [
        ("snap-0000000000000000000000000ff".to_owned(), String::new()),
        ("not-ours".to_owned(), String::new()),
        (of_b.clone(), a.volume_id.clone()),
        (String::new(), ids::volume_id("nobody").to_string()),
    ] {
        let none = list(ListSnapshotsRequest {
            snapshot_id,
            source_volume_id,
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(none.entries.is_empty());
    }

    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(ListSnapshotsRequest {
            max_entries: 3,
            starting_token: token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(page.entries.len() <= 3);
        paged.extend(ids(&page));
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(paged, everything);
    let bad = list(ListSnapshotsRequest {
        starting_token: "garbage".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(bad.code(), Code::Aborted);
}
