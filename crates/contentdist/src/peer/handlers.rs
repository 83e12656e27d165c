//! Answering one peer-copy request: authentication, routing, manifests and `have`
//! (files are in `files`).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use tracing::warn;

use super::request::{parse_have_query, parse_route, Route};
use super::server::{ConnectionInfo, PeerService, Refused};
use super::HaveDoc;
use crate::cache::{CacheError, ContentEntry};

/// Response body: small documents, or a file streamed block by block.
pub(super) type Body = UnsyncBoxBody<Bytes, io::Error>;

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let body: Bytes = body.into();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .body(
            Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("static headers are valid")
}

pub(super) fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut m = message.into();
    m.push('\n');
    full(status, "text/plain; charset=utf-8", m)
}

impl PeerService {
    /// Answer one request.
    pub(super) async fn handle(
        &self,
        req: Request<Incoming>,
        info: ConnectionInfo,
    ) -> Response<Body> {
        let inner = &self.inner;
        inner.counters.requests.fetch_add(1, Ordering::Relaxed);
        if !info.client_certificate {
            let authz = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes);
            if let Err(why) = inner.auth.check(authz) {
                inner.counters.refused(&why);
                self.log_refusal(
                    info.remote,
                    Refused::Request {
                        path: req.uri().path(),
                        why: &why,
                    },
                );
                return text(StatusCode::FORBIDDEN, format!("refused: {why}"));
            }
        }
        let head = req.method() == Method::HEAD;
        if req.method() != Method::GET && !head {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let Some(route) = parse_route(req.uri().path()) else {
            return text(StatusCode::NOT_FOUND, "not found");
        };
        let key = match &route {
            Route::Manifest(k) | Route::Have(k) | Route::File(k, _) => k,
        };
        // Opening an entry not open yet may hash its unrecorded blocks: off the runtime.
        let lookup = {
            let (cache, key) = (Arc::clone(&inner.cache), key.clone());
            tokio::task::spawn_blocking(move || cache.get(&key)).await
        };
        let entry = match lookup {
            Ok(Ok(Some(e))) => e,
            Ok(Ok(None)) | Ok(Err(CacheError::InvalidId(_))) => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("content {key} is not in this agent's cache"),
                )
            }
            Ok(Err(e)) => {
                warn!(content = %key, error = %e, "peer-copy request: cache lookup failed");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "cache error");
            }
            Err(e) => {
                warn!(content = %key, error = %e, "peer-copy request: cache lookup task failed");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "cache error");
            }
        };
        // Held until the answer is sent (the body owns it), so clean-up never deletes
        // content being served.
        let lease = entry.lease();
        let mut resp = match route {
            Route::Manifest(_) => full(
                StatusCode::OK,
                "application/json",
                entry.manifest().to_json(),
            ),
            Route::Have(_) => match parse_have_query(req.uri().query()) {
                Ok((after, wait)) => {
                    // A FanOut peer describes itself: remember it, and tell it of
                    // the other holders.
                    let asker = req
                        .headers()
                        .get(super::swarm::HOLDER_HEADER)
                        .and_then(|v| super::swarm::HolderAd::parse(v.as_bytes()))
                        .map(|ad| {
                            // One that holds all asks no more: kept longer, for
                            // the peers that start later.
                            let kept = if ad.verified >= entry.manifest().block_count() {
                                super::swarm::COMPLETE_HOLDER_TTL
                            } else {
                                super::swarm::HOLDER_TTL
                            };
                            inner.holders.note(entry.key(), info.remote.ip(), ad, kept);
                            info.remote.ip()
                        });
                    self.have(&entry, after, wait, asker).await
                }
                Err(msg) => text(StatusCode::BAD_REQUEST, msg),
            },
            Route::File(_, path) => {
                return self
                    .file(
                        lease,
                        &path,
                        req.headers().get(header::RANGE),
                        head,
                        info.tls,
                    )
                    .await;
            }
        };
        drop(lease);
        let len = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        if head {
            *resp.body_mut() = Empty::new().map_err(|never| match never {}).boxed_unsync();
        } else {
            inner
                .counters
                .bytes_served
                .fetch_add(len.unwrap_or(0), Ordering::Relaxed);
        }
        resp
    }

    /// The verified-block map, once more than `after` blocks are verified (or the
    /// content is complete, or `wait` passed, or the server stops). Blocks found
    /// changed on disk and not re-verified yet are left out (see `files`).
    async fn have(
        &self,
        entry: &Arc<ContentEntry>,
        after: Option<usize>,
        wait: Duration,
        asker: Option<std::net::IpAddr>,
    ) -> Response<Body> {
        let block_count = entry.manifest().block_count();
        let count = |bitmap: &[u8]| {
            (0..block_count)
                .filter(|&i| HaveDoc::bit(bitmap, i))
                .count()
        };
        if let Some(after) = after.filter(|_| !wait.is_zero()) {
            let mut rx = entry.subscribe();
            let deadline = tokio::time::sleep(wait);
            tokio::pin!(deadline);
            loop {
                // The cache's count, unless blocks are hidden (rare): then the
                // advertised map is counted. Hidden blocks are read first (see
                // `advertised_bitmap`).
                let hidden = self.hidden_blocks(entry.key());
                let n = *rx.borrow_and_update();
                let n = if hidden.is_empty() {
                    n
                } else {
                    count(&self.advertised_bitmap(entry))
                };
                if n > after || n == block_count {
                    break;
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { break },
                    _ = &mut deadline => break,
                    _ = self.inner.shutdown.cancelled() => break,
                }
            }
        }
        let bitmap = self.advertised_bitmap(entry);
        let m = entry.manifest();
        // Counted from the same snapshot as the bitmap, so the document agrees with itself.
        let verified = count(&bitmap);
        let doc = HaveDoc {
            content_id: m.content_id.clone(),
            version: m.version,
            content_hash: m.content_hash.clone(),
            block_count,
            verified,
            complete: verified == block_count,
            bitmap: hex::encode(&bitmap),
            holders: asker
                .map(|a| self.inner.holders.others(entry.key(), a))
                .unwrap_or_default(),
            you: asker,
        };
        full(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&doc).expect("HaveDoc serializes"),
        )
    }
}
