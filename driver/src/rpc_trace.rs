//! The edge every CSI RPC handler passes through: a span naming the RPC and the volume, and one
//! log line saying how the call ended, so controller and node logs read alike; and the RPC
//! metrics, counted here so that every RPC is counted once.

use std::future::Future;
use std::time::Instant;

use tonic::{Response, Status};
use tracing::Instrument;

/// Runs `handler` in a span naming the RPC and the volume, and logs how it ended. Requests are
/// never logged whole: they may carry secrets.
pub(crate) async fn traced<T>(
    rpc: &'static str,
    volume_id: &str,
    handler: impl Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    let span = tracing::info_span!("csi", rpc, volume_id);
    async {
        let started = Instant::now();
        let answer = handler.await;
        let code = answer
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        crate::metrics::rpc(rpc, code, started.elapsed());
        match answer {
            Ok(answer) => {
                tracing::info!("done");
                Ok(Response::new(answer))
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "failed");
                Err(status)
            }
        }
    }
    .instrument(span)
    .await
}
