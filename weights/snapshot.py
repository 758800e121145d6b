"""Float16 copy of trained weights: half the file, the same model to 2^-11 of each weight.

The shipped `hae-z256` weights are such a copy (9 MB for 4.5 M parameters instead of 18 MB: the
tracked tree travels to a lent GPU machine with the training pack, 64 MiB in all), and so is a
model still in training carried from one session to the next. The copy is an ordinary holoprot
weights pair whose description says ``"tensor_dtype": "F16"``; every loader widens it to float32,
so it serves `--weights` and `holoprot train --init` as it is:

    python weights/snapshot.py runs/z256-r5/best.safetensors holoprot/weights_data/hae-z256
    holoprot train ... --init hae-z256

Rounding to float16 moves a weight by at most 2^-11 of its size (above float16's normal range,
6.1e-5; by at most 3e-8 below it). The copy's metadata is the source's plus ``float16_of``, the
source file's sha256.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from holoprot.model.description import read_model_files
from holoprot.model.serialization import model_from_files, save_model


def float16_copy(weights: str | Path, stem: str | Path) -> Path:
    """Write `stem`.safetensors + `stem`.json, the float16 copy of `weights` (a checked
    .safetensors + .json pair); returns the new weights path."""
    files = read_model_files(weights)
    metadata = {**files.metadata, "float16_of": files.info["sha256"]}
    return save_model(model_from_files(files), stem, metadata, tensor_dtype="F16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path, help="trained weights (.safetensors, .json or stem)")
    parser.add_argument("stem", type=Path, help="the copy's path without suffix")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(float16_copy(args.weights, args.stem))


if __name__ == "__main__":
    main()
