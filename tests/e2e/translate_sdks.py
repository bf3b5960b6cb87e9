#!/usr/bin/env python3
"""The official `anthropic` and `openai` Python SDKs through the relay to an upstream that
speaks only Chat Completions (tests/common/chat_model.rs): the relay translates.

Usage: translate_sdks.py RELAY_ROOT_URL   (e.g. http://127.0.0.1:PORT)

Driven by tests/translate_e2e.rs. The fixture answers "Hello from the fixture.", calls a tool
when the prompt says `CALL <tool> <json>`, and answers "TOOL SAID: <result>" after a tool result.
Exits non-zero with a message on the first mismatch.
"""

import json
import sys

from e2e_check import check

try:
    import anthropic
    from openai import OpenAI
    import openai
except ImportError as e:  # pragma: no cover
    sys.exit(f"cannot import the SDKs ({e}); run: pip install -r tests/requirements.txt")

FIXTURE_TEXT = "Hello from the fixture."
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}
CALL = 'What is the weather?\nCALL get_weather {"city":"Oslo"}'


def anthropic_checks(root):
    client = anthropic.Anthropic(base_url=root, api_key="test-key", max_retries=0, timeout=20)
    hello = [{"role": "user", "content": "Say hello"}]

    msg = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=hello)
    check("anthropic plain text", msg.content[0].text, FIXTURE_TEXT)
    check("anthropic plain stop_reason", msg.stop_reason, "end_turn")
    check("anthropic plain usage", (msg.usage.input_tokens, msg.usage.output_tokens), (12, 6))
    check("anthropic plain id", msg.id.startswith("msg_"), True)

    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=hello,
                                system="Be brief") as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    check("anthropic streamed text", text, FIXTURE_TEXT)
    check("anthropic streamed final", final.content[0].text, FIXTURE_TEXT)
    check("anthropic streamed usage", final.usage.output_tokens, 6)

    # a multi-turn tool-use round trip, plain then streamed
    turn = [{"role": "user", "content": CALL}]
    first = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, tools=[WEATHER],
                                   messages=turn)
    check("anthropic tool stop_reason", first.stop_reason, "tool_use")
    use = [b for b in first.content if b.type == "tool_use"][0]
    check("anthropic tool name and input", (use.name, use.input), ("get_weather", {"city": "Oslo"}))
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, tools=[WEATHER],
                                messages=turn) as stream:
        streamed = stream.get_final_message()
    suse = [b for b in streamed.content if b.type == "tool_use"][0]
    check("anthropic streamed tool input", (suse.name, suse.input, streamed.stop_reason),
          ("get_weather", {"city": "Oslo"}, "tool_use"))
    turn += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                           "content": "12 C and sunny"}]}]
    second = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, tools=[WEATHER],
                                    messages=turn)
    check("anthropic tool result answer", second.content[0].text, "TOOL SAID: 12 C and sunny")

    try:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=hello,
                               extra_body={"mcp_servers": [{"type": "url", "url": "http://x", "name": "x"}]})
        sys.exit("FAIL anthropic untranslatable field: no error")
    except anthropic.BadRequestError as e:
        check("anthropic 400 names the field", "mcp_servers" in str(e.body), True)
        check("anthropic error shape", e.body.get("type"), "error")


def responses_checks(root):
    client = OpenAI(base_url=root + "/v1", api_key="test-key", max_retries=0, timeout=20)
    r = client.responses.create(model="gpt-5", input="Say hello", instructions="Be brief")
    check("responses plain text", r.output_text, FIXTURE_TEXT)
    check("responses plain status", r.status, "completed")
    check("responses plain usage", (r.usage.input_tokens, r.usage.output_tokens), (12, 6))

    with client.responses.stream(model="gpt-5", input="Say hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    check("responses streamed deltas", "".join(deltas), FIXTURE_TEXT)
    check("responses streamed final", final.output_text, FIXTURE_TEXT)

    tools = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"]}}]
    first = client.responses.create(model="gpt-5", input=CALL, tools=tools)
    call = [o for o in first.output if o.type == "function_call"][0]
    check("responses function call", (call.name, json.loads(call.arguments)),
          ("get_weather", {"city": "Oslo"}))
    with client.responses.stream(model="gpt-5", input=CALL, tools=tools) as stream:
        args = "".join(e.delta for e in stream if e.type == "response.function_call_arguments.delta")
        sfinal = stream.get_final_response()
    scall = [o for o in sfinal.output if o.type == "function_call"][0]
    check("responses streamed call", (scall.name, json.loads(args), scall.call_id),
          ("get_weather", {"city": "Oslo"}, call.call_id))
    second = client.responses.create(
        model="gpt-5", tools=tools,
        input=[{"role": "user", "content": CALL},
               {"type": "function_call", "call_id": call.call_id, "name": call.name,
                "arguments": call.arguments},
               {"type": "function_call_output", "call_id": call.call_id, "output": "12 C"}])
    check("responses function output answer", second.output_text, "TOOL SAID: 12 C")

    try:
        client.responses.create(model="gpt-5", input="hi", previous_response_id="resp_1")
        sys.exit("FAIL responses untranslatable field: no error")
    except openai.BadRequestError as e:
        check("responses 400 names the field", "previous_response_id" in str(e.body), True)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1].rstrip("/")
    anthropic_checks(root)
    responses_checks(root)
    print("all translation SDK checks passed")


main()
