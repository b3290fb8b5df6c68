//! The short chaos run of `.ci/run`: three seeds of a few hundred steps each, through rds-csi's
//! CSI API under every rds-sim fault, hold every invariant; and a planted bug is caught, its seed
//! replays the same failure, and the shrunk schedule still fails the same way. As root, the first
//! node's volumes are staged and published through rds-csi's node plugin (loop devices); without
//! root that is skipped loudly, and under `CI=true` the runs fail instead. The long run is
//! `bash ci/chaos.sh`.

use rds_chaos::shrink::shrink;
use rds_chaos::{Faults, Plant, Stats};

const STEPS: usize = 300;

async fn holds(seed: u64) -> Stats {
    let (stats, result) = rds_chaos::run(seed, STEPS, &Faults::All, None, &mut |_| {}).await;
    if let Err(failure) = result {
        panic!(
            "{failure}\nthe RDS's last commands:\n  {}\nreplay: rds-chaos run --seed {seed} --steps {STEPS}",
            failure.context.join("\n  ")
        );
    }
    assert_eq!(stats.steps, STEPS);
    if let Some(why) = &stats.node_skipped {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "the node plugin's steps cannot run under CI: {why}"
        );
        eprintln!("SKIPPED the node plugin's steps (stage, publish, unpublish, unstage): {why}");
    } else {
        for op in ["node-stage", "node-write", "node-unstage"] {
            assert!(stats.ops.contains_key(op), "no {op} in {:?}", stats.ops);
        }
    }
    assert!(
        stats.faults.len() >= 8,
        "too few fault kinds: {:?}",
        stats.faults
    );
    for op in ["create", "snapshot", "publish", "write", "delete"] {
        assert!(stats.ops.contains_key(op), "no {op} in {:?}", stats.ops);
    }
    stats
}

// Multi-threaded: the node's NVMe/TCP host blocks a thread while the simulator's target answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_1_holds_every_invariant() {
    holds(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_2_holds_every_invariant() {
    holds(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_3_holds_every_invariant() {
    holds(3).await;
}

/// The planted bug: the node acknowledges a write whose NVMe/TCP connection had dropped (here, by
/// an RDS restart) instead of writing it again. Seed 9 reads the block back and finds it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_lost_write_is_caught_replayed_and_shrunk() {
    const SEED: u64 = 9;
    const PLANTED_STEPS: usize = 150;
    let plant = Some(Plant::AckLostWrite);
    let run = |faults| async move {
        rds_chaos::run(SEED, PLANTED_STEPS, &faults, plant, &mut |_| {})
            .await
            .1
    };
    let caught = run(Faults::All)
        .await
        .expect_err("the planted bug is caught");
    assert_eq!(caught.kind, "lost-write", "{caught}");
    let replayed = run(Faults::All).await.expect_err("the replay fails too");
    assert!(replayed.same_as(&caught), "{replayed} is not {caught}");

    let shrunk = shrink(SEED, PLANTED_STEPS, &caught, plant, 16).await;
    assert_eq!(shrunk.steps, caught.step.unwrap() + 1);
    assert!(
        !shrunk.faults.is_empty(),
        "a lost write needs a dropped connection"
    );
    let only = Faults::Only(shrunk.faults.iter().copied().collect());
    let again = rds_chaos::run(SEED, shrunk.steps, &only, plant, &mut |_| {})
        .await
        .1
        .expect_err("the shrunk schedule fails");
    assert!(again.same_as(&caught), "{again} is not {caught}");
    assert!(
        shrunk
            .command(SEED, plant)
            .contains("--plant ack-lost-write"),
        "{}",
        shrunk.command(SEED, plant)
    );

    // Without the plant the same schedule holds: the failure was the planted bug's.
    let (_, clean) = rds_chaos::run(SEED, PLANTED_STEPS, &Faults::All, None, &mut |_| {}).await;
    assert_eq!(clean, Ok(()));
}
