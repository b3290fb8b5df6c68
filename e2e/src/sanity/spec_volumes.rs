//! The spec's error tables and rules for CreateVolume, DeleteVolume, ListVolumes,
//! ControllerGetVolume and GetCapacity, and what each success leaves on the RDS.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use libtest_mimic::Trial;
use rds_csi::csi::v1::volume_capability::access_mode::Mode;
use rds_csi::csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use rds_csi::csi::v1::{
    ControllerGetVolumeRequest, CreateVolumeRequest, DeleteVolumeRequest, GetCapacityRequest,
    ListVolumesRequest, VolumeCapability,
};
use rds_sim::faults::Fault;
use rds_sim::store::Disk;
use tokio::task::JoinSet;
use tonic::Code;

use super::{absent_volume_id, delete, list_volumes};
use crate::fixture::Fixture;
use crate::requests::{self, unique_name};
use crate::suite::trial;

pub fn trials() -> Vec<Trial> {
    const CV: &str = "CSI spec [Controller Server] CreateVolume";
    const S: &str = "CSI spec [Controller Server]";
    vec![
        trial(
            &format!("{CV} INVALID_ARGUMENT for an unknown StorageClass parameter"),
            create_unknown_parameter,
        ),
        trial(
            &format!("{CV} INVALID_ARGUMENT for an invalid fsType"),
            async |fx: &mut Fixture| {
                create_bad_parameters(fx, "fsType", &["ntfs", "ext4;reboot"]).await
            },
        ),
        trial(
            &format!("{CV} INVALID_ARGUMENT for an invalid nvmePort"),
            async |fx: &mut Fixture| {
                create_bad_parameters(fx, "nvmePort", &["0", "65536", "-1", "http"]).await
            },
        ),
        trial(
            &format!("{CV} INVALID_ARGUMENT for a baseDir that is not one plain path segment"),
            async |fx: &mut Fixture| {
                create_bad_parameters(
                    fx,
                    "baseDir",
                    &["../escape", "a/b", "semi;colon", "has space", "quote\""],
                )
                .await
            },
        ),
        trial(
            &format!("{CV} INVALID_ARGUMENT for invalid NVMe/TCP reconnect tunables"),
            create_bad_tunables,
        ),
        trial(
            &format!("{CV} INVALID_ARGUMENT for a name with banned control characters"),
            create_banned_name,
        ),
        trial(
            &format!(
                "{CV} INVALID_ARGUMENT for a volume capability without access mode or access type"
            ),
            create_incomplete_capability,
        ),
        trial(
            &format!("{CV} ALREADY_EXISTS for an existing name with different parameters"),
            create_twice_different_parameters,
        ),
        trial(
            &format!("{CV} OUT_OF_RANGE for a capacity larger than any volume"),
            create_too_large,
        ),
        trial(
            &format!("{CV} RESOURCE_EXHAUSTED when the pool has no space"),
            create_pool_full,
        ),
        trial(
            &format!("{CV} ABORTED for concurrent requests for the same name"),
            create_concurrently,
        ),
        trial(
            &format!("{CV} provisions one disk and its backing file of the requested size"),
            create_provisions_disk,
        ),
        trial(
            &format!("{CV} without capacity_range provisions a volume of the size it reports"),
            create_without_capacity,
        ),
        trial(
            "rds-csi [Controller Server] CreateVolume accepts the StorageClass parameters and passes the tunables in volume_context",
            create_passes_tunables,
        ),
        trial(
            &format!("{S} DeleteVolume removes the disk and its backing file, and succeeds again"),
            delete_removes_disk,
        ),
        trial(
            &format!(
                "{S} DeleteVolume FAILED_PRECONDITION while the volume is published to a node"
            ),
            delete_published_volume,
        ),
        trial(
            &format!("{S} DeleteVolume succeeds without change for a volume that does not exist"),
            delete_absent_volume,
        ),
        trial(
            &format!("{S} ListVolumes INVALID_ARGUMENT for a negative max_entries"),
            list_negative_max_entries,
        ),
        trial(
            &format!("{S} ListVolumes pages list every volume exactly once"),
            list_pages_cover_every_volume,
        ),
        trial(
            &format!("{S} ControllerGetVolume INVALID_ARGUMENT without a volume id"),
            get_volume_without_id,
        ),
        trial(
            &format!("{S} ControllerGetVolume NOT_FOUND for a volume that does not exist"),
            get_absent_volume,
        ),
        trial(
            &format!("{S} ControllerGetVolume returns the volume's id, capacity and status"),
            get_volume_values,
        ),
        trial(
            &format!("{S} GetCapacity reports the pool's free space"),
            capacity_is_pool_free,
        ),
    ]
}

