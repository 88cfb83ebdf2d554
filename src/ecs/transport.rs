//! The port the client sends signed requests through: real HTTPS with reqwest, or the built-in
//! simulator in process. Both receive the same signed URL, so the request building, signing
//! and response parsing are the same code on every path.

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;

/// One request, already signed: method, the full URL with its query, and the headers to send
/// (V3 signs headers; `Host` is not among them, the HTTP client writes it from the URL).
#[derive(Clone)]
pub struct HttpRequest {
    pub method: &'static str,
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
}

/// Without the query or the headers: they carry the signature and the security token.
impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("host", &self.url.host_str())
            .field("path", &self.url.path())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
    /// A throttled answer's `x-acs-retry-after`: how long before the API takes the call again.
    pub retry_after: Option<Duration>,
    /// The answer's `Date`: ECS's clock, in whole seconds (`clock.rs`).
    pub date: Option<chrono::DateTime<chrono::Utc>>,
}

/// The official SDK's reading of `x-acs-retry-after`: a positive whole number, and the SDK
/// sleeps that many milliseconds (alibabacloud-tea-openapi 0.4.6 `Utils.get_throttling_time_left`
/// and darabonba-core 1.0.9 `get_backoff_time` → `sleep(millisecond)`, capped at its
/// `MAX_DELAY_TIME` of 120 000 ms). Anything else is no hint.
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let ms: i64 = value?.trim().parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms.min(120_000) as u64))
}

/// What can go wrong below HTTP. Each variant says whether the request may have arrived.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TransportError {
    /// Not sent: the connection could not be made.
    #[error("connection failed: {0}")]
    Connect(String),
    /// Sent, and no answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Sent, and the connection broke before the whole answer arrived.
    #[error("response lost: {0}")]
    ResponseLost(String),
}

#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError>;
}

/// HTTPS through reqwest (rustls). The client is built on first use, not at start-up: building
/// a TLS client costs milliseconds that a cold start that never calls ECS should not pay.
pub struct ReqwestTransport {
    connect_timeout: Duration,
    request_timeout: Duration,
    client: OnceLock<Result<reqwest::Client, String>>,
}

impl ReqwestTransport {
    pub fn new(connect_timeout: Duration, request_timeout: Duration) -> Self {
        Self {
            connect_timeout,
            request_timeout,
            client: OnceLock::new(),
        }
    }

    fn client(&self) -> Result<&reqwest::Client, TransportError> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .connect_timeout(self.connect_timeout)
                    .timeout(self.request_timeout)
                    .user_agent(concat!("ecs-rollback/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| TransportError::Connect(format!("HTTP client: {e}")))
    }
}

impl Default for ReqwestTransport {
    fn default() -> Self {
        Self::new(Duration::from_secs(5), Duration::from_secs(20))
    }
}

#[async_trait]
impl Transport for ReqwestTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let client = self.client()?;
        let method = match request.method {
            "GET" => reqwest::Method::GET,
            // The ECS metadata server's session token is asked for with PUT.
            "PUT" => reqwest::Method::PUT,
            _ => reqwest::Method::POST,
        };
        let mut builder = client.request(method, request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let response = builder.send().await.map_err(|e| classify_reqwest(&e))?;
        let status = response.status().as_u16();
        let retry_after = parse_retry_after(
            response
                .headers()
                .get("x-acs-retry-after")
                .and_then(|v| v.to_str().ok()),
        );
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(super::clock::parse_http_date);
        let body = response.bytes().await.map_err(|e| classify_reqwest(&e))?;
        Ok(HttpResponse {
            status,
            body: body.to_vec(),
            retry_after,
            date,
        })
    }
}

/// Maps a reqwest failure to what it means for the request. The URL is cut out of the text:
/// it carries the signature and the security token.
fn classify_reqwest(e: &reqwest::Error) -> TransportError {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    if e.is_timeout() {
        TransportError::Timeout(text)
    } else if e.is_connect() {
        TransportError::Connect(text)
    } else {
        TransportError::ResponseLost(text)
    }
}
