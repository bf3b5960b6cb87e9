#!/usr/bin/env python3
"""The official `openai` Python SDK's Chat Completions through the relay to a model only an
`anthropic` endpoint serves (tests/common/anthropic.rs, strict as Anthropic: alternating
turns, paired tool ids, `max_tokens` required): the relay translates Chat → Messages and back.

Usage: translate_reverse.py RELAY_ROOT_URL   (e.g. http://127.0.0.1:PORT)

Driven by tests/translate_reverse.rs. Exits non-zero with a message on the first mismatch.
"""

import json
import sys

from e2e_check import check

try:
    from openai import OpenAI
except ImportError as e:  # pragma: no cover
    sys.exit(f"cannot import the SDK ({e}); run: pip install -r tests/requirements.txt")

TEXT = "Hello from the Anthropic fixture."
TOOL_TEXT = "It is sunny in Paris."
MODEL = "claude-sonnet-4-5"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def main(root):
    client = OpenAI(base_url=root + "/v1", api_key="test-key", max_retries=0, timeout=20)
    hello = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Say hello"}]

    plain = client.chat.completions.create(model=MODEL, messages=hello)
    check("plain text", plain.choices[0].message.content, TEXT)
    check("plain finish_reason", plain.choices[0].finish_reason, "stop")
    check("plain usage", (plain.usage.prompt_tokens, plain.usage.completion_tokens), (12, 8))

    stream = client.chat.completions.create(model=MODEL, messages=hello + [
        {"role": "user", "content": "stream it"}], stream=True,
        stream_options={"include_usage": True})
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    check("streamed text", text, TEXT)
    check("streamed finish_reason", finish, "stop")
    check("streamed usage", usage.completion_tokens if usage else None, 8)

    # a tool call round trip: the call (plain and streamed), then the tool's answer
    turn = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model=MODEL, messages=turn, tools=[WEATHER])
    check("tool finish_reason", first.choices[0].finish_reason, "tool_calls")
    call = first.choices[0].message.tool_calls[0]
    check("tool call", (call.function.name, json.loads(call.function.arguments)),
          ("get_weather", {"city": "Paris"}))

    calls = {}
    for chunk in client.chat.completions.create(model=MODEL, messages=turn, tools=[WEATHER],
                                                stream=True):
        for choice in chunk.choices:
            for d in choice.delta.tool_calls or []:
                c = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
                c["id"] = d.id or c["id"]
                if d.function:
                    c["name"] = d.function.name or c["name"]
                    c["arguments"] += d.function.arguments or ""
    check("streamed tool call", (calls[0]["id"], calls[0]["name"],
                                 json.loads(calls[0]["arguments"])),
          (call.id, "get_weather", {"city": "Paris"}))

    answer = client.chat.completions.create(model=MODEL, tools=[WEATHER], messages=turn + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 22 C"},
    ])
    check("tool round trip", answer.choices[0].message.content, TOOL_TEXT)

    again = client.chat.completions.with_raw_response.create(model=MODEL, messages=hello)
    check("plain hit", again.headers.get("x-cache"), "HIT")
    check("plain hit text", again.parse().choices[0].message.content, TEXT)
    print("all reverse translation SDK checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
