//! go-grpc-prometheus's server metrics for the client gRPC services, taken where requests
//! enter and answers leave: `grpc_server_started_total` when a call arrives,
//! `grpc_server_handled_total` with its grpc-status when it ends (a call the client dropped
//! counts as Canceled, as grpc-go's context ends it), the messages each way, and etcd's client
//! byte counters. Messages are counted from gRPC's length-prefixed framing of the bodies.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;

use crate::metrics::{GrpcMetrics, Method};

/// The middleware: counts a call to a client gRPC method, and wraps both bodies.
pub(super) async fn observe(
    State(metrics): State<Arc<GrpcMetrics>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(method) = metrics.method(req.uri().path()) else {
        return next.run(req).await;
    };
    let api_version = req
        .headers()
        .get("client-api-version")
        .and_then(|v| v.to_str().ok());
    metrics.started(&method, api_version);
    let call = Arc::new(Call {
        metrics,
        method,
        start: Instant::now(),
    });
    let req = req.map(|body| Body::new(Counted::new(body, call.clone(), Side::Received)));
    let resp = next.run(req).await;
    // A trailers-only answer (an error before any message) carries its status in the headers.
    if let Some(code) = grpc_status(resp.headers()) {
        call.handled(code);
        return resp.map(|body| Body::new(Counted::new(body, call, Side::SentEnded)));
    }
    resp.map(|body| Body::new(Counted::new(body, call, Side::Sent)))
}

fn grpc_status(headers: &http::HeaderMap) -> Option<usize> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// One call being observed.
struct Call {
    metrics: Arc<GrpcMetrics>,
    method: Arc<Method>,
    start: Instant,
}

impl Call {
    fn handled(&self, code: usize) {
        let seconds = self.start.elapsed().as_secs_f64();
        self.metrics.handled(&self.method, code, seconds);
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Side {
    Received,
    /// The answer; its trailers end the call.
    Sent,
    /// The answer of a call already counted as handled.
    SentEnded,
}

/// grpc-go's code for a call whose client went away.
const CANCELED: usize = 1;

/// A body whose gRPC messages and bytes are counted as they pass.
struct Counted {
    inner: Body,
    call: Arc<Call>,
    side: Side,
    /// The 5-byte message prefix read so far, and what remains of the message's payload.
    prefix: Vec<u8>,
    remaining: usize,
    ended: bool,
}

impl Counted {
    fn new(inner: Body, call: Arc<Call>, side: Side) -> Self {
        Counted {
            inner,
            call,
            ended: side == Side::SentEnded,
            side,
            prefix: Vec::with_capacity(5),
            remaining: 0,
        }
    }

    /// Counts the messages that end in `data` and its payload bytes.
    fn count(&mut self, mut data: &[u8]) {
        let (mut messages, mut bytes) = (0u64, 0u64);
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                bytes += n as u64;
                data = &data[n..];
                if self.remaining == 0 {
                    messages += 1;
                }
                continue;
            }
            let n = (5 - self.prefix.len()).min(data.len());
            self.prefix.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.prefix.len() == 5 {
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]);
                self.prefix.clear();
                self.remaining = len as usize;
                if len == 0 {
                    messages += 1;
                }
            }
        }
        if messages > 0 || bytes > 0 {
            let m = &self.call.metrics;
            match self.side {
                Side::Received => m.received(&self.call.method, messages, bytes),
                Side::Sent | Side::SentEnded => m.sent(&self.call.method, messages, bytes),
            }
        }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let data = data.clone();
                self.count(&data);
            } else if let Some(trailers) = frame.trailers_ref() {
                if self.side == Side::Sent && !self.ended {
                    self.ended = true;
                    let code = grpc_status(trailers).unwrap_or(2);
                    self.call.handled(code);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.side == Side::Sent && !self.ended {
            self.call.handled(CANCELED);
        }
    }
}