/// The disk with slot `slot` on the simulator.
pub fn sim_disk(fx: &Fixture, slot: &str) -> anyhow::Result<Option<Disk>> {
    let sim = fx.require_sim("to read the disks")?;
    Ok(sim.disks().into_iter().find(|d| d.slot == slot))
}

fn with_parameters(fx: &Fixture, name: &str, extra: &[(&str, &str)]) -> CreateVolumeRequest {
    let mut request = fx.create_request(name);
    for (key, value) in extra {
        request
            .parameters
            .insert((*key).to_owned(), (*value).to_owned());
    }
    request
}

async fn create_unknown_parameter(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = with_parameters(fx, &unique_name("sanity-spec"), &[("colour", "blue")]);
    let status = fx
        .rejects(
            Code::InvalidArgument,
            fx.controller().create_volume(request),
        )
        .await?;
    ensure!(
        status.message().contains("colour"),
        "the message does not name the unknown key: {}",
        status.message()
    );
    Ok(())
}

async fn create_bad_parameters(fx: &mut Fixture, key: &str, values: &[&str]) -> anyhow::Result<()> {
    for value in values {
        let request = with_parameters(fx, &unique_name("sanity-spec"), &[(key, value)]);
        fx.rejects(
            Code::InvalidArgument,
            fx.controller().create_volume(request),
        )
        .await
        .with_context(|| format!("{key}={value:?}"))?;
    }
    Ok(())
}

async fn create_bad_tunables(fx: &mut Fixture) -> anyhow::Result<()> {
    for (key, value) in [
        ("ctrlLossTmo", "-2"),
        ("ctrlLossTmo", "forever"),
        ("reconnectDelay", "0"),
        ("keepAliveTmo", "soon"),
        ("nrIoQueues", "-1"),
    ] {
        let request = with_parameters(fx, &unique_name("sanity-spec"), &[(key, value)]);
        fx.rejects(
            Code::InvalidArgument,
            fx.controller().create_volume(request),
        )
        .await
        .with_context(|| format!("{key}={value:?}"))?;
    }
    Ok(())
}

/// The spec bans U+0000–U+0008, U+000B, U+000C, U+000E–U+001F and U+007F–U+009F in names.
async fn create_banned_name(fx: &mut Fixture) -> anyhow::Result<()> {
    for banned in ['\u{0}', '\u{1}', '\u{b}', '\u{1f}', '\u{7f}', '\u{9f}'] {
        let name = format!("sanity-{}-banned", banned);
        let request = fx.create_request(&name);
        fx.rejects(
            Code::InvalidArgument,
            fx.controller().create_volume(request),
        )
        .await
        .with_context(|| format!("a name holding U+{:04X}", banned as u32))?;
    }
    Ok(())
}

async fn create_incomplete_capability(fx: &mut Fixture) -> anyhow::Result<()> {
    let mount = Some(AccessType::Mount(MountVolume::default()));
    let cases = [
        (
            "no access mode",
            VolumeCapability {
                access_mode: None,
                access_type: mount.clone(),
            },
        ),
        (
            "access mode UNKNOWN",
            VolumeCapability {
                access_mode: Some(AccessMode {
                    mode: Mode::Unknown as i32,
                }),
                access_type: mount,
            },
        ),
        (
            "no access type",
            VolumeCapability {
                access_mode: Some(AccessMode {
                    mode: Mode::SingleNodeWriter as i32,
                }),
                access_type: None,
            },
        ),
    ];
    for (what, capability) in cases {
        let request = CreateVolumeRequest {
            volume_capabilities: vec![capability],
            ..fx.create_request(&unique_name("sanity-spec"))
        };
        fx.rejects(
            Code::InvalidArgument,
            fx.controller().create_volume(request),
        )
        .await
        .context(what)?;
    }
    Ok(())
}

