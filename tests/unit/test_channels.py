"""The channels events, requests and offers may name: the defaults, and more by configuration."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import events
from engine.config import ServeConfig, load_serve_config
from engine.errors import InvalidArgument
from engine.events import CHANNEL_ENV, DEFAULT_CHANNELS, configure_channels, parse_event
from engine.queries import parse_recommend

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restore_channels(monkeypatch):
    monkeypatch.delenv(CHANNEL_ENV, raising=False)
    yield
    configure_channels(())
    os.environ.pop(CHANNEL_ENV, None)


def event(channel):
    return {"event_id": "e1", "customer_id": "c1", "event_type": "view", "item_id": "i1", "channel": channel,
            "timestamp_ms": 1_700_000_000_000}


def test_sms_chatbot_and_social_are_channels_by_default():
    assert {"sms", "chatbot", "social"} <= DEFAULT_CHANNELS <= events.CHANNELS
    for channel in ("sms", "chatbot", "social"):
        assert parse_event(event(channel), 1_700_000_000_001).channel == channel


def test_a_configured_channel_is_accepted_everywhere_and_an_unknown_one_is_refused(restore_channels, tmp_path):
    with pytest.raises(InvalidArgument, match="event.channel: must be one of"):
        parse_event(event("marketplace"), 1_700_000_000_001)
    path = tmp_path / "serve.toml"
    path.write_text('channels = ["marketplace", "voice_assistant"]\n')
    config = load_serve_config(path)
    configure_channels(config.channels)
    assert parse_event(event("marketplace"), 1_700_000_000_001).channel == "marketplace"
    assert parse_recommend({"customer_id": "c1", "channel": "voice_assistant"}, 100).channel == "voice_assistant"
    # the service's Ray workers get the set from the environment, read when engine.events is imported
    assert os.environ[CHANNEL_ENV] == "marketplace,voice_assistant"
    out = subprocess.run([sys.executable, "-c", "from engine import events; print(sorted(events.CHANNELS - "
                          "events.DEFAULT_CHANNELS))"], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ})
    assert out.stdout.strip() == "['marketplace', 'voice_assistant']"


def test_a_bad_channel_name_is_a_config_error():
    for bad in ("Web Shop", "", "9lives", "x" * 40):
        with pytest.raises(InvalidArgument, match="not a channel name"):
            ServeConfig(channels=(bad,) if bad else ("ok", "Bad!"))


def test_sms_is_direct_marketing_an_offer_there_needs_consent():
    from tests.unit.test_decisioning import ctx, offer
    from engine.decisioning import OfferHistory, check_eligibility

    service = offer(eligibility={"consent_required": False})  # a service offer, not marketing...
    assert check_eligibility(service, ctx(channel="chatbot", marketing_consent=False), OfferHistory())[0]
    # ... except by SMS, as by e-mail or push
    for channel in ("sms", "email"):
        assert check_eligibility(service, ctx(channel=channel, marketing_consent=False), OfferHistory()) == (
            False, [], "marketing_consent")
