"""Voices: forwarded untouched when a listener hears one, mixed when several, bounded, one timeline."""

from __future__ import annotations

import asyncio
import fractions
import itertools

import av
import numpy as np
from av import AudioFrame, Packet

from visassist.media.audio import _MAX_SAMPLES, MAX_PACKETS, RATE, SAMPLES, Voice, VoiceTrack
from visassist.media.encoded import EncodedFrame


def tone(value: int, samples: int = SAMPLES) -> np.ndarray:
    return np.full(samples, value, dtype=np.int16)


def opus_packets(amplitude: int, count: int = 25) -> list[EncodedFrame]:
    """Real Opus packets of a 440 Hz tone, as a browser would send them."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = RATE, "mono", "s16"
    codec.time_base = fractions.Fraction(1, RATE)
    wave = (amplitude * np.sin(2 * np.pi * 440 * np.arange(SAMPLES * count) / RATE)).astype(np.int16)
    packets = []
    for index in range(count):
        frame = AudioFrame.from_ndarray(wave[index * SAMPLES:(index + 1) * SAMPLES].reshape(1, -1),
                                        format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, index * SAMPLES
        for packet in codec.encode(frame):
            packets.append(EncodedFrame(data=bytes(packet), timestamp=index * SAMPLES, clock_rate=RATE,
                                        keyframe=True))
    return packets


def test_a_speaker_buffer_is_bounded_and_drops_the_oldest() -> None:
    speaker = Voice()
    for value in range(100):  # 2 s of audio nobody has read
        speaker.push(tone(value))
    chunk = speaker.take(_MAX_SAMPLES * 2)
    assert chunk is not None and chunk.size == _MAX_SAMPLES
    assert chunk[-1] == 99 and chunk[0] > 80, "only the newest 200 ms are kept"
    assert speaker.take(SAMPLES) is None


async def test_one_voice_is_forwarded_untouched_and_never_decoded() -> None:
    voice = Voice()
    track = VoiceTrack(lambda: [voice])
    packets = opus_packets(8000, 5)
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.01)  # the listener subscribes
    for packet in packets:
        voice.publish(packet)
    got = [await asyncio.wait_for(waiting, 1)] + [await track.recv() for _ in packets[1:]]
    assert all(isinstance(p, Packet) for p in got)
    assert [bytes(p) for p in got] == [p.data for p in packets], "the speaker's own Opus packets"
    stamps = [p.pts for p in got]
    assert all(b - a == SAMPLES for a, b in itertools.pairwise(stamps))
    assert voice._decoder is None, "nothing decoded for a forwarded voice"
    track.stop()


async def test_a_listener_that_never_reads_keeps_only_the_newest_packets() -> None:
    voice = Voice()
    track = VoiceTrack(lambda: [voice])
    track._forward(voice)
    for packet in opus_packets(1000, 50):
        voice.publish(packet)
    assert len(track._packets) == MAX_PACKETS
    track.stop()


async def test_several_voices_are_decoded_once_and_mixed() -> None:
    a, b = Voice(), Voice()
    track = VoiceTrack(lambda: [a, b])
    first = await track.recv()  # entering the mix asks both voices for decoded audio
    assert isinstance(first, AudioFrame)
    for pa, pb in zip(opus_packets(6000), opus_packets(6000), strict=True):
        a.publish(pa)
        b.publish(pb)
    mixed = await track.recv()
    assert isinstance(mixed, AudioFrame) and mixed.sample_rate == RATE
    peak = int(np.abs(mixed.to_ndarray()).max())
    assert 9000 < peak < 14000, f"two tones of 6000 add up (Opus is lossy), got {peak}"
    track.stop()


async def test_the_sum_is_clipped_not_wrapped() -> None:
    a, b = Voice(), Voice()
    a.push(tone(20000))
    b.push(tone(20000))
    track = VoiceTrack(lambda: [a, b])
    assert (await track.recv()).to_ndarray().max() == 32767
    silent = await track.recv()
    assert not silent.to_ndarray().any(), "nothing buffered: silence"
    track.stop()


async def test_nothing_is_sent_while_nobody_can_be_heard() -> None:
    speakers: list[Voice] = []
    track = VoiceTrack(lambda: speakers)
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.25)
    assert not waiting.done(), "no speaker: no frames (and no encoding) at all"
    voice = Voice()
    speakers.append(voice)
    await asyncio.sleep(0.15)
    voice.publish(opus_packets(500, 1)[0])
    assert isinstance(await asyncio.wait_for(waiting, 1), Packet)
    track.stop()


async def test_one_timeline_from_forwarding_to_mixing_and_back() -> None:
    a, b = Voice(), Voice()
    speakers = [a]
    track = VoiceTrack(lambda: speakers)
    stamps = []
    receiving = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.01)
    a.publish(EncodedFrame(data=b"\xf8\xff\xfe", timestamp=9_999_999, clock_rate=RATE, keyframe=True))
    stamps.append((await receiving).pts)
    speakers.append(b)  # an expert starts talking: mixed now
    stamps += [(await track.recv()).pts for _ in range(3)]
    speakers.remove(a)  # only the expert is left: forwarded again
    receiving = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.15)
    b.publish(EncodedFrame(data=b"\xf8\xff\xfe", timestamp=5, clock_rate=RATE, keyframe=True))
    stamps.append((await receiving).pts)
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), stamps
    track.stop()
