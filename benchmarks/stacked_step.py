"""Would training K seeds in one process pay on this machine? One optimisation step of K seeds at once
(the K models' parameters stacked, `torch.func.functional_call` under `vmap`, each seed its own dropout draws
and batch) against K steps one model at a time, and the step time against the batch size: if one step costs
in proportion to its clips, the arithmetic, not a per-step overhead, is what a seed costs, and stacking seeds
cannot make them cheaper.

    python benchmarks/stacked_step.py [--seeds 5] [--models misr late_fusion] [--quick]

The model is params.yaml's (`model`, at the quality benchmark's settings), its inputs random batches shaped as
the synthetic store's (32 clips of 20 tokens, 20-60 audio and visual frames), one torch thread. The last line:
`K seeds per step: at once X ms, one at a time Y ms, ratio R.RRx` for the first model.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from misr.config.model import ModelConfig  # noqa: E402
from misr.config.params import load_params  # noqa: E402
from misr.model.misr import InputSpec, build_model, loss_terms, loss_weights, total_loss  # noqa: E402

SPEC = InputSpec(audio_dim=5, visual_dim=20, text_kind="tokens", vocab_size=500)


def batch(seed: int, size: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "text_ids": torch.randint(1, 500, (size, 20), generator=g),
        "text_mask": torch.ones(size, 20, dtype=torch.long),
        "audio": torch.randn(size, 60, 5, generator=g),
        "audio_lengths": torch.randint(20, 61, (size,), generator=g),
        "visual": torch.randn(size, 60, 20, generator=g),
        "visual_lengths": torch.randint(20, 61, (size,), generator=g),
        "y": torch.randn(size, generator=g),
    }


def timed(step, repeats: int) -> float:
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats * 1000


def step_times(cfg: ModelConfig, k: int, size: int, repeats: int) -> tuple[float, float]:
    """Milliseconds of one step of k seeds: stacked under vmap, and one model after the other."""
    from torch.func import functional_call, stack_module_state, vmap

    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(build_model(cfg, SPEC).train())
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")
    batches = [batch(seed, size) for seed in range(k)]
    stacked = {key: torch.stack([b[key] for b in batches]) for key in batches[0]}
    weights = loss_weights(cfg, 0)

    def loss_of(p, b, data):
        return total_loss(loss_terms(cfg, functional_call(skeleton, (p, b), (data,)), data["y"]), weights)

    per_seed = vmap(loss_of, randomness="different")

    def at_once() -> None:
        torch.autograd.grad(per_seed(params, buffers, stacked).sum(), list(params.values()))

    def one_at_a_time() -> None:
        for model, data in zip(models, batches, strict=True):
            model.zero_grad(set_to_none=True)
            total_loss(loss_terms(cfg, model(data), data["y"]), weights).backward()

    return timed(at_once, repeats), timed(one_at_a_time, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5, help="K, the seeds stacked")
    ap.add_argument("--models", nargs="+", default=["misr", "late_fusion"])
    ap.add_argument("--quick", action="store_true", help="2 seeds, 2 repeats: a smoke run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    k, repeats = (2, 2) if args.quick else (args.seeds, 10)
    params = load_params(REPO / "params.yaml")
    base, size = params.model, params.train.batch_size
    started = time.perf_counter()
    print(f"one torch thread; batch {size}; K = {k}")
    first = None
    for name in args.models:
        cfg = base.model_copy(update={"name": name})
        sizes = {n: step_times(cfg, 1, n, repeats)[1] for n in (size // 4, size, size * 4)}
        print(f"{name}: one seed's step, ms by batch size: " + ", ".join(f"{n}: {ms:.0f}" for n, ms in sizes.items()))
        together, apart = step_times(cfg, k, size, repeats)
        print(f"{name}: {k} seeds per step: at once {together:.0f} ms, one at a time {apart:.0f} ms, ratio {apart / together:.2f}x")
        first = first or (together, apart)
    print(f"total time {time.perf_counter() - started:.0f} s")
    together, apart = first
    print(f"K seeds per step: at once {together:.0f} ms, one at a time {apart:.0f} ms, ratio {apart / together:.2f}x")


if __name__ == "__main__":
    main()
