//! The sanity suite (`rds_e2e::sanity`: csi-sanity and our own Controller and Node cases) on the
//! `sim` target with every rds-sim switch for an open RouterOS question in its other position at
//! once (docs/simulator.md, "Switches"), so that what the driver promises holds however the
//! appliance answers. `grow` stays `grows`: where growing is refused, expansion is refused by design
//! (FAILED_PRECONDITION naming the probe that tells), which driver/tests/controller/quirks.rs
//! checks with every other switch in each position. Any other combination runs with
//! `RDS_E2E_SIM_QUIRKS=NAME=POSITION,… cargo nextest run -p rds-e2e --test sanity`.

use rds_e2e::config::{SIM_QUIRKS_ENV, TARGET_ENV};
use rds_sim::engine::quirks::SWITCHES;

fn main() {
    let others: Vec<String> = SWITCHES
        .iter()
        .filter(|switch| switch.name != "grow")
        .map(|switch| format!("{}={}", switch.name, switch.positions[1]))
        .collect();
    // SAFETY: no other thread runs yet; every trial reads its settings from the environment.
    unsafe {
        std::env::set_var(TARGET_ENV, "sim");
        std::env::set_var(SIM_QUIRKS_ENV, others.join(","));
    }
    rds_e2e::suite::run(rds_e2e::sanity::trials(env!("CARGO_BIN_EXE_guest-path")))
}
