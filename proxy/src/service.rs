//! The data plane: pingora's HTTP/2 proxy with etcd's routing.
//!
//! Each gRPC call is one HTTP/2 stream. `request_filter` picks the route (reading the first
//! message of a Range to see `serializable`; pingora keeps what was read in its retry buffer and
//! sends it upstream), `upstream_peer` picks the member. A Range the read cache can answer
//! (a serializable one at once, a linearizable one after a read barrier) is answered there and
//! goes no further; one it cannot is stored from the member's answer on its way back
//! (`crate::cache`). Answers of writes tell the proxy how far the
//! member got, and each client's last write (`crate::sessions`). If the member cannot be reached the
//! request never left the proxy, so it is sent again after the cluster view is refreshed; a
//! leader-bound request then waits (up to `--leader-wait-timeout`) for the new leader. A request
//! that may have reached a member is only sent again if it is read-only.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use oxetcd_common::etcdserverpb::RangeRequest;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::ALPN;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use prost::Message;
use tracing::{debug, warn};

use crate::cache::{keys, Interval, ReadCache, Ticket};
use crate::cluster::{Cluster, Upstream};
use crate::grpc::{grpc_frame_len, grpc_message, leading_header};
use crate::metrics::Metrics;
use crate::namespace::{Frames, Namespace};
use crate::route::{
    is_dedup_write, is_kv_write, is_range, is_read_only, is_write, method_name, range_request,
    route_of, Coalesce, Route,
};
use crate::sessions::Sessions;
use crate::tls::UpstreamTls;

/// gRPC's UNAVAILABLE: clients treat it as "try again", as they do for etcd's own errors
/// during leader elections.
const GRPC_UNAVAILABLE: &str = "14";
/// gRPC's INVALID_ARGUMENT, for a request the namespace cannot rewrite.
const GRPC_INVALID_ARGUMENT: &str = "3";
/// The error type of a message `--namespace` cannot rewrite: never sent again.
const NAMESPACE_ERROR: ErrorType = ErrorType::Custom("namespace");
/// A write's request is read (for the keys it changes) up to this size; past it, the read
/// cache forgets everything when it passes.
const WRITE_READ_MAX: usize = 1 << 20;
/// An answer's header is looked for in its first bytes.
const HEAD_MAX: usize = 64;

pub struct EtcdProxy {
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    leader_wait: Duration,
    namespace: Option<Namespace>,
    /// TLS towards members, if `--cacert` is set.
    upstream_tls: Option<Arc<UpstreamTls>>,
    /// The proxy's own services, if they run, and what they answer.
    local: Option<SocketAddr>,
    coalesce: Coalesce,
    cache: Option<Arc<ReadCache>>,
    sessions: Sessions,
    /// Makes request IDs unique across proxies and restarts: pid and start time.
    id_prefix: String,
    next_id: AtomicU64,
}

impl EtcdProxy {
    pub fn new(
        cluster: Arc<Cluster>,
        metrics: Arc<Metrics>,
        leader_wait: Duration,
        namespace: Option<Namespace>,
        upstream_tls: Option<Arc<UpstreamTls>>,
        local: Option<(SocketAddr, Coalesce)>,
        cache: Option<Arc<ReadCache>>,
    ) -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        EtcdProxy {
            cluster,
            metrics,
            leader_wait,
            namespace,
            upstream_tls,
            local: local.map(|(a, _)| a),
            coalesce: local.map(|(_, c)| c).unwrap_or_default(),
            cache,
            sessions: Sessions::default(),
            id_prefix: format!("{:x}-{:x}", std::process::id(), started),
            next_id: AtomicU64::new(0),
        }
    }
}

pub struct Ctx {
    path: String,
    route: Route,
    upstream: Option<Upstream>,
    started: Instant,
    grpc_code: Option<String>,
    /// Set on writes: sent as `oxetcd-request-id` on every attempt.
    request_id: Option<String>,
    /// With `--namespace`, on methods that carry keys: the messages of this attempt's request
    /// and response being reassembled for rewriting.
    rewrite: Option<(Frames, Frames)>,
    /// The client's connection: its last write is remembered by it.
    client: Option<SocketAddr>,
    /// A serializable read goes to a member known to have applied this (the client's last
    /// write).
    min_revision: i64,
    /// Answered from the read cache.
    cached: bool,
    /// A miss the read cache stores once the member's answer is complete.
    fill: Option<Fill>,
    /// The first bytes of this attempt's answer, until its header is read.
    head: Option<Capture>,
    /// A KV write's request, for the keys it changes.
    written: Option<Capture>,
}

