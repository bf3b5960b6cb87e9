#!/usr/bin/env python3
"""What agents need from translation, checked with the official `anthropic` and `openai` Python
SDKs through the relay to the chat-only fixture (tests/common/chat_model.rs).

Usage: translate_exact.py RELAY_ROOT_URL CHECK...   (e.g. http://127.0.0.1:PORT parallel)

Checks: `parallel` — two tool calls the fixture streams interleaved (call 0's head, call 1's
head, call 0's arguments, call 1's arguments) reach `messages.stream` and `responses.stream`
whole and equal to the plain answer's calls. `images` — tool results holding an image (a
Messages `tool_result`, a Responses `function_call_output`) are answered. `stop` — a stop
sequence the upstream says matched is `stop_reason: stop_sequence` with its value. `echo` —
a translated Response repeats the request's fields (needs a relay with a cache).
Driven by tests/translate_exact.rs. Exits non-zero with a message on the first mismatch.
"""

import json
import sys

from e2e_check import check

try:
    import anthropic
    from openai import OpenAI
except ImportError as e:  # pragma: no cover
    sys.exit(f"cannot import the SDKs ({e}); run: pip install -r tests/requirements.txt")

WEATHER_ARGS = {"city": "Oslo", "units": "metric"}
TIME_ARGS = {"zone": "Europe/Oslo"}
PARALLEL = ("Weather and time?\nCALL get_weather " + json.dumps(WEATHER_ARGS)
            + "\nCALL get_time " + json.dumps(TIME_ARGS))


def schema(*props):
    return {"type": "object", "properties": {p: {"type": "string"} for p in props}}


ANTHROPIC_TOOLS = [
    {"name": "get_weather", "description": "Weather", "input_schema": schema("city", "units")},
    {"name": "get_time", "description": "Time", "input_schema": schema("zone")},
]
RESPONSES_TOOLS = [
    {"type": "function", "name": t["name"], "description": t["description"],
     "parameters": t["input_schema"]} for t in ANTHROPIC_TOOLS
]
WANT = [("get_weather", WEATHER_ARGS), ("get_time", TIME_ARGS)]


def anthropic_client(root):
    return anthropic.Anthropic(base_url=root, api_key="test-key", max_retries=0, timeout=20)


def responses_client(root):
    return OpenAI(base_url=root + "/v1", api_key="test-key", max_retries=0, timeout=20)


def parallel(root):
    client = anthropic_client(root)
    args = dict(model="claude-sonnet-4-5", max_tokens=100, tools=ANTHROPIC_TOOLS,
                messages=[{"role": "user", "content": PARALLEL}])
    plain = client.messages.create(**args)
    with client.messages.stream(**args) as stream:
        events = list(stream)
        streamed = stream.get_final_message()
    uses = lambda m: [(b.id, b.name, b.input) for b in m.content if b.type == "tool_use"]
    check("anthropic plain parallel calls", [(n, i) for _, n, i in uses(plain)], WANT)
    check("anthropic streamed parallel calls equal the plain ones", uses(streamed), uses(plain))
    check("anthropic streamed stop_reason", streamed.stop_reason, "tool_use")
    # each block's events are contiguous: start, deltas, stop, before the next block starts
    open_block = None
    for e in events:
        if e.type == "content_block_start":
            check("a block starts only after the previous one stopped", open_block, None)
            open_block = e.index
        elif e.type in ("content_block_delta", "content_block_stop"):
            check(f"{e.type} belongs to the open block", e.index, open_block)
            if e.type == "content_block_stop":
                open_block = None

    client = responses_client(root)
    args = dict(model="gpt-5", input=PARALLEL, tools=RESPONSES_TOOLS)
    plain = client.responses.create(**args)
    with client.responses.stream(**args) as stream:
        events = list(stream)
        final = stream.get_final_response()
    calls = lambda r: [(o.call_id, o.name, json.loads(o.arguments))
                       for o in r.output if o.type == "function_call"]
    check("responses plain parallel calls", [(n, a) for _, n, a in calls(plain)], WANT)
    check("responses streamed parallel calls equal the plain ones", calls(final), calls(plain))
    done = [(e.item.name, json.loads(e.item.arguments)) for e in events
            if e.type == "response.output_item.done" and e.item.type == "function_call"]
    check("responses output_item.done carries whole arguments", done, WANT)
    deltas = {}
    for e in events:
        if e.type == "response.function_call_arguments.delta":
            deltas[e.output_index] = deltas.get(e.output_index, "") + e.delta
    check("responses argument deltas add up", [json.loads(d) for d in deltas.values()],
          [a for _, a in WANT])


PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def images(root):
    """A tool result holding text and an image, from each SDK (the Rust side checks what the
    upstream got)."""
    client = anthropic_client(root)
    first = client.messages.create(model="claude-sonnet-4-5", max_tokens=100,
                                   tools=ANTHROPIC_TOOLS,
                                   messages=[{"role": "user", "content": PARALLEL}])
    turn = [{"role": "user", "content": PARALLEL},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": first.content[0].id, "content": [
                    {"type": "text", "text": "Temperature: 12 C"},
                    {"type": "text", "text": "Wind: 3 m/s"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": PNG}}]},
                {"type": "tool_result", "tool_use_id": first.content[1].id,
                 "content": "09:00"}]}]
    second = client.messages.create(model="claude-sonnet-4-5", max_tokens=100,
                                    tools=ANTHROPIC_TOOLS, messages=turn)
    check("anthropic answer after an image tool result", second.content[0].text,
          "TOOL SAID: Temperature: 12 C\n\nWind: 3 m/s | 09:00")

    client = responses_client(root)
    answer = client.responses.create(
        model="gpt-5", tools=RESPONSES_TOOLS,
        input=[{"role": "user", "content": "look"},
               {"type": "function_call", "call_id": "call_v", "name": "get_weather",
                "arguments": "{}"},
               {"type": "function_call_output", "call_id": "call_v", "output": [
                   {"type": "input_text", "text": "chart.png"},
                   {"type": "input_image", "image_url": "data:image/png;base64," + PNG}]}])
    check("responses answer after an image function output", answer.output_text,
          "TOOL SAID: chart.png")


def stop_sequences(root):
    """The fixture stops at "fixture" and says so (`choices[].stop_reason`)."""
    client = anthropic_client(root)
    args = dict(model="claude-sonnet-4-5", max_tokens=100, stop_sequences=["nothing", "fixture"],
                messages=[{"role": "user", "content": "Say hello"}])
    plain = client.messages.create(**args)
    check("anthropic plain stop sequence", (plain.content[0].text, plain.stop_reason,
                                             plain.stop_sequence),
          ("Hello from the ", "stop_sequence", "fixture"))
    with client.messages.stream(**args) as stream:
        final = stream.get_final_message()
    check("anthropic streamed stop sequence", (final.content[0].text, final.stop_reason,
                                                final.stop_sequence),
          ("Hello from the ", "stop_sequence", "fixture"))
    args["stop_sequences"] = ["nothing"]
    plain = client.messages.create(**args)
    check("no stop sequence matched", (plain.stop_reason, plain.stop_sequence),
          ("end_turn", None))


def echo(root):
    """A translated Response repeats the request's fields, plain, streamed and from the cache
    (the relay runs with a cache: the second plain request is a hit)."""
    client = responses_client(root)
    schema_format = {"type": "json_schema", "name": "hello", "strict": True,
                     "schema": {"type": "object", "properties": {}, "additionalProperties": False}}
    args = dict(model="gpt-5", input="Say hello", instructions="Be brief", tools=RESPONSES_TOOLS,
                tool_choice={"type": "function", "name": "get_time"}, parallel_tool_calls=False,
                max_output_tokens=77, temperature=0.25, top_p=0.5, text={"format": schema_format},
                reasoning={"effort": "low"})

    def fields(r):
        return (r.instructions, [t.name for t in r.tools], r.tool_choice.name,
                r.parallel_tool_calls, r.max_output_tokens, r.temperature, r.top_p,
                r.text.format.name, r.reasoning.effort, r.metadata)

    want = ("Be brief", ["get_weather", "get_time"], "get_time", False, 77, 0.25, 0.5, "hello",
            "low", {"run": "1"})
    plain = client.responses.create(metadata={"run": "1"}, **args)
    check("responses plain echoes the request", fields(plain), want)
    with client.responses.stream(metadata={"run": "1"}, **{**args, "input": "Hello again"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    check("responses streamed final echoes the request", fields(final), want)
    created = [e for e in events if e.type == "response.created"][0].response
    check("response.created echoes the request", fields(created), want)
    raw = client.responses.with_raw_response.create(metadata={"run": "2"}, **args)
    hit = raw.parse()
    check("a cache hit echoes this request, not the stored one's",
          (raw.headers.get("x-cache"), fields(hit)[-1]), ("HIT", {"run": "2"}))
    bare = client.responses.create(model="gpt-5", input="Say hello")
    check("defaults as OpenAI's", (bare.instructions, bare.tools, bare.tool_choice,
                                   bare.parallel_tool_calls, bare.max_output_tokens,
                                   bare.temperature, bare.top_p, bare.text.format.type,
                                   bare.metadata),
          (None, [], "auto", True, None, 1.0, 1.0, "text", {}))
    check("store as OpenAI's default", bare.store, True)
    unstored = client.responses.with_raw_response.create(model="gpt-5", input="Say hello",
                                                         store=False)
    check("a hit echoes this request's store: false",
          (unstored.headers.get("x-cache"), unstored.parse().store), ("HIT", False))


CHECKS = {"parallel": parallel, "images": images, "stop": stop_sequences, "echo": echo}


def main():
    if len(sys.argv) < 3 or any(c not in CHECKS for c in sys.argv[2:]):
        sys.exit(__doc__)
    root = sys.argv[1].rstrip("/")
    for name in sys.argv[2:]:
        CHECKS[name](root)
        print(f"check {name} passed")


main()
