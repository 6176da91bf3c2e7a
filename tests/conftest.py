"""Shared fixtures: real images (never noise), the shared data folder, and skips for absent extras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bsrn_edge._lazy import available
from bsrn_edge.datasets import bundled_set5, shared_data_dir
from bsrn_edge.imageio import read_rgb

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = shared_data_dir()
SHARED_WEIGHTS = ROOT.parent / "shared" / "weights"

needs_torch = pytest.mark.skipif(not available("torch"), reason="torch not installed (extra 'export')")
needs_ort = pytest.mark.skipif(not available("onnxruntime"), reason="onnxruntime not installed (extra 'cpu')")
needs_openvino = pytest.mark.skipif(not available("openvino"), reason="openvino not installed (extra 'openvino')")


@pytest.fixture(scope="session", autouse=True)
def _pinned_auto_and_private_cache(tmp_path_factory):
    """Every test, and every process it starts, runs with a cache root of the session's own (never the user's) and
    ``backend="auto"`` limited to ONNX Runtime (``BSRN_EDGE_ENGINES``): which engine a measurement picks depends on
    the machine, and tests that check numerics against ONNX Runtime must not find OpenVINO BF16 under them.
    tests/test_choose.py tests ``auto`` itself, with fake timings and with the real engines."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BSRN_EDGE_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("BSRN_EDGE_ENGINES", "onnxruntime")
        yield


def run_upscale(*args: object) -> int:
    """``bsrn-upscale`` in this process with ``args`` (paths and numbers as strings); its exit code."""
    from bsrn_edge.apps.upscale import main

    return main([str(a) for a in args])


def threaded(fn, count: int = 4) -> list:  # type: ignore[no-untyped-def]
    """``[fn(0), …, fn(count - 1)]``, each call in a thread of its own, all running at once."""
    import threading

    results: dict[int, object] = {}
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, fn(k))) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[k] for k in range(count)]


def save_image(arr: np.ndarray, path: Path, **kw: object) -> Path:
    """Write ``arr`` with Pillow (``kw`` to its ``save``), making the folder; returns ``path``."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def shared(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test when it is absent."""
    if SHARED_DATA is None or not (SHARED_DATA.joinpath(*parts)).exists():
        pytest.skip(f"../shared/data/{'/'.join(parts)} not present")
    return SHARED_DATA.joinpath(*parts)


@pytest.fixture(scope="session")
def set5_dir() -> Path:
    return bundled_set5()


@pytest.fixture(scope="session")
def lr_images(set5_dir: Path) -> list[np.ndarray]:
    """The five bundled Set5 ×4 LR images, H×W×3 uint8."""
    return [read_rgb(p) for p in sorted(set5_dir.glob("*_LR.png"))]


@pytest.fixture(scope="session")
def lr_batch(lr_images: list[np.ndarray]) -> np.ndarray:
    """A real-image batch: 2×3×48×48 crops of two Set5 LR images, float32 in [0, 1]."""
    crops = [lr_images[0][10:58, 12:60], lr_images[1][20:68, 18:66]]
    return np.stack([c.transpose(2, 0, 1) for c in crops]).astype(np.float32) / 255.0


@pytest.fixture(scope="session")
def bsrn_s_export(tmp_path_factory):
    """BSRN-S ×4 exported once per session (FP32 + FP16, small profile, no engine)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from bsrn_edge.export.engine_cache import EngineProfile
    from bsrn_edge.export.pipeline import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("bsrn_s_export")
    opts = ExportOptions(fp16=True, profile=EngineProfile(32, 64, 96), engine="skip")
    return export_checkpoint("bsrn-s-x4", out, opts, report=lambda m: None)


@pytest.fixture(scope="session")
def bsrn_s_u8_export(tmp_path_factory):
    """BSRN-S ×4 exported once per session with uint8 pixel I/O: FP32, FP16 and their .u8 graphs, no engine."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from bsrn_edge.export.engine_cache import EngineProfile
    from bsrn_edge.export.pipeline import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("bsrn_s_u8_export")
    opts = ExportOptions(fp16=True, uint8_io=True, profile=EngineProfile(32, 64, 96), engine="skip")
    return export_checkpoint("bsrn-s-x4", out, opts, report=lambda m: None)


@pytest.fixture(scope="session")
def nan_checkpoint(tmp_path_factory):
    """The bundled BSRN-S checkpoint with one NaN weight: every output of the network is NaN."""
    torch = pytest.importorskip("torch")
    from bsrn_edge.checkpoint import read_state_dict
    from bsrn_edge.variants import bundled_checkpoint

    sd = read_state_dict(bundled_checkpoint("bsrn-s-x4"))
    key = next(k for k in sd if k.endswith("weight") and sd[k].ndim == 4)
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    path = tmp_path_factory.mktemp("nan") / "nan.pth"
    torch.save({"params": sd}, path)
    return path
