#!/usr/bin/env python3
"""Makes the calls of a plan with the official `anthropic` and `openai` Python SDKs and writes
what each SDK gave back: the walk of the README's translation table through the relay
(tests/translate_rows.rs builds the plan from the table and judges the results).

Usage: translate_rows.py PLAN_JSON RESULTS_JSON

PLAN_JSON: {"roots": {"anthropic": URL, "responses": URL, "chat": URL, "responses_pivot": URL},
"calls": [{"tag", "api", "client", "stream", "request"}]}. Each call is made with the SDK of its
`api` on the root its `client` names (default: its `api`), carrying the header
`x-row: TAG` (the fixture answers by it): `anthropic` → `messages.create`, streamed
`messages.stream(...).get_final_message()`; `responses` → `responses.create`, streamed
`responses.stream(...)` and its final Response (`get_final_response()`, or the Response of its
`response.incomplete` event: the SDK's `get_final_response` wants `response.completed`);
`chat` → `chat.completions.create`, streamed `chat.completions.stream(...).get_final_completion()`
(the SDK's own accumulation of the chunks; for `finish_reason: length` the completion its
`LengthFinishReasonError` carries). Request fields a method does not name go in
`extra_body`, as a program would send them.

RESULTS_JSON: one entry per call, by tag: {"final": the SDK object as JSON} or {"status", "type",
"param", "message"} for an API error, or {"exception": text} for anything else.
"""

import inspect
import json
import sys

try:
    import anthropic
    import openai
except ImportError as e:  # pragma: no cover
    sys.exit(f"cannot import the SDKs ({e}); run: pip install -r tests/requirements.txt")


def split(method, request):
    """The request as the method's keyword arguments, the fields it does not name in extra_body."""
    named = inspect.signature(method).parameters
    kwargs = {k: v for k, v in request.items() if k in named}
    extra = {k: v for k, v in request.items() if k not in named}
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def final_response(stream):
    """The last Response a Responses stream carried (completed, incomplete or failed)."""
    last = None
    for event in stream:
        if event.type in ("response.completed", "response.incomplete", "response.failed"):
            last = event.response
    if last is not None and last.status == "completed":
        return stream.get_final_response()
    return last


def call(all_clients, c):
    api, request, headers = c["api"], dict(c["request"]), {"x-row": c["tag"]}
    clients = {api: all_clients[c.get("client", api)]}
    streamed = request.pop("stream", False) or c["stream"]
    if api == "anthropic":
        messages = clients["anthropic"].messages
        if not streamed:
            return messages.create(**split(messages.create, request), extra_headers=headers)
        with messages.stream(**split(messages.stream, request), extra_headers=headers) as s:
            return s.get_final_message()
    if api == "responses":
        responses = clients["responses"].responses
        if not streamed:
            return responses.create(**split(responses.create, request), extra_headers=headers)
        with responses.stream(**split(responses.stream, request), extra_headers=headers) as s:
            return final_response(s)
    completions = clients["chat"].chat.completions
    if not streamed:
        return completions.create(**split(completions.create, request), extra_headers=headers)
    with completions.stream(**split(completions.stream, request), extra_headers=headers) as s:
        try:
            return s.get_final_completion()
        except openai.LengthFinishReasonError as e:
            # the helper refuses to parse a cut answer; the completion it accumulated is here
            return e.completion


def main(plan_path, results_path):
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    roots = plan["roots"]
    clients = {
        "anthropic": anthropic.Anthropic(base_url=roots["anthropic"], api_key="test-key",
                                         max_retries=0, timeout=20),
        "responses": openai.OpenAI(base_url=roots["responses"] + "/v1", api_key="test-key",
                                   max_retries=0, timeout=20),
        "chat": openai.OpenAI(base_url=roots["chat"] + "/v1", api_key="test-key",
                              max_retries=0, timeout=20),
        "responses_pivot": openai.OpenAI(base_url=roots["responses_pivot"] + "/v1",
                                         api_key="test-key", max_retries=0, timeout=20),
    }
    results = {}
    for c in plan["calls"]:
        try:
            got = call(clients, c)
            results[c["tag"]] = {"final": None if got is None else got.model_dump(mode="json")}
        except (anthropic.APIStatusError, openai.APIStatusError) as e:
            body = e.body if isinstance(e.body, dict) else {}
            error = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
            results[c["tag"]] = {"status": e.status_code, "type": error.get("type"),
                                 "param": error.get("param"), "message": str(e)}
        except Exception as e:  # noqa: BLE001 - every failure is reported by row
            results[c["tag"]] = {"exception": f"{type(e).__name__}: {e}"}
    with open(results_path, "w", encoding="utf-8") as f:
        json.dump(results, f)
    print(f"made {len(results)} calls")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
