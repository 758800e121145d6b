"""The architecture of an H-(V)AE as plain data: :class:`HVAEConfig`, the named presets, and the
tensors (names, shapes, dtypes) a model of a config holds. Imports no torch, so that weights files
can be checked, and the CPU encoder built, without it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from holoprot.model.cg import LS_RULES, tp_paths
from holoprot.model.so3 import parse_irreps

__all__ = ["CONFIG_PRESETS", "HVAEConfig", "block_irreps", "state_shapes"]


#: Named architectures (`holoprot train --config NAME`): HVAEConfig fields that differ from the
#: defaults. The reference's H-AEs at L = 6 (SPEC §4.4), both with the 'efficient' path rule:
#: z = 128 (2,622,591 parameters) and z = 256 (channels 64, 64, 64, 128, 256, 256; 4,498,703).
CONFIG_PRESETS: dict[str, dict[str, object]] = {
    "hae-z128": {},
    "hae-z256": {"latent_dim": 256, "ch_sizes": (64, 64, 64, 128, 256, 256)},
}


@dataclass(frozen=True)
class HVAEConfig:
    """Architecture of an :class:`HVAE` (defaults: the z=128 H-AE of the reference)."""

    irreps_in: str = "44x0e+40x1e+40x2e+36x3e+36x4e+32x5e+32x6e"
    latent_dim: int = 128
    ch_initial: int = 44
    ch_sizes: tuple[int, ...] = (60, 60, 60, 90, 128, 128)
    lmax_list: tuple[int, ...] = (6, 6, 6, 4, 2, 1)
    ls_rule: str = "efficient"
    is_vae: bool = False
    input_norm_const: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_sizes", tuple(self.ch_sizes))
        object.__setattr__(self, "lmax_list", tuple(self.lmax_list))
        try:
            irreps = parse_irreps(self.irreps_in)
        except ValueError as exc:
            raise ValueError(f"irreps_in {self.irreps_in!r} is not an irreps string") from exc
        ls = [l for _, l, _ in irreps]
        if any(p != 1 for _, _, p in irreps) or ls != list(range(len(ls))) or not ls:
            raise ValueError(
                "irreps_in must be 'Ax0e+Bx1e+…' with l = 0, 1, … once each,"
                f" got {self.irreps_in!r}"
            )
        if ls[-1] < 1:
            raise ValueError("irreps_in needs l >= 1 (the frame is an l = 1 quantity)")
        for name in ("latent_dim", "ch_initial"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.ch_sizes or len(self.ch_sizes) != len(self.lmax_list):
            raise ValueError("ch_sizes and lmax_list must be non-empty and of equal length")
        if any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in self.ch_sizes):
            raise ValueError(f"ch_sizes must be positive integers, got {self.ch_sizes}")
        lmax_in = ls[-1]
        if any(not isinstance(lm, int) or isinstance(lm, bool) for lm in self.lmax_list):
            raise ValueError(f"lmax_list must hold integers, got {self.lmax_list}")
        if self.lmax_list[-1] < 1:
            raise ValueError("the last encoder block needs lmax >= 1 to learn a frame")
        # A tensor product reaches at most twice its input degree: check encoder and decoder.
        decoder = (*reversed(self.lmax_list[:-1]), lmax_in)
        for start, seq in ((lmax_in, self.lmax_list), (1, decoder)):
            prev = start
            for lm in seq:
                if not 0 <= lm <= min(lmax_in, 2 * prev):
                    raise ValueError(
                        f"lmax_list {self.lmax_list}: degrees must lie in 0..{lmax_in} and at most"
                        " double from block to block (encoder and mirrored decoder)"
                    )
                prev = lm
        if self.ls_rule not in LS_RULES:
            raise ValueError(f"ls_rule must be one of {LS_RULES}, got {self.ls_rule!r}")
        if not isinstance(self.is_vae, bool):
            raise ValueError(f"is_vae must be a bool, got {self.is_vae!r}")
        c = self.input_norm_const
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c <= 0:
            raise ValueError(f"input_norm_const must be a positive finite number, got {c!r}")
        object.__setattr__(self, "input_norm_const", float(c))

    @property
    def irreps(self) -> dict[int, int]:
        """Data irreps as ``{l: multiplicity}``."""
        return {l: mul for mul, l, _ in parse_irreps(self.irreps_in)}

    @property
    def lmax(self) -> int:
        return max(self.irreps)

    @property
    def dim(self) -> int:
        return sum(mul * (2 * l + 1) for l, mul in self.irreps.items())

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ch_sizes"] = list(self.ch_sizes)
        d["lmax_list"] = list(self.lmax_list)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HVAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown HVAEConfig keys: {unknown}")
        return cls(**d)


#: A tensor's shape and its safetensors dtype name.
TensorSpec = tuple[tuple[int, ...], str]


def block_irreps(irreps_in: dict[int, int], lmax_out: int, rule: str) -> dict[int, int]:
    """``{l3: multiplicity}`` of the tensor product of a CG block (every path's ``C`` channels,
    the identically-zero ones included) from its input irreps (equal multiplicities) to degrees
    ``0..lmax_out``. ValueError if a degree cannot be reached."""
    muls = set(irreps_in.values())
    if len(muls) != 1:
        raise ValueError(f"elementwise tensor product needs equal multiplicities, got {irreps_in}")
    mul = muls.pop()
    paths = tp_paths(sorted(irreps_in), range(lmax_out + 1), rule)
    missing = set(range(lmax_out + 1)) - set(paths)
    if missing:
        raise ValueError(f"degrees {sorted(missing)} cannot be reached from {irreps_in}")
    return {l3: len(pairs) * mul for l3, pairs in paths.items()}


def _linear(
    prefix: str, irreps_in: dict[int, int], irreps_out: dict[int, int]
) -> dict[str, TensorSpec]:
    """An :class:`~holoprot.model.layers.SO3Linear`'s tensors."""
    return {
        f"{prefix}.weights.{l}": ((irreps_in[l], mul), "F32")
        for l, mul in sorted(irreps_out.items())
        if l in irreps_in
    }