/// Each differing parameter on its own must be refused; every refusal is reported.
async fn create_twice_different_parameters(fx: &mut Fixture) -> anyhow::Result<()> {
    let name = unique_name("sanity-spec-twice-parameters");
    let first = with_parameters(fx, &name, &[("fsType", "ext4")]);
    fx.create_volume(first)
        .await
        .context("CreateVolume fsType=ext4")?;
    let mut accepted = Vec::new();
    for (key, value) in [
        ("fsType", "xfs"),
        ("baseDir", "csi-other"),
        ("nvmePort", "4421"),
        ("ctrlLossTmo", "600"),
    ] {
        let second = with_parameters(fx, &name, &[("fsType", "ext4"), (key, value)]);
        if let Err(error) = fx
            .rejects(Code::AlreadyExists, fx.controller().create_volume(second))
            .await
        {
            accepted.push(format!("{key}={value:?}: {error:#}"));
        }
    }
    ensure!(
        accepted.is_empty(),
        "a second CreateVolume of the same name with different parameters was not refused:\n  {}",
        accepted.join("\n  ")
    );
    Ok(())
}

async fn create_too_large(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = CreateVolumeRequest {
        capacity_range: Some(requests::exact_capacity(i64::MAX as u64)),
        ..fx.create_request(&unique_name("sanity-spec-too-large"))
    };
    fx.rejects(Code::OutOfRange, fx.controller().create_volume(request))
        .await?;
    Ok(())
}

async fn create_pool_full(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_sim("to fill the pool")?
        .inject(&Fault::PoolFull { enabled: true })?;
    let request = fx.create_request(&unique_name("sanity-spec-pool-full"));
    fx.rejects(
        Code::ResourceExhausted,
        fx.controller().create_volume(request),
    )
    .await?;
    Ok(())
}

/// How many identical requests race; each `/disk add` takes [`ADD_LATENCY`], so all arrive while
/// the first holds the volume.
const RACERS: usize = 8;
const ADD_LATENCY: Duration = Duration::from_millis(1000);

async fn create_concurrently(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_sim("to slow /disk add down")?
        .inject(&Fault::Latency {
            pattern: "^/disk add".to_owned(),
            fixed_ms: ADD_LATENCY.as_millis() as u64,
            jitter_ms: 0,
        })?;
    let request = fx.create_request(&unique_name("sanity-spec-concurrent"));
    let mut racers = JoinSet::new();
    for _ in 0..RACERS {
        let mut controller = fx.controller();
        let request = request.clone();
        racers.spawn(async move { controller.create_volume(request).await });
    }
    let mut created = HashSet::new();
    let mut aborted = 0;
    while let Some(joined) = racers.join_next().await {
        match joined.context("a CreateVolume task panicked")? {
            Ok(response) => {
                let volume = response.into_inner().volume.context("no volume")?;
                fx.track_volume(&volume.volume_id);
                created.insert(volume.volume_id);
            }
            Err(status) if status.code() == Code::Aborted => aborted += 1,
            Err(status) => bail!(
                "a concurrent CreateVolume failed with {:?}: {}",
                status.code(),
                status.message()
            ),
        }
    }
    ensure!(
        created.len() == 1,
        "{RACERS} requests for one name gave volumes {created:?}"
    );
    ensure!(
        aborted > 0,
        "no request was ABORTED although all {RACERS} ran at once"
    );
    let id = created.into_iter().next().unwrap_or_default();
    let disks = fx.require_sim("to count disks")?.disks();
    let matching = disks.iter().filter(|d| d.slot == id).count();
    ensure!(matching == 1, "{matching} disks have slot {id}");
    Ok(())
}

