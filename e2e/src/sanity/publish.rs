//! Controller cases named as csi-sanity's specs for validating, publishing and unpublishing, and
//! the volume lifecycle, kept beside the real csi-sanity for what they check beyond it: the exact
//! gRPC code (RESOURCE_EXHAUSTED past the attach limit, where csi-sanity takes any error), an RDS
//! left unchanged by a refusal, and the same publish context on every repeated publish.

use anyhow::{Context, ensure};
use libtest_mimic::Trial;
use rds_csi::csi::v1::controller_service_capability::rpc;
use rds_csi::csi::v1::{
    ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest, CreateVolumeRequest,
    ValidateVolumeCapabilitiesRequest,
};
use tonic::Code;

use super::{absent_volume_id, delete, fake_node_id};
use crate::fixture::Fixture;
use crate::requests::{self, single_node_writer, unique_name};
use crate::suite::trial;

/// csi-sanity's default `--csi.idempotent-count`.
const IDEMPOTENT_COUNT: usize = 10;

pub fn trials() -> Vec<Trial> {
    const CS: &str = "Controller Service [Controller Server]";
    vec![
        trial(
            &format!("{CS} ValidateVolumeCapabilities should fail when no volume id is provided"),
            validate_without_id,
        ),
        trial(
            &format!(
                "{CS} ValidateVolumeCapabilities should fail when no volume capabilities are provided"
            ),
            validate_without_capabilities,
        ),
        trial(
            &format!(
                "{CS} ValidateVolumeCapabilities should fail when the requested volume does not exist"
            ),
            validate_absent_volume,
        ),
        trial(
            &format!("{CS} ControllerPublishVolume should fail when no volume id is provided"),
            publish_without_volume_id,
        ),
        trial(
            &format!("{CS} ControllerPublishVolume should fail when no node id is provided"),
            publish_without_node_id,
        ),
        trial(
            &format!(
                "{CS} ControllerPublishVolume should fail when no volume capability is provided"
            ),
            publish_without_capability,
        ),
        trial(
            &format!(
                "{CS} ControllerPublishVolume should fail when publishing more volumes than the node max attach limit"
            ),
            publish_beyond_attach_limit,
        ),
        trial(
            &format!("{CS} ControllerPublishVolume should fail when the volume does not exist"),
            publish_absent_volume,
        ),
        trial(
            &format!("{CS} ControllerPublishVolume should fail when the node does not exist"),
            publish_to_absent_node,
        ),
        trial(
            &format!(
                "{CS} ControllerPublishVolume should fail when the volume is already published but is incompatible"
            ),
            publish_incompatible,
        ),
        trial(
            &format!("{CS} volume lifecycle should work"),
            async |fx: &mut Fixture| volume_lifecycle(fx, 1).await,
        ),
        trial(
            &format!("{CS} volume lifecycle should be idempotent"),
            async |fx: &mut Fixture| volume_lifecycle(fx, IDEMPOTENT_COUNT).await,
        ),
        trial(
            &format!("{CS} ControllerUnpublishVolume should fail when no volume id is provided"),
            unpublish_without_volume_id,
        ),
    ]
}

async fn validate_without_id(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = ValidateVolumeCapabilitiesRequest::default();
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().validate_volume_capabilities(request),
    )
    .await?;
    Ok(())
}

async fn validate_without_capabilities(fx: &mut Fixture) -> anyhow::Result<()> {
    let volume = fx
        .must_create(&unique_name("sanity-controller-validate-nocaps"))
        .await?;
    let request = ValidateVolumeCapabilitiesRequest {
        volume_id: volume.volume_id,
        ..Default::default()
    };
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().validate_volume_capabilities(request),
    )
    .await?;
    Ok(())
}

async fn validate_absent_volume(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = ValidateVolumeCapabilitiesRequest {
        volume_id: absent_volume_id(),
        volume_capabilities: vec![single_node_writer()],
        ..Default::default()
    };
    fx.rejects(
        Code::NotFound,
        fx.controller().validate_volume_capabilities(request),
    )
    .await?;
    Ok(())
}

async fn publish_without_volume_id(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = ControllerPublishVolumeRequest::default();
    publish_rejected(fx, Code::InvalidArgument, request).await
}

async fn publish_without_node_id(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = ControllerPublishVolumeRequest {
        volume_id: absent_volume_id(),
        ..Default::default()
    };
    publish_rejected(fx, Code::InvalidArgument, request).await
}

async fn publish_without_capability(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = ControllerPublishVolumeRequest {
        volume_id: absent_volume_id(),
        node_id: fake_node_id(),
        ..Default::default()
    };
    publish_rejected(fx, Code::InvalidArgument, request).await
}