/// A read-cache miss on its way to a member.
struct Fill {
    ticket: Ticket,
    /// The Range's protobuf bytes: the cache's key.
    request: Bytes,
    keys: Interval,
    answer: Capture,
}

/// Bytes of a body kept up to a size.
struct Capture {
    buf: BytesMut,
    max: usize,
    /// Nothing was cut.
    whole: bool,
}

impl Capture {
    fn new(max: usize) -> Self {
        Capture {
            buf: BytesMut::new(),
            max,
            whole: true,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let room = self.max.saturating_sub(self.buf.len());
        if chunk.len() > room {
            self.whole = false;
        }
        self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    /// The one whole gRPC message kept, if that is all the body was.
    fn message(&self) -> Option<&[u8]> {
        let msg = grpc_message(&self.buf).filter(|_| self.whole)?;
        (self.buf.len() == 5 + msg.len()).then_some(msg)
    }
}

impl EtcdProxy {
    fn pick(&self, route: Route) -> Option<Upstream> {
        match route {
            Route::Leader => self.cluster.leader(),
            Route::AnyMember | Route::Spread | Route::Local => self.cluster.any_member(),
        }
    }

    /// A Range the read cache may answer: no credentials (the cache does not check
    /// permissions), the current revision, a unary call.
    fn cacheable(&self, session: &Session, path: &str, r: &RangeRequest) -> Option<&ReadCache> {
        let cache = self.cache.as_deref()?;
        let plain = path == "/etcdserverpb.KV/Range"
            && r.revision == 0
            && !session.req_header().headers.contains_key("authorization")
            && session
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .and_then(|s| s.extension.get::<crate::tls::ClientCn>())
                .is_none();
        plain.then_some(cache)
    }

    /// A linearizable Range the read cache may answer: after a read barrier, from the cache
    /// once its watch has reached the barrier's revision (`cache::barrier`). Otherwise it goes
    /// to the leader as before (at once if the cache does not hold it: no barrier then), and a
    /// cacheable answer is stored on its way back.
    async fn linearizable_read(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        r: &RangeRequest,
    ) -> Result<bool> {
        let Some(cache) = self.cacheable(session, &ctx.path, r) else {
            return Ok(false);
        };
        // Entries are kept under the request's serializable form.
        let request = Bytes::from(
            RangeRequest {
                serializable: true,
                ..r.clone()
            }
            .encode_to_vec(),
        );
        let mut barrier = None;
        if cache.holds(&request) {
            if let Some(revision) = cache.barrier().revision().await {
                if cache.reached(revision).await {
                    barrier = Some(revision);
                }
            }
        }
        // A lookup counts its own miss.
        let found = match barrier {
            Some(revision) => cache.lookup(&request, revision.max(self.sessions.floor(ctx.client))),
            None => {
                cache.missed();
                None
            }
        };
        self.answer_or_fill(session, ctx, cache, found, &request, r)
            .await
    }

    /// Answers a Range with `found`, the cache's answer, or makes ready to store the member's
    /// answer to `request` (the cache's key) on its way back.
    async fn answer_or_fill(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        cache: &ReadCache,
        found: Option<Bytes>,
        request: &[u8],
        r: &RangeRequest,
    ) -> Result<bool> {
        if let Some(found) = found {
            ctx.cached = true;
            ctx.grpc_code = Some("0".into());
            answer(session, found).await?;
            return Ok(true);
        }
        ctx.fill = cache.ticket().map(|ticket| Fill {
            ticket,
            request: Bytes::copy_from_slice(request),
            keys: keys::read(self.namespace.as_ref(), r),
            answer: Capture::new(cache.max_answer()),
        });
        Ok(false)
    }

    /// An answer's header came back from a member: how far it got, and for a write, the
    /// client's last write and the keys the cache forgets.
    fn answered_at(&self, ctx: &Ctx, revision: i64) {
        if let Some(up) = &ctx.upstream {
            self.cluster.observe_revision(&up.addr, revision);
        }
        if !is_write(&ctx.path) {
            return;
        }
        self.sessions
            .wrote(ctx.client, revision, || self.cluster.settled_revision());
        if let (Some(cache), Some(w)) = (&self.cache, &ctx.written) {
            let keys = keys::written(self.namespace.as_ref(), &ctx.path, w.message());
            cache.written(keys, revision);
        }
    }
}

/// Sends `answer` (one framed message) as a whole successful gRPC response.
async fn answer(session: &mut Session, answer: Bytes) -> Result<()> {
    // The client's END_STREAM may not have been read yet.
    while !session.is_body_done() && session.read_request_body().await?.is_some() {}
    let mut resp = ResponseHeader::build(200, Some(1))?;
    resp.insert_header("content-type", "application/grpc")?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(answer), false).await?;
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    session.write_response_trailers(trailers).await
}

fn no_member(why: &str) -> Box<Error> {
    Error::explain(ErrorType::ConnectNoRoute, why.to_string())
}

const AUTH_ENABLE: &str = "/etcdserverpb.Auth/AuthEnable";

#[async_trait]
impl ProxyHttp for EtcdProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            path: String::new(),
            route: Route::Leader,
            upstream: None,
            started: Instant::now(),
            grpc_code: None,
            request_id: None,
            rewrite: None,
            client: None,
            min_revision: 0,
            cached: false,
            fill: None,
            head: None,
            written: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.path = session.req_header().uri.path().to_string();
        ctx.route = route_of(&ctx.path, self.coalesce);
        ctx.client = session.client_addr().and_then(|a| a.as_inet()).copied();
        if is_dedup_write(&ctx.path) {
            let n = self.next_id.fetch_add(1, Ordering::Relaxed);
            ctx.request_id = Some(format!("{}-{n:x}", self.id_prefix));
        }
        if ctx.path == AUTH_ENABLE {
            // The cache does not check permissions: off before auth can be on; its feed
            // checks auth again before it serves anything.
            if let Some(cache) = &self.cache {
                cache.disable();
            }
        }
        // Keep the body (up to pingora's 64 KiB) so a request can be sent to another member.
        session.enable_retry_buffering();
        if is_range(&ctx.path) {
            let mut buf = BytesMut::new();
            loop {
                if grpc_frame_len(&buf).is_some_and(|len| buf.len() >= 5 + len) {
                    break;
                }
                match session.read_request_body().await? {
                    Some(chunk) => buf.extend_from_slice(&chunk),
                    None => break,
                }
            }
            let Some((msg, r)) = range_request(&buf) else {
                return Ok(false);
            };
            if !r.serializable {
                return self.linearizable_read(session, ctx, &r).await;
            }
            ctx.route = Route::AnyMember;
            ctx.min_revision = self.sessions.floor(ctx.client);
            if let Some(cache) = self.cacheable(session, &ctx.path, &r) {
                let found = cache.lookup(msg, ctx.min_revision);
                return self
                    .answer_or_fill(session, ctx, cache, found, msg, &r)
                    .await;
            }
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if let (Route::Local, Some(addr)) = (ctx.route, self.local) {
            let mut peer = HttpPeer::new(addr, false, String::new());
            peer.options.alpn = ALPN::H2;
            peer.options.max_h2_streams = 1000;
            peer.options.connection_timeout = Some(Duration::from_millis(500));
            if self.namespace.is_some() && Namespace::rewrites(&ctx.path) {
                ctx.rewrite = Some(Default::default());
            }
            return Ok(Box::new(peer));
        }
        // The client wrote at `min_revision`: only a member that applied it will do. (Picked
        // once per attempt: both pickers turn one round-robin counter.)
        let picked = if ctx.route == Route::AnyMember && ctx.min_revision > 0 {
            match self.cluster.member_at(ctx.min_revision) {
                Some(up) => Some(up),
                None => Some(
                    self.cluster
                        .wait_member_at(ctx.min_revision, self.leader_wait)
                        .await
                        .ok_or_else(|| {
                            no_member("no member has applied the client's last write")
                        })?,
                ),
            }
        } else {
            self.pick(ctx.route)
        };
        let up = match picked {
            Some(up) => up,
            None if ctx.route == Route::Leader => self
                .cluster
                .wait_leader(self.leader_wait)
                .await
                .ok_or_else(|| no_member("etcdserver: no leader"))?,
            None => return Err(no_member("no member is reachable")),
        };
        let addr = up
            .addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| no_member("cannot resolve member address"))?;
        let mut peer = match &self.upstream_tls {
            // The member's certificate is checked against `--cacert` for its host name (or IP).
            Some(tls) => {
                let host = up
                    .addr
                    .rsplit_once(':')
                    .map_or(up.addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let mut p = HttpPeer::new(addr, true, host.to_string());
                p.client_cert_key = tls.cert_key();
                p.options.ca = Some(tls.ca());
                p
            }
            None => HttpPeer::new(addr, false, String::new()),
        };
        // gRPC is HTTP/2 only: h2c in cleartext, h2 by ALPN over TLS.
        peer.options.alpn = ALPN::H2;
        // pingora opens one connection per stream unless told otherwise.
        peer.options.max_h2_streams = 1000;
        peer.options.connection_timeout = Some(Duration::from_millis(500));
        peer.options.h2_ping_interval = Some(Duration::from_secs(5));
        ctx.upstream = Some(up);
        // What an attempt captures starts over with it.
        if is_range(&ctx.path) || is_write(&ctx.path) {
            ctx.head = Some(Capture::new(HEAD_MAX));
        }
        if self.cache.is_some() && is_kv_write(&ctx.path) {
            ctx.written = Some(Capture::new(WRITE_READ_MAX));
        }
        if let Some(f) = ctx.fill.as_mut() {
            f.answer = Capture::new(f.answer.max);
        }
        // Each attempt sends the request from its first byte (pingora replays the retry
        // buffer through `request_body_filter`), so rewriting starts over too.
        if self.namespace.is_some() && Namespace::rewrites(&ctx.path) {
            ctx.rewrite = Some(Default::default());
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Only the proxy says which certificate a client showed.
        req.remove_header(oxetcd_common::FORWARDED_CN_HEADER);
        let cn = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|s| s.extension.get::<crate::tls::ClientCn>());
        if let Some(cn) = cn {
            req.insert_header(oxetcd_common::FORWARDED_CN_HEADER, cn.0.as_str())?;
        }
        if let Some(id) = &ctx.request_id {
            req.insert_header(oxetcd_common::REQUEST_ID_HEADER, id.as_str())?;
        }
        if ctx.rewrite.is_some() {
            // Rewritten messages change length.
            req.remove_header("content-length");
        }
        if ctx.rewrite.is_some() || ctx.head.is_some() {
            // Answers the proxy reads must come back uncompressed.
            req.remove_header("grpc-accept-encoding");
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(w), Some(chunk)) = (ctx.written.as_mut(), body.as_ref()) {
            w.push(chunk);
        }
        let (Some(ns), Some((frames, _))) = (&self.namespace, &mut ctx.rewrite) else {
            return Ok(());
        };
        let Some(chunk) = body.take() else {
            return Ok(());
        };
        frames.push(&chunk);
        let out = frames
            .rewrite(|m| ns.request(&ctx.path, m))
            .map_err(|e| Error::explain(NAMESPACE_ERROR, e.to_string()))?;
        if end_of_stream && frames.pending() > 0 {
            return Err(Error::explain(
                NAMESPACE_ERROR,
                "request body ends inside a gRPC message",
            ));
        }
        *body = Some(out);
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if let (Some(ns), Some((_, frames))) = (&self.namespace, &mut ctx.rewrite) {
            if let Some(chunk) = body.take() {
                frames.push(&chunk);
                let out = frames
                    .rewrite(|m| ns.response(&ctx.path, m))
                    .map_err(|e| Error::explain(NAMESPACE_ERROR, e.to_string()))?;
                *body = Some(out);
            }
        }
        let Some(chunk) = body.as_ref() else {
            return Ok(None);
        };
        if let Some(f) = ctx.fill.as_mut() {
            f.answer.push(chunk);
            if !f.answer.whole {
                ctx.fill = None;
            }
        }
        if let Some(head) = ctx.head.as_mut() {
            head.push(chunk);
            let found = match head.buf.first() {
                Some(0) => head.buf.get(5..).and_then(leading_header),
                _ => None,
            };
            let compressed = head.buf.first().is_some_and(|b| *b != 0);
            if found.is_some() || head.buf.len() >= HEAD_MAX || compressed {
                ctx.head = None;
            }
            if let Some(h) = found {
                self.answered_at(ctx, h.revision);
            }
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing reached the member: safe to send anywhere, once the view is refreshed.
        if let Some(up) = &ctx.upstream {
            warn!(member = %up.label, "cannot connect: {e}");
            self.cluster.report_unreachable(&up.addr);
        }
        debug!(%peer, "retrying after connect failure");
        self.metrics.retries.with_label_values(&["connect"]).inc();
        e.set_retry(true);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("member: {peer}"));
        if e.etype() == &NAMESPACE_ERROR {
            e.set_retry(false);
            return e;
        }
        if e.esource() == &ErrorSource::Upstream {
            if let Some(up) = &ctx.upstream {
                self.cluster.report_unreachable(&up.addr);
            }
        }
        let buffered = !session.as_ref().retry_buffer_truncated();
        let nothing_sent_downstream = ctx.grpc_code.is_none();
        let deduplicated =
            ctx.request_id.is_some() && ctx.upstream.as_ref().is_some_and(|u| u.dedup);
        if is_read_only(&ctx.path) && buffered && nothing_sent_downstream {
            self.metrics.retries.with_label_values(&["read"]).inc();
            e.set_retry(true);
        } else if deduplicated && buffered && nothing_sent_downstream {
            // The write may have been applied; the member applies its ID once, so sending it
            // to the new leader cannot apply it twice.
            self.metrics.retries.with_label_values(&["write"]).inc();
            e.set_retry(true);
        } else if client_reused && buffered && nothing_sent_downstream {
            // pingora's own rule: a pooled connection found dead before the request went out.
            e.retry.decide_reuse(client_reused);
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if ctx.rewrite.is_some() {
            resp.remove_header("content-length");
        }
        let number = |name: &str| {
            resp.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let (Some(leader), Some(term)) = (
            number(oxetcd_common::LEADER_HEADER),
            number(oxetcd_common::RAFT_TERM_HEADER),
        ) {
            self.cluster.observe_leader(leader, term);
        }
        // A trailers-only response carries grpc-status in its headers.
        ctx.grpc_code = Some(
            resp.headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        );
        Ok(())
    }

    async fn response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut Ctx,
    ) -> Result<Option<Bytes>> {
        if let Some(code) = trailers.get("grpc-status").and_then(|v| v.to_str().ok()) {
            ctx.grpc_code = Some(code.to_string());
        }
        if let (Some(f), Some(cache)) = (ctx.fill.take(), &self.cache) {
            if let (Some("0"), Some(msg)) = (ctx.grpc_code.as_deref(), f.answer.message()) {
                cache.store(f.ticket, f.request, f.keys, msg);
            }
        }
        Ok(None)
    }

    /// A client that went away (a watch stream closed, a call canceled) is no failure to log:
    /// pingora would log it as an error, once per stream.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, e: &Error) -> bool {
        e.esource() == &ErrorSource::Downstream
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        if e.esource() == &ErrorSource::Downstream {
            debug!(path = %ctx.path, "client went away: {e}");
        } else {
            warn!(path = %ctx.path, "request failed: {e}");
        }
        // Answer as a gRPC server would: a trailers-only response with a status, so clients
        // see "unavailable" rather than an HTTP error.
        let (status, message) = match e.etype() {
            ErrorType::ConnectNoRoute => (
                GRPC_UNAVAILABLE,
                e.context
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "etcdserver: no leader".into()),
            ),
            t if t == &NAMESPACE_ERROR => (
                GRPC_INVALID_ARGUMENT,
                format!(
                    "oxetcd-proxy: {}",
                    e.context
                        .as_ref()
                        .map(|c| c.to_string())
                        .unwrap_or_default()
                ),
            ),
            _ => (
                GRPC_UNAVAILABLE,
                "oxetcd-proxy: member unreachable".to_string(),
            ),
        };
        let mut sent = false;
        if ctx.grpc_code.is_none() {
            // Headers, then the status as trailers. Not a trailers-only answer: pingora would
            // end that stream with RST_STREAM(CANCEL) or an empty DATA frame, which grpc-go
            // reads as "canceled", or as a stream closed without trailers.
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static(status));
            if let Ok(m) = http::HeaderValue::from_str(&message) {
                trailers.insert("grpc-message", m);
            }
            if let Ok(mut resp) = ResponseHeader::build(200, None) {
                if resp
                    .insert_header("content-type", "application/grpc")
                    .is_ok()
                {
                    sent = session
                        .write_response_header(Box::new(resp), false)
                        .await
                        .is_ok()
                        && session.write_response_trailers(trailers).await.is_ok();
                }
            }
            ctx.grpc_code = Some(status.to_string());
        }
        FailToProxy {
            error_code: if sent { 200 } else { 502 },
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, _session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        if ctx.path == AUTH_ENABLE {
            // Again once it is answered: the feed may have started over while it was in
            // flight, and seen auth still off.
            if let Some(cache) = &self.cache {
                cache.disable();
            }
        }
        let method = method_name(&ctx.path);
        let member = match &ctx.upstream {
            _ if ctx.cached => "cache",
            Some(u) => u.label.as_str(),
            None => "",
        };
        let code = match ctx.grpc_code.as_deref() {
            Some("") | None => "unknown",
            Some(c) => c,
        };
        self.metrics
            .requests
            .with_label_values(&[method, member, code])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[method])
            .observe(ctx.started.elapsed().as_secs_f64());
    }
}
