"""SHA-256 of everything the command lines write, so that a refactor can show it changed no output.

Makes its inputs itself from the bundled Set5 images (PNG 8-bit, PNG 16-bit, JPEG, TIFF with and
without alpha, a PNG with transparency, a short video with audio), runs ``bsrn-upscale`` on them (one
folder run, one video, one ``--ray`` run), ``bsrn-export --fp16 --uint8-io`` on the bundled BSRN-S,
and prints one JSON object: output name → hash. Run it on two commits and compare the two files::

    python benchmarks/output_hashes.py --bin .venv/bin > new.json
    PYTHONPATH=/tmp/old_site python benchmarks/output_hashes.py --bin /tmp/old_site/bin > old.json
    python benchmarks/output_hashes.py --compare old.json new.json

It imports nothing from bsrn-edge itself (the inputs do not depend on the code under test); it needs
the extras ``cpu,export,video,ray,formats``. Takes about three minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SET5 = ROOT / "bsrn_edge" / "data" / "Set5" / "x4"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lr(k: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(sorted(SET5.glob("*_LR.png"))[k]).convert("RGB"))


def make_images(folder: Path) -> None:
    """The image inputs, all from real pictures."""
    import tifffile
    from PIL import Image

    folder.mkdir(parents=True)
    a, b, c = _lr(0)[:40, :48], _lr(1)[:36, :44], _lr(2)[:32, :40]
    Image.fromarray(a).save(folder / "p8.png")
    wide = (b.astype(np.uint16) * 257 + np.arange(b.shape[1], dtype=np.uint16)[None, :, None] * 3)
    import png  # pypng: 16-bit colour

    with open(folder / "p16.png", "wb") as fh:
        png.Writer(wide.shape[1], wide.shape[0], bitdepth=16, greyscale=False).write(fh, wide.reshape(wide.shape[0], -1))
    Image.fromarray(c).save(folder / "photo.jpg", quality=92)
    tifffile.imwrite(folder / "scan.tif", a, photometric="rgb")
    alpha = np.dstack([b, np.tile(np.linspace(0, 255, b.shape[1]).astype(np.uint8), (b.shape[0], 1))])
    Image.fromarray(alpha, "RGBA").save(folder / "logo.png")
    tifffile.imwrite(folder / "alpha.tif", alpha, photometric="rgb", extrasamples=[2])


def make_video(path: Path, frames: int = 8) -> None:
    """A 64×48 pan across a Set5 image, 25 fps, with a 440 Hz AAC track."""
    import av

    image = _lr(0)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.codec_context.time_base = Fraction(1, 25)
        a = c.add_stream("aac", rate=48000, layout="mono")
        for i in range(frames):
            crop = np.ascontiguousarray(image[4 + i:52 + i, 6 + 2 * i:70 + 2 * i])
            f = av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(format="yuv420p")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(48000 * frames // 25) / 48000)).astype(np.float32)
        for k in range(0, len(tone), 1024):
            af = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="flt", layout="mono")
            af.sample_rate, af.pts = 48000, k
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)


def _run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "RAY_ADDRESS": "", "BSRN_EDGE_CACHE": str(cwd / "cache")}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {res.returncode}:\n{res.stderr[-3000:]}")


def collect(bindir: Path) -> dict[str, str]:
    bindir = bindir.absolute()  # the commands run in a temporary folder
    up, ex = str(bindir / "bsrn-upscale"), str(bindir / "bsrn-export")
    hashes: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        make_images(t / "in")
        make_video(t / "clip.mp4")
        _run([up, "-i", "in", "-o", "out"], t)
        _run([up, "-i", "in", "-o", "out_jpg", "-f", "jpg", "--suffix", "x"], t)
        _run([up, "-i", "clip.mp4", "-o", "out_video"], t)
        _run([up, "-i", "in", "-o", "out_ray", "--ray", "--actors", "1"], t)
        _run([ex, "--ckpt", "bsrn-s-x4", "--fp16", "--uint8-io", "--out", "exported", "--no-engine", "-q"], t)
        for folder in ("out", "out_jpg", "out_video", "out_ray", "exported"):
            for p in sorted((t / folder).rglob("*")):
                if p.is_file() and p.suffix != ".jsonl" and not p.name.endswith(".manifest.json"):
                    hashes[str(p.relative_to(t))] = _sha(p)
    return hashes


def compare(old: Path, new: Path) -> int:
    a, b = json.loads(old.read_text()), json.loads(new.read_text())
    same = [k for k in a if b.get(k) == a[k]]
    diff = sorted(set(a) ^ set(b) | {k for k in a if k in b and a[k] != b[k]})
    print(f"{len(same)} identical, {len(diff)} different or missing")
    for k in diff:
        print(f"  {k}: {a.get(k, '(absent)')[:12]} → {b.get(k, '(absent)')[:12]}")
    return 1 if diff else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, default=Path(sys.executable).parent, help="folder holding bsrn-upscale and bsrn-export")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"), help="compare two outputs of this script")
    args = ap.parse_args()
    if args.compare:
        return compare(*args.compare)
    print(json.dumps(collect(args.bin), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
