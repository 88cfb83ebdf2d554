//! Log lines as AWS Lambda wants them, following the function's log settings
//! ("Configuring advanced logging controls", `AWS_LAMBDA_LOG_FORMAT` and `AWS_LAMBDA_LOG_LEVEL`:
//! <https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html>):
//! - JSON (`AWS_LAMBDA_LOG_FORMAT=JSON`, and the default here): one object per line with
//!   Lambda's own keys at the top, `timestamp` (RFC 3339), `level` (`TRACE` … `ERROR`),
//!   `message` and `requestId` (where Lambda's JSON format puts the request ID), then the
//!   event's fields and its spans' fields, flat. Lambda filters such lines by `level`
//!   ("Log-level filtering",
//!   <https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html>).
//! - Text (`AWS_LAMBDA_LOG_FORMAT=Text`): Lambda's text layout, tab-separated
//!   `timestamp`, request ID, level, message, then `key=value` fields.
//!
//! The level: `AWS_LAMBDA_LOG_LEVEL` (TRACE, DEBUG, INFO, WARN, ERROR, FATAL; FATAL is ERROR
//! here, tracing has nothing above), else `RUST_LOG`, else INFO.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The span field that carries the invocation's request ID (`lambda.rs`).
pub const REQUEST_ID_FIELD: &str = "lambda_request_id";

/// Lambda's two log formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LambdaLogFormat {
    Json,
    Text,
}

impl LambdaLogFormat {
    /// `AWS_LAMBDA_LOG_FORMAT`: `Text` (any case) is text; `JSON`, unset or anything else is
    /// JSON (what this function always wrote before it followed the setting).
    pub fn from_setting(value: Option<&str>) -> Self {
        match value {
            Some(v) if v.trim().eq_ignore_ascii_case("text") => LambdaLogFormat::Text,
            _ => LambdaLogFormat::Json,
        }
    }
}

/// `AWS_LAMBDA_LOG_LEVEL` as a tracing level name; `None` when it is not one of Lambda's.
pub fn level_directive(value: &str) -> Option<&'static str> {
    match value.trim().to_ascii_uppercase().as_str() {
        "TRACE" => Some("trace"),
        "DEBUG" => Some("debug"),
        "INFO" => Some("info"),
        "WARN" => Some("warn"),
        "ERROR" | "FATAL" => Some("error"),
        _ => None,
    }
}

