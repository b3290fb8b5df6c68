//! Calls made the way the CSI sidecars make them: each with a short deadline (tonic's request
//! timeout, sent as `grpc-timeout`, after which the client cancels it), and retried with a
//! backoff while the answer is a code a sidecar retries or not yet what the caller waits for.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::{Code, Request, Status};

/// The deadline of every call: the sidecars' `--timeout` scaled down to a test.
pub const DEADLINE: Duration = Duration::from_secs(1);
/// How long a retry loop may take in all before the case fails.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// `message` with the sidecar's deadline.
pub fn with_deadline<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(DEADLINE);
    request
}

/// The codes after which a sidecar calls again: the call ran out of time or was cut off, an
/// operation is in the way, or the RDS did not answer.
pub fn is_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::DeadlineExceeded | Code::Cancelled | Code::Aborted | Code::Unavailable
    )
}

/// Calls `call` until `done` accepts its answer, as a sidecar does: retryable codes and answers
/// not yet done are retried after a backoff that doubles to 1 s; any other code fails the case,
/// as does still retrying after [`PATIENCE`]. Returns the answer and the attempts it took.
pub async fn until<T, F, Fut>(what: &str, mut call: F, done: impl Fn(&T) -> bool) -> (T, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let start = Instant::now();
    let mut backoff = Duration::from_millis(100);
    for attempt in 1.. {
        match call().await {
            Ok(answer) if done(&answer) => return (answer, attempt),
            Ok(_) => {}
            Err(status) if is_retryable(status.code()) => {}
            Err(status) => panic!("{what}: attempt {attempt} failed: {status:?}"),
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: not done after {attempt} attempts in {PATIENCE:?}"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    unreachable!()
}

/// [`until`] the call succeeds, with its answer.
pub async fn succeeds<T, F, Fut>(what: &str, call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    until(what, call, |_| true).await.0
}