async fn create_provisions_disk(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_sim("to inspect the disk")?;
    let volume = fx.must_create(&unique_name("sanity-spec-disk")).await?;
    let size = fx.volume_size();
    ensure!(
        u64::try_from(volume.capacity_bytes) == Ok(size),
        "CreateVolume reports {} bytes for an exact request of {size}",
        volume.capacity_bytes
    );
    let disk = sim_disk(fx, &volume.volume_id)?
        .with_context(|| format!("no disk has slot {}", volume.volume_id))?;
    ensure!(
        disk.file_size == size,
        "the disk is {} bytes, not {size}",
        disk.file_size
    );
    let file = fx
        .require_sim("to list files")?
        .state()
        .files
        .into_iter()
        .find(|f| f.name == disk.file_path)
        .with_context(|| format!("no backing file {}", disk.file_path))?;
    ensure!(
        file.size == size,
        "the backing file is {} bytes, not {size}",
        file.size
    );
    let disks = fx.require_sim("to count disks")?.disks();
    ensure!(disks.len() == 1, "one volume made {} disks", disks.len());
    Ok(())
}

async fn create_without_capacity(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = CreateVolumeRequest {
        capacity_range: None,
        ..fx.create_request(&unique_name("sanity-spec-no-capacity"))
    };
    let volume = fx.create_volume(request).await.context("CreateVolume")?;
    ensure!(
        volume.capacity_bytes > 0,
        "a volume made without capacity_range reports capacity {}",
        volume.capacity_bytes
    );
    if fx.target().sim().is_some() {
        let disk = sim_disk(fx, &volume.volume_id)?
            .with_context(|| format!("no disk has slot {}", volume.volume_id))?;
        ensure!(
            i64::try_from(disk.file_size) == Ok(volume.capacity_bytes),
            "the disk is {} bytes, CreateVolume reported {}",
            disk.file_size,
            volume.capacity_bytes
        );
    }
    Ok(())
}

async fn create_passes_tunables(fx: &mut Fixture) -> anyhow::Result<()> {
    let tunables = [
        ("fsType", "xfs"),
        ("ctrlLossTmo", "-1"),
        ("reconnectDelay", "5"),
        ("keepAliveTmo", "10"),
        ("nrIoQueues", "4"),
    ];
    let sidecar = [
        ("csi.storage.k8s.io/pvc/name", "data"),
        ("csi.storage.k8s.io/pvc/namespace", "default"),
        ("csi.storage.k8s.io/pv/name", "pvc-sanity"),
    ];
    let all: Vec<_> = tunables.iter().chain(&sidecar).copied().collect();
    let request = with_parameters(fx, &unique_name("sanity-spec-tunables"), &all);
    let volume = fx.create_volume(request).await.context("CreateVolume")?;
    let context: HashMap<&str, &str> = volume
        .volume_context
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (key, value) in tunables {
        ensure!(
            context.get(key) == Some(&value),
            "volume_context has {key}={:?}, the StorageClass said {value:?}: {context:?}",
            context.get(key)
        );
    }
    Ok(())
}

async fn delete_removes_disk(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_sim("to inspect the disk")?;
    let volume = fx.must_create(&unique_name("sanity-spec-delete")).await?;
    let disk = sim_disk(fx, &volume.volume_id)?
        .with_context(|| format!("no disk has slot {}", volume.volume_id))?;
    delete(fx, &volume.volume_id).await?;
    ensure!(
        sim_disk(fx, &volume.volume_id)?.is_none(),
        "the disk {} is still there",
        volume.volume_id
    );
    let files = fx.require_sim("to list files")?.state().files;
    ensure!(
        !files.iter().any(|f| f.name == disk.file_path),
        "the backing file {} is still there",
        disk.file_path
    );
    let again = DeleteVolumeRequest {
        volume_id: volume.volume_id,
        ..Default::default()
    };
    fx.succeeds_without_change(fx.controller().delete_volume(again))
        .await
        .context("the second DeleteVolume")?;
    Ok(())
}

/// The spec's "volume in use": a node may still hold the volume.
async fn delete_published_volume(fx: &mut Fixture) -> anyhow::Result<()> {
    let node = fx.node_info().await?;
    let volume = fx.must_create(&unique_name("sanity-spec-in-use")).await?;
    fx.publish(requests::publish(&volume.volume_id, &node.node_id))
        .await
        .context("ControllerPublishVolume")?;
    let request = DeleteVolumeRequest {
        volume_id: volume.volume_id,
        ..Default::default()
    };
    fx.rejects(
        Code::FailedPrecondition,
        fx.controller().delete_volume(request),
    )
    .await?;
    Ok(())
}

