"""``bsrn-upscale``'s arguments: Real-ESRGAN's flag names, checked by argparse (exit 2 before any work)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Literal

from bsrn_edge.errors import InputError
from bsrn_edge.imageio import MAX_PIXELS, output_ext
from bsrn_edge.imageio import OUTPUT_FORMATS as FORMATS

from ..args import whole_number
from ..jobs import ImageOptions
from ..video import VideoOptions, parse_frames

__all__ = ["DEFAULT_MODEL", "build_parser", "image_options", "video_options", "name_suffix"]

DEFAULT_MODEL = "bsrn-s-x4"


def _tile(text: str) -> int | Literal["auto"] | None:
    if text in ("auto", "none", "0"):  # 0: no tiling, as in Real-ESRGAN
        return None if text != "auto" else "auto"
    try:
        return whole_number(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto', 0 (no tiles) or a side in LR pixels ≥ 1, got {text!r}") from None


def _device(text: str) -> str:
    """-g/--device: auto, cpu, cuda, cuda:N, OpenVINO's gpu, gpu.N or npu, or a GPU index N as Real-ESRGAN's -g
    takes it (-1: the CPU)."""
    t = text.strip().lower()
    if t in ("auto", "cpu", "cuda", "gpu", "npu") or re.fullmatch(r"cuda:\d+|gpu\.\d+", t):
        return t
    if re.fullmatch(r"-?\d+", t):
        return "cpu" if int(t) < 0 else f"cuda:{int(t)}"
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N, gpu, gpu.N, npu or a GPU index (-1 for the "
                                     f"CPU), got {text!r}")


def _outscale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 64:
        raise argparse.ArgumentTypeError(f"expected a final scale > 0 (e.g. 2, 3.5), at most 64; got {text!r}")
    return value


def _suffix(text: str) -> str:
    if "/" in text or "\\" in text or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"a suffix is part of a file name; got {text!r}")
    return text


def _ext(text: str) -> str | None:
    if text.strip().lower() == "auto":
        return None
    ext = output_ext(text.strip())
    if ext is None:
        raise argparse.ArgumentTypeError(f"expected auto, {', '.join(FORMATS)} (or jpeg, tiff); got {text!r}")
    return ext


def _frames(text: str) -> tuple[int, int | None]:
    try:
        return parse_frames(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bsrn-upscale", description="Upscale images and videos with a BSRN model.",
        epilog="Flags follow Real-ESRGAN's inference_realesrgan.py (-i -o -n -s -t -g --fp32 --ext --suffix) and "
               "realesrgan-ncnn-vulkan (-m -f); see the README's 'Coming from Real-ESRGAN / chaiNNer'.")
    ap.add_argument("-i", "--input", required=True, type=Path,
                    help="image file, video file or folder (searched recursively for images and videos, each output "
                         "at its input's path relative to it; with --ray also a glob or a text file of paths)")
    ap.add_argument("-o", "--output", required=True, type=Path, help="output file (for one input) or folder")
    ap.add_argument("-m", "--model", "-n", "--model-name", dest="model", default=DEFAULT_MODEL,
                    help=f".onnx, .engine, checkpoint file or bundled name (default {DEFAULT_MODEL}, the bundled BSRN-S ×4)")
    ap.add_argument("-s", "--outscale", type=_outscale, metavar="S",
                    help="final scale of images against the input (e.g. 2 with a ×4 model): the network's "
                         "output is resampled with a Lanczos filter (default: the model's own scale; videos keep it)")
    ap.add_argument("-t", "--tile", default="auto", type=_tile,
                    help="LR tile side in pixels, 0 for no tiling, or 'auto' (default: whole images that fit the "
                         "memory budget, tiles for the rest)")
    ap.add_argument("--overlap", type=whole_number(0), default=None, help="LR overlap between tiles (≥ 0)")
    ap.add_argument("--batch", type=whole_number(1), default=1, help="tiles per inference call (≥ 1)")
    ap.add_argument("-g", "--device", type=_device, default="auto", metavar="DEVICE",
                    help="auto (default: a CUDA GPU when the backend can use one), cpu, cuda, cuda:N, a GPU index N "
                         "as in Real-ESRGAN (-1: the CPU), or OpenVINO's gpu, gpu.N, npu (Intel iGPU/NPU)")
    ap.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "openvino", "tensorrt", "torch"],
                    help="auto (default): an FP32 .onnx on the CPU runs on the engine and precision measured fastest "
                         "for it on this machine (timed once, then cached; the header says which and why)")
    prec = ap.add_mutually_exclusive_group()
    prec.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16", "int8"],
                      help="fp16 picks the .fp16 sibling of an .onnx, or runs a checkpoint in half precision on a GPU; "
                           "bf16: OpenVINO on a CPU with native BF16; int8: the .int8.onnx sibling (bsrn-export --int8)")
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                      help="full precision: the FP32 .onnx when both siblings exist (as Real-ESRGAN's --fp32)")
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                      help="half precision: the .fp16 sibling of an .onnx / a checkpoint in FP16 on a GPU")
    ap.add_argument("--memory-mb", type=whole_number(64), default=768, metavar="MB",
                    help="host memory for tiling on the CPU: larger images are tiled within it (default 768)")
    ap.add_argument("--max-pixels", type=whole_number(1), default=MAX_PIXELS, metavar="N",
                    help=f"refuse inputs of more than N pixels as possible decompression bombs (default {MAX_PIXELS:,})")
    ap.add_argument("-f", "--ext", "--format", dest="ext", type=_ext, default=None, metavar="EXT",
                    help="output format: auto (default: the input's own when it is png, jpg, webp or tif, else "
                         "png), png, jpg, webp or tif; an image with transparency asked for as jpg is written as png")
    ap.add_argument("--suffix", type=_suffix, default="", help="added to each output's name: "
                                                               "--suffix out writes photo_out.png (default: none)")
    ap.add_argument("--lossless", action="store_true", help="WebP outputs: lossless (default: quality 95)")
    ap.add_argument("--force", action="store_true",
                    help="redo outputs that already exist (default: skip them as done, exit 0); never overwrites inputs")
    _video_flags(ap)
    _ray_flags(ap)
    return ap


def _video_flags(ap: argparse.ArgumentParser) -> None:
    vid = ap.add_argument_group("video files: -i a video, -o a video file or folder (pip install 'bsrn-edge[video]')")
    vid.add_argument("--codec", help="video encoder (default libx264, libvpx-vp9 for .webm; also libx265, ffv1, …)")
    vid.add_argument("--crf", type=whole_number(0), help="constant quality, lower is better (default 12 for libx264, "
                                                          "19 for libx265, 24 for VP9)")
    vid.add_argument("--preset", help="x264/x265 speed preset, ultrafast … veryslow (default veryfast for libx264: "
                                      "as sharp as medium at CRF 16 for a third of the CPU, files ~40%% larger)")
    vid.add_argument("--pix-fmt", help="output pixel format (default yuv444p: 8-bit with colour at full resolution, "
                                       "so the colour detail of the upscale is kept; yuv420p plays everywhere but halves it)")
    vid.add_argument("--frames", type=_frames, metavar="A:B", help="only frames A to B-1 (display order, from 0; "
                                                                    "A: or :B), audio cut to match")
    vid.add_argument("--preview", type=_seconds, metavar="N", help="only N seconds (from frame A), to try settings first")


def _ray_flags(ap: argparse.ArgumentParser) -> None:
    ray = ap.add_argument_group("on a Ray cluster (pip install 'bsrn-edge[ray]')")
    ray.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                     help="run on Ray: ADDRESS, else $RAY_ADDRESS, else a new local Ray; -i may then also be a glob or "
                          "a text file of paths, -o a folder that gets a manifest")
    ray.add_argument("--actors", type=whole_number(1), help="model copies (default: one per GPU, else one per CPU)")
    ray.add_argument("--cpus-per-actor", type=whole_number(1),
                     help="CPUs (and ONNX Runtime threads) per CPU actor (default 1)")
    ray.add_argument("--segment-seconds", type=whole_number(0), metavar="N",
                     help="split a video of 1.5×N seconds or more into N-second segments, one task each, joined "
                          "without re-encoding (audio copied once); default 60, 0 keeps every video whole")



def name_suffix(args: argparse.Namespace) -> str:
    """What goes between an output's stem and extension: ``_<--suffix>`` (Real-ESRGAN's ``photo_out.png``)."""
    return f"_{args.suffix}" if args.suffix else ""


def image_options(args: argparse.Namespace) -> ImageOptions:
    """The image flags as :class:`ImageOptions`."""
    return ImageOptions(args.outscale, args.max_pixels, args.lossless)


def video_options(args: argparse.Namespace) -> VideoOptions:
    """The video flags as :class:`~bsrn_edge.apps.video.VideoOptions`."""
    return VideoOptions(args.codec, args.crf, args.pix_fmt, args.frames or (0, None), args.preview, preset=args.preset)

