//! The proxy's own gRPC services, on a loopback port chosen at start.
//!
//! Calls the proxy answers itself (coalesced watches and lease keep-alives) are sent there by the data plane like
//! calls to a member, so TLS, `--namespace`, the certificate's name and the request metrics
//! apply to them unchanged.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use oxetcd_common::etcdserverpb::lease_server::LeaseServer;
use oxetcd_common::etcdserverpb::watch_server::WatchServer;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::error;

use crate::lease::{KeepAlives, LeaseService};
use crate::watch::{Registry, WatchService};

pub struct LocalServices {
    pub addr: SocketAddr,
    listener: Mutex<Option<std::net::TcpListener>>,
    watches: Option<Arc<Registry>>,
    keepalives: Option<Arc<KeepAlives>>,
}

impl LocalServices {
    /// Binds the loopback listener (so its address is known before the data plane starts).
    pub fn bind(
        watches: Option<Arc<Registry>>,
        keepalives: Option<Arc<KeepAlives>>,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        Ok(LocalServices {
            addr: listener.local_addr()?,
            listener: Mutex::new(Some(listener)),
            watches,
            keepalives,
        })
    }
}

#[async_trait]
impl BackgroundService for LocalServices {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                error!("local services: {e}");
                return;
            }
        };
        let serve = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_optional_service(
                self.watches
                    .clone()
                    .map(|w| WatchServer::new(WatchService::new(w))),
            )
            .add_optional_service(
                self.keepalives
                    .clone()
                    .map(|k| LeaseServer::new(LeaseService::new(k))),
            )
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                let _ = shutdown.changed().await;
            });
        if let Err(e) = serve.await {
            error!("local services: {e}");
        }
    }
}
