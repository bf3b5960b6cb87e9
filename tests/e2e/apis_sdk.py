#!/usr/bin/env python3
"""End to end with the official SDKs on the Responses and Messages APIs (issue 12).

Usage: apis_sdk.py RELAY_ROOT   (e.g. http://127.0.0.1:PORT, no /v1)

Driven by tests/apis_sdk.rs: a relay with the cache on and auth key `relay-client-key`, in
front of fixture upstreams that speak the Responses API (tests/common/responses.rs) and
Anthropic Messages (tests/common/anthropic.rs). The expected values mirror those fixtures.
Checks: openai Responses plain / stream / function tools and both cross-mode cache hits
through the SDK's own stream accumulator; an openai-agents agent that calls a tool; the
anthropic SDK plain / stream / a tool-use round trip / cross-mode hits / its error classes.
"""

import sys

from e2e_check import check

try:
    import anthropic
    from openai import OpenAI, AsyncOpenAI
    import agents
except ImportError as e:  # pragma: no cover
    sys.exit(f"cannot import the SDKs ({e}); run: pip install -r tests/requirements.txt")

RESPONSES_TEXT = "Hello from the Responses fixture."
RESPONSES_TOOL_TEXT = "It is sunny in Paris."
ANTHROPIC_TEXT = "Hello from the Anthropic fixture."
ANTHROPIC_TOOL_TEXT = "It is sunny in Paris."
KEY = "relay-client-key"
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}


def dump(model):
    """A model as plain data, without the `parsed` members the stream helpers add."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "parsed"}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    return strip(model.model_dump())


def openai_responses(root):
    client = OpenAI(base_url=f"{root}/v1", api_key=KEY, max_retries=0, timeout=20)
    r = client.responses.create(model="relay-alias", input="Say hello")
    check("responses plain text", r.output_text, RESPONSES_TEXT)
    check("responses model rewritten by rule", r.model, "fixture-model-a")

    with client.responses.stream(model="plain-model", input="Stream please") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    check("responses streamed deltas", "".join(deltas), RESPONSES_TEXT)
    check("responses stream final text", final.output_text, RESPONSES_TEXT)

    # a streamed repeat of the plain request is a hit built from the stored answer
    raw = client.responses.with_raw_response.create(model="relay-alias", input="Say hello")
    check("responses plain repeat is a hit", raw.headers.get("x-cache"), "HIT")
    with client.responses.stream(model="relay-alias", input="Say hello") as s:
        hit = s.get_final_response()
    check("responses streamed hit from plain answer", dump(hit), dump(r))
    # a plain repeat of the streamed request is the response of response.completed
    again = client.responses.create(model="plain-model", input="Stream please")
    check("responses plain hit from a stream", dump(again), dump(final))

    t = client.responses.create(model="m", input="Weather in Paris?", tools=[WEATHER_TOOL])
    call = t.output[0]
    check("function call item", (call.type, call.name), ("function_call", "get_weather"))
    check("function call arguments", call.arguments, '{"city":"Paris"}')
    with client.responses.stream(model="m", input="Weather in Paris, streamed?",
                                 tools=[WEATHER_TOOL]) as s:
        args = [e.delta for e in s if e.type == "response.function_call_arguments.delta"]
        streamed_call = s.get_final_response().output[0]
    check("streamed function call arguments", "".join(args), '{"city":"Paris"}')
    check("streamed function call", streamed_call.name, "get_weather")
    follow = client.responses.create(model="m", tools=[WEATHER_TOOL], input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name,
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ])
    check("answer after the tool output", follow.output_text, RESPONSES_TOOL_TEXT)
    got = client.responses.retrieve("resp_fixture1")
    check("responses.retrieve passes through", got.id, "resp_fixture1")


def openai_agent(root):
    client = AsyncOpenAI(base_url=f"{root}/v1", api_key=KEY, max_retries=0, timeout=20)
    agents.set_default_openai_client(client, use_for_tracing=False)
    agents.set_default_openai_api("responses")
    agents.set_tracing_disabled(True)
    calls = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    agent = agents.Agent(name="weather", instructions="Answer with the weather.",
                         tools=[get_weather], model="fixture-model-a")
    result = agents.Runner.run_sync(agent, "What is the weather in Paris?")
    check("agent called its tool", calls, ["Paris"])
    check("agent final output", result.final_output, RESPONSES_TOOL_TEXT)


def anthropic_messages(root):
    client = anthropic.Anthropic(base_url=root, api_key=KEY, max_retries=0, timeout=20)
    ask = [{"role": "user", "content": "Say hello"}]
    m = client.messages.create(model="claude-fixture", max_tokens=64, messages=ask)
    check("messages plain text", m.content[0].text, ANTHROPIC_TEXT)
    check("messages stop_reason", m.stop_reason, "end_turn")
    with client.messages.stream(model="claude-fixture", max_tokens=64, messages=ask) as s:
        text = "".join(s.text_stream)
        streamed = s.get_final_message()
    check("messages streamed hit from plain answer (text)", text, ANTHROPIC_TEXT)
    check("messages streamed hit from plain answer", dump(streamed), dump(m))

    fresh = [{"role": "user", "content": "Stream first"}]
    with client.messages.stream(model="claude-fixture", max_tokens=64, messages=fresh) as s:
        text = "".join(s.text_stream)
        first = s.get_final_message()
    check("messages streamed text", text, ANTHROPIC_TEXT)
    plain = client.messages.create(model="claude-fixture", max_tokens=64, messages=fresh)
    check("messages plain hit from a stream", dump(plain), dump(first))

    tools = [{"name": "get_weather", "description": "Weather in a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    q = [{"role": "user", "content": "Weather in Paris?"}]
    with client.messages.stream(model="claude-fixture", max_tokens=64, messages=q,
                                tools=tools) as s:
        t = s.get_final_message()
    check("tool use stop_reason", t.stop_reason, "tool_use")
    use = [b for b in t.content if b.type == "tool_use"][0]
    check("tool use input (streamed input_json_delta)", use.input, {"city": "Paris"})
    turn = q + [
        {"role": "assistant", "content": [b.model_dump() for b in t.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                      "content": "sunny"}]},
    ]
    done = client.messages.create(model="claude-fixture", max_tokens=64, messages=turn,
                                  tools=tools)
    check("answer after tool_result", done.content[0].text, ANTHROPIC_TOOL_TEXT)
    n = client.messages.count_tokens(model="claude-fixture", messages=q)
    check("count_tokens passes through", n.input_tokens, 12)

    bad = anthropic.Anthropic(base_url=root, api_key="wrong", max_retries=0, timeout=20)
    try:
        bad.messages.create(model="claude-fixture", max_tokens=8, messages=ask)
        sys.exit("FAIL a wrong relay key was accepted")
    except anthropic.AuthenticationError as e:
        check("wrong key is an anthropic AuthenticationError", e.body["error"]["type"],
              "authentication_error")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    openai_responses(root)
    openai_agent(root)
    anthropic_messages(root)
    print("all Responses and Messages SDK checks passed")


if __name__ == "__main__":
    main()
