//! `rds-csi doctor` against an in-process rds-sim: every check passes on a healthy appliance, and a
//! wrong host-key pin or pool is named with what to fix.

use rds_csi::dev;
use rds_csi::doctor;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_appliance_passes_every_check() {
    let env = dev::start(None).await.unwrap();
    let report = doctor::run(&env.config).await;
    assert!(report.ok(), "{report}");
    let names: Vec<_> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        ["reachable", "host key", "login", "RouterOS version", "pool"]
    );
    assert!(report.to_string().contains("7.24.4"), "{report}");
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_and_a_wrong_pool_are_named() {
    let env = dev::start(None).await.unwrap();
    let mut config = env.config.clone();
    config.rds.host_key = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
    let report = doctor::run(&config).await;
    assert!(!report.ok());
    let last = report.checks.last().unwrap();
    assert_eq!(last.name, "host key", "{report}");
    assert!(!last.ok);

    let mut config = env.config.clone();
    config.rds.pool = "no-such-pool".into();
    let report = doctor::run(&config).await;
    let last = report.checks.last().unwrap();
    assert_eq!((last.name, last.ok), ("pool", false), "{report}");
    assert!(last.detail.contains("no disk is mounted"), "{report}");
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_rds_stops_at_the_first_check() {
    let env = dev::start(None).await.unwrap();
    let config = env.config.clone();
    // The port the simulator listened on is closed from now on.
    env.sim.shutdown().await;
    let report = doctor::run(&config).await;
    assert_eq!(report.checks.len(), 1, "{report}");
    assert_eq!(
        (report.checks[0].name, report.checks[0].ok),
        ("reachable", false)
    );
}

/// `doctor --all`'s answers to the open RouterOS questions match rds-sim's switch in each of its
/// positions, and its probe disks are gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_switch_position_is_reported_as_it_is() {
    let env = dev::start(None).await.unwrap();
    for switch in rds_sim::engine::quirks::SWITCHES {
        if !switch.over_ssh {
            // Its answer takes more than SSH: the report says where it comes from.
            let report = doctor::questions::probe(&env.config).await.unwrap();
            let line = format!("§13.{} {}: ", switch.item, switch.name);
            assert!(report.to_string().contains(&line), "{line}:\n{report}");
            continue;
        }
        for position in switch.positions {
            env.sim.sim.set_quirk(switch.name, position).unwrap();
            let report = doctor::questions::probe(&env.config).await.unwrap();
            assert!(report.ok(), "{}={position}:\n{report}", switch.name);
            let answer = report
                .answers
                .iter()
                .find(|a| a.switch == switch.name)
                .unwrap_or_else(|| panic!("no probe of {}:\n{report}", switch.name));
            assert_eq!(
                answer.position,
                Some(*position),
                "{}={position}:\n{report}",
                switch.name
            );
            assert!(
                report
                    .to_string()
                    .contains(&format!("--quirk {}={position}", switch.name)),
                "{report}"
            );
            let left: Vec<_> = env
                .sim
                .sim
                .state()
                .disks
                .into_iter()
                .filter(|d| d.slot.starts_with("probe-"))
                .collect();
            assert!(left.is_empty(), "probe disks left: {left:?}");
        }
    }
    env.sim.shutdown().await;
}
