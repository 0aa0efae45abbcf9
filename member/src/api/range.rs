//! `etcdserverpb.KV/Range` over gRPC, answered with its key-values as they are stored.
//!
//! The generated `KvServer` answers a `RangeResponse` message, which holds every key-value
//! decoded, and tonic encodes it into one buffer beside them. This service takes the Range
//! path before it: the answer is an `EncodedRange`, the stored rows framed as the response's
//! `kvs` in parts of about a megabyte (see `mvcc/encoded.rs`), and the parts go out as the
//! HTTP/2 body as they are, each freed once sent. Past its first megabytes, a large answer is
//! only measured under the state lock and read again part by part as the client takes it, so
//! one Range holds a few megabytes, whatever its size. Every other KV method, and the
//! gateway's Range, go to the generated server as before.
//!
//! The request is decoded by tonic's own `Streaming`, with the generated server's receive
//! limit; the answer is framed as tonic frames a unary one (`content-type`, the 5-byte
//! message prefix, `grpc-status: 0` in the trailers).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http_body::Frame;
use oxetcd_common::codec::ProtoCodec;
use oxetcd_common::etcdserverpb::kv_server::KvServer;
use oxetcd_common::etcdserverpb::{RangeRequest, RangeResponse};
use prost::bytes::Bytes;
use tonic::codec::{Codec, Streaming};
use tonic::codegen::{BoxFuture, Service, StdError};
use tonic::server::NamedService;
use tonic::Status;

use super::kv::KvService;
use crate::mvcc::Remainder;

const RANGE_PATH: &str = "/etcdserverpb.KV/Range";

/// grpc-go's send limit in etcd (`grpc.MaxSendMsgSize(math.MaxInt32)`).
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// The KV service: Range here, the rest in the generated server.
#[derive(Clone)]
pub(super) struct KvRoutes {
    generated: KvServer<KvService>,
    service: Arc<KvService>,
    /// The receive limit, as the generated server has it.
    max_request: usize,
}

impl KvRoutes {
    pub(super) fn new(service: Arc<KvService>, max_request: usize) -> Self {
        let generated = KvServer::from_arc(service.clone())
            .max_decoding_message_size(max_request)
            .max_encoding_message_size(usize::MAX);
        Self {
            generated,
            service,
            max_request,
        }
    }
}

impl NamedService for KvRoutes {
    const NAME: &'static str = <KvServer<KvService> as NamedService>::NAME;
}

impl<B> Service<http::Request<B>> for KvRoutes
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != RANGE_PATH {
            return self.generated.call(req);
        }
        let service = self.service.clone();
        let max = self.max_request;
        Box::pin(async move {
            Ok(match range(&service, req, max).await {
                Ok(answer) => answer,
                Err(status) => status.into_http(),
            })
        })
    }
}

async fn range<B>(
    service: &KvService,
    req: http::Request<B>,
    max_request: usize,
) -> Result<http::Response<tonic::body::Body>, Status>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    // The generated server accepts no compression; tonic's answer to a compressed request.
    if let Some(encoding) = req.headers().get("grpc-encoding") {
        if encoding != "identity" {
            return Err(Status::unimplemented(format!(
                "Content is compressed with `{}` which isn't supported",
                encoding.to_str().unwrap_or("?")
            )));
        }
    }
    let (parts, body) = req.into_parts();
    let decoder = ProtoCodec::<RangeResponse, RangeRequest>::default().decoder();
    let mut messages = Streaming::new_request(decoder, body, None, Some(max_request));
    let message = messages
        .message()
        .await?
        .ok_or_else(|| Status::internal("Missing request message."))?;
    let request = tonic::Request::from_http(http::Request::from_parts(parts, message));

    let answer = service.range_encoded(request).await?;
    let len = answer.encoded_len();
    if len > MAX_RESPONSE_BYTES {
        return Err(Status::resource_exhausted(format!(
            "grpc: trying to send message larger than max ({len} vs. {MAX_RESPONSE_BYTES})"
        )));
    }
    // gRPC's message prefix: not compressed, then the length.
    let mut prefix = [0u8; 5];
    prefix[1..].copy_from_slice(&(len as u32).to_be_bytes());
    let (built, rest) = answer.into_parts(&prefix);
    let body = Parts {
        built: built.into_iter(),
        rest,
        done: false,
    };
    let mut response = http::Response::new(tonic::body::Body::new(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    Ok(response)
}

/// An answer's body: the parts built, then those read as they are sent, then the trailers
/// (`grpc-status: 0`, or the error that ended the reading).
struct Parts {
    built: std::vec::IntoIter<Bytes>,
    rest: Option<Remainder>,
    done: bool,
}

impl http_body::Body for Parts {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if let Some(data) = this.built.next() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        // hyper asks for the next part only while the stream has send capacity, so a slow
        // client holds the reading back: a part or two of the rest is in memory at a time.
        let status = match this.rest.as_mut().and_then(Remainder::next_part) {
            Some(Ok(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
            Some(Err(e)) => Status::from(e),
            None => Status::ok(""),
        };
        this.done = true;
        this.rest = None;
        let mut trailers = HeaderMap::new();
        if let Err(e) = status.add_header(&mut trailers) {
            return Poll::Ready(Some(Err(e)));
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.built.len() == 0
    }
}
