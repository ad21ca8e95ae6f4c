"""Train a small example HRM or TRM checkpoint that solves N x N Sudoku, on CPU.

Training follows upstream (`pretrain.py` and `models/losses.py` of HRM and of TRM, which are the
same loop): deep supervision over ACT segments with a persistent carry. Each iteration runs ONE
inner step on the carry, computes the loss, steps the optimizer and detaches the carry; rows
that halted are reset to H_init / L_init and take the puzzle at their position in the freshly
drawn batch. Halting (training) is `steps >= halt_max_steps` or the family's rule (HRM:
`q_halt > q_continue`; TRM with `no_ACT_continue`: `q_halt > 0`), subject to the random
minimum-halt-step exploration. The loss is the LM loss plus 0.5 * (Q-halt BCE against "sequence
exactly correct" + Q-continue BCE against the bootstrapped next-step target, which TRM with
`no_ACT_continue` leaves out). The gradient is upstream's: HRM's last L and H update, TRM's last
round. With `--ema` the saved weights are the exponential moving average, as TRM's
`pretrain.py` saves them under `ema: True`.

The checkpoint is written in upstream's layout: `all_config.yaml`, `data/<split>/dataset.json`
and `step_<N>` (a `torch.save` state dict with `_orig_mod.model.` prefixed keys).

    python scripts/train_example.py --seed 0            # train HRM, save, evaluate
    python scripts/train_example.py --family trm --mlp-t --pos-encodings none --ema ...
    python scripts/train_example.py --eval --out DIR    # evaluate a saved checkpoint
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: with spinning, 2 threads on a shared 2-core
# machine run several times slower than 1 thread. Must be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from hrm_mlir.core.types import DType, HaltRule
from hrm_mlir.models.config import ReasoningConfig
from hrm_mlir.models.hrm import HRM
from hrm_mlir.models.registry import FAMILIES, Family, family_of, model_class
from hrm_mlir.puzzles import datagen

KEY_PREFIX = "_orig_mod.model."
FAMILY = {"hrm": FAMILIES[0], "trm": FAMILIES[2]}  # --family: upstream's HRM, TRM
LOSS_NAME = "losses@ACTLossHead"
IGNORE_LABEL_ID = -100


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--family", choices=sorted(FAMILY), default="hrm")
    p.add_argument("--size", type=int, default=6, choices=sorted(datagen.BOX_SHAPES))
    p.add_argument("--out", type=Path, default=None, help="default: examples/[trm-]sudoku<N>x<N>")
    p.add_argument("--eval", action="store_true", help="only evaluate the saved checkpoint")
    p.add_argument("--threads", type=int, default=2)
    # data
    p.add_argument("--train-puzzles", type=int, default=32000)
    p.add_argument("--eval-puzzles", type=int, default=500)
    p.add_argument("--blank-min", type=float, default=0.4)
    p.add_argument("--blank-max", type=float, default=0.5)
    # architecture (upstream field names)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--expansion", type=float, default=4.0)
    p.add_argument("--H-layers", type=int, default=2)
    p.add_argument("--L-layers", type=int, default=2)
    p.add_argument("--H-cycles", type=int, default=2)
    p.add_argument("--L-cycles", type=int, default=2)
    p.add_argument("--pos-encodings", default="rope", choices=["rope", "learned", "none"])
    p.add_argument("--puzzle-emb-ndim", type=int, default=0)
    # TRM only (upstream field names)
    p.add_argument("--mlp-t", action="store_true", help="TRM: a SwiGLU across the sequence")
    p.add_argument("--puzzle-emb-len", type=int, default=16, help="TRM: prefix tokens")
    p.add_argument("--ACT-continue", action="store_true", help="TRM: no_ACT_continue false")
    p.add_argument("--ema", action="store_true", help="save the EMA of the weights (TRM's)")
    p.add_argument("--ema-rate", type=float, default=0.999)
    p.add_argument("--halt-max-steps", type=int, default=8)
    p.add_argument("--halt-exploration-prob", type=float, default=0.1)
    p.add_argument(
        "--loss-type",
        default="softmax_cross_entropy",
        choices=["softmax_cross_entropy", "stablemax_cross_entropy"],
    )
    # optimisation (upstream field names)
    p.add_argument("--global-batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--lr-min-ratio", type=float, default=0.1)
    p.add_argument("--lr-warmup-steps", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--puzzle-emb-lr", type=float, default=1e-3)
    p.add_argument("--puzzle-emb-weight-decay", type=float, default=0.1)
    p.add_argument("--log-every", type=int, default=50)
    return p.parse_args()


# --------------------------------------------------------------------------------------------
# Config files in upstream's layout


def arch_section(args: argparse.Namespace) -> dict:
    """The `arch:` section of `all_config.yaml` (no vocab_size / seq_len / identifiers)."""
    trm = {}
    if args.family == "trm":
        trm = {
            "mlp_t": args.mlp_t,
            "puzzle_emb_len": args.puzzle_emb_len,
            "no_ACT_continue": not args.ACT_continue,
        }
    return {
        "name": FAMILY[args.family].arch_name,
        "loss": {"name": LOSS_NAME, "loss_type": args.loss_type},
        "H_cycles": args.H_cycles,
        "L_cycles": args.L_cycles,
        "H_layers": args.H_layers,
        "L_layers": args.L_layers,
        "hidden_size": args.hidden_size,
        "expansion": args.expansion,
        "num_heads": args.num_heads,
        "pos_encodings": args.pos_encodings,
        "puzzle_emb_ndim": args.puzzle_emb_ndim,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "halt_max_steps": args.halt_max_steps,
        "halt_exploration_prob": args.halt_exploration_prob,
        "forward_dtype": "float32",
        **trm,
    }


def all_config(args: argparse.Namespace, out: Path) -> dict:
    """What upstream `pretrain.py` dumps as `all_config.yaml` (`PretrainConfig.model_dump()`)."""
    data = {"data_paths": ["data"]} if args.family == "trm" else {"data_path": "data"}
    trm = {"ema": args.ema, "ema_rate": args.ema_rate} if args.family == "trm" else {}
    return {
        "arch": arch_section(args),
        **data,
        "global_batch_size": args.global_batch_size,
        "epochs": args.epochs,
        "lr": args.lr,
        "lr_min_ratio": args.lr_min_ratio,
        "lr_warmup_steps": args.lr_warmup_steps,
        "weight_decay": args.weight_decay,
        "beta1": args.beta1,
        "beta2": args.beta2,
        "puzzle_emb_lr": args.puzzle_emb_lr,
        "puzzle_emb_weight_decay": args.puzzle_emb_weight_decay,
        "project_name": f"Sudoku{args.size}x{args.size} ACT-torch",
        "run_name": f"{FAMILY[args.family].arch_name.partition('@')[2]} seed{args.seed}",
        "checkpoint_path": str(out),
        "seed": args.seed,
        "checkpoint_every_eval": False,
        "eval_interval": None,
        "eval_save_outputs": [],
        **trm,
    }


def dataset_metadata(n: int, total_groups: int) -> dict:
    """Upstream `PuzzleDatasetMetadata` fields, as `build_sudoku_dataset.py` fills them (TRM's
    adds `total_puzzles`)."""
    return {
        "pad_id": datagen.PAD_ID,
        "ignore_label_id": 0,
        "blank_identifier_id": 0,
        "vocab_size": datagen.vocab_size(n),
        "seq_len": n * n,
        "num_puzzle_identifiers": 1,
        "total_groups": total_groups,
        "mean_puzzle_examples": 1,
        "sets": ["all"],
        "total_puzzles": total_groups,
    }


def family(arch: dict) -> Family:
    found = family_of(arch["name"])
    assert found is not None, arch["name"]
    return found


def model_config(arch: dict, n: int) -> ReasoningConfig:
    fields = {k: v for k, v in arch.items() if k not in ("name", "loss")}
    return family(arch).config(
        vocab_size=datagen.vocab_size(n),
        seq_len=n * n,
        num_puzzle_identifiers=1,
        **fields,
    )


# --------------------------------------------------------------------------------------------
# Training


def cosine_lr(step: int, base_lr: float, warmup: int, total: int, min_ratio: float) -> float:
    """Upstream's linear warmup then cosine decay to `min_ratio * base_lr`."""
    if step < warmup:
        return base_lr * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * (
        min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    )