def _dense(prefix: str, n_in: int, n_out: int) -> dict[str, TensorSpec]:
    """``torch.nn.Linear(n_in, n_out)``'s tensors."""
    return {f"{prefix}.weight": ((n_out, n_in), "F32"), f"{prefix}.bias": ((n_out,), "F32")}


def _blocks(
    prefix: str, irreps: dict[int, int], chans: list[int], lmaxes: list[int], rule: str
) -> dict[str, TensorSpec]:
    shapes: dict[str, TensorSpec] = {}
    for i, (ch, lm) in enumerate(zip(chans, lmaxes, strict=True)):
        p = f"{prefix}.{i}"
        total, n0 = sum(irreps.values()), irreps.get(0, 0)
        tp_out = block_irreps(irreps, lm, rule)
        out = {l: ch for l in range(lm + 1)}
        shapes |= {
            f"{p}.batch_norm.weight": ((total,), "F32"),
            f"{p}.batch_norm.bias": ((n0,), "F32"),
            f"{p}.batch_norm.running_mean": ((n0,), "F32"),
            f"{p}.batch_norm.running_var": ((total,), "F32"),
            f"{p}.signal_norm.bias": ((1,), "F32"),
            **{f"{p}.signal_norm.weights.{l}": ((1,), "F32") for l in tp_out},
            **_linear(f"{p}.linear", tp_out, out),
        }
        irreps = out
    return shapes


def state_shapes(config: HVAEConfig) -> dict[str, TensorSpec]:
    """Every tensor of the state dict of an :class:`~holoprot.model.HVAE` of `config`:
    ``{name: (shape, safetensors dtype)}``, all float32 (tests check it against the model)."""
    data, lmax, ch_last = config.irreps, config.lmax, config.ch_sizes[-1]
    hidden = {l: config.ch_initial for l in range(lmax + 1)}
    latent = config.latent_dim
    heads = ["encoder_mean", *(["encoder_log_var"] if config.is_vae else [])]
    return {
        **_linear("initial_projection", data, hidden),
        **_blocks(
            "encoder_blocks", hidden, list(config.ch_sizes), list(config.lmax_list), config.ls_rule
        ),
        **{k: v for h in heads for k, v in _dense(h, ch_last, latent).items()},
        **_linear("frame_learner", {1: ch_last}, {1: 2}),
        **_dense("decoder_bottleneck", latent, ch_last),
        **_linear("first_decoder_projection", {1: 3}, {1: ch_last}),
        **_blocks(
            "decoder_blocks",
            {0: ch_last, 1: ch_last},
            [*reversed(config.ch_sizes[:-1]), config.ch_initial],
            [*reversed(config.lmax_list[:-1]), lmax],
            config.ls_rule,
        ),
        **_linear("final_projection", hidden, data),
    }
