//! The election against a fake Lease store that keeps `resourceVersion`s as the API server does
//! (a write with a stale one is a conflict), with time as the tests say it is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::*;

const TIMINGS: Timings = Timings {
    lease_duration: Duration::from_secs(15),
    renew_deadline: Duration::from_secs(10),
    retry_period: Duration::from_secs(2),
};

/// Something another writer does between a replica's read and its write.
type Interloper = Box<dyn FnOnce(&mut Lease) + Send>;

#[derive(Default)]
struct Store {
    lease: Option<Lease>,
    version: u64,
    interloper: Option<Interloper>,
}

/// The API server's Lease, shared by the replicas.
#[derive(Default, Clone)]
struct Fake(Arc<Mutex<Store>>);

impl Fake {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.0.lock().unwrap()
    }

    fn spec(&self) -> LeaseSpec {
        self.store()
            .lease
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default()
    }

    fn holder(&self) -> Option<String> {
        self.spec().holder_identity
    }

    /// A replica's connection to it, which the test can cut.
    fn replica(&self) -> Replica {
        Replica {
            fake: self.clone(),
            cut: Arc::default(),
        }
    }
}

#[derive(Clone)]
struct Replica {
    fake: Fake,
    cut: Arc<AtomicBool>,
}

impl Replica {
    fn reachable(&self) -> Result<(), LeaseError> {
        if self.cut.load(Ordering::SeqCst) {
            Err(LeaseError::Api("connection refused".into()))
        } else {
            Ok(())
        }
    }

    fn cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}

impl Leases for Replica {
    async fn get(&self) -> Result<Option<Lease>, LeaseError> {
        self.reachable()?;
        Ok(self.fake.store().lease.clone())
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.reachable()?;
        let mut store = self.fake.store();
        if store.lease.is_some() {
            return Err(LeaseError::Conflict);
        }
        store.version += 1;
        let mut lease = lease.clone();
        lease.metadata.resource_version = Some(store.version.to_string());
        store.lease = Some(lease.clone());
        Ok(lease)
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.reachable()?;
        let mut store = self.fake.store();
        if let Some(interloper) = store.interloper.take() {
            let stored = store.lease.as_mut().expect("a Lease to change");
            interloper(stored);
            store.version += 1;
            let version = store.version.to_string();
            store.lease.as_mut().unwrap().metadata.resource_version = Some(version);
        }
        let current = store
            .lease
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone());
        if current != lease.metadata.resource_version {
            return Err(LeaseError::Conflict);
        }
        store.version += 1;
        let mut lease = lease.clone();
        lease.metadata.resource_version = Some(store.version.to_string());
        store.lease = Some(lease.clone());
        Ok(lease)
    }
}

fn elector(name: &str) -> Elector {
    Elector::new(name.to_owned(), TIMINGS)
}

/// A Lease and replicas `a` and `b` competing for it.
fn two_replicas() -> (Fake, (Replica, Elector), (Replica, Elector)) {
    let fake = Fake::default();
    let (a, b) = (
        (fake.replica(), elector("a")),
        (fake.replica(), elector("b")),
    );
    (fake, a, b)
}

/// Replica `c` takes the Lease between the next read and write of it.
fn taken_by_c_meanwhile(fake: &Fake) {
    fake.store().interloper = Some(Box::new(|lease| {
        lease.spec.as_mut().unwrap().holder_identity = Some("c".into());
    }));
}

fn wall() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn secs(n: f64) -> Duration {
    Duration::from_secs_f64(n)
}

#[tokio::test]
async fn a_free_lease_is_taken_and_a_held_one_waits_for_the_lease_duration_unchanged() {
    let (fake, (a, mut first), (b, mut second)) = two_replicas();
    let t0 = Instant::now();

    assert!(first.attempt(&a, t0, wall()).await.unwrap());
    assert_eq!(fake.holder().as_deref(), Some("a"));
    assert_eq!(fake.spec().lease_transitions, Some(0));
    assert_eq!(fake.spec().lease_duration_seconds, Some(15));
    assert!(!second.attempt(&b, t0, wall()).await.unwrap());

    // Renewals keep it: the second replica's wait starts again at each version it sees.
    assert!(first.attempt(&a, t0 + secs(2.0), wall()).await.unwrap());
    assert!(!second.attempt(&b, t0 + secs(16.0), wall()).await.unwrap());
    assert!(!second.attempt(&b, t0 + secs(30.9), wall()).await.unwrap());
    assert!(second.attempt(&b, t0 + secs(31.0), wall()).await.unwrap());
    let spec = fake.spec();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert!(spec.acquire_time.is_some());

    // The old holder, back, finds it taken and does not lead.
    assert!(!first.attempt(&a, t0 + secs(31.5), wall()).await.unwrap());
    assert!(!first.leading(t0 + secs(31.5)));
}

