#!/usr/bin/env python3
"""Builds the gateway's default price table from LiteLLM's model price list.

Source: `model_prices_and_context_window_backup.json` of the `litellm` package (BerriAI/litellm,
MIT licence; the copy in the wheel is the same file as `model_prices_and_context_window.json`
at the repository root). Usage:

    pip download --no-deps litellm==1.108.5 -d /tmp/litellm && cd /tmp/litellm && unzip -o litellm-*.whl
    scripts/gateway_prices.py /tmp/litellm/litellm/model_prices_and_context_window_backup.json 1.108.5 \
        > crates/tracecast-server/src/gateway/prices/default.json

Keeps text models (modes chat, completion, responses, embedding) of the providers below, keyed
by the model's own name (the provider prefix LiteLLM puts on some keys, `gemini/`, `mistral/`,
..., removed), with the per-token USD prices of input, output, cached input reads and cache
writes. When two providers list one name, the first provider in PROVIDERS wins.
"""

import json
import sys

PROVIDERS = [
    "openai",
    "text-completion-openai",
    "anthropic",
    "gemini",
    "vertex_ai-language-models",
    "mistral",
    "deepseek",
    "xai",
    "groq",
    "cohere_chat",
    "cohere",
    "perplexity",
]
MODES = {"chat", "completion", "responses", "embedding"}
FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
}


def main() -> None:
    src, version = sys.argv[1], sys.argv[2]
    data = json.load(open(src))
    out = {}
    for provider in PROVIDERS:
        for key, v in sorted(data.items()):
            if not isinstance(v, dict) or v.get("litellm_provider") != provider:
                continue
            if v.get("mode") not in MODES or "input_cost_per_token" not in v:
                continue
            name = key.split("/", 1)[1] if "/" in key and key.split("/", 1)[0] in (provider, "gemini", "mistral", "deepseek", "xai", "groq", "perplexity", "cohere") else key
            if name in out:
                continue
            entry = {FIELDS[f]: v[f] for f in FIELDS if isinstance(v.get(f), (int, float))}
            out[name] = entry
    doc = {
        "_source": f"LiteLLM {version}, model_prices_and_context_window.json (https://github.com/BerriAI/litellm), MIT licence",
        "models": out,
    }
    json.dump(doc, sys.stdout, indent=0, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