/// The filter: `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `info`.
pub fn lambda_filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> EnvFilter {
    if let Some(d) = lambda_level.and_then(level_directive) {
        return EnvFilter::new(d);
    }
    rust_log
        .and_then(|r| EnvFilter::try_new(r).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// Installs the Lambda logger on stdout, from the environment.
pub fn init_lambda() {
    let format =
        LambdaLogFormat::from_setting(std::env::var("AWS_LAMBDA_LOG_FORMAT").ok().as_deref());
    let filter = lambda_filter(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = subscriber(format, filter, std::io::stdout).try_init();
}

/// The subscriber [`init_lambda`] installs, writing to `writer`.
pub fn subscriber<W>(
    format: LambdaLogFormat,
    filter: EnvFilter,
    writer: W,
) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .fmt_fields(JsonFields::new())
        .event_format(LambdaFormat { format })
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
}

/// The event formatter (see the module's head).
pub struct LambdaFormat {
    pub format: LambdaLogFormat,
}

struct Collect<'a>(&'a mut Map<String, Value>);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl<S, N> FormatEvent<S, N> for LambdaFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        // The spans' fields, outermost first (an inner span's field wins), then the event's.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(f) = ext.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&f.fields) {
                        fields.extend(m);
                    }
                }
            }
        }
        event.record(&mut Collect(&mut fields));
        let request_id = fields.remove(REQUEST_ID_FIELD);
        let message = fields
            .remove("message")
            .unwrap_or_else(|| Value::String(String::new()));
        let level = level_name(event.metadata().level());
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        match self.format {
            LambdaLogFormat::Json => {
                let mut line = Map::new();
                line.insert("timestamp".into(), Value::String(timestamp));
                line.insert("level".into(), Value::String(level.into()));
                line.insert("message".into(), message);
                if let Some(id) = request_id {
                    line.insert("requestId".into(), id);
                }
                for (k, v) in fields {
                    line.entry(k).or_insert(v);
                }
                writeln!(writer, "{}", Value::Object(line))
            }
            LambdaLogFormat::Text => {
                let id = request_id.as_ref().map(plain).unwrap_or_default();
                write!(writer, "{timestamp}\t{id}\t{level}\t{}", plain(&message))?;
                for (k, v) in &fields {
                    write!(writer, " {k}={}", plain(v))?;
                }
                writeln!(writer)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    struct BufWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for BufWriter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = BufWriter;
        fn make_writer(&'a self) -> BufWriter {
            BufWriter(Arc::clone(&self.0))
        }
    }

    fn lines_of(format: LambdaLogFormat, level: Option<&str>) -> String {
        let buf = Buf::default();
        let sub = subscriber(format, lambda_filter(level, None), buf.clone());
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("invocation", lambda_request_id = "req-42");
            let _enter = span.enter();
            tracing::info!(idempotency_key = "k-1", "started");
            tracing::warn!(attempts = 3, "slow");
        });
        let out = buf.0.lock().expect("lock").clone();
        String::from_utf8(out).expect("utf8")
    }

    /// JSON: Lambda's keys at the top, the request ID as `requestId` (not nested in a span).
    #[test]
    fn json_lines_carry_the_request_id_where_lambda_puts_it() {
        let out = lines_of(LambdaLogFormat::Json, None);
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0]["requestId"], "req-42");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["message"], "started");
        assert_eq!(lines[0]["idempotency_key"], "k-1");
        assert!(lines[0].get("span").is_none() && lines[0].get("spans").is_none());
        assert!(lines[0].get(REQUEST_ID_FIELD).is_none());
        assert!(
            chrono::DateTime::parse_from_rfc3339(lines[0]["timestamp"].as_str().unwrap_or(""))
                .is_ok()
        );
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["attempts"], 3);
    }

    /// Text: Lambda's layout, tab-separated.
    #[test]
    fn text_lines_follow_lambdas_layout() {
        let out = lines_of(LambdaLogFormat::Text, None);
        let first: Vec<&str> = out.lines().next().unwrap_or("").split('\t').collect();
        assert_eq!(first.len(), 4, "{out}");
        assert!(chrono::DateTime::parse_from_rfc3339(first[0]).is_ok());
        assert_eq!(first[1], "req-42");
        assert_eq!(first[2], "INFO");
        assert_eq!(first[3], "started idempotency_key=k-1");
    }

    /// The level setting: WARN keeps only WARN and up; FATAL keeps ERROR; anything not one of
    /// Lambda's levels falls back to RUST_LOG, then INFO.
    #[test]
    fn the_level_setting_is_followed() {
        let out = lines_of(LambdaLogFormat::Json, Some("WARN"));
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("\"level\":\"WARN\""));
        assert_eq!(
            lines_of(LambdaLogFormat::Json, Some("FATAL"))
                .lines()
                .count(),
            0
        );
        assert_eq!(
            lines_of(LambdaLogFormat::Json, Some("debug"))
                .lines()
                .count(),
            2
        );
        assert_eq!(level_directive("bogus"), None);
        assert_eq!(
            LambdaLogFormat::from_setting(Some("Text")),
            LambdaLogFormat::Text
        );
        assert_eq!(
            LambdaLogFormat::from_setting(Some("JSON")),
            LambdaLogFormat::Json
        );
        assert_eq!(LambdaLogFormat::from_setting(None), LambdaLogFormat::Json);
    }
}
