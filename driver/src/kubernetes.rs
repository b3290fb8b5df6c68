//! The controller's side of Kubernetes: watches of the API server and the reconcilers that act
//! on them (`kubernetes.enabled`). Every replica keeps the registry of fenced nodes current, so
//! that a publish to one is refused whichever replica serves it; the reconcilers that change
//! things run only in the replica that holds the Lease ([`leader`]).

mod events;
pub mod fencing;
pub mod health;
pub mod leader;
pub mod migration;
mod notices;

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{StorageClass, VolumeAttachment};
use kube::api::DynamicObject;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_stream::StreamExt;

pub use events::Events;

use crate::config::KubernetesConfig;
use crate::controller::ControllerService;
use fencing::{Fencing, Seen};
use leader::{ApiLeases, Election, Elector, Timings};

/// How long the first listing of every watched kind may take before the controller says so.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// The watched objects.
struct Stores {
    nodes: Store<Node>,
    attachments: Store<VolumeAttachment>,
    pods: Store<Pod>,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
}

impl Stores {
    fn seen(&self) -> Seen {
        Seen {
            nodes: self.nodes.state(),
            attachments: self.attachments.state(),
            pods: self.pods.state(),
            claims: self.claims.state(),
            volumes: self.volumes.state(),
        }
    }
}

/// The watched KubeVirt objects and StorageClasses (migration.rs).
struct KubeVirtStores {
    instances: Store<DynamicObject>,
    migrations: Store<DynamicObject>,
    classes: Store<StorageClass>,
}

impl KubeVirtStores {
    fn seen(&self) -> migration::Seen {
        migration::Seen {
            instances: self.instances.state(),
            migrations: self.migrations.state(),
            classes: self.classes.state(),
        }
    }
}

