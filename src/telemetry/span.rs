//! One finished span and its OTLP/HTTP JSON form, plus W3C trace context: random ids, the
//! `traceparent` header read and written.
//!
//! The JSON follows the OTLP specification's JSON encoding of `ExportTraceServiceRequest`:
//! lowerCamelCase field names, trace and span ids as lowercase hex (not base64), 64-bit
//! integers (times, `intValue`) as decimal strings, enums (`kind`, `status.code`) as numbers.

use crate::util::random;

/// `SpanKind` of the OTLP protobuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server = 2,
    Client = 3,
}

/// An attribute value (the OTLP `AnyValue` kinds the relay uses).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Strs(Vec<String>),
}

impl Value {
    /// Writes the OTLP `AnyValue` of this value.
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Str(s) => {
                out.extend_from_slice(b"{\"stringValue\":");
                string(out, s);
                out.push(b'}');
            }
            Value::Int(n) => out.extend_from_slice(format!("{{\"intValue\":\"{n}\"}}").as_bytes()),
            Value::Double(f) => {
                let f = if f.is_finite() { *f } else { 0.0 };
                out.extend_from_slice(format!("{{\"doubleValue\":{f:?}}}").as_bytes());
            }
            Value::Bool(b) => out.extend_from_slice(format!("{{\"boolValue\":{b}}}").as_bytes()),
            Value::Strs(items) => {
                out.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"stringValue\":");
                    string(out, item);
                    out.push(b'}');
                }
                out.extend_from_slice(b"]}}");
            }
        }
    }
}

/// Writes `s` as a JSON string (quoted and escaped).
fn string(out: &mut Vec<u8>, s: &str) {
    // writing a str into a Vec cannot fail
    let _ = serde_json::to_writer(&mut *out, s);
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// Attributes in the order they were set; setting a key again replaces its value.
#[derive(Debug, Clone, Default)]
pub struct Attributes(Vec<(&'static str, Value)>);

impl Attributes {
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Writes the OTLP `attributes` array.
    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"key\":");
            string(out, k);
            out.extend_from_slice(b",\"value\":");
            v.write(out);
            out.push(b'}');
        }
        out.push(b']');
    }
}

/// A finished span, ready to export.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent: Option<u64>,
    pub name: String,
    pub kind: Kind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Attributes,
    /// `Some(message)`: the span's status is ERROR.
    pub error: Option<String>,
}

impl Span {
    /// About the memory the span holds (its strings, plus a fixed share for the rest).
    pub fn weight(&self) -> usize {
        let value = |v: &Value| match v {
            Value::Str(s) => s.len(),
            Value::Strs(items) => items.iter().map(String::len).sum(),
            _ => 8,
        };
        let attrs: usize = (self.attributes.0.iter())
            .map(|(k, v)| k.len() + value(v) + 32)
            .sum();
        256 + self.name.len() + attrs + self.error.as_ref().map_or(0, String::len)
    }

    /// Writes the OTLP `Span` object.
    fn write(&self, out: &mut Vec<u8>) {
        let ids = format!(
            "{{\"traceId\":\"{:032x}\",\"spanId\":\"{:016x}\"",
            self.trace_id, self.span_id
        );
        out.extend_from_slice(ids.as_bytes());
        if let Some(parent) = self.parent {
            out.extend_from_slice(format!(",\"parentSpanId\":\"{parent:016x}\"").as_bytes());
        }
        out.extend_from_slice(b",\"name\":");
        string(out, &self.name);
        let times = format!(
            ",\"kind\":{},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":",
            self.kind as u8,
            self.start_ns,
            self.end_ns.max(self.start_ns)
        );
        out.extend_from_slice(times.as_bytes());
        self.attributes.write(out);
        if let Some(message) = &self.error {
            out.extend_from_slice(b",\"status\":{\"code\":2,\"message\":");
            string(out, message);
            out.push(b'}');
        }
        out.push(b'}');
    }
}

