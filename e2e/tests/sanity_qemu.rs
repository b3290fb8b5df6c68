//! The sanity suite's Node Service cases, and csi-sanity's Node Service specs, on the `qemu`
//! target whatever `RDS_E2E_TARGET` says: `rds-csi node` in a QEMU guest attaching with the real
//! kernel NVMe/TCP initiator, rds-sim and the controller on the host, each case driving the node's
//! gRPC from the host. Each case boots its own guest. Outside CI, a machine that cannot run QEMU
//! skips every case, saying why.

use rds_e2e::config::{Settings, TargetKind};
use rds_e2e::csi_sanity;

fn on_qemu(settings: &mut Settings) {
    settings.target = TargetKind::Qemu;
}

fn main() {
    let mut trials = rds_e2e::sanity::node_trials(on_qemu);
    trials.push(csi_sanity::trial(
        csi_sanity::NODE_TRIAL,
        csi_sanity::NODE_SPECS,
        on_qemu,
        env!("CARGO_BIN_EXE_guest-path"),
    ));
    rds_e2e::suite::run(trials)
}
