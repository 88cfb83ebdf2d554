//! The probe of a `verify` block, from the function to the rolled-back instance: one HTTP(S)
//! request or one TCP connection to an address `verify::render` made from the instance's own
//! IP (read from ECS), never to a host an event named. No redirect is followed (it could lead
//! elsewhere), no proxy is used, nothing is sent but the request line and its headers.
//!
//! What an answer means (README, "Verified recovery"): a status within the range (and the body
//! holding the text asked for) is healthy; any other HTTP answer, or a connection refused (the
//! host is up and nothing listens), is unhealthy; a timeout or an unreachable network says
//! nothing of the service (the function may have no path to the address): could not verify.

use std::time::Duration;

use crate::verify::{classify_http, Probe, Target, Verdict};

/// What one probe found: the verdict, and a line saying why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub verdict: Verdict,
    pub detail: String,
}

/// The body read from an HTTP answer, at most.
const MAX_BODY: usize = 64 * 1024;

fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// One probe, bounded by `timeout`.
pub async fn once(probe: &Probe, target: &Target, timeout: Duration) -> Answer {
    match (probe, target) {
        (
            Probe::Http {
                status,
                body_contains,
                ..
            },
            Target::Http(url),
        ) => http(url, *status, body_contains.as_deref(), timeout).await,
        (Probe::Tcp { .. }, Target::Tcp(addr)) => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Answer {
                    verdict: Verdict::Healthy,
                    detail: format!("tcp://{addr}: connection accepted"),
                },
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Answer {
                    verdict: Verdict::Unhealthy,
                    detail: format!("tcp://{addr}: connection refused"),
                },
                Ok(Err(e)) => Answer {
                    verdict: Verdict::CouldNotVerify,
                    detail: format!("tcp://{addr}: {e}"),
                },
                Err(_) => Answer {
                    verdict: Verdict::CouldNotVerify,
                    detail: format!("tcp://{addr}: no answer in {} ms", timeout.as_millis()),
                },
            }
        }
        _ => Answer {
            verdict: Verdict::CouldNotVerify,
            detail: "the probe and its address do not match".into(),
        },
    }
}

async fn http(
    url: &str,
    want: (u16, u16),
    body_contains: Option<&str>,
    timeout: Duration,
) -> Answer {
    // HTTPS to an IP address: a certificate rarely names it, so it is not checked; nothing
    // secret is sent, and only the status and the body's text are read.
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .danger_accept_invalid_certs(true)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return Answer {
                verdict: Verdict::CouldNotVerify,
                detail: format!("the HTTP client could not be built: {e}"),
            }
        }
    };
    match client.get(url).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let mut body = Vec::new();
            let mut resp = resp;
            while body.len() < MAX_BODY {
                match resp.chunk().await {
                    Ok(Some(c)) => body.extend_from_slice(&c),
                    _ => break,
                }
            }
            body.truncate(MAX_BODY);
            let text = String::from_utf8_lossy(&body);
            let verdict = classify_http(status, &text, want, body_contains);
            let mut detail = format!("GET {url}: HTTP {status}");
            if verdict == Verdict::Unhealthy {
                match body_contains {
                    Some(b) if (want.0..=want.1).contains(&status) => {
                        detail.push_str(&format!(", the body does not hold {b:?}"))
                    }
                    _ => detail.push_str(&format!(", expected {}-{}", want.0, want.1)),
                }
            }
            Answer { verdict, detail }
        }
        Err(e) if refused(&e) => Answer {
            verdict: Verdict::Unhealthy,
            detail: format!("GET {url}: connection refused"),
        },
        Err(e) => Answer {
            verdict: Verdict::CouldNotVerify,
            detail: format!(
                "GET {url}: {}",
                if e.is_timeout() {
                    format!("no answer in {} ms", timeout.as_millis())
                } else {
                    e.to_string()
                }
            ),
        },
    }
}
