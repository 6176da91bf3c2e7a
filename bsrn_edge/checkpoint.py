"""Checkpoint reading, architecture detection and loading (imports torch lazily).

``load_model`` accepts a bundled name (``bsrn-s-x4``) or a ``.pth``/``.safetensors`` file, finds the
architecture, variant and scale from the state dict alone, and returns a :class:`LoadedModel`.
Files are read with ``torch.load(weights_only=True)`` or safetensors: pickled code is refused.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ._lazy import require
from .errors import CheckpointError, InputError
from .pixels import mirror_to
from .variants import VARIANTS, Variant, bundled_checkpoint, get_variant

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["LoadedModel", "ArchName", "frozen_model", "load_model", "resolve_checkpoint", "read_state_dict", "unwrap_state_dict",
           "detect_variant", "sha256_file"]

_WRAPPERS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net", "generator")


@dataclass(frozen=True)
class ArchName:
    """An architecture's identity, shaped like spandrel's ``Architecture`` (``id``, ``name``)."""

    id: str
    name: str


def _variant_field(attr: str) -> Any:
    """A read-only property of :class:`LoadedModel` that answers with its variant's ``attr``."""
    return property(lambda self: getattr(self.variant, attr), doc=f"The variant's ``{attr}``.")


@dataclass(frozen=True)
class LoadedModel:
    """A loaded network and the facts about it; call it like a spandrel ``ImageModelDescriptor``.

    ``model`` is an eval-mode torch module mapping N×3×H×W float RGB in [0, 1] to N×3×sH×sW.
    ``loaded(image)`` does the same, padding an input below the network's minimum size and cropping
    the output back, and clamps to [0, 1]. Descriptor fields under spandrel's names: ``scale``,
    ``size_requirements``, ``tiling``, ``supports_half``, ``supports_bfloat16``, ``input_channels``,
    ``output_channels``, ``purpose``, ``device``, ``dtype``, ``to``/``half``/``float``/``cpu``/``cuda``.
    """

    model: "nn.Module"
    variant: Variant
    source: str
    sha256: str

    # facts of the variant, under our names and spandrel's (size_requirements, tiling, supports_half, …)
    name = _variant_field("name")
    scale = _variant_field("scale")
    min_size = _variant_field("min_size")
    tags = _variant_field("tags")
    size_requirements = _variant_field("sizes")
    # "supported", or "discouraged" where global statistics (BSRN's CCA) make tiles change the output
    tiling = _variant_field("tiling")
    supports_half = _variant_field("supports_half")
    supports_bfloat16 = _variant_field("supports_bfloat16")

    @property
    def architecture(self) -> ArchName:
        """The architecture, with spandrel's ``id`` and ``name`` (``BSRN``, ``IMDN``, ``RFDN``, ``RLFN``)."""
        return ArchName(self.variant.family, self.variant.family)

    input_channels = 3
    output_channels = 3
    purpose = "SR"

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def device(self) -> "torch.device":
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> "torch.dtype":
        return next(self.model.parameters()).dtype

    def to(self, *args: Any, **kwargs: Any) -> "LoadedModel":
        """Move or cast the module in place (``torch.nn.Module.to`` arguments); returns self."""
        torch = require("torch")
        dtype = kwargs.get("dtype") or next((a for a in args if isinstance(a, torch.dtype)), None)
        if (dtype == torch.float16 and not self.supports_half) or (dtype == torch.bfloat16 and not self.supports_bfloat16):
            raise InputError(f"{self.name} does not run in {dtype}; use float32")
        self.model.to(*args, **kwargs)
        return self

    def half(self) -> "LoadedModel":
        return self.to(require("torch").float16)

    def float(self) -> "LoadedModel":
        return self.to(require("torch").float32)

    def cpu(self) -> "LoadedModel":
        return self.to("cpu")

    def cuda(self, index: int | None = None) -> "LoadedModel":
        return self.to("cuda" if index is None else f"cuda:{index}")

    def bfloat16(self) -> "LoadedModel":
        return self.to(require("torch").bfloat16)

    def eval(self) -> "LoadedModel":
        self.model.eval()
        return self

    def train(self, mode: bool = True) -> "LoadedModel":
        """Switch the module's training mode (spandrel's ``train``); a loaded model starts in eval mode."""
        self.model.train(mode)
        return self

    def __call__(self, image: "torch.Tensor") -> "torch.Tensor":
        """Upscale an N×3×H×W tensor of RGB in [0, 1] (the module's device and dtype) → N×3×sH×sW in [0, 1].

        Inputs smaller than ``size_requirements.minimum`` are mirror-padded at the bottom and right (as
        the runtime does) and the output is cropped back, so any size ≥ 1 works.
        """
        torch = require("torch")
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != self.input_channels:
            shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
            raise InputError(f"{self.name}: expected an N×3×H×W RGB tensor in [0, 1], got {shape}")
        h, w = image.shape[-2:]
        with torch.inference_mode():
            padded = mirror_to(image, self.min_size, (-2, -1), torch.cat, lambda t, ax: torch.flip(t, [ax]))
            out = self.model(padded).clamp_(0.0, 1.0)
        return out[..., : h * self.scale, : w * self.scale]


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, "torch.Tensor"]:
    """Read a checkpoint file into a flat ``name -> tensor`` dict, refusing anything but tensors."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file. Pass a .pth/.safetensors checkpoint or one of: {', '.join(VARIANTS)}")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory, expected a .pth or .safetensors checkpoint file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: the file is empty; expected a .pth or .safetensors checkpoint")
    if p.suffix.lower() == ".safetensors":
        st = require("safetensors.torch")
        try:
            raw: Any = st.load_file(str(p), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{p}: not a readable safetensors file ({exc}); is it truncated?") from exc
    else:
        torch = require("torch")
        try:
            raw = torch.load(str(p), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise CheckpointError(
                f"{p}: refused to load: the file holds pickled objects that are not tensors "
                f"(weights_only=True). Re-save the state dict with torch.save(model.state_dict(), ...) "
                f"or convert it to safetensors. Detail: {str(exc).splitlines()[0]}"
            ) from exc
        except Exception as exc:  # the restricted unpickler raises many types on foreign bytes
            raise CheckpointError(
                f"{p}: not a readable PyTorch checkpoint (truncated or another format?): {str(exc).splitlines()[0]}"
            ) from exc
    return unwrap_state_dict(raw, source=str(p))


def unwrap_state_dict(raw: Any, source: str = "<state dict>") -> dict[str, "torch.Tensor"]:
    """Unwrap BasicSR/Lightning-style containers and strip ``module.`` prefixes."""
    torch = require("torch")
    obj = raw
    for _ in range(3):
        if isinstance(obj, Mapping) and not _is_tensor_dict(obj, torch):
            for key in _WRAPPERS:
                if key in obj and isinstance(obj[key], Mapping):
                    obj = obj[key]
                    break
            else:
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source}: expected a state dict (names → tensors), found {type(raw).__name__}")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError(f"{source}: the checkpoint holds no tensors; keys: {list(obj)[:8]}")
    for prefix in ("module.", "model.", "_orig_mod."):
        if all(k.startswith(prefix) for k in sd):
            # "model." is a genuine prefix for IMDN (model.0.weight …); only strip it when it nests
            if prefix == "model." and any(k.split(".")[1].isdigit() for k in sd):
                continue
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _is_tensor_dict(obj: Mapping[Any, Any], torch: Any) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def detect_variant(sd: Mapping[str, "torch.Tensor"], sha256: str = "", source: str = "<state dict>") -> Variant:
    """Find the architecture and hyper-parameters from tensor names and shapes.

    A bundled checkpoint's hash picks its exact registry entry (so team18 is told apart from the
    authors' BSRN-S); otherwise the first registered variant with the same configuration, else a
    new descriptor named after the configuration.
    """
    from .models.registry import ARCHS

    for arch in ARCHS.values():
        config = arch.detect(sd)
        if config is None:
            continue
        matches = [v for v in VARIANTS.values() if v.arch == arch.arch and v.kwargs == config]
        for v in matches:
            if v.checkpoint and sha256 and _bundled_sha(v) == sha256:
                return v
        if matches:
            return matches[0]
        base = next((v for v in VARIANTS.values() if v.arch == arch.arch), None)
        name = arch.arch + "-" + "-".join(f"{k}{v}" for k, v in config.items())
        if base is None:  # pragma: no cover - every arch has one entry
            raise CheckpointError(f"{source}: architecture {arch.arch} has no registry entry")
        return replace(base, name=name, config=tuple(config.items()), scale=int(str(config["scale"])),
                       checkpoint=None, origin=f"user checkpoint {source}", aliases=())
    raise CheckpointError(
        f"{source}: the state dict matches no known architecture (BSRN, BSRN-S, IMDN, RFDN, RLFN). "
        f"First keys: {', '.join(list(sd)[:6])}. Is it a checkpoint of another network?"
    )


_SHA_CACHE: dict[str, str] = {}


def _bundled_sha(v: Variant) -> str:
    if v.name not in _SHA_CACHE:
        _SHA_CACHE[v.name] = sha256_file(bundled_checkpoint(v.name))
    return _SHA_CACHE[v.name]


def build_model(variant: Variant) -> "nn.Module":
    """An untrained module for ``variant`` (random init)."""
    from .models.registry import ARCHS

    return ARCHS[variant.arch].build(**variant.kwargs)


def load_state(model: "nn.Module", sd: Mapping[str, "torch.Tensor"], source: str) -> None:
    """Strict load; a near miss names the missing and unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k} {tuple(sd[k].shape)} != {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        def _few(xs: list[str]) -> str:
            return ", ".join(xs[:8]) + (f" … (+{len(xs) - 8})" if len(xs) > 8 else "") if xs else "none"

        raise CheckpointError(
            f"{source}: keys do not match the detected architecture. Missing: {_few(missing)}. "
            f"Unexpected: {_few(unexpected)}. Wrong shapes: {_few(wrong)}."
        )
    model.load_state_dict(dict(sd), strict=True)


_CKPT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")


def resolve_checkpoint(path_or_name: str | os.PathLike[str]) -> Path:
    """The checkpoint file meant by ``path_or_name``, without reading it.

    An existing file wins; otherwise a bundled name (``bsrn-s-x4``) or alias. A folder is never a
    checkpoint, so a folder named like a bundled model (an ``--out`` folder, say) does not shadow it.
    Raises :class:`CheckpointError` naming the argument when neither applies.
    """
    text = str(path_or_name)
    path = Path(text)
    if path.is_file():
        return path
    try:
        variant = get_variant(text)
    except InputError:
        variant = None
    if variant is not None:
        try:
            return bundled_checkpoint(variant.name)
        except InputError as exc:
            raise CheckpointError(str(exc)) from exc
    if path.is_dir():
        raise CheckpointError(f"{text}: is a folder, not a checkpoint file, and not a bundled model name; pass a "
                              f".pth/.safetensors file or one of: {', '.join(VARIANTS)}")
    if text.lower().endswith(_CKPT_SUFFIXES) or os.sep in text or "/" in text:
        raise CheckpointError(f"{text}: no such file. Pass a .pth/.safetensors checkpoint or one of: {', '.join(VARIANTS)}")
    raise CheckpointError(f"{text}: not a file and not a bundled model name; known names: {', '.join(VARIANTS)}")


def frozen_model(variant: Variant, sd: Mapping[str, "torch.Tensor"], source: str) -> "nn.Module":
    """The module for ``variant`` with ``sd`` loaded strictly, in eval mode, without gradients."""
    model = build_model(variant)
    load_state(model, sd, source)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_model(path_or_name: str | os.PathLike[str], *, device: str = "cpu") -> LoadedModel:
    """Load a bundled model by name or a checkpoint file, detecting its variant from the weights."""
    path = resolve_checkpoint(path_or_name)
    sd = read_state_dict(path)
    digest = sha256_file(path)
    variant = detect_variant(sd, sha256=digest, source=str(path))
    model = frozen_model(variant, sd, str(path)).to(device)
    return LoadedModel(model=model, variant=variant, source=str(path), sha256=digest)
