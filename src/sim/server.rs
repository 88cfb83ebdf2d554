//! The simulator over HTTP: `POST /` (or `GET /`) is the RPC API, as `ecs.{region}.aliyuncs.com`
//! serves it. `GET /_sim/state` dumps the world, `POST /_sim/faults` replaces the fault
//! settings: test hooks, unauthenticated, so the server binds to loopback only.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;

use std::collections::BTreeMap;

use super::{Faults, SimRequest, Simulator};

pub fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/", any(api))
        .route("/_sim/state", get(state))
        .route("/_sim/faults", post(faults))
        .with_state(sim)
}

async fn api(
    State(sim): State<Simulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let method = if method == Method::GET { "GET" } else { "POST" };
    let headers: BTreeMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let reply = sim.handle(&SimRequest {
        method,
        path: uri.path(),
        query: query.as_deref().unwrap_or(""),
        body: &body,
        headers: &headers,
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if reply.drop {
        // The action ran; now the connection breaks before the answer is complete.
        let broken = futures_util::stream::once(async {
            Err::<Vec<u8>, std::io::Error>(std::io::Error::other("simulated connection drop"))
        });
        return (status, Body::from_stream(broken)).into_response();
    }
    let mut response = (
        status,
        [(header::CONTENT_TYPE, reply.content_type)],
        reply.body,
    )
        .into_response();
    // ECS's clock, as an origin server sends it (IMF-fixdate, RFC 9110 §5.6.7).
    if let Ok(date) =
        header::HeaderValue::from_str(&reply.date.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
    {
        response.headers_mut().insert(header::DATE, date);
    }
    if let Some(ms) = reply.retry_after_ms {
        response
            .headers_mut()
            .insert("x-acs-retry-after", header::HeaderValue::from(ms));
    }
    response
}

async fn state(State(sim): State<Simulator>) -> Json<serde_json::Value> {
    Json(sim.state())
}

async fn faults(State(sim): State<Simulator>, Json(f): Json<Faults>) -> StatusCode {
    sim.set_faults(f);
    StatusCode::NO_CONTENT
}

/// Serves `sim` on `listener` until the task is dropped.
pub async fn serve(sim: Simulator, listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(sim)).await
}

/// Binds `127.0.0.1:port` (0 picks a free port), serves in the background, returns the address.
pub async fn spawn(sim: Simulator, port: u16) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = serve(sim, listener).await {
            tracing::error!(error = %e, "simulator server stopped");
        }
    });
    Ok(addr)
}
