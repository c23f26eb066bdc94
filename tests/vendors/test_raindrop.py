"""The golden Raindrop events against Raindrop's own Python SDK (raindrop-ai 0.0.75).

`crates/tracecast-exporters/tests/golden/raindrop.json` (events with `ai_data`) and
`raindrop_private.json` (privacy mode: no `ai_data`) are bodies of `POST /v1/events/track`.
Each event must load into the SDK's own model (`raindrop.models.TrackAIEvent`, or
`TrackEvent` without `ai_data`; both `extra="forbid"`), and serialise back, the way
`raindrop.analytics.track_ai` / `track` put it on the wire (`ai_data` without its null fields),
to the event we sent.
"""

import json
import pathlib
from datetime import datetime

import pytest
from raindrop.models import AIData, TrackAIEvent, TrackEvent

GOLDEN = pathlib.Path(__file__).resolve().parents[2] / "crates/tracecast-exporters/tests/golden"


def events(name):
    body = json.loads((GOLDEN / name).read_text())
    assert isinstance(body, list), "the track endpoint takes an array of events"
    return body


def wire(model, has_ai):
    """What the SDK sends for a validated event (analytics.track_ai / track)."""
    data = model.model_dump(mode="json")
    if has_ai:
        data["ai_data"] = model.ai_data.model_dump(mode="json", exclude_none=True)
    if data.get("attachments") is None:
        data.pop("attachments", None)
    return data


def same_event(ours, sdk):
    ours, sdk = dict(ours), dict(sdk)
    t_ours = datetime.fromisoformat(ours.pop("timestamp").replace("Z", "+00:00"))
    t_sdk = datetime.fromisoformat(sdk.pop("timestamp").replace("Z", "+00:00"))
    assert t_ours == t_sdk
    assert t_ours.tzinfo is not None, "timestamps carry their zone"
    assert ours == sdk


@pytest.mark.parametrize("name", ["raindrop.json", "raindrop_private.json"])
def test_events_are_what_the_sdk_sends(name):
    for ev in events(name):
        if "ai_data" in ev:
            # AIData's fields are Optional without defaults: the SDK always passes all four.
            filled = {**ev, "ai_data": {k: ev["ai_data"].get(k) for k in AIData.model_fields}}
            extra = set(ev["ai_data"]) - set(AIData.model_fields)
            assert not extra, f"ai_data fields the SDK does not know: {extra}"
            model = TrackAIEvent.model_validate(filled)
            same_event(ev, wire(model, True))
        else:
            model = TrackEvent.model_validate(ev)
            same_event(ev, wire(model, False))


def test_the_documented_mapping():
    ev = events("raindrop.json")[0]
    assert ev["user_id"] == "user_12345"
    assert ev["ai_data"]["convo_id"] == "session_abc"
    assert ev["ai_data"]["input"] == "Process this order: 2 widgets"
    props = ev["properties"]
    for key in ["model", "provider", "total_cost", "prompt_tokens", "completion_tokens",
                "duration_ms", "finish_reason", "trace_id", "trace_name"]:
        assert key in props, key
    private = events("raindrop_private.json")[0]
    assert "ai_data" not in private
    assert "SECRET" not in json.dumps(private)
