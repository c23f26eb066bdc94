"""The official OpenAI Python SDK (openai==2.54.0) through the tracecast gateway: whole answers,
streams, tools, an upstream error, tracecast's own errors and a client abort; each call's
generation checked where a destination receives it (a webhook, OTLP/JSON)."""

from __future__ import annotations

import json

import openai
import pytest
from openai import OpenAI

from conftest import COMPLETION, EMBEDDINGS, UPSTREAM_KEY, Fake, Gateway, wait_until


@pytest.fixture()
def client(gateway: Gateway) -> OpenAI:
    # No retries: a retried 429 would hide what the first answer was.
    return OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0, timeout=20)


def test_whole_answer(client: OpenAI, fake: Fake, gateway: Gateway) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="fake/ok",
        messages=[{"role": "user", "content": "Capital of France?"}],
        user="user-42",
        extra_body={"session_id": "sess-py", "trace": {"trace_id": "trace-py"}, "x_future": [1]},
        extra_headers={"X-Title": "SDK test"},
    )
    assert raw.headers["x-request-id"] == "req_fake_ok"
    assert raw.headers["x-ratelimit-remaining-tokens"] == "149984"
    completion = raw.parse()
    assert completion.choices[0].message.content == "Paris is the capital."
    assert completion.usage.prompt_tokens == 21
    assert completion.model_dump(exclude_unset=True) == COMPLETION

    sent = fake.requests[-1]
    assert sent["body"]["model"] == "ok"
    assert sent["body"]["x_future"] == [1]
    assert "session_id" not in sent["body"] and "trace" not in sent["body"]
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"

    span = fake.span(raw.headers["x-tracecast-generation-id"])
    assert span["gen_ai.request.model"] == "fake/ok"
    assert span["gen_ai.response.model"] == "gpt-fake-2025-01-01"
    assert span["openrouter.provider_name"] == "FakeAI"
    assert span["openrouter.api_key_hash"] == gateway.key_hash
    assert span["openrouter.api_key_name"] == "sdk-app"
    assert span["gen_ai.usage.input_tokens"] == 21
    assert span["gen_ai.usage.output_tokens"] == 6
    assert span["gen_ai.usage.input_tokens.cached"] == 8
    assert span["gen_ai.usage.output_tokens.reasoning"] == 2
    assert span["user.id"] == "user-42"
    assert span["session.id"] == "sess-py"
    assert span["openrouter.x_title"] == "SDK test"
    assert span["openrouter.streamed"] is False
    assert "Paris is the capital." in span["gen_ai.completion"]


def test_stream_without_usage_hides_the_injected_usage_chunk(client: OpenAI, fake: Fake) -> None:
    fake.release.clear()
    fake.held_finished.clear()
    stream = client.chat.completions.create(
        model="fake/ok",
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        extra_body={"x_hold": True},
    )
    text = ""
    chunks = []
    for c in stream:
        chunks.append(c)
        if c.choices and c.choices[0].delta.content:
            text += c.choices[0].delta.content
        if text == "Hel":
            # The first token is here while the upstream still holds the rest.
            assert not fake.held_finished.is_set()
            fake.release.set()
    assert text == "Hello"
    assert all(c.choices for c in chunks), "the usage-only chunk reached the client"
    assert all(c.usage is None for c in chunks)
    assert fake.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    gen_id = stream.response.headers["x-tracecast-generation-id"]
    span = fake.span(gen_id)
    assert span["openrouter.streamed"] is True
    assert span["gen_ai.usage.input_tokens"] == 11
    assert span["gen_ai.usage.output_tokens"] == 3
    assert span["openrouter.time_to_first_token_ms"] > 0
    assert json.loads(span["gen_ai.completion"])["completion"] == "Hello"


def test_stream_with_usage_asked(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="fake/ok",
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 14


def test_streamed_tool_calls(client: OpenAI, fake: Fake) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    # The SDK's own stream helper assembles the tool call from the chunks as they pass.
    with client.chat.completions.stream(
        model="fake/tools",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    # The stream helper does not expose the answer's headers: find the span by its prompt.
    span = fake.span_where("the tool call's span", lambda s: "Weather in Paris?" in s.get("gen_ai.prompt", ""))
    assert span["gen_ai.response.finish_reason"] == "tool_calls"
    captured = json.loads(span["gen_ai.completion"])["tool_calls"][0]
    assert captured["function"]["name"] == "get_weather"
    assert json.loads(captured["function"]["arguments"]) == {"city": "Paris"}


def test_upstream_error_raises_the_sdk_exception(client: OpenAI, fake: Fake) -> None:
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="fake/rate-limited", messages=[{"role": "user", "content": "hi"}])
    err = e.value
    assert err.status_code == 429
    assert err.code == "rate_limit_exceeded"
    assert err.message.startswith("Error code: 429")
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.response.headers["retry-after"] == "7"
    assert err.request_id == "req_fake_429"
    span = fake.span(err.response.headers["x-tracecast-generation-id"])
    assert span["_status"].get("code") == 2
    assert span["_status"].get("message") == "Rate limit reached for requests"


def test_own_errors_raise_the_sdk_exceptions(gateway: Gateway) -> None:
    bad = OpenAI(base_url=gateway.base_url, api_key="sk-not-a-tracecast-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="fake/ok", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401
    assert e.value.code == "invalid_api_key"
    good = OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        good.chat.completions.create(model="nobody/serves-this", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found"
    assert e.value.param == "model"
    mgmt = OpenAI(base_url=gateway.base_url, api_key=gateway.mgmt_key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        mgmt.chat.completions.create(model="fake/ok", messages=[{"role": "user", "content": "hi"}])


def test_client_abort_cancels_the_upstream(client: OpenAI, fake: Fake) -> None:
    fake.endless_cancelled.clear()
    stream = client.chat.completions.create(
        model="fake/endless", messages=[{"role": "user", "content": "Count"}], stream=True
    )
    first = next(iter(stream))
    assert first.choices[0].delta.content == "t0 "
    gen_id = stream.response.headers["x-tracecast-generation-id"]
    stream.close()
    wait_until("the upstream to see the call cancelled", fake.endless_cancelled.is_set)
    span = fake.span(gen_id)
    assert span["openrouter.cancelled"] is True
    assert "t0 " in span["gen_ai.completion"]


def test_embeddings(client: OpenAI, fake: Fake) -> None:
    raw = client.embeddings.with_raw_response.create(model="fake/emb", input="hello world", encoding_format="float")
    result = raw.parse()
    assert result.data[0].embedding == EMBEDDINGS["data"][0]["embedding"]
    assert result.usage.prompt_tokens == 2
    span = fake.span(raw.headers["x-tracecast-generation-id"])
    assert span["openrouter.api_type"] == "embeddings"
    assert span["gen_ai.usage.input_tokens"] == 2


def test_models_are_listed_under_the_names_calls_use(client: OpenAI) -> None:
    # The fake upstream serves `fake/*`: its models are listed with that prefix, which is what
    # a call must send as `model`.
    models = list(client.models.list())
    assert [m.id for m in models] == ["fake/gpt-fake", "fake/text-embedding-fake"]
    assert models[0].owned_by == "fake"
