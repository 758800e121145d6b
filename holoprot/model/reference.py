"""Loading weights of the authors' ``H_VAE`` (github.com/gvisani/Holographic-VAE @ 728b67c).

Key mapping (reference → holoprot; every other key is identical in both):

============================================  ==========================================
``initial_linear_projection.weights.{l}``     ``initial_projection.weights.{l}``
``encoder_cg_blocks.{i}.layers.0.{p}``        ``encoder_blocks.{i}.batch_norm.{p}``
                                              (``weight``, ``bias``, ``running_*``)
``encoder_cg_blocks.{i}.layers.2.{p}``        ``encoder_blocks.{i}.signal_norm.{p}``
                                              (``weights.{l}``, ``bias``)
``encoder_cg_blocks.{i}.layers.3.weights.{l}``  ``encoder_blocks.{i}.linear.weights.{l}``
``decoder_cg_blocks.{i}.layers.{0,2,3}.…``    ``decoder_blocks.{i}.…`` (same three names)
``final_linear_projection.weights.{l}``       ``final_projection.weights.{l}``
``encoder_mean.*``, ``encoder_log_var.*``, ``frame_learner.weights.1``, ``decoder_bottleneck.*``,
``first_decoder_projection.weights.1``        unchanged
============================================  ==========================================

(``layers.1`` of a reference block is the parameter-free tensor-product nonlinearity.) Shapes and
conventions are identical: ``SO3Linear`` weights ``[in, out]``, batch-norm vectors l-ascending,
``nn.Linear`` weights ``[out, in]``. The tensor-product channel order is reproduced by
:func:`holoprot.model.cg.tp_paths`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from holoprot.model.hvae import HVAE, HVAEConfig

__all__ = ["config_from_reference_hparams", "load_reference_state", "map_reference_key"]

_BLOCK = re.compile(r"^(encoder|decoder)_cg_blocks\.(\d+)\.layers\.([023])\.(.+)$")
_LAYER = {"0": "batch_norm", "2": "signal_norm", "3": "linear"}
_RENAME = {
    "initial_linear_projection.": "initial_projection.",
    "final_linear_projection.": "final_projection.",
}


def map_reference_key(key: str) -> str:
    """Reference state-dict key → holoprot key (see the module docstring)."""
    m = _BLOCK.match(key)
    if m:
        part, i, layer, rest = m.groups()
        return f"{part}_blocks.{i}.{_LAYER[layer]}.{rest}"
    for old, new in _RENAME.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def load_reference_state(model: HVAE, state: Mapping[str, Any]) -> None:
    """Load a reference ``state_dict`` (tensors or numpy arrays) into ``model``; strict on keys
    and shapes (raises ``KeyError``/``ValueError`` naming the offending keys)."""
    mapped = {map_reference_key(k): torch.as_tensor(np.asarray(v)) for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    if missing or unexpected:
        raise KeyError(
            f"reference state mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for k, v in mapped.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(
                f"{k}: reference shape {tuple(v.shape)} != model shape {tuple(own[k].shape)}"
            )
    model.load_state_dict(mapped, strict=True)


def config_from_reference_hparams(hparams: dict[str, Any]) -> HVAEConfig:
    """:class:`HVAEConfig` from a reference ``hparams.json`` (either the fixture layout with a
    ``constructor`` entry, or the plain model ``hparams`` dict plus ``irreps_in``)."""
    ctor = hparams.get("constructor", hparams)
    hp = ctor.get("hparams", ctor)
    irreps_in = ctor.get("irreps_in", hp.get("irreps_in"))
    if irreps_in is None:
        raise ValueError("reference hparams carry no irreps_in")
    expected = {
        "do_initial_linear_projection": True,
        "use_additive_skip_connections": True,
        "use_batch_norm": True,
        "norm_type": "signal",
        "norm_location": "between",
        "normalization": "component",
        "norm_affine": "per_l",
        "linearity_first": False,
        "learn_frame": True,
        "norm_balanced": False,
        "bottleneck_hidden_dims": None,
        "filter_symmetric": True,
        "do_final_signal_norm": False,
    }
    for key, value in expected.items():
        if key in hp and hp[key] != value:
            raise ValueError(f"unsupported reference setting {key}={hp[key]!r} (need {value!r})")
    if set(hp.get("ch_nonlin_rule_list", ["elementwise"])) != {"elementwise"}:
        raise ValueError("only the 'elementwise' channel rule is supported")
    rules = set(hp["ls_nonlin_rule_list"])
    if len(rules) != 1:
        raise ValueError(f"mixed ls rules {sorted(rules)} are not supported")
    return HVAEConfig(
        irreps_in=irreps_in,
        latent_dim=int(hp["latent_dim"]),
        ch_initial=int(hp["ch_initial_linear_projection"]),
        ch_sizes=tuple(int(c) for c in hp["ch_size_list"]),
        lmax_list=tuple(int(l) for l in hp["lmax_list"]),
        ls_rule=rules.pop(),
        is_vae=bool(hp["is_vae"]),
        input_norm_const=float(hp.get("input_normalizing_constant") or 1.0),
    )
