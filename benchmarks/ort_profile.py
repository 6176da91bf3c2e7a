"""Where ONNX Runtime spends its time on the default CPU path: kernel time per op type and per conv kind.

    python benchmarks/ort_profile.py [--model bsrn-s-x4] [--runs 4] [--dynamic]

Exports the model (cached), runs a real-content 320×180 frame with ORT's profiler on, and prints
milliseconds per run for each op type and for 1×1, depthwise and dense convolutions. The session is
specialised to the frame's shape, as the runtime's CPU backend does (``--dynamic``: the one
dynamic-shape session instead).
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

from _common import exported_onnx, machine_line, real_frame

FRAME_DIMS = {"batch": 1, "height": 180, "width": 320}


def _conv_kinds(path: Path, dims: dict[str, int] | None, tmp: Path) -> dict[str, str]:
    """Node name → '1x1' / 'depthwise' / 'KxK dense', read from ORT's optimised graph."""
    import onnx
    import onnxruntime as ort

    from bsrn_edge.runtime.backends.onnxruntime import session_options

    opts = session_options(dims=dims)
    opts.optimized_model_filepath = str(tmp / "optimized.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp / "optimized.onnx")).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    kind = {}
    for n in graph.node:
        if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in shapes:
            groups = next((a.i for a in n.attribute if a.name == "group"), 1)
            k = shapes[n.input[1]]
            kind[n.name] = "depthwise" if groups > 1 else "1x1" if k[2] == 1 else f"{k[2]}x{k[3]} dense"
    return kind


def kernel_times(path: Path, runs: int, dims: dict[str, int] | None = FRAME_DIMS
                 ) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """Kernel milliseconds per run on the 320×180 frame: (by op type, by conv kind)."""
    import onnxruntime as ort

    from bsrn_edge.pixels import to_nchw
    from bsrn_edge.runtime.backends.onnxruntime import session_options

    tmp = Path(tempfile.mkdtemp())
    kind = _conv_kinds(path, dims, tmp)
    opts = session_options(dims=dims)
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp / "prof")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = to_nchw(real_frame(320, 180))
    for _ in range(runs):
        sess.run(None, {"input": x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    by_conv: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name", "?")
            ms = e["dur"] / 1000 / runs
            by_op[op] += ms
            if op == "Conv":
                by_conv[kind.get(e["name"][: -len("_kernel_time")], "other")] += ms
    return by_op, by_conv


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bsrn-s-x4")
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--cache", type=Path, help="export cache (default: bsrn-bench's)")
    ap.add_argument("--dynamic", action="store_true", help="profile the dynamic-shape session")
    args = ap.parse_args()
    by_op, by_conv = kernel_times(exported_onnx(args.model, args.cache), args.runs, None if args.dynamic else FRAME_DIMS)
    total = sum(by_op.values())
    print(machine_line())
    print(f"{args.model}, 320×180, {'dynamic' if args.dynamic else 'shape-specialised'} session, {args.runs} runs; "
          f"kernel time {total:.0f} ms per run")
    print("| op | ms per run | share |\n| --- | ---: | ---: |")
    for op, ms in by_op.most_common(12):
        print(f"| {op} | {ms:.1f} | {100 * ms / total:.1f}% |")
    print("\n| conv kind | ms per run |\n| --- | ---: |")
    for k, ms in by_conv.most_common():
        print(f"| {k} | {ms:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
