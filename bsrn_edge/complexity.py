"""Model complexity as the NTIRE Efficient SR challenge and the BSRN paper report it (imports torch).

:func:`count_complexity` runs one forward pass of a module on an input shape (default 1×3×256×256 LR,
the NTIRE convention) and counts, from every convolution and linear call it makes:

- ``params``: all parameters;
- ``flops``: multiply-accumulates of conv (k²·C_in/groups·C_out·H_out·W_out, no bias) and linear layers
  (in_features per output element), whether called through a module or functionally;
- ``acts``: total elements of every **conv** output (NTIRE hooked ``nn.Conv2d`` only, so BSRN-S's
  ``nn.Linear`` 1×1 layers add neither activations nor convs; the deploy form, which turns them into
  1×1 convs, counts differently — measure the authors' structure from :func:`~bsrn_edge.load_model`);
- ``convs``: number of conv calls;
- ``multiadds_720p``: ``flops`` for a 1280×720 *output* (input 1280/s × 720/s), the paper's Multi-Adds.

The pass runs on the ``meta`` device (shapes only, no arithmetic, no memory), falling back to a real
pass on the module's device when an operation has no meta kernel.

Published figures, and why ``flops`` does not reproduce all of them to the last digit
-----------------------------------------------------------------------------------
The published rows are kept in :data:`PUBLISHED`. Params, acts and #conv reproduce exactly. The FLOPs
and Multi-Adds columns were not all produced by one counter; each adds a little to the MACs:

- the NTIRE organisers' counter (``utils/model_summary.py`` of the challenge kit) adds one operation per
  output element of every ReLU / LeakyReLU / PReLU / ELU / ReLU6 *module* call and nothing for GELU.
  With that rule (``convention="ntire"``) IMDN gives 58.53 G, RFDN 27.10 G and RLFN 19.70 G, exactly
  the published values. That counter, in the public version we read (KAIR's ``utils_modelsummary``),
  cannot have produced BSRN-S's row: it has no GELU rule, and its linear hook multiplies the sizes of
  dimension 1 of input and output, H·H for BSRN-S's Linear layers on N×H×W×C tensors, so it would
  report about 2.0 G;
- BSRN-S's 9.50 G, and the BSRN paper's Multi-Adds (8.3 G for BSRN-S, 19.4 G for BSRN ×4), match a
  counter that adds one addition per output element of every conv that has a bias (linear biases not
  counted), as thop-style counters do (``convention="conv_bias"``): 9.496 G, 8.35 G and 19.41 G.

Plain MACs (``convention="macs"``, the default and the definition above) are within 1.1 % of every
published value: BSRN-S 9.43 G (−0.7 %), IMDN 58.43 G (−0.2 %), RFDN 27.03 G (−0.3 %),
RLFN 19.66 G (−0.2 %), Multi-Adds 8.29 G (−0.1 %) and 19.18 G (−1.1 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from .errors import InputError

__all__ = ["Complexity", "Published", "PUBLISHED", "Convention", "count_complexity", "NTIRE_INPUT"]

Convention = Literal["macs", "ntire", "conv_bias"]

NTIRE_INPUT: tuple[int, int, int, int] = (1, 3, 256, 256)
_OUT_720P = (720, 1280)  # H, W of the output the paper's Multi-Adds are quoted for


@dataclass(frozen=True)
class Complexity:
    """Counts for one module and input shape; ``flops`` and ``multiadds_720p`` follow ``convention``."""

    params: int
    flops: int
    acts: int
    convs: int
    multiadds_720p: int | None
    convention: Convention = "macs"


@dataclass(frozen=True)
class Published:
    """A published complexity row, in plain units (0.156 M params is ``156e3``); None where not given."""

    params: float | None
    flops: float | None
    acts: float | None
    convs: int | None
    multiadds_720p: float | None
    memory_mb: float | None
    source: str
    convention: Convention  # the counting rule that reproduces this row's FLOPs / Multi-Adds


_NTIRE_REPORT = "NTIRE 2022 Efficient SR challenge report (Li et al., CVPRW 2022), results table"
_BSRN_PAPER = "Li et al., BSRN, CVPRW 2022, Table 5 (Multi-Adds for a 1280×720 output)"

# Published figures (from the papers, not from this code). BSRN-S's NTIRE row is the team18 entry,
# the same architecture as the authors' BSRN-S.
PUBLISHED: dict[str, Published] = {
    "bsrn-s-x4": Published(156e3, 9.50e9, 65.76e6, 43, 8.3e9, 729.94, f"{_NTIRE_REPORT}; {_BSRN_PAPER}", "conv_bias"),
    "bsrn-s-x4-ntire": Published(156e3, 9.50e9, 65.76e6, 43, None, 729.94, _NTIRE_REPORT, "conv_bias"),
    "bsrn-x4": Published(352e3, None, None, None, 19.4e9, None, _BSRN_PAPER, "conv_bias"),
    "imdn": Published(894e3, 58.53e9, 154.14e6, 43, None, 471.76, f"{_NTIRE_REPORT}, IMDN baseline", "ntire"),
    "rfdn": Published(433e3, 27.10e9, 112.03e6, 64, None, 788.13, f"{_NTIRE_REPORT}, RFDN baseline", "ntire"),
    "rlfn": Published(317e3, 19.70e9, 80.05e6, 39, None, None, f"{_NTIRE_REPORT}, team04 (ByteESR) RLFN", "ntire"),
}

_CONVS = {torch.conv1d, torch.conv2d, torch.conv3d}
_CONV_T = {torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d}
_RELUS = {F.relu, F.relu_, torch.relu, torch.relu_, F.leaky_relu, F.leaky_relu_, F.prelu, torch.prelu, F.elu, F.relu6}


class _OpCounter(TorchFunctionMode):
    """Counts conv/linear MACs, conv outputs, conv-bias adds and ReLU-family outputs of one pass."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0
        self.acts = 0
        self.convs = 0
        self.bias_adds = 0
        self.relu_elems = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _CONVS or func in _CONV_T:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            per_element = weight[0].numel()  # C_in/groups·k² (conv) or C_out/groups·k² (transposed)
            inp = args[0] if args else kwargs["input"]
            self.macs += (out.numel() if func in _CONVS else inp.numel()) * per_element
            self.acts += out.numel()
            self.convs += 1
            if bias is not None:
                self.bias_adds += out.numel()
        elif func is F.linear:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            self.macs += out.numel() * weight.shape[1]
        elif func in _RELUS:
            self.relu_elems += out.numel()
        return out

    def total(self, convention: Convention) -> int:
        if convention == "ntire":
            return self.macs + self.relu_elems
        if convention == "conv_bias":
            return self.macs + self.bias_adds
        return self.macs


