"""examples/camera_app.py end to end, with a short video file standing in for the camera.

The bounds checked come from the app's design, not from its output: a drop-oldest queue of ``queue``
frames means no frame waits for more than ``queue`` model runs before its own, so latency stays
under (queue + 1) model runs (plus scheduling slack) however fast the camera is; every captured frame
is either shown or counted as dropped.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, needs_ort, needs_torch

from bsrn_edge.imageio import read_rgb

cv2 = pytest.importorskip("cv2", reason="OpenCV not installed (extra 'camera')")
pytestmark = [needs_ort, needs_torch]  # torch builds the ONNX fixture

W, H, FRAMES = 160, 90, 40
SLACK_MS = 300  # thread hand-over, colour conversions and a shared 2-core machine


def _load_app():
    spec = importlib.util.spec_from_file_location("camera_app", ROOT / "examples" / "camera_app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def app():
    return _load_app()


@pytest.fixture(scope="module")
def up(bsrn_s_export):
    from bsrn_edge.runtime import Upscaler

    return Upscaler(bsrn_s_export.files["onnx"])


@pytest.fixture(scope="module")
def camera(tmp_path_factory, set5_dir) -> Path:
    """A 40-frame 160×90 MJPEG clip panning across the Set5 baby image: the stand-in camera."""
    pan = read_rgb(set5_dir / "img_001_SRF_4_HR.png")
    path = tmp_path_factory.mktemp("camera") / "camera.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (W, H))
    for i in range(FRAMES):
        writer.write(cv2.cvtColor(np.ascontiguousarray(pan[100 + i:100 + i + H, 40 + 5 * i:40 + 5 * i + W]),
                                  cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_a_camera_faster_than_the_model_drops_frames_and_latency_stays_bounded(app, up, camera):
    stats = app.run(str(camera), up, camera_fps=None, queue=2, report=lambda line: None)  # as fast as it decodes
    assert stats.captured == FRAMES
    assert stats.shown + stats.dropped == FRAMES
    assert stats.dropped > 0 and stats.shown >= 1
    assert len(stats.latency_ms) == stats.shown == len(stats.model_ms)
    assert 0 < stats.percentile(50) <= stats.percentile(95) <= max(stats.latency_ms)
    assert max(stats.latency_ms) <= 3 * max(stats.model_ms) + SLACK_MS
    assert 0 < stats.fps <= 1000 / min(stats.model_ms) * 1.1  # never faster than the model


def test_a_camera_slower_than_the_model_loses_nothing_and_the_file_holds_every_frame(app, up, camera, tmp_path):
    out = tmp_path / "out.avi"
    lines: list[str] = []
    stats = app.run(str(camera), up, camera_fps=2, queue=2, seconds=2.5, output=str(out), report=lines.append)
    assert stats.dropped == 0 and stats.shown == stats.captured >= 4
    assert stats.percentile(95) <= 2 * max(stats.model_ms) + SLACK_MS
    assert 0 < stats.fps <= 2 * 1.1
    assert lines and all("latency p50" in line and "dropped 0 of" in line for line in lines)
    cap = cv2.VideoCapture(str(out))
    sizes = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        sizes.append(frame.shape)
    cap.release()
    assert sizes == [(4 * H, 4 * W, 3)] * stats.shown


def test_a_missing_camera_is_a_clear_error(app, up, tmp_path):
    from bsrn_edge.errors import InputError

    with pytest.raises(InputError, match="cannot open camera"):
        app.run(str(tmp_path / "no-such-camera.avi"), up)
