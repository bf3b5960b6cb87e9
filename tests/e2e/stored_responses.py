#!/usr/bin/env python3
"""Stored translated responses, checked with the official `openai` Python SDK through the relay
to the chat-only fixture (tests/common/chat_model.rs).

Usage: stored_responses.py RELAY_ROOT_URL KEY_A KEY_B

Key A: responses.create → responses.retrieve (the same object) → responses.create with
previous_response_id → input_items.list (the second request's own input) → a tool call answered by a
`function_call_output` with previous_response_id → a streamed create
is retrievable too, and replayed as its events with `stream=True` (from `starting_after`) → delete (then retrieve is a 404). Key B: retrieve of A's response is a 404
and previous_response_id of it a 400 `previous_response_not_found`. Prints
`ids {"first": ..., "second": ..., "streamed": ...}` and `check stored passed`.
Driven by tests/translate_stored.rs. Exits non-zero with a message on the first mismatch.
"""

import json
import sys

from e2e_check import check

try:
    import openai
    from openai import OpenAI
except ImportError as e:  # pragma: no cover
    sys.exit(f"cannot import the SDK ({e}); run: pip install -r tests/requirements.txt")


def client(root, key):
    return OpenAI(base_url=root + "/v1", api_key=key, max_retries=0, timeout=20)


def refused(call):
    try:
        call()
    except openai.APIStatusError as e:
        return e.status_code, (e.body or {}).get("code") if isinstance(e.body, dict) else None
    return None


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    root, key_a, key_b = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    a, b = client(root, key_a), client(root, key_b)
    first = a.responses.create(model="gpt-5", input="My favourite colour is blue.")
    check("a translated response has an id", first.id.startswith("resp_"), True)
    got = a.responses.retrieve(first.id)
    check("retrieve answers the same object", got.model_dump(), first.model_dump())
    second = a.responses.create(model="gpt-5", previous_response_id=first.id,
                                input=[{"role": "user", "content": "Which colour?"}])
    check("the continuation is a new response that repeats previous_response_id",
          (second.id != first.id, second.previous_response_id), (True, first.id))
    items = a.responses.input_items.list(second.id)
    texts = [(i.type, i.role, [c.text for c in i.content]) for i in items.data]
    check("input_items lists the request's own input", texts,
          [("message", "user", ["Which colour?"])])
    tools = [{"type": "function", "name": "get_weather", "description": "Weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    asked = a.responses.create(model="gpt-5", tools=tools,
                               input='Weather?\nCALL get_weather {"city": "Oslo"}')
    call = [o for o in asked.output if o.type == "function_call"][0]
    answered = a.responses.create(
        model="gpt-5", tools=tools, previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "12 C"}])
    check("a tool result continues the stored call", answered.output_text, "TOOL SAID: 12 C")
    with a.responses.stream(model="gpt-5", input="Stream me") as stream:
        for _ in stream:
            pass
        streamed = stream.get_final_response()
    kept = a.responses.retrieve(streamed.id)
    check("a streamed response is stored as it streamed",
          (kept.id, kept.status, kept.output_text, kept.usage.model_dump()),
          (streamed.id, streamed.status, streamed.output_text, streamed.usage.model_dump()))
    replayed = list(a.responses.retrieve(streamed.id, stream=True))
    check("retrieve with stream=True replays the stored response as its events",
          (replayed[0].type, replayed[-1].type, replayed[-1].response.model_dump(),
           "".join(e.delta for e in replayed if e.type == "response.output_text.delta"),
           [e.sequence_number for e in replayed] == list(range(len(replayed)))),
          ("response.created", "response.completed", kept.model_dump(), kept.output_text, True))
    later = list(a.responses.retrieve(streamed.id, stream=True, starting_after=2))
    check("starting_after leaves out the events up to it",
          [e.sequence_number for e in later], [e.sequence_number for e in replayed[3:]])
    check("another key cannot read it", refused(lambda: b.responses.retrieve(first.id)),
          (404, None))
    check("nor continue from it",
          refused(lambda: b.responses.create(model="gpt-5", previous_response_id=first.id,
                                             input="x")),
          (400, "previous_response_not_found"))
    a.responses.delete(streamed.id)
    check("a deleted response is gone",
          refused(lambda: a.responses.retrieve(streamed.id))[0], 404)
    print("ids " + json.dumps({"first": first.id, "second": second.id, "streamed": streamed.id}))
    print("check stored passed")


main()
