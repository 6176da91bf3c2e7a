"""The deploy form: an inference-equivalent rewrite of BSRN used by export and for speed.

- every ``ChannelLinear`` becomes a 1×1 ``Conv2d`` (no Transpose/MatMul pairs in ONNX);
- BSRN-S's per-channel ``cw`` is folded into the columns of ``conv_out``;
- the 4× input replication is folded into ``fea_conv.pw`` (12 → 3 input channels);
- the 1×1 convs that read a channel concatenation (each block's ``c5``, the trunk's ``c1``) become a
  sum of 1×1 convs over the parts (``SplitPointwise``): no Concat copy, and on ONNX Runtime's CPU
  NCHWc path each partial conv accumulates into the previous one in place.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .bsrn import BSRN
from .layers import ChannelLinear, SplitPointwise

__all__ = ["to_deploy", "linear_to_conv"]


def linear_to_conv(lin: nn.Linear) -> nn.Conv2d:
    conv = nn.Conv2d(lin.in_features, lin.out_features, 1, bias=lin.bias is not None,
                     device=lin.weight.device, dtype=lin.weight.dtype)  # where the model already is (e.g. CUDA)
    with torch.no_grad():
        conv.weight.copy_(lin.weight[:, :, None, None])
        if lin.bias is not None and conv.bias is not None:
            conv.bias.copy_(lin.bias)
    return conv


def _replace_linears(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, ChannelLinear):
            setattr(module, name, linear_to_conv(child))
        else:
            _replace_linears(child)


def _fold_cw(block: Any) -> None:  # ESDB: its layers are attributes set at run time
    if not hasattr(block, "cw"):
        return
    conv = block.conv_out
    with torch.no_grad():
        conv.weight.mul_(block.cw.view(1, -1, 1, 1))
    del block.cw


def _fold_replication(model: Any) -> None:  # BSRN
    pw = model.fea_conv.pw
    if not model.replicate:
        return
    w = pw.weight  # [C, 12, 1, 1]
    new = nn.Conv2d(3, w.shape[0], 1, bias=pw.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w.view(w.shape[0], 4, 3, 1, 1).sum(dim=1))
        if pw.bias is not None and new.bias is not None:
            new.bias.copy_(pw.bias)
    model.fea_conv.pw = new
    model.replicate = False


def _split_concat_convs(model: Any) -> None:  # BSRN
    for i in range(1, model.blocks + 1):
        block = getattr(model, f"B{i}")
        d = block.c1_d.out_channels
        block.c5 = SplitPointwise(block.c5, [d, d, d, block.c4.dw.out_channels])
    channels = model.c2.dw.out_channels
    model.c1 = SplitPointwise(model.c1, [channels] * model.blocks)


def to_deploy(model: nn.Module, *, split_concat: bool = True) -> nn.Module:
    """Return a deep copy of a BSRN/BSRN-S module in deploy form (the input is not changed).

    ``split_concat=False`` keeps the Concat before ``c5`` and ``c1`` (to measure that rewrite).
    Other architectures are returned as an eval-mode copy unchanged.
    """
    out = copy.deepcopy(model).eval()
    if not isinstance(out, BSRN):
        return out
    _replace_linears(out)
    for i in range(1, out.blocks + 1):
        _fold_cw(getattr(out, f"B{i}"))
    _fold_replication(out)
    if split_concat:
        _split_concat_convs(out)
    for p in out.parameters():
        p.requires_grad_(False)
    return out