def lm_loss_fn(kind: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token cross entropy (B, S), 0 where the label is ignored."""
    if kind == "softmax_cross_entropy":
        flat = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            labels.long().reshape(-1),
            ignore_index=IGNORE_LABEL_ID,
            reduction="none",
        )
        return flat.view(labels.shape)
    # stablemax: s(x) = 1/(1-x) for x < 0 else x + 1, normalised, in float64
    x = logits.double()
    s = torch.where(x < 0, 1 / (1 - x + 1e-30), x + 1)
    logp = torch.log(s / s.sum(-1, keepdim=True))
    valid = labels != IGNORE_LABEL_ID
    picked = logp.gather(-1, torch.where(valid, labels, 0).long().unsqueeze(-1)).squeeze(-1)
    return -torch.where(valid, picked, 0)


class BatchStream:
    """Upstream-style sampler: each epoch a fresh permutation, cut into full batches."""

    def __init__(self, inputs: np.ndarray, labels: np.ndarray, batch: int, seed: int) -> None:
        self.inputs, self.labels, self.batch = inputs, labels, batch
        self.rng = np.random.default_rng(seed)
        self.order = np.empty(0, dtype=np.int64)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.order) < self.batch:
            self.order = self.rng.permutation(len(self.inputs))
        idx, self.order = self.order[: self.batch], self.order[self.batch :]
        return torch.from_numpy(self.inputs[idx]), torch.from_numpy(self.labels[idx])


def train(args: argparse.Namespace, config: ReasoningConfig, train_set: datagen.SudokuSet) -> tuple:
    """Train from scratch; returns (model, steps, wall seconds); with `--ema` the model holds
    the moving average of its parameters."""
    torch.manual_seed(args.seed)
    model = model_class(config)(config)
    model.train()
    # Upstream's Q target: HRM's rule bootstraps q_continue; TRM's `no_ACT_continue` has none.
    q_continue = config.halt_rule == HaltRule.Q_CONTINUE
    ema = {n: p.detach().clone() for n, p in model.named_parameters()} if args.ema else None
    inner = model.inner
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=args.lr,
        weight_decay=args.weight_decay,
        betas=(args.beta1, args.beta2),
    )
    inputs = datagen.encode(train_set.puzzles)
    labels = datagen.encode(train_set.solutions)  # no cell is ignored (ignore_label_id 0)
    # Upstream trains the puzzle-embedding table (a buffer) with sign-SGD, apart from Adam.
    puzzle_emb = inner.puzzle_emb.weights if config.puzzle_emb_ndim > 0 else None
    if puzzle_emb is not None:
        puzzle_emb.requires_grad_(True)
    stream = BatchStream(inputs, labels, args.global_batch_size, args.seed)
    total_steps = int(args.epochs * len(train_set) / args.global_batch_size)
    b, max_steps = args.global_batch_size, config.halt_max_steps

    z_H, z_L = inner.initial_carry(b)
    steps = torch.zeros(b, dtype=torch.int32)
    halted = torch.ones(b, dtype=torch.bool)  # every row starts halted, so it is reset at once
    cur_in = torch.zeros(b, config.seq_len, dtype=torch.int32)
    cur_lab = torch.zeros(b, config.seq_len, dtype=torch.int32)
    pid = torch.full((b,), datagen.PUZZLE_IDENTIFIER, dtype=torch.int32)
    stats: dict[str, float] = {}
    start = time.perf_counter()
    for step in range(1, total_steps + 1):
        new_in, new_lab = stream.next()
        with torch.no_grad():  # reset halted rows and give them new puzzles
            rows = halted.view(-1, 1, 1)
            z_H = torch.where(rows, inner.H_init, z_H)
            z_L = torch.where(rows, inner.L_init, z_L)
            steps = torch.where(halted, 0, steps)
            cur_in = torch.where(halted.view(-1, 1), new_in, cur_in)
            cur_lab = torch.where(halted.view(-1, 1), new_lab, cur_lab)

        z_H, z_L, logits, q_halt, q_cont = inner(z_H, z_L, cur_in, pid)
        z_H, z_L = z_H.detach(), z_L.detach()

        with torch.no_grad():
            steps = steps + 1
            is_last = steps >= max_steps
            halted = is_last
            if max_steps > 1:
                halted = halted | config.halt_rule.halts(q_halt, q_cont)
                explore = torch.rand_like(q_halt) < config.halt_exploration_prob
                min_halt = explore * torch.randint_like(steps, low=2, high=max_steps + 1)
                halted = halted & (steps >= min_halt)
                if q_continue:
                    _, _, _, next_halt, next_cont = inner(z_H, z_L, cur_in, pid)
                    target_q_cont = torch.sigmoid(
                        torch.where(is_last, next_halt, torch.maximum(next_halt, next_cont))
                    )
            mask = cur_lab != IGNORE_LABEL_ID
            counts = mask.sum(-1)
            correct = mask & (logits.argmax(-1) == cur_lab)
            seq_correct = correct.sum(-1) == counts

        lm_loss = (lm_loss_fn(args.loss_type, logits, cur_lab) / counts.clamp_min(1)[:, None]).sum()
        q_halt_loss = F.binary_cross_entropy_with_logits(
            q_halt, seq_correct.float(), reduction="sum"
        )
        q_cont_loss = torch.zeros(())
        if max_steps > 1 and q_continue:
            q_cont_loss = F.binary_cross_entropy_with_logits(q_cont, target_q_cont, reduction="sum")
        loss = lm_loss + 0.5 * (q_halt_loss + q_cont_loss)
        (loss / b).backward()
        lr = cosine_lr(step, args.lr, args.lr_warmup_steps, total_steps, args.lr_min_ratio)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        opt.zero_grad(set_to_none=True)
        if puzzle_emb is not None and puzzle_emb.grad is not None:
            emb_lr = cosine_lr(
                step, args.puzzle_emb_lr, args.lr_warmup_steps, total_steps, args.lr_min_ratio
            )
            with torch.no_grad():
                puzzle_emb.mul_(1 - emb_lr * args.puzzle_emb_weight_decay)
                puzzle_emb.add_(puzzle_emb.grad.sign(), alpha=-emb_lr)
            puzzle_emb.grad = None
        if ema is not None:  # upstream's EMAHelper.update, after each optimizer step
            with torch.no_grad():
                for n, p in model.named_parameters():
                    ema[n].mul_(args.ema_rate).add_(p.detach(), alpha=1 - args.ema_rate)

        done = halted.sum().item()
        for k, v in {
            "lm_loss": lm_loss.item() / b,
            "q_halt_loss": q_halt_loss.item() / b,
            "q_cont_loss": q_cont_loss.item() / b,
            "count": done,
            "exact": (halted & seq_correct).sum().item(),
            "cell_acc": (correct.float().mean(-1) * halted).sum().item(),
            "steps": (steps * halted).sum().item(),
            "iters": 1,
        }.items():
            stats[k] = stats.get(k, 0.0) + v
        if step % args.log_every == 0 or step == total_steps:
            it, cnt = stats["iters"], max(stats["count"], 1)
            print(
                f"step {step}/{total_steps} lr {lr:.2e} lm {stats['lm_loss'] / it:.4f} "
                f"qh {stats['q_halt_loss'] / it:.4f} qc {stats['q_cont_loss'] / it:.4f} "
                f"halted-exact {stats['exact'] / cnt:.3f} cell {stats['cell_acc'] / cnt:.4f} "
                f"steps {stats['steps'] / cnt:.2f} t {time.perf_counter() - start:.0f}s",
                flush=True,
            )
            stats = {}
    if puzzle_emb is not None:
        puzzle_emb.requires_grad_(False)
    if ema is not None:  # EMAHelper.ema_copy: what upstream evaluates and saves
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(ema[n])
    return model, total_steps, time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# Evaluation and files


@torch.no_grad()
def evaluate(model: HRM, data: datagen.SudokuSet, q_halt: bool, batch: int = 250) -> dict:
    """Exact accuracy (every cell right) of `HRM.act` and its mean step count."""
    model.eval()
    inputs = torch.from_numpy(datagen.encode(data.puzzles))
    labels = torch.from_numpy(datagen.encode(data.solutions))
    exact, steps = [], []
    for i in range(0, len(data), batch):
        x = inputs[i : i + batch]
        pid = torch.full((x.shape[0],), datagen.PUZZLE_IDENTIFIER, dtype=torch.int32)
        out = model.act(x, pid, q_halt=q_halt)
        exact.append((out.logits.argmax(-1) == labels[i : i + batch]).all(-1))
        steps.append(out.steps)
    ex, st = torch.cat(exact), torch.cat(steps)
    return {
        "exact_accuracy": ex.float().mean().item(),
        "correct": int(ex.sum()),
        "total": len(data),
        "mean_steps": st.float().mean().item(),
    }


def save_checkpoint(model: HRM, path: Path) -> None:
    state = {
        KEY_PREFIX + k: v.detach().to(torch.float32).contiguous().clone()
        for k, v in model.state_dict().items()
    }
    torch.save(state, path)


def load_checkpoint(out: Path) -> tuple[HRM, dict, Path]:
    cfg = yaml.safe_load((out / "all_config.yaml").read_text())
    data = cfg["data_path"] if "data_path" in cfg else cfg["data_paths"][0]
    meta = json.loads((out / data / "train" / "dataset.json").read_text())
    n = math.isqrt(meta["seq_len"])
    ckpts = sorted(out.glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    if not ckpts:
        raise FileNotFoundError(f"no step_<N> checkpoint in {out}")
    config = model_config(cfg["arch"], n)
    model = model_class(config)(config)
    state = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
    model.load_state_dict({k.removeprefix(KEY_PREFIX): v for k, v in state.items()})
    return model, cfg, ckpts[-1]


def write_files(
    out: Path, args: argparse.Namespace, train_set: datagen.SudokuSet, test: datagen.SudokuSet
) -> None:
    """all_config.yaml, data/{train,test}/dataset.json, puzzles.txt, heldout.txt."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "all_config.yaml", "w") as f:
        yaml.safe_dump(all_config(args, out), f)
    for split, data in (("train", train_set), ("test", test)):
        d = out / "data" / split
        d.mkdir(parents=True, exist_ok=True)
        (d / "dataset.json").write_text(json.dumps(dataset_metadata(args.size, len(data))) + "\n")
    puzzles, solutions = test.puzzle_strings(), test.solution_strings()
    (out / "puzzles.txt").write_text("".join(p + "\n" for p in puzzles[:6]))
    (out / "heldout.txt").write_text(
        "".join(f"{p} {s}\n" for p, s in zip(puzzles, solutions, strict=True))
    )


def report(model: HRM, test: datagen.SudokuSet) -> dict:
    results = {}
    for q_halt in (False, True):
        t0 = time.perf_counter()
        r = evaluate(model, test, q_halt)
        r["seconds"] = time.perf_counter() - t0
        results["q_halt" if q_halt else "max_steps"] = r
        print(
            f"held-out q_halt={q_halt}: exact {r['exact_accuracy']:.4f} "
            f"({r['correct']}/{r['total']}) mean steps {r['mean_steps']:.2f}",
            flush=True,
        )
    return results


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    prefix = "trm-" if args.family == "trm" else ""
    out = args.out or Path(f"examples/{prefix}sudoku{args.size}x{args.size}")
    blank_range = (args.blank_min, args.blank_max)

    if args.eval:
        model, _, ckpt = load_checkpoint(out)
        print(f"loaded {ckpt}")
        test = heldout_from_file(out / "heldout.txt")
        report(model, test)
        return

    t0 = time.perf_counter()
    train_set = datagen.generate(args.train_puzzles, args.size, args.seed, blank_range)
    test = datagen.heldout(args.eval_puzzles, args.size, args.seed, train_set, blank_range)
    gen_s = time.perf_counter() - t0
    print(f"generated {len(train_set)} train + {len(test)} held-out puzzles in {gen_s:.1f}s")
    config = model_config(arch_section(args), args.size)
    assert config.forward_dtype == DType.FLOAT32
    write_files(out, args, train_set, test)

    model, total_steps, wall = train(args, config, train_set)
    for old in out.glob("step_*"):
        old.unlink()
    ckpt = out / f"step_{total_steps}"
    save_checkpoint(model, ckpt)
    print(f"trained {total_steps} steps in {wall:.1f}s; saved {ckpt} ({ckpt.stat().st_size} B)")
    results = report(model, test)
    summary = {
        "seed": args.seed,
        "family": config.FAMILY,
        "train_wall_s": wall,
        "datagen_wall_s": gen_s,
        "total_steps": total_steps,
        "checkpoint": ckpt.name,
        "checkpoint_bytes": ckpt.stat().st_size,
        "num_params": sum(p.numel() for p in model.parameters()),
        **results,
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def heldout_from_file(path: Path) -> datagen.SudokuSet:
    """Read `puzzle solution` lines back into a SudokuSet."""
    pairs = [line.split() for line in path.read_text().splitlines() if line.strip()]
    puzzles = np.stack([datagen.string_to_grid(p) for p, _ in pairs])
    solutions = np.stack([datagen.string_to_grid(s) for _, s in pairs])
    return datagen.SudokuSet(puzzles, solutions)


if __name__ == "__main__":
    main()