async fn delete_absent_volume(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.must_create(&unique_name("sanity-spec-bystander"))
        .await?;
    let request = DeleteVolumeRequest {
        volume_id: absent_volume_id(),
        ..Default::default()
    };
    fx.succeeds_without_change(fx.controller().delete_volume(request))
        .await?;
    Ok(())
}

async fn list_negative_max_entries(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = ListVolumesRequest {
        max_entries: -1,
        starting_token: String::new(),
    };
    fx.rejects(Code::InvalidArgument, fx.controller().list_volumes(request))
        .await?;
    Ok(())
}

async fn list_pages_cover_every_volume(fx: &mut Fixture) -> anyhow::Result<()> {
    for i in 0..5 {
        fx.must_create(&unique_name(&format!("sanity-spec-page-{i}")))
            .await?;
    }
    let everything: HashSet<String> = list_volumes(fx, 0, "")
        .await?
        .entries
        .into_iter()
        .filter_map(|e| e.volume.map(|v| v.volume_id))
        .collect();
    ensure!(
        everything.len() >= 5,
        "only {} volumes listed",
        everything.len()
    );

    let mut seen = HashSet::new();
    let mut token = String::new();
    for page_number in 1.. {
        let page = list_volumes(fx, 2, &token).await?;
        ensure!(
            page.entries.len() <= 2,
            "page {page_number} has {} entries, max_entries was 2",
            page.entries.len()
        );
        for entry in page.entries {
            let id = entry.volume.context("an entry without a volume")?.volume_id;
            ensure!(seen.insert(id.clone()), "{id} is listed twice");
        }
        if page.next_token.is_empty() {
            break;
        }
        ensure!(
            page_number <= everything.len(),
            "more pages than volumes: the tokens do not advance"
        );
        token = page.next_token;
    }
    ensure!(
        seen == everything,
        "paging listed {seen:?}, one ListVolumes listed {everything:?}"
    );
    Ok(())
}

async fn get_volume_without_id(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = ControllerGetVolumeRequest::default();
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().controller_get_volume(request),
    )
    .await?;
    Ok(())
}

async fn get_absent_volume(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = ControllerGetVolumeRequest {
        volume_id: absent_volume_id(),
    };
    fx.rejects(
        Code::NotFound,
        fx.controller().controller_get_volume(request),
    )
    .await?;
    Ok(())
}

async fn get_volume_values(fx: &mut Fixture) -> anyhow::Result<()> {
    let created = fx.must_create(&unique_name("sanity-spec-get")).await?;
    let request = ControllerGetVolumeRequest {
        volume_id: created.volume_id.clone(),
    };
    let response = fx
        .controller()
        .controller_get_volume(request)
        .await
        .context("ControllerGetVolume")?
        .into_inner();
    let volume = response.volume.context("the response has no volume")?;
    ensure!(
        volume.volume_id == created.volume_id,
        "asked for {}, got {}",
        created.volume_id,
        volume.volume_id
    );
    ensure!(
        volume.capacity_bytes == created.capacity_bytes,
        "ControllerGetVolume reports {} bytes, CreateVolume reported {}",
        volume.capacity_bytes,
        created.capacity_bytes
    );
    ensure!(response.status.is_some(), "the REQUIRED status is missing");
    Ok(())
}

async fn capacity_is_pool_free(fx: &mut Fixture) -> anyhow::Result<()> {
    let sim = fx.require_sim("to read the pool's free space")?.clone();
    fx.must_create(&unique_name("sanity-spec-capacity")).await?;
    let reported = fx
        .controller()
        .get_capacity(GetCapacityRequest::default())
        .await
        .context("GetCapacity")?
        .into_inner()
        .available_capacity;
    let free = sim.state().pool.free;
    ensure!(
        u64::try_from(reported) == Ok(free),
        "GetCapacity reports {reported} bytes, the pool has {free} free"
    );
    Ok(())
}
