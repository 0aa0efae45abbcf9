//! go-grpc-prometheus's server metrics for the client gRPC services, taken where requests
//! enter and answers leave: `grpc_server_started_total` when a call arrives,
//! `grpc_server_handled_total` with its grpc-status when it ends (a call the client dropped
//! counts as Canceled, as grpc-go's context ends it), the messages each way, and etcd's client
//! byte counters. Messages are counted from gRPC's length-prefixed framing of the bodies.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use http_body::Frame;

use crate::metrics::{GrpcMetrics, Method};
use crate::server::EtcdServer;

/// The layer around the client gRPC services: `hasleader` refusals
/// (`super::require_leader`) and the metrics. One hand-written service, unboxed, since it
/// runs on every call (two `from_fn` middlewares cost each call two boxed futures and
/// service clones).
#[derive(Clone)]
pub(super) struct Observe {
    pub(super) server: Arc<EtcdServer>,
}

impl<S> tower::Layer<S> for Observe {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed {
            inner,
            server: self.server.clone(),
        }
    }
}

#[derive(Clone)]
pub(super) struct Observed<S> {
    inner: S,
    server: Arc<EtcdServer>,
}

impl<S> tower::Service<Request> for Observed<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObservedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if let Some(refusal) = super::require_leader::refusal(&self.server, req.headers()) {
            return ObservedFuture::Ready {
                response: Some(refusal),
            };
        }
        let metrics = &self.server.metrics.grpc;
        let Some(method) = metrics.method(req.uri().path()) else {
            return ObservedFuture::Passing {
                inner: self.inner.call(req),
            };
        };
        let api_version = req
            .headers()
            .get("client-api-version")
            .and_then(|v| v.to_str().ok());
        metrics.started(&method, api_version);
        let call = Arc::new(Call {
            metrics: metrics.clone(),
            method,
            start: Instant::now(),
        });
        let req = req.map(|body| Body::new(Counted::new(body, call.clone(), Side::Received)));
        ObservedFuture::Observing {
            inner: self.inner.call(req),
            call: Some(call),
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's answer: a refusal, a call not observed, or one whose answer is wrapped.
    #[project = Projected]
    pub(super) enum ObservedFuture<F> {
        Ready { response: Option<Response> },
        Passing { #[pin] inner: F },
        Observing { #[pin] inner: F, call: Option<Arc<Call>> },
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for ObservedFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::Ready { response } => Poll::Ready(Ok(response.take().unwrap_or_default())),
            Projected::Passing { inner } => inner.poll(cx),
            Projected::Observing { inner, call } => {
                let resp = ready!(inner.poll(cx))?;
                let Some(call) = call.take() else {
                    return Poll::Ready(Ok(resp));
                };
                // A trailers-only answer (an error before any message) carries its status in
                // the headers.
                if let Some(code) = grpc_status(resp.headers()) {
                    call.handled(code);
                    let resp = resp.map(|b| Body::new(Counted::new(b, call, Side::SentEnded)));
                    return Poll::Ready(Ok(resp));
                }
                Poll::Ready(Ok(
                    resp.map(|b| Body::new(Counted::new(b, call, Side::Sent)))
                ))
            }
        }
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<usize> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// One call being observed.
pub(super) struct Call {
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
