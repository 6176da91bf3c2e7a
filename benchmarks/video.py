"""Video end to end against the network alone, and the camera example's latency, on the default CPU path.

    python benchmarks/video.py [--model bsrn-s-x4] [--frames 72] [--repeats 3] [--seconds 8]

Makes a 320×180 clip at 25 fps (a pan across the bundled Set5 ``baby`` HR image, with an AAC track),
then, in one run with one Upscaler:

- network-only fps: ``Upscaler.upscale_into`` on each decoded frame (frames / total time);
- end-to-end fps: ``upscale_video`` on the whole clip (decode, network, encode to 1280×720 libx264
  yuv444p, audio remuxed; frames / wall time), and its ratio to the network-only figure measured just
  before it (the issue's target: ≥ 0.85); ``--repeats`` pairs, medians;
- the camera example (examples/camera_app.py) reading the clip at 2 fps and at 30 fps for ``--seconds``
  each: latency p50/p95 from capture to written frame, output fps and dropped frames.

Needs the extras ``video`` and ``camera``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import exported_onnx, machine_line, time_calls

ROOT = Path(__file__).resolve().parent.parent


def make_clip(path: Path, frames: int) -> None:
    """A 320×180 25 fps pan across the Set5 baby HR image (512×512), 4 px a frame, with an AAC track."""
    from bsrn_edge.bench.clips import write_pan_clip
    from bsrn_edge.datasets import bundled_set5
    from bsrn_edge.imageio import read_rgb

    pan = read_rgb(bundled_set5() / "img_001_SRF_4_HR.png")
    write_pan_clip(path, pan, frames, size=(320, 180), origin=(0, 0), step=(4, 2), audio=True)


def decoded_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def network_fps(up, frames: list[np.ndarray]) -> float:  # type: ignore[no-untyped-def]
    """Frames per second of ``upscale_into`` alone over every frame of the clip: frames / total time, the same
    statistic as the end-to-end rate (a median per frame would leave out the slow frames that the end-to-end
    wall time includes)."""
    out = np.empty((frames[0].shape[0] * up.scale, frames[0].shape[1] * up.scale, 3), np.uint8)
    it = iter(frames * 2)
    timing = time_calls(lambda: up.upscale_into(next(it), out), len(frames), warmup=2)
    return 1000 * len(timing.times_ms) / sum(timing.times_ms)


def end_to_end_fps(up, clip: Path, out: Path) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    """Frames per second of ``upscale_video`` on the whole clip (wall time), and what it wrote."""
    from bsrn_edge.apps.video import upscale_video

    start = time.perf_counter()
    report = upscale_video(clip, out, up)
    rate = report.frames / (time.perf_counter() - start)
    out.unlink()
    return rate, f"{report.codec} {report.pix_fmt}, {report.frames} frames, {report.audio_packets} audio packets"


def video_rows(up, clip: Path, work: Path, repeats: int) -> tuple[list[str], str]:  # type: ignore[no-untyped-def]
    """Network-only and end-to-end fps measured in turn ``repeats`` times (a shared machine's load
    drifts: each ratio compares neighbours), then the medians."""
    frames = decoded_frames(clip)
    net, e2e = [], []
    for _ in range(repeats):
        net.append(network_fps(up, frames))
        rate, what = end_to_end_fps(up, clip, work / "out.mp4")
        e2e.append(rate)
    ratios = [e / n for e, n in zip(e2e, net)]
    rows = [f"| {n:.2f} | {e:.2f} | {e / n:.2f} |" for n, e in zip(net, e2e)]
    rows.append(f"| **median {statistics.median(net):.2f}** | **{statistics.median(e2e):.2f}** | "
                f"**{statistics.median(ratios):.2f}** |")
    return rows, what


def camera_rows(up, seconds: float, workdir: Path) -> list[str]:  # type: ignore[no-untyped-def]
    """The camera example at 2 and 30 fps, each on a clip long enough to last ``seconds``."""
    spec = importlib.util.spec_from_file_location("camera_app", ROOT / "examples" / "camera_app.py")
    app = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = app
    spec.loader.exec_module(app)
    rows = []
    for rate in (2, 30):
        clip = workdir / f"camera{rate}.mp4"
        make_clip(clip, int(seconds * rate) + 2)
        s = app.run(str(clip), up, camera_fps=rate, queue=2, seconds=seconds, output=str(workdir / f"cam{rate}.avi"),
                    report=lambda line: None)
        rows.append(f"| {rate} | {s.captured} | {s.shown} | {s.dropped} | {s.percentile(50):.0f} | "
                    f"{s.percentile(95):.0f} | {max(s.latency_ms):.0f} | {statistics.median(s.model_ms):.0f} | {s.fps:.2f} |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bsrn-s-x4")
    ap.add_argument("--frames", type=int, default=72,
                    help="clip length in frames (25 fps; long enough that the encoder's start and final flush "
                         "are a small part of the end-to-end time)")
    ap.add_argument("--repeats", type=int, default=3, help="network-only / end-to-end pairs (medians)")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each camera run")
    ap.add_argument("--cache", type=Path, help="export cache (default: bsrn-bench's)")
    args = ap.parse_args()
    import av
    import cv2

    from bsrn_edge.runtime import Upscaler

    print(machine_line())
    print(f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info}), OpenCV {cv2.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = work / "clip.mp4"
        make_clip(clip, args.frames)
        with Upscaler(exported_onnx(args.model, args.cache)) as up:
            rows, what = video_rows(up, clip, work, args.repeats)
            print(f"\nvideo: {args.model} on {up.backend_name}, 320×180 → 1280×720, {what}; "
                  f"network only then end to end, {args.repeats} times")
            print("| network only [fps] | end to end [fps] | ratio (target ≥ 0.85) |")
            print("| ---: | ---: | ---: |")
            print("\n".join(rows))
            print(f"\ncamera example: queue 2 (drop oldest), {args.seconds:g} s per rate, latency = capture → written")
            print("| camera fps | captured | shown | dropped | latency p50 [ms] | p95 [ms] | max [ms] | model median [ms] | output fps |")
            print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for row in camera_rows(up, args.seconds, work):
                print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