def _run(model: nn.Module, shape: tuple[int, ...]) -> tuple[_OpCounter, torch.Size]:
    """One counted forward pass: on ``meta`` tensors if every op supports it, else for real."""
    counter = _OpCounter()
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    try:
        meta = {k: v.to("meta") for k, v in tensors.items()}
        with torch.no_grad(), counter:
            out = functional_call(model, meta, (torch.empty(shape, device="meta"),))
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: count a real pass
        counter = _OpCounter()
        ref = next(iter(tensors.values()), None)
        x = torch.zeros(shape, device=ref.device if ref is not None else "cpu")
        with torch.no_grad(), counter:
            out = model(x)
    if not isinstance(out, torch.Tensor):
        raise InputError(f"count_complexity expects a module returning one tensor, got {type(out).__name__}")
    return counter, out.shape


def count_complexity(
    model: nn.Module,
    input_shape: tuple[int, ...] = NTIRE_INPUT,
    *,
    convention: Convention = "macs",
    multiadds_720p: bool = True,
) -> Complexity:
    """Params, FLOPs, activations and #conv of ``model`` on ``input_shape`` (N×C×H×W).

    ``convention`` picks what ``flops`` and ``multiadds_720p`` add to the conv/linear MACs (see the
    module docstring): ``"macs"`` nothing, ``"ntire"`` the NTIRE counter's ReLU-family outputs,
    ``"conv_bias"`` one add per biased conv output. ``multiadds_720p`` runs a second pass on a
    1280/s × 720/s input, ``s`` read from the first pass's output; it is None when the output is not an
    integer upscale of the input, or when ``multiadds_720p=False``.
    """
    if convention not in ("macs", "ntire", "conv_bias"):
        raise InputError(f"convention must be 'macs', 'ntire' or 'conv_bias', got {convention!r}")
    if len(input_shape) != 4 or not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise InputError(f"input_shape must be four positive ints N×C×H×W, got {input_shape!r}")
    counter, out_shape = _run(model, tuple(input_shape))
    params = sum(p.numel() for p in model.parameters())
    madds = None
    if multiadds_720p and len(out_shape) == 4:
        scale = out_shape[-1] / input_shape[-1]
        if scale >= 1 and scale == int(scale) and out_shape[-2] == input_shape[-2] * int(scale):
            s = int(scale)
            lr = (1, input_shape[1], math.floor(_OUT_720P[0] / s + 0.5), math.floor(_OUT_720P[1] / s + 0.5))
            madds = _run(model, lr)[0].total(convention)
    return Complexity(
        params=params,
        flops=counter.total(convention),
        acts=counter.acts,
        convs=counter.convs,
        multiadds_720p=madds,
        convention=convention,
    )
