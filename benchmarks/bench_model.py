"""Throughput of the z=128 H-AE: encoder inference and a training step.

Prints residues/s for ``model.encode`` (eval, no grad), samples/s for one training step
(forward + backward + Adam, train mode) and the process's peak RSS. Each number is the median of
``--repeats`` timed calls after one warm-up. Inputs are random (throughput does not depend on the
values); weights are a fresh init. The allocator is tuned as the `holoprot` command tunes it
(:func:`holoprot._util.allocator.tune_malloc`) unless ``--default-malloc``.

    python benchmarks/bench_model.py [--batch 512] [--repeats 3] [--device cpu|cuda] [--threads 2]
        [--default-malloc]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch

from holoprot._util.allocator import tune_malloc
from holoprot.model import HVAE, HVAEConfig, hvae_loss


def _median_seconds(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--default-malloc", action="store_true", help="do not tune_malloc()")
    args = parser.parse_args(argv)
    tuned = False if args.default_malloc else tune_malloc()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = HVAE(HVAEConfig()).to(device)
    x = torch.randn(args.batch, model.config.dim, device=device) * 0.1

    model.eval()

    def encode() -> None:
        with torch.no_grad():
            model.encode(x)

    t_enc = _median_seconds(encode, args.repeats, device)
    lines = [f"encoder (eval, no grad), batch {args.batch}: {args.batch / t_enc:,.0f} residues/s"]
    if not args.skip_train:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step() -> None:
            loss, _ = hvae_loss(model(x))
            opt.zero_grad()
            loss.backward()
            opt.step()

        t_step = _median_seconds(step, args.repeats, device)
        lines.append(
            f"train step (fwd+bwd+Adam), batch {args.batch}: {args.batch / t_step:,.0f} samples/s"
            f" ({t_step:.2f} s/step)"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    lines.append(f"peak RSS: {peak:.2f} GB (malloc {'tuned' if tuned else 'default'})")
    if device.type == "cuda":
        lines.append(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 1024**3:.2f} GB")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
