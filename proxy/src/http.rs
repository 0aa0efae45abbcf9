//! The `/metrics` and `/health` endpoints on `--metrics-addr`.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::cluster::Cluster;
use crate::metrics::Metrics;

/// Serves `/metrics` and `/health` (healthy when a leader is known, as etcd's `/health` is
/// healthy when the member has one).
pub struct MetricsApp {
    pub metrics: Arc<Metrics>,
    pub cluster: Arc<Cluster>,
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let (status, ctype, body) = match path.as_str() {
            "/metrics" => (200, "text/plain; version=0.0.4", self.metrics.render()),
            "/health" => {
                let ok = self.cluster.leader().is_some();
                let body = if ok {
                    r#"{"health":"true"}"#.to_string()
                } else {
                    r#"{"health":"false","reason":"no leader known"}"#.to_string()
                };
                (if ok { 200 } else { 503 }, "application/json", body)
            }
            _ => (404, "text/plain", "404 page not found\n".to_string()),
        };
        Response::builder()
            .status(status)
            .header("content-type", ctype)
            .header("content-length", body.len())
            .body(body.into_bytes())
            .unwrap_or_default()
    }
}
