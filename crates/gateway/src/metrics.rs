//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Labels are bounded: verbs, resources and codes come from a finite set; user names, paths and
//! anything that could carry a secret never become labels.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub cluster: String,
    pub verb: String,
    pub resource: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub cluster: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SideLabels {
    pub side: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TunnelLabels {
    pub kind: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<VerbLabels, Histogram>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub errors: Family<SideLabels, Counter>,
    pub open_watches: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub open_tunnels: Family<TunnelLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    pub auth_failures: Counter<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("airlock");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests handled, by cluster, verb, resource and response code",
            requests.clone(),
        );
        let duration = Family::<VerbLabels, Histogram>::new_with_constructor(|| {
            // 100 µs .. ~13 s: the gateway's own overhead sits at the bottom.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0001, 2.0, 18,
            ))
        });
        registry.register(
            "request_duration_seconds",
            "Time to response headers, by verb",
            duration.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Requests that failed to reach a cluster (502, 503, 504)",
            upstream_errors.clone(),
        );
        let errors = Family::<SideLabels, Counter>::default();
        registry.register(
            "errors",
            "Requests answered by Airlock itself with an error, by side",
            errors.clone(),
        );
        let open_watches = Gauge::default();
        registry.register(
            "open_watches",
            "Watches streaming now",
            open_watches.clone(),
        );
        let open_tunnels = Family::default();
        registry.register(
            "open_tunnels",
            "Upgraded connections (exec, attach, port-forward) open now",
            open_tunnels.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "authentication_failures",
            "Requests refused because the token was missing or invalid",
            auth_failures.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            upstream_errors,
            errors,
            open_watches,
            open_tunnels,
            auth_failures,
        }
    }

    /// The registry for other parts (later: policy reloads, audit) to add their metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
