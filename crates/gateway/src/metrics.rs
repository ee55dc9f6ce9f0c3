//! Request counts: by status class, and the retries that hid a failed endpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::StatusCode;

/// The first digit of a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    Informational,
    Success,
    Redirection,
    ClientError,
    ServerError,
}

impl StatusClass {
    pub const ALL: [StatusClass; 5] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
    ];

    pub fn of(status: StatusCode) -> StatusClass {
        match status.as_u16() {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }

    /// The conventional label: `1xx` … `5xx`.
    pub fn label(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The gateway's counters; cheap to clone, all clones count together.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    by_class: [AtomicU64; 5],
    retries: AtomicU64,
}

impl Metrics {
    /// Responses sent with a status of this class.
    pub fn requests(&self, class: StatusClass) -> u64 {
        self.inner.by_class[class.index()].load(Ordering::Relaxed)
    }

    /// Responses sent, of every class.
    pub fn total(&self) -> u64 {
        StatusClass::ALL.iter().map(|&c| self.requests(c)).sum()
    }

    /// Attempts sent to a second endpoint after the first failed.
    pub fn retries(&self) -> u64 {
        self.inner.retries.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, status: StatusCode) {
        self.inner.by_class[StatusClass::of(status).index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retried(&self) {
        self.inner.retries.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_counted_by_the_first_digit_of_their_status() {
        let m = Metrics::default();
        for s in [200, 204, 308, 404, 503, 101] {
            m.clone().record(StatusCode::from_u16(s).unwrap());
        }
        assert_eq!(m.requests(StatusClass::Success), 2);
        assert_eq!(m.requests(StatusClass::Redirection), 1);
        assert_eq!(m.requests(StatusClass::ClientError), 1);
        assert_eq!(m.requests(StatusClass::ServerError), 1);
        assert_eq!(m.requests(StatusClass::Informational), 1);
        assert_eq!(m.total(), 6);
        assert_eq!(StatusClass::ServerError.label(), "5xx");
    }
}
