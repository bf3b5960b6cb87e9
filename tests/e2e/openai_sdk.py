#!/usr/bin/env python3
"""End-to-end check of llm-relay with the official `openai` Python SDK.

Usage: openai_sdk.py RELAY_BASE_URL   (e.g. http://127.0.0.1:PORT/v1)

Driven by tests/openai_sdk.rs, which starts the OpenAI-like upstream fixture
(tests/common/upstream.rs) and a relay with one rule aliasing
ALIAS -> UPSTREAM_MODEL. The expected values below mirror that fixture.
Exits non-zero with a message on the first mismatch.
"""

import sys

from e2e_check import check

try:
    from openai import OpenAI
except ImportError as e:  # pragma: no cover
    sys.exit(f"cannot import openai ({e}); run: pip install -r tests/requirements.txt")

FIXTURE_TEXT = "Hello from the fixture."
FIXTURE_EMBEDDING = [0.1, 0.2, 0.3]
FIXTURE_MODELS = {"fixture-model-a", "fixture-model-b"}
ALIAS = "relay-alias"
UPSTREAM_MODEL = "fixture-model-a"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    client = OpenAI(base_url=sys.argv[1], api_key="test-key", max_retries=0, timeout=20)
    messages = [{"role": "user", "content": "Say hello"}]

    chat = client.chat.completions.create(model=ALIAS, messages=messages)
    check("chat content", chat.choices[0].message.content, FIXTURE_TEXT)
    check("chat model rewritten by rule", chat.model, UPSTREAM_MODEL)
    check("chat finish_reason", chat.choices[0].finish_reason, "stop")

    deltas = []
    finish = None
    stream = client.chat.completions.create(model="plain-model", messages=messages, stream=True)
    for chunk in stream:
        if chunk.choices:
            deltas.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    check("streamed chat text", "".join(deltas), FIXTURE_TEXT)
    check("streamed finish_reason", finish, "stop")

    emb = client.embeddings.create(model="embed-model", input="hello")
    vec = [round(x, 6) for x in emb.data[0].embedding]
    check("embedding vector", vec, FIXTURE_EMBEDDING)

    comp = client.completions.create(model="plain-model", prompt="Say hello")
    check("completion text", comp.choices[0].text, FIXTURE_TEXT)

    ids = {m.id for m in client.models.list()}
    check("models include upstream models and alias", ids, FIXTURE_MODELS | {ALIAS})

    print("all OpenAI SDK checks passed")


if __name__ == "__main__":
    main()