/// Runs the watches and reconcilers until `shutdown` completes, then gives up the Lease if this
/// replica holds it. `config.enabled` is the caller's to check.
pub async fn run(
    config: KubernetesConfig,
    driver: String,
    controller: Arc<ControllerService>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let client = Client::try_default().await.context(
        "kubernetes.enabled is set but no Kubernetes client can be set up (no KUBECONFIG, and \
         not running in a pod?)",
    )?;
    let changed = Arc::new(Notify::new());
    let stores = Stores {
        nodes: reflect(Api::all(client.clone()), &changed),
        attachments: reflect(Api::all(client.clone()), &changed),
        pods: reflect(Api::all(client.clone()), &changed),
        claims: reflect(Api::all(client.clone()), &changed),
        volumes: reflect(Api::all(client.clone()), &changed),
    };
    let ready = async {
        stores.nodes.wait_until_ready().await?;
        stores.attachments.wait_until_ready().await?;
        stores.pods.wait_until_ready().await?;
        stores.claims.wait_until_ready().await?;
        stores.volumes.wait_until_ready().await
    };
    let listed = tokio::select! {
        listed = tokio::time::timeout(LIST_TIMEOUT, ready) => listed,
        () = &mut shutdown => return Ok(()),
    };
    listed
        .context(
            "the first listing of Nodes, VolumeAttachments, Pods, claims and PVs did not finish \
             in a minute: check the controller's RBAC (the chart's <release>-driver ClusterRole)",
        )?
        .context("a watch ended")?;
    // Not waited for: without KubeVirt its kinds are not served, and nothing migrates.
    let (instances, migrations) = (
        migration::instance_resource(),
        migration::migration_resource(),
    );
    let kubevirt = KubeVirtStores {
        instances: reflect_with(
            Api::all_with(client.clone(), &instances),
            instances,
            &changed,
        ),
        migrations: reflect_with(
            Api::all_with(client.clone(), &migrations),
            migrations,
            &changed,
        ),
        classes: reflect(Api::all(client.clone()), &changed),
    };
    let instance = std::env::var("HOSTNAME").ok();
    let events = Arc::new(Events::new(client.clone(), &driver, instance));
    if let Some(received) = controller.notices().subscribe() {
        tokio::spawn(notices::record(
            received,
            stores.claims.clone(),
            stores.volumes.clone(),
            events.clone(),
        ));
    }
    let migrating = migration::Migrating::new(controller.clone(), events.clone());
    let orphans = crate::orphans::Reconciler::new(
        client.clone(),
        &driver,
        controller.clone(),
        events.clone(),
        &config,
    );
    let fencing = Fencing {
        events,
        client: client.clone(),
        driver: driver.clone(),
        controller: controller.clone(),
    };
    let grace = Duration::from_secs(config.lost_node_grace_seconds);
    let resync = Duration::from_secs(config.resync_seconds);
    let timings = Timings {
        lease_duration: Duration::from_secs(config.lease_duration_seconds),
        renew_deadline: Duration::from_secs(config.renew_deadline_seconds),
        retry_period: Duration::from_secs(config.retry_period_seconds),
    };
    let lease = leader::lease_name(&driver);
    let identity = leader::identity();
    tracing::info!(
        driver,
        lease,
        identity,
        "watching the API server for lost nodes"
    );
    let (election, leadership) = Election::start(
        ApiLeases::new(client, &config.namespace, lease),
        Elector::new(identity, timings),
        timings,
    );
    let reconcile = async {
        let mut changes = leadership.clone();
        loop {
            // Every replica keeps the registries that publishing consults.
            let seen = stores.seen();
            let fenced = fencing::fenced_nodes(&seen.nodes, &driver);
            crate::metrics::fenced_nodes(fenced.len());
            controller.fences().replace(fenced);
            crate::metrics::attachments(fencing::attached(&seen, &driver));
            let now = jiff::Timestamp::now();
            let tracked = migration::track(&kubevirt.seen(), &seen, &driver, now);
            let windows = migration::windows(&tracked);
            crate::metrics::migrations(windows.len());
            controller.migrations().replace(windows);
            if leadership.leading() {
                let plans = fencing::plan(&seen, &driver, now, grace);
                // A replica that stops leading stops acting: the next leader plans afresh.
                let mut lost = leadership.clone();
                let pass = async {
                    fencing.apply(&seen, plans).await;
                    migrating.apply(&tracked).await;
                    orphans.pass_when_due().await;
                };
                tokio::select! {
                    () = pass => {}
                    () = lost.lost() => tracing::warn!("lost the Lease; reconciler pass stopped"),
                }
            }
            // A change wakes the next pass; the resync catches a grace running out, and a
            // migration window is seen expire when it does; a new leader acts at once.
            let wait = migration::next_expiry(&tracked).map_or(resync, |next| next.min(resync));
            tokio::select! {
                _ = tokio::time::timeout(wait, changed.notified()) => {}
                () = changes.changed() => {}
            }
        }
    };
    tokio::select! {
        () = reconcile => {}
        () = &mut shutdown => {}
    }
    election.resign().await;
    Ok(())
}

/// A store of `api`'s objects, kept by a watch that retries with backoff; `changed` is told of
/// every event.
fn reflect<K>(api: Api<K>, changed: &Arc<Notify>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    reflect_with(api, (), changed)
}

/// [`reflect`] for a kind known at run time (`kind`). A kind the API server does not serve (a
/// CRD not installed) is retried quietly.
fn reflect_with<K>(api: Api<K>, kind: K::DynamicType, changed: &Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash + Send + Sync,
{
    let writer = reflector::store::Writer::new(kind.clone());
    let store = writer.as_reader();
    let changed = changed.clone();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Err(watcher::Error::InitialListFailed(kube::Error::Api(e))) if e.code == 404 => {
                    tracing::debug!(kind = %K::kind(&kind), "not served; retrying");
                }
                Err(error) => {
                    tracing::warn!(kind = %K::kind(&kind), %error, "watch failed; retrying");
                }
                Ok(_) => {}
            }
            changed.notify_one();
        }
    });
    store
}