/// csi-sanity runs this only with `--csi.testnodevolumeattachlimit` and accepts any error; the
/// limit is known here (NodeGetInfo, else the controller's configuration) and the spec's code for
/// it is RESOURCE_EXHAUSTED.
async fn publish_beyond_attach_limit(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::PublishUnpublishVolume)
        .await?;
    let node = fx.node_info().await?;
    for i in 0..node.max_volumes {
        let volume = fx
            .must_create(&unique_name(&format!("sanity-max-attach-limit-vol-{i}")))
            .await?;
        fx.publish(requests::publish(&volume.volume_id, &node.node_id))
            .await
            .with_context(|| format!("publishing volume {} of {}", i + 1, node.max_volumes))?;
    }
    let extra = fx
        .must_create(&unique_name("sanity-max-attach-limit-vol+1"))
        .await?;
    let request = requests::publish(&extra.volume_id, &node.node_id);
    publish_rejected(fx, Code::ResourceExhausted, request).await
}

async fn publish_absent_volume(fx: &mut Fixture) -> anyhow::Result<()> {
    let request = requests::publish(&absent_volume_id(), &fake_node_id());
    publish_rejected(fx, Code::NotFound, request).await
}

async fn publish_to_absent_node(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::PublishUnpublishVolume)
        .await?;
    let volume = fx
        .must_create(&unique_name("sanity-controller-wrong-node"))
        .await?;
    let request = requests::publish(&volume.volume_id, &fake_node_id());
    publish_rejected(fx, Code::NotFound, request).await
}

async fn publish_incompatible(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::PublishUnpublishVolume)
        .await?;
    fx.require_capability(rpc::Type::PublishReadonly).await?;
    let volume = fx
        .must_create(&unique_name("sanity-controller-published-incompatible"))
        .await?;
    let node = fx.node_info().await?;
    let request = requests::publish(&volume.volume_id, &node.node_id);
    fx.publish(request.clone())
        .await
        .context("the first ControllerPublishVolume")?;
    let readonly = ControllerPublishVolumeRequest {
        readonly: true,
        ..request
    };
    fx.rejects(
        Code::AlreadyExists,
        fx.controller().controller_publish_volume(readonly),
    )
    .await?;
    Ok(())
}

/// Create, publish `count` times, unpublish `count` times, delete `count` times: each repetition
/// must succeed and publishing must hand out the same context every time.
async fn volume_lifecycle(fx: &mut Fixture, count: usize) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::PublishUnpublishVolume)
        .await?;
    let node = fx.node_info().await?;
    let request = CreateVolumeRequest {
        capacity_range: None,
        ..fx.create_request(&unique_name(&format!("sanity-controller-publish-{count}")))
    };
    let volume = fx.create_volume(request).await.context("CreateVolume")?;

    let publish = ControllerPublishVolumeRequest {
        volume_context: volume.volume_context.clone(),
        ..requests::publish(&volume.volume_id, &node.node_id)
    };
    let mut first_context = None;
    for i in 1..=count {
        let context = fx
            .publish(publish.clone())
            .await
            .with_context(|| format!("ControllerPublishVolume #{i}"))?
            .publish_context;
        match &first_context {
            None => first_context = Some(context),
            Some(first) => ensure!(
                first == &context,
                "ControllerPublishVolume #{i} returned {context:?}, the first returned {first:?}"
            ),
        }
    }
    for i in 1..=count {
        let request = requests::unpublish(&volume.volume_id, &node.node_id);
        fx.controller()
            .controller_unpublish_volume(request)
            .await
            .with_context(|| format!("ControllerUnpublishVolume #{i}"))?;
    }
    for i in 1..=count {
        delete(fx, &volume.volume_id)
            .await
            .with_context(|| format!("DeleteVolume #{i}"))?;
    }
    Ok(())
}

async fn unpublish_without_volume_id(fx: &mut Fixture) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::PublishUnpublishVolume)
        .await?;
    let request = ControllerUnpublishVolumeRequest::default();
    fx.rejects(
        Code::InvalidArgument,
        fx.controller().controller_unpublish_volume(request),
    )
    .await?;
    Ok(())
}

/// Checks that a ControllerPublishVolume is refused with `code` and changes nothing, when the
/// driver publishes at all.
async fn publish_rejected(
    fx: &mut Fixture,
    code: Code,
    request: ControllerPublishVolumeRequest,
) -> anyhow::Result<()> {
    fx.require_capability(rpc::Type::PublishUnpublishVolume)
        .await?;
    fx.rejects(code, fx.controller().controller_publish_volume(request))
        .await?;
    Ok(())
}