/// The body of one `POST /v1/traces`: `spans` under one resource (`service.name` and the
/// process's attributes) and the relay's instrumentation scope.
pub fn export_request(service: &str, spans: &[Span]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024 + spans.len() * 1024);
    out.extend_from_slice(b"{\"resourceSpans\":[{\"resource\":{\"attributes\":");
    let mut resource = Attributes::default();
    resource.set("service.name", service);
    resource.set("service.version", env!("CARGO_PKG_VERSION"));
    resource.set("telemetry.sdk.name", "llm-relay");
    resource.set("telemetry.sdk.language", "rust");
    resource.write(&mut out);
    out.extend_from_slice(b"},\"scopeSpans\":[{\"scope\":{\"name\":\"llm-relay\",\"version\":");
    string(&mut out, env!("CARGO_PKG_VERSION"));
    out.extend_from_slice(b"},\"spans\":[");
    for (i, span) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        span.write(&mut out);
    }
    out.extend_from_slice(b"]}]}]}");
    out
}

/// A new non-zero span id.
pub fn new_span_id() -> u64 {
    loop {
        let id = random();
        if id != 0 {
            return id;
        }
    }
}

/// A new non-zero trace id.
pub fn new_trace_id() -> u128 {
    loop {
        let id = (u128::from(random()) << 64) | u128::from(random());
        if id != 0 {
            return id;
        }
    }
}

/// A W3C trace context: the trace, a span in it, and whether it is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl Context {
    /// Reads a `traceparent` header (version 00, or a later version's first four fields);
    /// `None` for anything invalid, all-zero ids included (the relay then starts a trace).
    pub fn parse(header: &str) -> Option<Context> {
        let header = header.trim();
        let mut parts = header.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let lower_hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !lower_hex(version, 2) || version == "ff" || !lower_hex(flags, 2) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if !lower_hex(trace, 32) || !lower_hex(span, 16) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Context {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` header naming this context.
    pub fn header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    #[test]
    fn traceparent_round_trips_and_invalid_ones_are_refused() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = Context::parse(h).unwrap();
        assert_eq!(c.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(c.span_id, 0x00f067aa0ba902b7);
        assert!(c.sampled);
        assert_eq!(c.header(), h);
        let unsampled = Context::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert!(!unsampled.unwrap().sampled);
        // a later version may append fields
        assert!(
            Context::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(Context::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_are_non_zero_and_distinct() {
        let a = new_trace_id();
        let b = new_trace_id();
        assert_ne!(a, b);
        assert_ne!(new_span_id(), new_span_id());
    }

    #[test]
    fn spans_encode_as_otlp_json() {
        let mut attributes = Attributes::default();
        attributes.set("gen_ai.usage.input_tokens", 12u64);
        attributes.set(
            "gen_ai.response.finish_reasons",
            Value::Strs(vec!["stop".into()]),
        );
        attributes.set("gen_ai.usage.input_tokens", 13u64);
        attributes.set("a.str", "say \"hi\"\n\u{7f}é");
        attributes.set("a.double", Value::Double(0.25));
        attributes.set("a.bool", Value::Bool(true));
        let span = Span {
            trace_id: 1,
            span_id: 2,
            parent: Some(3),
            name: "chat m".into(),
            kind: Kind::Server,
            start_ns: 10,
            end_ns: 20,
            attributes,
            error: Some("500".into()),
        };
        let v: Json = crate::json::from_slice(&export_request("svc", &[span])).unwrap();
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "00000000000000000000000000000001");
        assert_eq!(s["parentSpanId"], "0000000000000003");
        assert_eq!(s["kind"], 2);
        assert_eq!(s["startTimeUnixNano"], "10");
        assert_eq!(s["attributes"][0]["value"]["intValue"], "13");
        assert_eq!(s["attributes"].as_array().unwrap().len(), 5);
        assert_eq!(
            s["attributes"][1]["value"]["arrayValue"]["values"][0]["stringValue"],
            "stop"
        );
        assert_eq!(
            s["attributes"][2]["value"]["stringValue"],
            "say \"hi\"\n\u{7f}é"
        );
        assert_eq!(s["attributes"][3]["value"]["doubleValue"], 0.25);
        assert_eq!(s["attributes"][4]["value"]["boolValue"], true);
        assert_eq!(s["status"]["message"], "500");
        assert_eq!(s["endTimeUnixNano"], "20");
        let resource = &v["resourceSpans"][0]["resource"]["attributes"][0];
        assert_eq!(resource["value"]["stringValue"], "svc");
        assert_eq!(s["status"]["code"], 2);
    }
}
