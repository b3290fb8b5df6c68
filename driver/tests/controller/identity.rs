//! The Identity service, Probe against an RDS that goes away, and host-key pinning.

use crate::harness::*;

#[tokio::test]
async fn identity_describes_the_controller() {
    let mut plugin = Plugin::start().await;
    let info = plugin
        .identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "rds.csi.mikrotik.com");
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
    let capabilities = plugin
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    let service = |t: service::Type| PluginCapability {
        r#type: Some(plugin_capability::Type::Service(
            plugin_capability::Service { r#type: t.into() },
        )),
    };
    let online = PluginCapability {
        r#type: Some(plugin_capability::Type::VolumeExpansion(
            plugin_capability::VolumeExpansion {
                r#type: volume_expansion::Type::Online.into(),
            },
        )),
    };
    assert_eq!(
        capabilities,
        [service(service::Type::ControllerService), online]
    );
    let controller = plugin
        .controller
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let advertised: Vec<_> = controller
        .capabilities
        .iter()
        .map(|c| match c.r#type {
            Some(controller_service_capability::Type::Rpc(rpc)) => rpc.r#type().as_str_name(),
            None => "none",
        })
        .collect();
    assert_eq!(
        advertised,
        [
            "CREATE_DELETE_VOLUME",
            "PUBLISH_UNPUBLISH_VOLUME",
            "LIST_VOLUMES",
            "GET_CAPACITY",
            "EXPAND_VOLUME",
            "LIST_VOLUMES_PUBLISHED_NODES",
            "GET_VOLUME",
            "VOLUME_CONDITION",
            "SINGLE_NODE_MULTI_WRITER",
            "CREATE_DELETE_SNAPSHOT",
            "LIST_SNAPSHOTS",
            "GET_SNAPSHOT",
            "CLONE_VOLUME",
        ]
    );
    assert!(plugin.probe().await);
}

#[tokio::test]
async fn probe_is_not_ready_once_the_rds_is_gone() {
    let mut plugin = Plugin::start().await;
    assert!(plugin.probe().await);
    plugin.stop_sim().await;
    let error = plugin.capacity().await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{}", error.message());
    assert!(!plugin.probe().await);
}

#[tokio::test]
async fn probe_follows_an_rds_restart() {
    let mut plugin = Plugin::start().await;
    plugin
        .create(create_request("survivor", GIB, 0))
        .await
        .unwrap();
    plugin
        .sim()
        .inject(&Fault::Restart { downtime_ms: 1_000 })
        .unwrap();
    let error = plugin.capacity().await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{}", error.message());
    assert!(!plugin.probe().await);
    // Back after the downtime, with its disks. Nothing announces the end of the downtime, so
    // poll, within a deadline.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !plugin.probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the RDS never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let again = plugin
        .create(create_request("survivor", GIB, 0))
        .await
        .unwrap();
    assert_eq!(again.capacity_bytes, GIB);
}

/// `rds.breakerOpenMs`: once failed connections have opened the breaker, the controller tries the
/// RDS again after that long, so it serves moments after the RDS is back rather than 30 s later
/// (the default, which this test's deadline would not wait for).
#[tokio::test]
async fn the_breaker_tries_the_rds_again_after_its_configured_open_period() {
    let mut plugin = Plugin::with(Setup {
        config: |c| c.rds.breaker_open_ms = 300,
        ..Setup::default()
    })
    .await;
    plugin
        .sim()
        .inject(&Fault::Restart { downtime_ms: 5_000 })
        .unwrap();
    for calls in 1.. {
        let error = plugin.capacity().await.unwrap_err();
        assert_eq!(error.code(), Code::Unavailable, "{}", error.message());
        if error.message().contains("failed in a row") {
            break;
        }
        assert!(calls < 20, "the breaker never opened: {}", error.message());
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !plugin.probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the controller did not try the RDS again within 10 s: rds.breakerOpenMs = 300 was \
             not applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_host_key_mismatch_refuses_the_rds() {
    let mut plugin = Plugin::with(Setup {
        pin_wrong_key: true,
        ..Setup::default()
    })
    .await;
    let error = plugin
        .create(create_request("mitm", GIB, 0))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable);
    let real = HostKeyPin::of_key(&plugin.sim.as_ref().unwrap().host_public_key).to_string();
    let message = error.message();
    assert!(message.contains(&real), "{message}");
    assert!(message.contains("pinned"), "{message}");
    assert!(!plugin.probe().await);
    assert!(plugin.state().disks.is_empty(), "nothing was added");
}

#[tokio::test]
async fn node_mode_serves_identity_only_and_needs_no_rds() {
    let mut plugin = Plugin::with(Setup {
        mode: Mode::Node,
        ..Setup::default()
    })
    .await;
    plugin.stop_sim().await;
    assert!(
        plugin.probe().await,
        "the node plugin does not depend on the RDS"
    );
    let capabilities = plugin
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert!(
        capabilities
            .iter()
            .all(|c| !matches!(c.r#type, Some(plugin_capability::Type::Service(_)))),
        "{capabilities:?}"
    );
    let error = plugin.capacity().await.unwrap_err();
    assert_eq!(error.code(), Code::Unimplemented);
}

#[tokio::test]
async fn the_driver_starts_while_the_rds_is_unreachable() {
    let mut plugin = Plugin::with(Setup {
        // Nothing listens on port 1: every connection is refused.
        config: |c| c.rds.ssh_port = 1,
        ..Setup::default()
    })
    .await;
    assert!(!plugin.probe().await);
    let error = plugin.capacity().await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable);
    assert!(
        error.message().contains("127.0.0.1:1"),
        "{}",
        error.message()
    );
}
