"""Video files through bsrn-upscale: decode → Upscaler.stream() → encode, audio remuxed, timing kept.

Every clip is made here with PyAV (``write_pan_clip``) from real image content (a pan across the
bundled Set5 ``baby`` HR image), so the expected values come from the clip's own construction (frame count, timestamps,
audio packets) or from a second path (``Upscaler.upscale`` of each decoded input frame).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, needs_ort, needs_torch
from conftest import run_upscale as upscale

from bsrn_edge.imageio import read_rgb
from bsrn_edge.metrics import psnr

av = pytest.importorskip("av", reason="PyAV not installed (extra 'video')")
from bsrn_edge.bench.clips import write_pan_clip  # noqa: E402 - needs PyAV

pytestmark = [needs_ort, needs_torch]  # torch builds the ONNX fixture

W, H, FPS, N = 160, 90, 25, 50  # the clip: about 2 s of 160×90 at 25 fps


def frames_of(path: Path) -> list:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def audio_of(path: Path) -> list[tuple[bytes, float]]:
    with av.open(str(path)) as c:
        return [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(audio=0) if p.size]


@pytest.fixture(scope="module")
def onnx_path(bsrn_s_export):
    return bsrn_s_export.files["onnx"]


@pytest.fixture(scope="module")
def pan(set5_dir) -> np.ndarray:
    return read_rgb(set5_dir / "img_001_SRF_4_HR.png")  # baby, 512×512


@pytest.fixture(scope="module")
def clip(tmp_path_factory, pan) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_pan_clip(path, pan, N, audio=True)
    return path


@pytest.fixture(scope="module")
def upscaled(clip, onnx_path) -> Path:
    out = clip.parent / "out" / "clip.mp4"
    assert upscale("-i", clip, "-o", out.parent, "--model", onnx_path) == 0
    return out


def test_output_is_4x_with_the_same_frames_and_duration(clip, upscaled):
    src, out = frames_of(clip), frames_of(upscaled)
    assert len(src) == N and len(out) == N
    assert {(f.width, f.height) for f in out} == {(4 * W, 4 * H)}
    with av.open(str(clip)) as a, av.open(str(upscaled)) as b:
        assert abs(a.duration - b.duration) / 1e6 <= 1 / FPS
        assert b.streams.video[0].average_rate == FPS
    assert [f.time for f in out] == pytest.approx([i / FPS for i in range(N)], abs=1e-6)


def test_audio_packets_are_bit_identical_and_in_sync(clip, upscaled):
    src, out = audio_of(clip), audio_of(upscaled)
    assert len(src) >= 2 * 48000 / 1024  # the whole 2 s track
    assert [b for b, _ in out] == [b for b, _ in src]
    assert [t for _, t in out] == pytest.approx([t for _, t in src], abs=1e-4)


def test_every_frame_is_the_upscale_within_codec_loss(clip, upscaled, onnx_path):
    from bsrn_edge.runtime import Upscaler

    up = Upscaler(onnx_path)
    for i, (a, b) in enumerate(zip(frames_of(clip), frames_of(upscaled))):
        want = up.upscale(a.to_ndarray(format="rgb24"))
        assert psnr(b.to_ndarray(format="rgb24"), want) >= 40.0, f"frame {i}"


def test_colour_tags_and_a_full_chroma_format_are_kept(upscaled):
    with av.open(str(upscaled)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc) == (1, 1, 1, 1)
        assert cc.pix_fmt == "yuv444p"


def test_rotation_is_kept(tmp_path, pan, onnx_path):
    src, out = tmp_path / "rot.mp4", tmp_path / "rot.up.mp4"
    write_pan_clip(src, pan, 3, rotation=90)
    assert frames_of(src)[0].rotation == 90
    assert upscale("-i", src, "-o", out, "--model", onnx_path) == 0
    assert [f.rotation for f in frames_of(out)] == [90] * 3


def test_a_variable_frame_rate_clip_keeps_its_timestamps(tmp_path, pan, onnx_path):
    src, out = tmp_path / "vfr.mkv", tmp_path / "vfr.up.mkv"
    times = write_pan_clip(src, pan, 8, vfr=True)
    assert times == pytest.approx([0, 0.08, 0.12, 0.2, 0.24, 0.32, 0.36, 0.44])
    assert upscale("-i", src, "-o", out, "--model", onnx_path) == 0
    assert [f.time for f in frames_of(out)] == pytest.approx(times, abs=1e-6)


def test_a_video_is_found_by_probing_whatever_its_name(tmp_path, pan, onnx_path):
    src, out = tmp_path / "recording.bin", tmp_path / "recording.mkv"
    write_pan_clip(src.with_suffix(".mkv"), pan, 4)
    src.with_suffix(".mkv").rename(src)
    assert upscale("-i", src, "-o", tmp_path, "--model", onnx_path) == 0
    assert [(f.width, f.height) for f in frames_of(out)] == [(4 * W, 4 * H)] * 4


def test_frames_and_preview_cut_video_and_audio_alike(clip, onnx_path, tmp_path):
    out = tmp_path / "cut.mp4"
    assert upscale("-i", clip, "-o", out, "--model", onnx_path, "--frames", "10:20") == 0
    assert [f.time for f in frames_of(out)] == pytest.approx([i / FPS for i in range(10)], abs=1e-6)
    # the audio packets that overlap 0.4–0.8 s of the input, unchanged, shifted to start with the video
    src = audio_of(clip)
    dur = 1024 / 48000
    want = [(b, t - 0.4) for b, t in src if t + dur > 0.4 and t < 0.8]
    got = audio_of(out)
    assert [b for b, _ in got] == [b for b, _ in want]
    assert [t for _, t in got] == pytest.approx([t for _, t in want], abs=1e-4)
    preview = tmp_path / "preview.mp4"
    assert upscale("-i", clip, "-o", preview, "--model", onnx_path, "--preview", "0.2") == 0
    assert len(frames_of(preview)) == 5  # 0.2 s at 25 fps


def test_a_damaged_packet_is_reported_with_its_time_and_the_clip_goes_on(tmp_path, pan, onnx_path, capsys):
    src, out = tmp_path / "damaged.mkv", tmp_path / "damaged.up.mkv"
    write_pan_clip(src, pan, 6, codec="mjpeg")
    with av.open(str(src)) as c:
        payload = [bytes(p) for p in c.demux(video=0) if p.size][3]  # the frame at 0.120 s
    data = bytearray(src.read_bytes())
    at = data.find(payload)
    data[at + 2:at + len(payload) - 2] = np.random.default_rng(0).integers(0, 256, len(payload) - 4, np.uint8).tobytes()
    src.write_bytes(bytes(data))
    assert upscale("-i", src, "-o", out, "--model", onnx_path) == 0
    err = capsys.readouterr().err
    assert "t=0.120 s: damaged frame skipped" in err and "1 damaged part(s) skipped" in err
    assert [f.time for f in frames_of(out)] == pytest.approx([0, 0.04, 0.08, 0.16, 0.2])


@pytest.mark.parametrize("kind", ["truncated", "text"])
def test_a_truncated_file_or_text_named_mp4_is_a_clear_error(clip, tmp_path, onnx_path, capsys, kind):
    bad = tmp_path / "bad.mp4"
    if kind == "truncated":
        bad.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    else:
        bad.write_text("this is a shopping list, not a video\n")
    assert upscale("-i", bad, "-o", tmp_path / "out.mp4", "--model", onnx_path) == 2
    err = capsys.readouterr().err
    assert f"{bad}: not a readable video" in err and "truncated" in err and "mp4, mov, mkv, webm" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]


def test_a_crash_mid_clip_leaves_no_file_and_the_old_output_intact(clip, onnx_path, tmp_path):
    from bsrn_edge.apps.video import upscale_video
    from bsrn_edge.runtime import Upscaler

    seen = []

    def crash() -> None:
        seen.append(1)
        if len(seen) == 3:
            raise RuntimeError("disk controller on fire")

    earlier = tmp_path / "out.mp4"
    earlier.write_bytes(b"the output of an earlier run")
    with pytest.raises(RuntimeError, match="on fire"):
        upscale_video(clip, earlier, Upscaler(onnx_path), on_frame=crash)
    assert list(tmp_path.iterdir()) == [earlier]  # no temporary left, and the earlier output untouched
    assert earlier.read_bytes() == b"the output of an earlier run"


def test_ctrl_c_leaves_no_file_under_the_final_name(clip, onnx_path, tmp_path):
    dst = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "bsrn_edge.apps.upscale", "-i", str(clip), "-o", str(dst), "--model", str(onnx_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".out.mp4.") for p in tmp_path.iterdir()):  # the temporary file is open
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it started writing"
        time.sleep(0.005)
    time.sleep(0.2)  # some frames in flight in every stage
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list(tmp_path.iterdir()) == []


def test_presets_trade_file_size_for_cpu_and_a_wrong_one_touches_nothing(clip, onnx_path, tmp_path, capsys):
    """--preset reaches x264 (a slower preset at the same CRF compresses better: a smaller file); an unknown
    preset, or one for an encoder without presets, is an error before any file is written."""
    sizes = {}
    for preset in ("ultrafast", "medium"):
        out = tmp_path / f"{preset}.mp4"
        assert upscale("-i", clip, "-o", out, "--model", onnx_path, "--frames", "0:12", "--preset", preset) == 0
        sizes[preset] = out.stat().st_size
    assert sizes["medium"] < sizes["ultrafast"]
    for bad in (["--preset", "warp"], ["--codec", "ffv1", "--preset", "fast"]):
        dst = tmp_path / "bad.mkv"
        assert upscale("-i", clip, "-o", dst, "--model", onnx_path, *bad) == 2
        assert "--preset" in capsys.readouterr().err and not dst.exists()


@pytest.mark.parametrize("flag", [["-s", "2"], ["-f", "png"], ["--suffix", "out"], ["--lossless"]])
def test_image_only_flags_on_a_video_are_a_usage_error(clip, onnx_path, tmp_path, capsys, flag):
    dst = tmp_path / "out.mp4"
    assert upscale("-i", clip, "-o", dst, "--model", onnx_path, *flag) == 2
    assert "apply to images" in capsys.readouterr().err and not dst.exists()
