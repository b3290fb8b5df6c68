//! The controller's side of Kubernetes: watches of the API server and the reconcilers that act
//! on them (`kubernetes.enabled`). Every replica keeps the registry of fenced nodes current, so
//! that a publish to one is refused whichever replica serves it; the reconcilers that change
//! things run only in the replica that holds the Lease ([`leader`]).

mod events;
pub mod fencing;
pub mod health;
pub mod leader;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
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
    let instance = std::env::var("HOSTNAME").ok();
    let fencing = Fencing {
        events: Events::new(client.clone(), &driver, instance),
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
            let seen = stores.seen();
            controller
                .fences()
                .replace(fencing::fenced_nodes(&seen.nodes, &driver));
            if leadership.leading() {
                let plans = fencing::plan(&seen, &driver, jiff::Timestamp::now(), grace);
                // A replica that stops leading stops acting: the next leader plans afresh.
                let mut lost = leadership.clone();
                tokio::select! {
                    () = fencing.apply(&seen, plans) => {}
                    () = lost.lost() => tracing::warn!("lost the Lease; fencing pass stopped"),
                }
            }
            // A change wakes the next pass; the resync catches a grace running out; a new
            // leader acts at once.
            tokio::select! {
                _ = tokio::time::timeout(resync, changed.notified()) => {}
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
    let (store, writer) = reflector::store();
    let changed = changed.clone();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(error) = event {
                tracing::warn!(kind = %K::kind(&()), %error, "watch failed; retrying");
            }
            changed.notify_one();
        }
    });
    store
}