#[tokio::test]
async fn a_leader_that_cannot_renew_stops_before_anyone_can_take_over() {
    let (fake, (a, mut first), (b, mut second)) = two_replicas();
    let t0 = Instant::now();
    let mut taken_over = None;
    // Every 100 ms for a minute: the first tries every 2 s from 0, the second every 2 s from
    // 0.7 s; the first loses the API server at 5 s.
    for tick in 0..600u32 {
        let now = t0 + Duration::from_millis(u64::from(tick) * 100);
        if tick == 50 {
            a.cut(true);
        }
        if tick % 20 == 0 {
            let _ = first.attempt(&a, now, wall()).await;
        }
        if tick % 20 == 7 && second.attempt(&b, now, wall()).await.unwrap() {
            taken_over.get_or_insert(now);
        }
        assert!(
            !(first.leading(now) && second.leading(now)),
            "both lead at {:?}",
            now - t0
        );
    }
    // The first's last renewal started at 4 s: it leads until 14 s. The second saw that
    // version at 4.7 s and takes over at its first try after 19.7 s.
    assert!(first.leading(t0 + secs(13.9)));
    assert!(!first.leading(t0 + secs(14.0)));
    assert_eq!(taken_over, Some(t0 + secs(20.7)));
    assert_eq!(fake.holder().as_deref(), Some("b"));
    assert_eq!(fake.spec().lease_transitions, Some(1));
}

#[tokio::test]
async fn of_two_replicas_racing_for_the_lease_only_one_wins() {
    let (fake, (a, mut first), (b, mut second)) = two_replicas();
    let t0 = Instant::now();
    assert!(first.attempt(&a, t0, wall()).await.unwrap());
    assert!(!second.attempt(&b, t0, wall()).await.unwrap());
    // The lease has expired for the second; between its read and its write a third replica
    // takes it: the write carries the version read, and is refused.
    taken_by_c_meanwhile(&fake);
    assert!(!second.attempt(&b, t0 + secs(15.0), wall()).await.unwrap());
    assert!(!second.leading(t0 + secs(15.0)));
    assert_eq!(fake.holder().as_deref(), Some("c"));

    // Likewise a leader whose renewal conflicts stops leading at once.
    let fake = Fake::default();
    let a = fake.replica();
    let mut first = elector("a");
    assert!(first.attempt(&a, t0, wall()).await.unwrap());
    taken_by_c_meanwhile(&fake);
    assert!(!first.attempt(&a, t0 + secs(2.0), wall()).await.unwrap());
    assert!(!first.leading(t0 + secs(2.0)));
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let (fake, (a, mut first), (b, mut second)) = two_replicas();
    let t0 = Instant::now();
    assert!(first.attempt(&a, t0, wall()).await.unwrap());
    assert!(!second.attempt(&b, t0 + secs(1.0), wall()).await.unwrap());
    first.release(&a, wall()).await.unwrap();
    assert!(!first.leading(t0 + secs(1.0)));
    assert_eq!(fake.holder(), None);
    assert!(second.attempt(&b, t0 + secs(1.5), wall()).await.unwrap());
    assert_eq!(fake.spec().lease_transitions, Some(1));
    // Releasing a Lease this replica does not hold changes nothing.
    first.release(&a, wall()).await.unwrap();
    assert_eq!(fake.holder().as_deref(), Some("b"));
}

#[test]
fn the_lease_name_and_identities() {
    assert_eq!(
        lease_name("rds.csi.mikrotik.com"),
        "rds-csi-mikrotik-com-controller"
    );
    assert_eq!(lease_name("My_Driver.io"), "my-driver-io-controller");
    assert_ne!(identity(), identity());
}

/// Waits until `leadership` is `leading`, for at most `within`.
async fn until(leadership: &mut Leadership, leading: bool, within: Duration) -> bool {
    tokio::time::timeout(within, leadership.0.wait_for(|l| *l == leading))
        .await
        .is_ok()
}

#[tokio::test]
async fn the_election_publishes_leadership_and_releases_on_resign() {
    let short = Timings {
        lease_duration: Duration::from_millis(1500),
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(50),
    };
    let fake = Fake::default();
    let a = fake.replica();
    let (election, mut leading) =
        Election::start(a.clone(), Elector::new("a".into(), short), short);
    assert!(until(&mut leading, true, secs(10.0)).await);
    let (other, mut standby) =
        Election::start(fake.replica(), Elector::new("b".into(), short), short);

    // Cut off from the API server, the leader stops leading by itself at its renew deadline,
    // before the other replica takes over.
    a.cut(true);
    assert!(until(&mut standby, true, secs(10.0)).await);
    assert!(!leading.leading());
    assert_eq!(fake.holder().as_deref(), Some("b"));
    election.resign().await;

    // Resigning gives the Lease up.
    other.resign().await;
    assert!(!standby.leading());
    assert_eq!(fake.holder(), None);
}
