//! Assertions on the outcomes exporters classify answers into.

use std::time::Duration;

use tracecast_exporters::Outcome;

/// Asserts that `outcome` is a retry for HTTP `status` after `after_secs` seconds
/// (the platform's `Retry-After`).
pub fn assert_retry(outcome: Outcome, status: u16, after_secs: u64) {
    match outcome {
        Outcome::Retry {
            status: got,
            retry_after,
            ..
        } => {
            assert_eq!(got, Some(status));
            assert_eq!(retry_after, Some(Duration::from_secs(after_secs)));
        }
        other => panic!("{status}: {other:?}"),
    }
}
