//! The metrics listener (`MetricsAddress`): `GET /metrics` in the Prometheus text
//! format, `GET /` the status page and `GET /status.json` its data, on a socket
//! of its own, never behind the P2P account (bind it to loopback, the default, or
//! to a management network).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::{page, Metrics};
use crate::util::http_server::{accept_loop, serve_http1, AcceptOptions};

/// How long a scrape in hand may finish once the agent stops.
const GRACE: Duration = Duration::from_secs(1);

/// The OpenMetrics text type, which Prometheus asks for and reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The classic Prometheus text format.
const CLASSIC_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn wants_openmetrics(req: &Request<Incoming>) -> bool {
    req.headers().get_all(header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.contains("application/openmetrics-text"))
    })
}

/// A running metrics listener.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Listen on `addr` and answer scrapes of `metrics` until `shutdown`.
    pub async fn start(
        addr: SocketAddr,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("metrics listener on {addr} (MetricsAddress): {e}"),
            )
        })?;
        let local_addr = listener.local_addr()?;
        info!(url = %format!("http://{local_addr}/metrics"), "metrics listening");
        let accepting = AcceptOptions {
            server: "metrics",
            shutdown: shutdown.clone(),
            drain: GRACE * 2,
        };
        let span = tracing::info_span!("metrics_server", addr = %local_addr);
        let task = tokio::spawn(tracing::Instrument::instrument(
            accept_loop(listener, accepting, move |stream, _| {
                let metrics = metrics.clone();
                let token = shutdown.child_token();
                async move {
                    let service = service_fn(move |req| {
                        let m = metrics.clone();
                        async move { Ok::<_, Infallible>(answer(&m, &req)) }
                    });
                    if let Err(e) = serve_http1(stream, service, &token, GRACE).await {
                        debug!(error = %e, "metrics connection ended with an error");
                    }
                }
            }),
            span,
        ));
        Ok(MetricsServer { local_addr, task })
    }

    /// Where it listens (the port chosen when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Wait for the listener to stop (after its shutdown token fired).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

fn answer(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &str| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(text.to_string())))
            .expect("static headers")
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET /metrics, / or /status.json\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // A HEAD gets the headers a GET would (hyper sends no body for it).
    match req.uri().path() {
        // OpenMetrics for whoever asks for it (Prometheus does), the classic text
        // format for everyone else (curl, promtool).
        "/metrics" if wants_openmetrics(req) => Response::builder()
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(Bytes::from(metrics.encode())))
            .expect("static headers"),
        "/metrics" => Response::builder()
            .header(header::CONTENT_TYPE, CLASSIC_TYPE)
            .body(Full::new(Bytes::from(metrics.encode_classic())))
            .expect("static headers"),
        "/" | "/index.html" => match metrics.status_page() {
            Some(p) => Response::builder()
                .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                .header(
                    header::CONTENT_SECURITY_POLICY,
                    page::content_security_policy(),
                )
                .header(header::CACHE_CONTROL, "no-store")
                .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
                .body(Full::new(Bytes::from(page::render_page(&p))))
                .expect("static headers"),
            None => not_found(),
        },
        "/status.json" => match metrics.status_page() {
            Some(p) => Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CACHE_CONTROL, "no-store")
                .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
                .body(Full::new(Bytes::from(page::render_json(&p))))
                .expect("static headers"),
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn not_found() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(
            b"contentdist agent: metrics at /metrics, status at / and /status.json\n",
        )))
        .expect("static headers")
}
