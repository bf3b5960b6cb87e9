#!/usr/bin/env python3
"""Billed pass-through calls with the official `openai` Python SDK: an image generation (JSON
body), a streamed one, and a transcription (a multipart upload the SDK encodes itself) through
the relay with a client key, each answer as the SDK reads it.

Usage: passthrough_usage_sdk.py RELAY_BASE_URL CLIENT_KEY

Driven by tests/access_usage_passthrough.rs, whose upstream fixture answers these routes with
the usage figures checked below; the Rust test then reads the key's usage from the admin API.
"""

import sys

from e2e_check import check

try:
    from openai import OpenAI
except ImportError as e:  # pragma: no cover
    sys.exit(f"cannot import openai ({e}); run: pip install -r tests/requirements.txt")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0, timeout=30)

    image = client.images.generate(model="gpt-image-1", prompt="a lighthouse")
    check("image usage", (image.usage.input_tokens, image.usage.output_tokens), (50, 4160))
    check("image data", image.data[0].b64_json[:11], "iVBORw0KGgo")

    events = list(client.images.generate(model="gpt-image-1", prompt="a lighthouse", stream=True))
    check("streamed image events", [e.type for e in events],
          ["image_generation.partial_image", "image_generation.completed"])
    check("streamed image usage", events[-1].usage.output_tokens, 1056)

    audio = b"RIFF" + bytes(range(256)) * 64
    heard = client.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("hello.wav", audio, "audio/wav"))
    check("transcription text", heard.text, "Hello there.")
    check("transcription usage", heard.usage.total_tokens, 59)

    print("all pass-through SDK checks passed")


if __name__ == "__main__":
    main()
