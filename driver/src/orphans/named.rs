//! The ids that Kubernetes objects name, and the listings they come from. The conversion is
//! pure; [`list`] is the only code here that calls the API server, and it fails rather than
//! return what an incomplete listing shows.

use std::collections::BTreeSet;

use anyhow::Context;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectList};
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::find::Named;
use crate::ids;

/// The ids named by `volumes` of `driver`, by every claim (external-provisioner names a claim's
/// volume `pvc-<claim uid>`, so a claim whose PersistentVolume is not made yet keeps its volume
/// too), and by `contents` of `driver` (`None`: the snapshot CRDs are not installed).
pub fn named(
    driver: &str,
    volumes: &[PersistentVolume],
    claims: &[PersistentVolumeClaim],
    contents: Option<&[DynamicObject]>,
) -> Named {
    let mut named = Named {
        volumes: volumes
            .iter()
            .filter_map(|pv| pv.spec.as_ref()?.csi.as_ref())
            .filter(|csi| csi.driver == driver)
            .map(|csi| csi.volume_handle.clone())
            .collect(),
        snapshots: None,
    };
    named.volumes.extend(
        claims
            .iter()
            .filter_map(|claim| claim.uid())
            .map(|uid| ids::volume_id(&format!("pvc-{uid}")).to_string()),
    );
    if let Some(contents) = contents {
        let mut snapshots = BTreeSet::new();
        for content in contents.iter().map(|c| &c.data) {
            if content["spec"]["driver"] != driver {
                continue;
            }
            let text = |value: &Value| value.as_str().map(str::to_owned);
            snapshots.extend(text(&content["status"]["snapshotHandle"]));
            snapshots.extend(text(&content["spec"]["source"]["snapshotHandle"]));
            // Before CreateSnapshot answers, the content holds no handle; the snapshotter names
            // the snapshot `snapshot-<VolumeSnapshot uid>`.
            if let Some(uid) = content["spec"]["volumeSnapshotRef"]["uid"].as_str() {
                snapshots.insert(ids::snapshot_id(&format!("snapshot-{uid}")).to_string());
            }
            named
                .volumes
                .extend(text(&content["spec"]["source"]["volumeHandle"]));
        }
        named.snapshots = Some(snapshots);
    }
    named
}

/// Lists PersistentVolumes, claims and VolumeSnapshotContents, each whole, and returns what
/// they name for `driver`.
pub async fn list(client: &Client, driver: &str) -> anyhow::Result<Named> {
    let volumes = complete(
        Api::<PersistentVolume>::all(client.clone())
            .list(&ListParams::default())
            .await,
        "PersistentVolumes",
    )?;
    let claims = complete(
        Api::<PersistentVolumeClaim>::all(client.clone())
            .list(&ListParams::default())
            .await,
        "PersistentVolumeClaims",
    )?;
    let gvk = GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", "VolumeSnapshotContent");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "volumesnapshotcontents");
    let contents = match Api::<DynamicObject>::all_with(client.clone(), &resource)
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) if status.is_not_found() => None,
        listed => Some(complete(listed, "VolumeSnapshotContents")?),
    };
    Ok(named(driver, &volumes, &claims, contents.as_deref()))
}

/// The items of a listing that succeeded and holds every object (no continue token).
fn complete<K>(listed: kube::Result<ObjectList<K>>, what: &str) -> anyhow::Result<Vec<K>>
where
    K: Clone,
{
    let list = listed.with_context(|| format!("listing {what}"))?;
    anyhow::ensure!(
        list.metadata
            .continue_
            .as_deref()
            .unwrap_or_default()
            .is_empty(),
        "the listing of {what} was cut short (it has a continue token)"
    );
    Ok(list.items)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{CSIPersistentVolumeSource, PersistentVolumeSpec};
    use kube::api::ObjectMeta;
    use serde_json::json;

    use super::*;

    const DRIVER: &str = "rds.csi.mikrotik.com";

    fn pv(driver: &str, handle: &str) -> PersistentVolume {
        PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: driver.to_owned(),
                    volume_handle: handle.to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn content(data: Value) -> DynamicObject {
        DynamicObject {
            types: None,
            metadata: ObjectMeta::default(),
            data,
        }
    }

    #[test]
    fn volumes_of_this_driver_and_every_claims_volume_are_named() {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                uid: Some("123e4567-e89b-12d3-a456-426614174000".to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        let named = named(
            DRIVER,
            &[pv(DRIVER, "pvc-a"), pv("other.csi.example.com", "pvc-b")],
            &[claim],
            None,
        );
        assert_eq!(
            named.volumes,
            BTreeSet::from([
                "pvc-a".to_owned(),
                "pvc-123e4567e89b12d3a45642661417".to_owned()
            ])
        );
        assert_eq!(named.snapshots, None);
    }

    #[test]
    fn contents_name_their_handles_and_before_one_the_snapshotters_name() {
        let uid = "123e4567-e89b-12d3-a456-426614174000";
        let contents = [
            content(json!({
                "spec": {"driver": DRIVER, "source": {"volumeHandle": "pvc-v"},
                         "volumeSnapshotRef": {"uid": uid}},
                "status": {"snapshotHandle": "snap-made"},
            })),
            content(json!({
                "spec": {"driver": DRIVER, "source": {"snapshotHandle": "snap-given"}},
            })),
            content(json!({
                "spec": {"driver": "other.csi.example.com",
                         "source": {"snapshotHandle": "snap-theirs"}},
            })),
        ];
        let named = named(DRIVER, &[], &[], Some(&contents));
        assert_eq!(
            named.snapshots,
            Some(BTreeSet::from([
                "snap-made".to_owned(),
                "snap-given".to_owned(),
                ids::snapshot_id(&format!("snapshot-{uid}")).to_string(),
            ]))
        );
        assert_eq!(named.volumes, BTreeSet::from(["pvc-v".to_owned()]));
    }
}
