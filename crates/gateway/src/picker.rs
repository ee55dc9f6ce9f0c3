//! Choosing an endpoint for each attempt of a request.
//!
//! A [`Picker`] sees the backend's live endpoints (with their in-flight counts)
//! and the endpoints this request already tried, and names one. Each backend has
//! its own picker, so a picker may keep state (a rotation, weights) per backend.
//! [`RoundRobin`] is the default, as in ingress-nginx; [`LeastRequest`] balances
//! on in-flight requests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::endpoints::Endpoint;

/// Chooses where the next attempt of a request goes.
pub trait Picker: Send + Sync + 'static {
    /// The index in `endpoints` of the endpoint to use, never one whose address
    /// is in `tried`; `None` when no endpoint is left.
    fn pick(&self, endpoints: &[Endpoint], tried: &[SocketAddr]) -> Option<usize>;
}

/// Each endpoint in turn.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Picker for RoundRobin {
    fn pick(&self, endpoints: &[Endpoint], tried: &[SocketAddr]) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|i| (start + i) % n).find(|&i| !tried.contains(&endpoints[i].addr()))
    }
}

/// The less loaded of two endpoints drawn at random ("power of two choices"),
/// by in-flight requests: close to the least loaded endpoint without herding
/// every request onto the same one.
#[derive(Debug, Default)]
pub struct LeastRequest;

impl Picker for LeastRequest {
    fn pick(&self, endpoints: &[Endpoint], tried: &[SocketAddr]) -> Option<usize> {
        let open: Vec<usize> = (0..endpoints.len()).filter(|&i| !tried.contains(&endpoints[i].addr())).collect();
        match open.len() {
            0 => None,
            1 => Some(open[0]),
            n => {
                let a = rand::random_range(0..n);
                let b = (a + rand::random_range(1..n)) % n;
                let (a, b) = (open[a], open[b]);
                Some(if endpoints[b].in_flight() < endpoints[a].in_flight() { b } else { a })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::EndpointSet;

    fn set(addrs: &[&str]) -> EndpointSet {
        let set = EndpointSet::default();
        set.replace(&addrs.iter().map(|a| a.parse().unwrap()).collect::<Vec<_>>());
        set
    }

    #[test]
    fn round_robin_takes_each_endpoint_in_turn() {
        let eps = set(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]).current();
        let rr = RoundRobin::default();
        let picks: Vec<usize> = (0..6).map(|_| rr.pick(&eps, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn a_retry_never_goes_back_to_an_endpoint_it_tried() {
        let eps = set(&["10.0.0.1:80", "10.0.0.2:80"]).current();
        let tried = [eps[0].addr()];
        for picker in [&RoundRobin::default() as &dyn Picker, &LeastRequest] {
            for _ in 0..10 {
                assert_eq!(picker.pick(&eps, &tried), Some(1));
            }
            assert_eq!(picker.pick(&eps, &[eps[0].addr(), eps[1].addr()]), None);
            assert_eq!(picker.pick(&[], &[]), None);
        }
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let eps = set(&["10.0.0.1:80", "10.0.0.2:80"]).current();
        let _busy = (eps[0].begin(), eps[0].begin());
        for _ in 0..20 {
            assert_eq!(LeastRequest.pick(&eps, &[]), Some(1));
        }
    }
}
