"""Carry a model in training from one session to the next in the repository, half size.

A session's `runs/` folder does not outlive it, and the tracked tree travels to a lent GPU machine
(64 MiB with the training pack): so a model still in training (the z = 256 rounds) is committed as
a float16 snapshot (9 MB for 4.5 M parameters) beside its description, and unpacked to float32
weights before the next round starts from it with `holoprot train --init`. Rounding to float16
moves a weight by at most 2^-11 of its size, far below what a round of training changes.

    python weights/snapshot.py pack runs/z256-r1/best.safetensors weights/training/hae-z256
    python weights/snapshot.py unpack weights/training/hae-z256 runs/z256-init
    holoprot train ... --init runs/z256-init.safetensors

`pack` writes STEM.f16.safetensors + STEM.json (the weights' description, sealed, with the
sha256 of the float16 file); `unpack` checks both and writes a loadable float32 pair OUT.*.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from holoprot._util.hashing import check_seal, seal, sha256_file
from holoprot.errors import HoloprotError
from holoprot.model.hvae import HVAE, HVAEConfig
from holoprot.model.serialization import load_model_file, save_model


def pack(weights: Path, stem: Path) -> Path:
    """Float16 copy of `weights` (a .safetensors + .json pair) as `stem`.f16.safetensors +
    `stem`.json; returns the tensors' path."""
    model, metadata = load_model_file(weights)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    tensors = stem.with_name(stem.name + ".f16.safetensors")
    tensors.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tensors))
    record = {
        "config": model.config.to_dict(),
        "metadata": metadata,
        "source_sha256": sha256_file(Path(weights).with_suffix(".safetensors")),
        "sha256": sha256_file(tensors),
    }
    stem.with_name(stem.name + ".json").write_text(json.dumps(seal(record), indent=1) + "\n")
    return tensors


def unpack(stem: Path, out: Path) -> Path:
    """The float32 weights (`out`.safetensors + `out`.json, loadable by holoprot) of a snapshot
    that `pack` wrote as `stem`."""
    tensors = stem.with_name(stem.name + ".f16.safetensors")
    sidecar = stem.with_name(stem.name + ".json")
    record = json.loads(sidecar.read_text())
    check_seal(record, sidecar)
    if sha256_file(tensors) != record["sha256"]:
        raise HoloprotError(f"{tensors}: sha256 does not match {sidecar.name}")
    model = HVAE(HVAEConfig.from_dict(record["config"]))
    state = load_file(str(tensors))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    metadata = record["metadata"] | {"unpacked_from_float16_of": record["source_sha256"]}
    return save_model(model.eval(), out, metadata)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="float16 snapshot of trained weights")
    p.add_argument("weights", type=Path)
    p.add_argument("stem", type=Path)
    u = sub.add_parser("unpack", help="float32 weights from a snapshot")
    u.add_argument("stem", type=Path)
    u.add_argument("out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "pack":
        print(pack(args.weights, args.stem))
    else:
        print(unpack(args.stem, args.out))


if __name__ == "__main__":
    main()
