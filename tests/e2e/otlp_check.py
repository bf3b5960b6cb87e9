"""Checks OTLP/HTTP JSON export bodies against the OTLP schema with the official
`opentelemetry-proto` package, and prints their spans as one JSON list for the Rust test.

Usage: python3 otlp_check.py BODY.json [BODY.json ...]

Each file is one `POST /v1/traces` body. It is parsed strictly (unknown fields are errors) with
`google.protobuf.json_format.Parse` into an `ExportTraceServiceRequest`. The OTLP JSON encoding
writes trace and span ids as hex where protobuf's JSON mapping expects base64, so ids are checked
to be lowercase hex of the right length and converted first, as an OTLP collector does. Exits
non-zero naming the first problem."""

import base64
import json
import re
import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

HEX = {"traceId": 32, "spanId": 16, "parentSpanId": 16}


def hex_ids_to_base64(span):
    for field, length in HEX.items():
        if field not in span:
            continue
        value = span[field]
        if not re.fullmatch(f"[0-9a-f]{{{length}}}", value):
            sys.exit(f"FAIL {field} {value!r} is not {length} lowercase hex digits")
        span[field] = base64.b64encode(bytes.fromhex(value)).decode()


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in any_value.array_value.values]
    if kind is None:
        sys.exit("FAIL an attribute has no value")
    return getattr(any_value, kind)


def main():
    out = []
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        for rs in doc.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    hex_ids_to_base64(span)
        request = ExportTraceServiceRequest()
        try:
            json_format.Parse(json.dumps(doc), request, ignore_unknown_fields=False)
        except json_format.ParseError as e:
            sys.exit(f"FAIL {path} is not an ExportTraceServiceRequest: {e}")
        for rs in request.resource_spans:
            resource = {a.key: value_of(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    keys = [a.key for a in s.attributes]
                    if len(keys) != len(set(keys)):
                        sys.exit(f"FAIL span {s.name!r} repeats an attribute: {keys}")
                    if s.end_time_unix_nano < s.start_time_unix_nano:
                        sys.exit(f"FAIL span {s.name!r} ends before it starts")
                    out.append({
                        "service": resource.get("service.name"),
                        "scope": ss.scope.name,
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": s.kind,
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "status": s.status.code,
                        "attributes": {a.key: value_of(a.value) for a in s.attributes},
                    })
    print(json.dumps(out))


if __name__ == "__main__":
    main()
