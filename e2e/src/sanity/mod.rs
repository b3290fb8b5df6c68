//! The sanity suite: the upstream csi-sanity binary with every spec (`crate::csi_sanity`), and
//! what it lacks: the CSI spec's error table for each RPC (names starting `CSI spec`), the
//! driver's own promises (`rds-csi …`), and the cases named as csi-sanity's specs that check more
//! than it does (the exact gRPC code, an RDS and a node left unchanged by a refusal, what the node
//! leaves behind). Every case starts its own target; every bad-input case checks the gRPC code and
//! that the RDS is unchanged.

mod expand_modify;
mod identity;
mod node;
mod publish;
mod snapshots;
mod spec_expand;
mod spec_identity;
mod spec_node;
mod spec_publish;
mod spec_volumes;
mod volumes;

use std::collections::HashMap;

use anyhow::Context;
use libtest_mimic::Trial;
use rds_csi::csi::v1::volume_content_source::{SnapshotSource, Type, VolumeSource};
use rds_csi::csi::v1::{
    DeleteVolumeRequest, ListVolumesRequest, ListVolumesResponse, VolumeContentSource,
};

use crate::csi_sanity;
use crate::fixture::Fixture;
use crate::requests::unique_name;
use crate::suite::Case;

/// Every trial of the suite; `guest_path` is the `guest-path` bin (csi-sanity's path commands
/// when the node is in a guest).
pub fn trials(guest_path: &'static str) -> Vec<Trial> {
    [
        identity::trials(),
        volumes::trials(),
        publish::trials(),
        expand_modify::trials(),
        snapshots::trials(),
        node_cases()
            .into_iter()
            .map(|case| case.trial(|_| {}))
            .collect(),
        spec_identity::trials(),
        spec_volumes::trials(),
        spec_publish::trials(),
        spec_expand::trials(),
        vec![csi_sanity::trial(
            csi_sanity::TRIAL,
            csi_sanity::EVERY_SPEC,
            |_| {},
            guest_path,
        )],
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The Node service's cases alone (csi-sanity's and the spec's error table), each of which
/// leaves the node and the RDS as it found them, so they can also run in turn on one target
/// (`sanity_qemu`'s guest).
pub fn node_cases() -> Vec<Case> {
    let mut cases = node::cases();
    cases.extend(spec_node::cases());
    cases
}

/// csi-sanity's `GenerateInvalidVolumeID`: an ID this driver never makes.
pub const INVALID_VOLUME_ID: &str = "fake-vol-id";

/// A second host NQN, for the "published to another node" case.
pub const OTHER_NODE_ID: &str =
    "nqn.2014-08.org.nvmexpress:uuid:5e2e0000-0000-4000-8000-000000000002";

/// A well-formed volume ID (the driver's own scheme) of a volume nobody created.
pub fn absent_volume_id() -> String {
    rds_csi::ids::volume_id(&unique_name("sanity-absent"))
        .as_str()
        .to_owned()
}

/// csi-sanity's `GenerateUniqueValidNodeID`: no host NQN, so no node the driver can know.
pub fn fake_node_id() -> String {
    unique_name("fake-node-id")
}

/// Mutable parameters no volume supports.
pub fn unsupported_mutable_parameters() -> HashMap<String, String> {
    HashMap::from([(
        "sanity-unsupported-mutable-parameter".to_owned(),
        "x".to_owned(),
    )])
}

/// A CreateVolume source naming a volume.
pub fn volume_source(volume_id: &str) -> VolumeContentSource {
    VolumeContentSource {
        r#type: Some(Type::Volume(VolumeSource {
            volume_id: volume_id.to_owned(),
        })),
    }
}

/// A CreateVolume source naming a snapshot.
pub fn snapshot_source(snapshot_id: &str) -> VolumeContentSource {
    VolumeContentSource {
        r#type: Some(Type::Snapshot(SnapshotSource {
            snapshot_id: snapshot_id.to_owned(),
        })),
    }
}

/// One ListVolumes call.
pub async fn list_volumes(
    fx: &Fixture,
    max_entries: i32,
    starting_token: &str,
) -> anyhow::Result<ListVolumesResponse> {
    let request = ListVolumesRequest {
        max_entries,
        starting_token: starting_token.to_owned(),
    };
    Ok(fx
        .controller()
        .list_volumes(request)
        .await
        .with_context(|| format!("ListVolumes max_entries={max_entries} token={starting_token:?}"))?
        .into_inner())
}

/// DeleteVolume, which must succeed.
pub async fn delete(fx: &Fixture, volume_id: &str) -> anyhow::Result<()> {
    let request = DeleteVolumeRequest {
        volume_id: volume_id.to_owned(),
        ..Default::default()
    };
    fx.controller()
        .delete_volume(request)
        .await
        .with_context(|| format!("DeleteVolume {volume_id}"))?;
    Ok(())
}
