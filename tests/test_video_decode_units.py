"""The decoder's units alone (no PyAV): colour matrix, frame window, audio window, damage report.

Packets and codec contexts are plain stand-ins with the attributes PyAV's have; the real decoder runs
on real clips in test_video.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from types import SimpleNamespace

from bsrn_edge.apps.video.decode import AudioWindow, Colour, DamageReport, FrameWindow, SegmentWindow
from bsrn_edge.apps.video.options import VideoOptions, VideoReport

MS = Fraction(1, 1000)


@dataclass
class Packet:
    pts: int | None
    duration: int = 20
    dts: int | None = None
    size: int = 100
    time_base: Fraction = MS
    stream: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(index=1))


def _cc(colorspace: int, height: int, color_range: int = 0, primaries: int = 2, trc: int = 2) -> SimpleNamespace:
    return SimpleNamespace(colorspace=colorspace, height=height, color_range=color_range, color_primaries=primaries,
                           color_trc=trc)


def test_colour_reads_the_tags_and_guesses_untagged_clips_by_height() -> None:
    bt709 = Colour.of(_cc(1, 480, 2, primaries=1, trc=1))
    assert (bt709.matrix, bt709.range) == ("ITU709", 2)
    assert bt709.tags == {"colorspace": 1, "color_range": 2, "color_primaries": 1, "color_trc": 1}
    hd, sd = Colour.of(_cc(2, 720)), Colour.of(_cc(2, 576))  # 2 = unspecified
    assert (hd.matrix, hd.tags["colorspace"]) == ("ITU709", 1) and (sd.matrix, sd.tags["colorspace"]) == ("ITU601", 6)
    assert hd.range == 1 and "color_primaries" not in hd.tags  # unspecified range → limited; unknown tags not written


def test_frame_window_counts_frames_and_preview_seconds() -> None:
    w = FrameWindow(VideoOptions(frames=(2, 5)))
    assert [w.before(i, Fraction(i)) for i in range(4)] == [True, True, False, False]
    assert not w.past(4, Fraction(4), Fraction(2)) and w.past(5, Fraction(5), Fraction(2))
    preview = FrameWindow(VideoOptions(preview=1.5))
    assert not preview.past(30, Fraction(149, 100), Fraction(0)) and preview.past(31, Fraction(3, 2), Fraction(0))
    seg = SegmentWindow((Fraction(2), Fraction(4)))
    assert seg.before(0, Fraction(19, 10)) and not seg.before(0, Fraction(2))
    assert not seg.past(0, Fraction(39, 10), Fraction(2)) and seg.past(0, Fraction(4), Fraction(2))


def test_audio_travels_with_the_frame_it_starts_before_and_is_trimmed_and_shifted() -> None:
    audio = AudioWindow(streams=1, trimmed=True)
    for pts in (0, 20, 40, 60, 80, 100):
        audio.add(Packet(pts, dts=pts), end=None)
    audio.add(Packet(120, size=0), end=None)  # an empty packet (a flush) is never kept
    audio.drop_ended_by(Fraction(40, 1000))  # frames before the window: audio ending by 40 ms goes
    assert [p.pts for p in audio.held] == [40, 60, 80, 100]
    now = audio.take_before(Fraction(70, 1000))
    assert [p.pts for p in now] == [40, 60] and [p.pts for p in audio.held] == [80, 100]
    kept = audio.in_window(now, offset=Fraction(50, 1000), end=Fraction(90, 1000))
    assert [(p.pts, p.dts) for p in kept] == [(-10, -10), (10, 10)]  # 40–60 ms overlaps the window's start
    early = AudioWindow(streams=1, trimmed=True)
    early.add(Packet(80), end=None)
    early.close(Fraction(90, 1000))  # the window ends at 90 ms: no held packet reaches it yet
    assert not early.all_done()
    early.add(Packet(100), end=Fraction(90, 1000))  # the first packet at or past the end: the stream is done
    assert early.all_done()
    audio.close(Fraction(90, 1000))  # 100 ms is already held here
    assert audio.all_done()
    whole = AudioWindow(streams=1, trimmed=False)
    packets = [Packet(0), Packet(20)]
    assert whole.in_window(packets, None, None) is packets  # untrimmed: passed through untouched


def test_damage_report_names_the_frames_that_never_came_out() -> None:
    said: list[str] = []
    report = VideoReport()
    damage = DamageReport("clip.mkv", Fraction(1, 25), report, said.append)
    for pts in (0, 1, 2, 3, 4):
        damage.sent_packet(Packet(pts, time_base=Fraction(1, 25)))
    damage.decode_failed(RuntimeError("Invalid data"), Packet(2, time_base=Fraction(1, 25)))
    damage.seen(0)
    damage.seen(3)  # 1 and 2 went in and never came out
    damage.seen(None)  # the end: 4 never came out either
    assert report.damaged == ["t=0.040 s: damaged frame skipped (Invalid data)", "t=0.080 s: damaged frame skipped (Invalid data)",
                              "t=0.160 s: damaged frame skipped (Invalid data)"]
    assert said == [f"clip.mkv: {d}" for d in report.damaged]
    untracked = DamageReport("clip.mkv", Fraction(1, 25), VideoReport(), said.append)
    untracked.sent_packet(Packet(None))  # packets without pts: nothing can be tracked, errors are reported as they come
    untracked.decode_failed(RuntimeError("bad"), Packet(7, time_base=Fraction(1, 25)))
    assert untracked.report.damaged == ["t=0.280 s: damaged video packet skipped (bad)"]
    segment = DamageReport("clip.mkv", Fraction(1, 25), VideoReport(), said.append, since=Fraction(2, 25))
    for pts in (0, 1, 2, 3):
        segment.sent_packet(Packet(pts, time_base=Fraction(1, 25)))
    segment.seen(3)  # 0 and 1 precede the segment (leading frames of the keyframe sought): not ours to report
    assert segment.report.damaged == ["t=0.080 s: damaged frame skipped (the decoder dropped it)"]
