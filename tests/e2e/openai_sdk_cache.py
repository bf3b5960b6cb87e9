#!/usr/bin/env python3
"""The cache in the shape the official `openai` Python SDK expects (issue 11).

Usage: openai_sdk_cache.py RELAY_BASE_URL   (e.g. http://127.0.0.1:PORT/v1)

Driven by tests/openai_sdk.rs: a relay with the cache on (`mode_header: ["replay"]`) in front
of the OpenAI-like fixture (tests/common/openai.rs), whose stream ends with a usage chunk
only when asked. Exits non-zero with a message on the first mismatch.
"""

import sys

from e2e_check import check

try:
    import openai
    from openai import OpenAI
except ImportError as e:  # pragma: no cover
    sys.exit(f"cannot import openai ({e}); run: pip install -r tests/requirements.txt")

FIXTURE_TEXT = "Hello from the fixture."


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    client = OpenAI(base_url=sys.argv[1], api_key="test-key", max_retries=0, timeout=20)
    ask = dict(model="m", messages=[{"role": "user", "content": "cache me"}], temperature=0.2)

    def stream(**extra):
        raw = client.chat.completions.with_raw_response.create(stream=True, **ask, **extra)
        text, usage, chunks = "", None, 0
        for chunk in raw.parse():
            chunks += 1
            if chunk.usage is not None:
                usage = chunk.usage
            if not extra:
                # the README's loop: every chunk has a choice unless usage was asked for
                text += chunk.choices[0].delta.content or ""
            elif chunk.choices:
                text += chunk.choices[0].delta.content or ""
        return raw.headers.get("x-cache"), text, usage

    check("first stream is a miss", stream()[0], "MISS")
    x, text, usage = stream(stream_options={"include_usage": True})
    check("stream with include_usage is a hit", x, "HIT")
    check("its text", text, FIXTURE_TEXT)
    check("its usage chunk", usage.total_tokens if usage else None, 9)
    x, text, usage = stream()
    check("stream without include_usage is a hit", x, "HIT")
    check("no usage chunk (choices[0] works on every chunk)", (text, usage), (FIXTURE_TEXT, None))

    raw = client.chat.completions.with_raw_response.create(**ask)
    plain = raw.parse()
    check("plain request is a hit", raw.headers.get("x-cache"), "HIT")
    check("plain hit has usage", plain.usage.total_tokens if plain.usage else None, 9)
    check("plain hit content", plain.choices[0].message.content, FIXTURE_TEXT)

    changed = dict(ask, temperature=0.7)
    try:
        client.chat.completions.create(
            **changed, extra_headers={"X-Relay-Cache-Mode": "replay"}
        )
        sys.exit("FAIL replay miss: expected an error, got an answer")
    except openai.NotFoundError as e:
        check("replay miss code", e.code, "cache_miss")
        check("replay miss names the field", "temperature" in e.message, True)
        check("replay miss closest differs", e.body.get("closest", {}).get("differs"), ["temperature"])
    print("all cache SDK checks passed")


if __name__ == "__main__":
    main()
