//! The control API: HTTP/JSON on loopback for tests, chaos jobs and the kind deployment. Each route
//! is a thin wrapper over the same [`Sim`] method that in-process tests call.
//!
//! - `GET  /state`             disks, files, pool, sessions
//! - `GET  /log?since=N`       parsed commands with sequence number ≥ N
//! - `POST /faults`            a [`Fault`] as JSON, e.g. `{"fault":"restart","downtime_ms":500}`
//! - `POST /config/copy-from`  `{"semantics":"data"|"settings"}`
//! - `POST /config/copy-rate`  `{"bytes_per_second":N}` (`null` or 0: unlimited), `/disk copy`'s pace
//! - `POST /config/quirk`      `{"name":"grow","position":"refused"}`: one open RouterOS question's
//!   answer (engine/quirks.rs); an unknown name or position is 400 with what is accepted

use crate::faults::Fault;
use crate::sim::{LogRecord, Sim, StateView};
use crate::store::CopySemantics;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

#[derive(Deserialize)]
struct CopyFrom {
    semantics: CopySemantics,
}

#[derive(Deserialize)]
struct Quirk {
    name: String,
    position: String,
}

#[derive(Deserialize)]
struct CopyRate {
    bytes_per_second: Option<u64>,
}

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/state", get(state))
        .route("/log", get(log))
        .route("/faults", post(fault))
        .route("/config/copy-from", post(copy_from))
        .route("/config/copy-rate", post(copy_rate))
        .route("/config/quirk", post(quirk))
        .with_state(sim)
}

async fn state(State(sim): State<Arc<Sim>>) -> Json<StateView> {
    Json(sim.state())
}

async fn log(State(sim): State<Arc<Sim>>, Query(q): Query<Since>) -> Json<Vec<LogRecord>> {
    Json(sim.log_since(q.since))
}

async fn fault(
    State(sim): State<Arc<Sim>>,
    Json(f): Json<Fault>,
) -> Result<StatusCode, (StatusCode, String)> {
    sim.inject(&f)
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))
}

async fn copy_from(State(sim): State<Arc<Sim>>, Json(c): Json<CopyFrom>) -> StatusCode {
    sim.set_copy_from(c.semantics);
    StatusCode::NO_CONTENT
}

async fn copy_rate(State(sim): State<Arc<Sim>>, Json(c): Json<CopyRate>) -> StatusCode {
    sim.set_copy_rate(c.bytes_per_second.filter(|r| *r > 0));
    StatusCode::NO_CONTENT
}

async fn quirk(
    State(sim): State<Arc<Sim>>,
    Json(q): Json<Quirk>,
) -> Result<StatusCode, (StatusCode, String)> {
    sim.set_quirk(&q.name, &q.position)
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
}

/// Serves the control API until `shutdown` is cancelled.
pub async fn serve(
    sim: Arc<Sim>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(sim))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
