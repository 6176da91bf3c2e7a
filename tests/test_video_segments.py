"""Segment mode for long videos (``bsrn-upscale --ray --segment-seconds``), without Ray: the split plan,
one segment per span, and the join. The clip is made here (a pan across the bundled Set5 ``baby``
image with an AAC track); the expected frames, timestamps and audio come from the clip's construction
and from the whole-file output of :func:`upscale_video`, a second path through the same encoder.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from conftest import needs_ort, needs_torch

from bsrn_edge.apps.video import segment_spans
from bsrn_edge.errors import InputError
from bsrn_edge.imageio import read_rgb
from bsrn_edge.metrics import psnr

FPS, N = 25, 60  # 2.4 s


def test_spans_cover_the_clip_in_pieces_of_half_to_one_and_a_half_segments():
    F = Fraction
    assert segment_spans(F(0), F(2), 1) == [(0, 1), (1, None)]
    assert segment_spans(F(0), F(12, 5), 1) == [(0, 1), (1, None)]  # 0.4 s left over: joins the last span
    assert segment_spans(F(0), F(13, 5), 1) == [(0, 1), (1, 2), (2, None)]
    assert segment_spans(F(7, 5), F(3), 1) == [(F(7, 5), F(12, 5)), (F(12, 5), F(17, 5)), (F(17, 5), None)]  # mpegts-like start
    assert segment_spans(F(0), F(1), 0.8) == [(0, None)]  # under 1.5 segments: whole
    assert segment_spans(F(0), F(100), 0) == [(0, None)]  # 0 disables
    assert segment_spans(F(0), None, 1) == [(0, None)]  # duration unknown


def test_a_failed_segment_fails_the_video_once_with_its_reason(tmp_path):
    from bsrn_edge.apps.distributed.manifest import Entry
    from bsrn_edge.apps.distributed.segments import Joiner, SplitVideo, parse_span, span_text
    from bsrn_edge.apps.jobs import Job
    from bsrn_edge.apps.video import segment_path
    from bsrn_edge.imageio import run_token

    spans = [(Fraction(0), Fraction(1)), (Fraction(1), None)]
    assert [parse_span(span_text(s)) for s in spans] == spans and parse_span(span_text(None)) is None
    job = Job(tmp_path / "in.mp4", tmp_path / "out.mp4", "video")
    parts = [segment_path(job.dst, k) for k in range(2)]
    run = run_token()  # the run's token: another run's segments of the same output never share these names
    assert [p.name for p in parts] == [f".out.mp4.{run}-seg00000.part.mp4", f".out.mp4.{run}-seg00001.part.mp4"]
    parts[0].write_bytes(b"segment 0")
    joiner = Joiner([SplitVideo(job, spans, parts)])
    other = Entry("/x.png", "/o/x.png", "done")
    assert joiner.add(other, None) is other  # not a segment: passed through
    assert joiner.add(Entry(str(job.src), str(parts[0]), "done", worker="a:1"), None) is None  # waits for the rest
    got = joiner.add(Entry(str(job.src), str(parts[1]), "failed", "in.mp4: disk on fire", "b:2"), None)
    assert got == Entry(str(job.src), str(job.dst), "failed", "segment 2/2 (1.000–end s): in.mp4: disk on fire", "a:1,b:2")
    assert joiner.add(Entry(str(job.src), str(parts[1]), "done", worker="c:3"), None) is None  # a retry: already reported
    assert list(tmp_path.iterdir()) == []  # segments removed, no output


av = pytest.importorskip("av", reason="PyAV not installed (extra 'video')")


def _frames(path: Path) -> list:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def _audio(path: Path) -> list[tuple[bytes, int]]:
    with av.open(str(path)) as c:
        return [(bytes(p), p.pts) for p in c.demux(audio=0) if p.size]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, set5_dir) -> Path:
    from bsrn_edge.bench.clips import write_pan_clip

    path = tmp_path_factory.mktemp("segments") / "clip.mp4"
    write_pan_clip(path, read_rgb(set5_dir / "img_001_SRF_4_HR.png"), N, size=(48, 32), fps=FPS, audio=True)
    return path


@needs_ort
@needs_torch
def test_segments_joined_match_the_whole_file(clip, bsrn_s_export, tmp_path):
    from bsrn_edge.apps.video import VideoOptions, join_segments, plan_segments, segment_path, upscale_segment, upscale_video
    from bsrn_edge.imageio import remove_partials
    from bsrn_edge.runtime import Upscaler

    up = Upscaler(bsrn_s_export.files["onnx"])
    whole, joined = tmp_path / "whole.mp4", tmp_path / "joined.mp4"
    upscale_video(clip, whole, up)
    spans = plan_segments(clip, 0.8)
    assert spans == [(0, Fraction(4, 5)), (Fraction(4, 5), Fraction(8, 5)), (Fraction(8, 5), None)]
    parts = [segment_path(joined, k) for k in range(len(spans))]
    counts = [upscale_segment(clip, p, up, s).frames for p, s in zip(parts, spans)]
    assert counts == [20, 20, 20]  # frames at 0–0.76 s, 0.8–1.56 s, 1.6–2.36 s
    for part in parts:
        with av.open(str(part)) as c:
            assert not c.streams.audio and next(p for p in c.demux(video=0) if p.size).is_keyframe  # starts an IDR
    report = join_segments(clip, parts, joined)
    assert (report.frames, report.audio_packets) == (N, len(_audio(clip)))

    want, got = _frames(whole), _frames(joined)
    assert len(got) == len(want) == N
    assert [f.pts for f in got] == [f.pts for f in want]
    assert [f.time for f in got] == pytest.approx([i / FPS for i in range(N)], abs=1e-6)
    assert _audio(joined) == _audio(whole) == _audio(clip)  # bytes and timestamps: copied once, never cut
    for i, (a, b) in enumerate(zip(got, want)):
        assert psnr(a.to_ndarray(format="rgb24"), b.to_ndarray(format="rgb24")) >= 40.0, f"frame {i}"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == sorted(p.name for p in parts)
    assert sorted(remove_partials([joined])) == sorted(parts)  # the segments are temporaries of joined.mp4

    mixed = [segment_path(joined, k) for k in range(2)]  # a part encoded with other settings cannot be joined
    upscale_segment(clip, mixed[0], up, spans[0])
    upscale_segment(clip, mixed[1], up, (spans[1][0], None), VideoOptions(pix_fmt="yuv420p"))
    with pytest.raises(InputError, match="seg00001.*other settings"):
        join_segments(clip, mixed, tmp_path / "bad.mp4")
    assert not (tmp_path / "bad.mp4").exists()


@needs_ort
@needs_torch
@pytest.mark.parametrize("ext", ["mp4", "mkv", "mov"])
@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])  # x264 with B-frames and a B-pyramid; mpeg4 without
@pytest.mark.parametrize("audio", [True, False])
def test_segments_join_in_every_container_with_and_without_b_frames(tmp_path, set5_dir, bsrn_s_export, ext, codec,
                                                                    audio):
    """Three segments of a 30-frame clip joined: every frame once, in order, at the clip's timestamps, and the
    audio as in the input (Matroska's segments give their first packets no decode time: issue 22)."""
    from bsrn_edge.apps.video import VideoOptions, join_segments, plan_segments, segment_path, upscale_segment
    from bsrn_edge.bench.clips import write_pan_clip
    from bsrn_edge.runtime import Upscaler

    clip, joined = tmp_path / f"clip.{ext}", tmp_path / f"joined.{ext}"
    times = write_pan_clip(clip, read_rgb(set5_dir / "img_001_SRF_4_HR.png"), 30, size=(48, 32), audio=audio)
    spans = plan_segments(clip, 0.4)
    assert len(spans) == 3
    parts = [segment_path(joined, k) for k in range(3)]
    up, options = Upscaler(bsrn_s_export.files["onnx"]), VideoOptions(codec=codec)
    for part, span in zip(parts, spans):
        upscale_segment(clip, part, up, span, options)
    if codec == "libx264":  # the case that needs filled decode times: B-frames shown before they are decoded
        with av.open(str(parts[1])) as c:
            packets = [p for p in c.demux(video=0) if p.size]
        assert any(a.pts > b.pts for a, b in zip(packets, packets[1:]))
    report = join_segments(clip, parts, joined)
    frames = _frames(joined)
    assert report.frames == len(frames) == 30
    assert [f.time for f in frames] == pytest.approx(times, abs=1e-3)
    assert _audio(joined) == _audio(clip) if audio else report.audio_packets == 0


def test_a_join_that_fails_in_any_way_fails_its_video_not_the_driver(tmp_path, monkeypatch):
    """FFmpeg's own errors (av.error.ArgumentError is a ValueError) become the video's failed entry."""
    from bsrn_edge.apps.distributed import segments
    from bsrn_edge.apps.distributed.manifest import Entry
    from bsrn_edge.apps.jobs import Job
    from bsrn_edge.apps.video import segment_path

    def invalid(*args):
        raise ValueError("[Errno 22] Invalid argument: 'out.mkv'")

    monkeypatch.setattr(segments, "join_segments", invalid)
    job = Job(tmp_path / "in.mkv", tmp_path / "out.mkv", "video")
    parts = [segment_path(job.dst, k) for k in range(2)]
    joiner = segments.Joiner([segments.SplitVideo(job, [(Fraction(0), Fraction(1)), (Fraction(1), None)], parts)])
    assert joiner.add(Entry(str(job.src), str(parts[0]), "done", worker="a:1"), None) is None
    got = joiner.add(Entry(str(job.src), str(parts[1]), "done", worker="a:1"), None)
    assert got == Entry(str(job.src), str(job.dst), "failed",
                        "joining the 2 segments: ValueError: [Errno 22] Invalid argument: 'out.mkv'", "a:1")
