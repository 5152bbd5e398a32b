"""Images and audio end to end: the official openai SDK against a real Daphne process,
relaying to a fake OpenAI over real sockets, with billing written back by that process."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import openai
import pytest

from accounts.models import User
from billing.journal import SUFFIX, is_orphaned
from billing.models import ApiKey, Log
from relay.runtime import journal_directory
from tests.factories import make_channel, make_user
from tests.fakes.openai_upstream import TINY_PNG, FakeOpenAI

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

KEY = "m" * 48
USER_QUOTA = 10_000_000
KEY_QUOTA = 5_000_000
PHOTO = TINY_PNG + b"\r\n--not-a-boundary\r\n" + bytes(range(256)) * 4
TRANSCRIPT = "The quick brown fox jumps over the lazy dog."
TRANSCRIPT_QUOTA = 10 * 15  # 10 cl100k tokens × whisper-1's ratio


@dataclass
class Gateway:
    client: openai.OpenAI
    user: User
    key: ApiKey
    upstream: FakeOpenAI


def remove_orphaned_journals() -> None:
    directory = journal_directory()
    if directory.is_dir():
        for path in directory.glob(f"*{SUFFIX}"):
            if is_orphaned(path):
                path.unlink(missing_ok=True)


@pytest.fixture
def no_stale_journals() -> Iterator[None]:
    """A server replays at start-up every journal no live process holds. Those that earlier
    tests' servers left were applied to a database flushed since (marks included), so a
    replay would add their logs and charge this test's rows (ids are reused) once more."""
    remove_orphaned_journals()
    yield
    remove_orphaned_journals()


@pytest.fixture
def gateway(no_stale_journals: None, live_daphne: str) -> Iterator[Gateway]:
    """Rows first: the Daphne process loads keys, balances and channels on first use."""
    with FakeOpenAI(api_key="sk-upstream") as upstream:
        user = make_user(quota=USER_QUOTA)
        key = ApiKey.objects.create(user=user, key=KEY, name="e2e key", remain_quota=KEY_QUOTA)
        make_channel(base_url=upstream.base_url, models="dall-e-2,dall-e-3,tts-1,whisper-1")
        client = openai.OpenAI(
            base_url=live_daphne + "/v1", api_key="sk-" + KEY, max_retries=0, timeout=30
        )
        try:
            yield Gateway(client, user, key, upstream)
        finally:
            client.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """The server writes usage back within about half a second."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def assert_billed(gateway: Gateway, quotas: list[int]) -> list[Log]:
    """The logs (oldest first) carry these quotas, and the balances paid their sum."""
    wait_for(lambda: Log.objects.count() == len(quotas), f"{len(quotas)} consumption logs")
    total = sum(quotas)
    user, key = gateway.user, gateway.key
    wait_for(
        lambda: User.objects.get(pk=user.pk).quota == USER_QUOTA - total,
        "the user's quota to be charged",
    )
    key.refresh_from_db()
    user.refresh_from_db()
    assert user.used_quota == total
    assert key.remain_quota == KEY_QUOTA - total
    assert key.used_quota == total
    logs = list(Log.objects.order_by("id"))
    assert [log.quota for log in logs] == quotas
    assert all(log.token_name == "e2e key" for log in logs)
    return logs


# The SDK marks variations and translations deprecated; the API still serves them.
@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_images_through_the_openai_sdk(gateway: Gateway) -> None:
    client, upstream = gateway.client, gateway.upstream

    generated = client.images.generate(model="dall-e-2", prompt="a red fox", n=2, size="256x256")
    assert len(generated.data) == 2
    assert all(image.url and image.url.startswith(upstream.base_url) for image in generated.data)
    assert upstream.last_request.json == {
        "model": "dall-e-2",
        "prompt": "a red fox",
        "n": 2,
        "size": "256x256",
    }

    edited = client.images.edit(
        model="dall-e-2",
        image=("photo.png", PHOTO, "image/png"),
        mask=("mask.png", TINY_PNG, "image/png"),
        prompt="add a hat",
        size="512x512",
        response_format="b64_json",
    )
    assert base64.b64decode(edited.data[0].b64_json or "") == TINY_PNG
    sent = upstream.last_request
    assert sent.path == "/v1/images/edits"
    assert sent.files == {"image": ("photo.png", PHOTO), "mask": ("mask.png", TINY_PNG)}
    assert sent.form is not None and sent.form["prompt"] == "add a hat"

    varied = client.images.create_variation(image=("photo.png", PHOTO, "image/png"), n=3)
    assert len(varied.data) == 3
    assert upstream.last_request.files == {"image": ("photo.png", PHOTO)}

    # dall-e-2 (ratio 10): 256² costs 1, 512² 1.125 and the default 1024² 1.25 per image.
    logs = assert_billed(gateway, [20_000, 11_250, 37_500])
    assert [log.model_name for log in logs] == ["dall-e-2"] * 3
    assert all(log.prompt_tokens == log.completion_tokens == 0 for log in logs)


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_audio_through_the_openai_sdk(gateway: Gateway) -> None:
    client, upstream = gateway.client, gateway.upstream
    upstream.transcript = TRANSCRIPT
    upstream.speech_audio = bytes(range(256)) * 4096  # 1 MiB, relayed in chunks

    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello there, world!", response_format="flac"
    ) as speech:
        assert speech.headers["content-type"] == "audio/flac"
        audio = b"".join(speech.iter_bytes())
    assert audio == upstream.speech_audio

    transcription = client.audio.transcriptions.create(
        model="whisper-1", file=("talk.mp3", PHOTO, "audio/mpeg")
    )
    assert transcription.text == TRANSCRIPT
    assert upstream.last_request.files == {"file": ("talk.mp3", PHOTO)}

    subtitles = client.audio.translations.create(
        model="whisper-1", file=("talk.wav", PHOTO, "audio/wav"), response_format="srt"
    )
    assert "-->" in subtitles and TRANSCRIPT in subtitles
    assert upstream.last_request.path == "/v1/audio/translations"

    # tts-1 (ratio 7.5): 19 characters; whisper-1: transcript tokens × 15.
    logs = assert_billed(gateway, [143, TRANSCRIPT_QUOTA, TRANSCRIPT_QUOTA])
    assert [log.model_name for log in logs] == ["tts-1", "whisper-1", "whisper-1"]
    assert [log.prompt_tokens for log in logs] == [0, 10, 10]
