//! Seeded chaos runs against an in-process rds-sim: the invariants hold for every seed, a seed
//! replays the same schedule, and the checker does catch lost data.

use rds_chaos::{Runner, Step, schedule};
use rds_sim::engine::EngineConfig;
use rds_sim::sim::{Sim, SimConfig};
use rds_sim::store::Pool;

fn sim(dir: &std::path::Path, seed: u64) -> Sim {
    Sim::open(SimConfig {
        data_dir: dir.to_path_buf(),
        pool: Pool {
            name: "storage-pool".into(),
            size: 1 << 30,
        },
        engine: EngineConfig::default(),
        seed,
    })
    .unwrap()
}

#[test]
fn a_seed_replays_the_same_schedule() {
    assert_eq!(schedule(42, 200), schedule(42, 200));
    assert_ne!(schedule(42, 200), schedule(43, 200));
    let s = schedule(42, 200);
    assert!(
        s.iter().any(|x| matches!(x, Step::Inject(_))),
        "faults are drawn"
    );
    assert!(s.iter().any(|x| matches!(x, Step::Create(_))));
}

#[tokio::test]
async fn invariants_hold_under_crashes_and_restarts() {
    for seed in 1..=8 {
        let dir = tempfile::tempdir().unwrap();
        let sim = sim(dir.path(), seed);
        let steps = schedule(seed, 80);
        Runner::new(&sim)
            .run_schedule(seed, &steps)
            .await
            .unwrap_or_else(|v| panic!("{v} (replay with this seed)"));
    }
}

#[tokio::test]
async fn the_checker_catches_lost_data_and_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path(), 1);
    let mut runner = Runner::new(&sim);
    runner.create(1).await.unwrap();
    runner.check_data().unwrap();

    let disk = sim.disks().into_iter().next().unwrap();
    let path = sim.backing_path(&disk);
    std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
    let err = runner.check_data().unwrap_err();
    assert!(err.contains("lost its data"), "{err}");

    let (id, _) = sim.open_session("admin", "127.0.0.1:2".parse().unwrap());
    let line =
        r#"/disk add type=file file-path="storage-pool/chaos/x.img" file-size=1M slot="stranger""#;
    sim.exec(id, line).await;
    runner.delete(1).await.unwrap();
    let err = runner.check_data().unwrap_err();
    assert!(err.contains("stranger"), "{err}");
}
