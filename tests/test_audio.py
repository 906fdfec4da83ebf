"""Voice mixing: bounded buffers, each listener hears everyone else."""

from __future__ import annotations

import numpy as np

from visassist.media.audio import _MAX_SAMPLES, SAMPLES, AudioInput, MixTrack


def tone(value: int, samples: int = SAMPLES) -> np.ndarray:
    return np.full(samples, value, dtype=np.int16)


def test_a_speaker_buffer_is_bounded_and_drops_the_oldest() -> None:
    speaker = AudioInput()
    for value in range(100):  # 2 s of audio nobody has read
        speaker.push(tone(value))
    chunk = speaker.take(_MAX_SAMPLES * 2)
    assert chunk is not None and chunk.size == _MAX_SAMPLES
    assert chunk[-1] == 99 and chunk[0] > 80, "only the newest 200 ms are kept"
    assert speaker.take(SAMPLES) is None


async def test_a_listener_hears_the_sum_of_the_others_clipped() -> None:
    a, b = AudioInput(), AudioInput()
    a.push(tone(1000))
    b.push(tone(30000))
    track = MixTrack(lambda: [a, b])
    frame = await track.recv()
    samples = frame.to_ndarray().reshape(-1)
    assert frame.sample_rate == 48_000 and samples.size == SAMPLES
    assert (samples == 31000).all()
    a.push(tone(20000))
    b.push(tone(20000))
    assert (await track.recv()).to_ndarray().max() == 32767, "clipped, not wrapped around"
    silent = (await track.recv()).to_ndarray()
    assert not silent.any(), "nothing buffered: silence"


async def test_nothing_is_sent_while_nobody_can_be_heard() -> None:
    import asyncio

    speakers: list[AudioInput] = []
    track = MixTrack(lambda: speakers)
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.25)
    assert not waiting.done(), "no speaker: no frames (and no encoding) at all"
    voice = AudioInput()
    voice.push(tone(500))
    speakers.append(voice)
    frame = await asyncio.wait_for(waiting, 1)
    assert frame.to_ndarray().max() == 500
