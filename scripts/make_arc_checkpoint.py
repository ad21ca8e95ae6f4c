"""Write an HRM checkpoint the size of the published ARC-2 one, or a TRM of a published shape,
with random weights.

The published HRM-checkpoint-ARC-2 holds the 27,276,290-parameter model and a puzzle-embedding
table of 1,045,829 x 512 float32 (one row per augmented puzzle, 2.1 GB). This script writes a
checkpoint with the same shapes in upstream's layout (`all_config.yaml`, `data/train/dataset.json`,
`checkpoint` with `_orig_mod.model.` keys), for measuring export with external parameters:

    python scripts/make_arc_checkpoint.py --out /tmp/hrm-arc2            # 1,045,829 rows
    python scripts/make_arc_checkpoint.py --out /tmp/hrm-arc-100k --rows 100000
    python scripts/make_arc_checkpoint.py --out /tmp/trm-sudoku --shape trm-sudoku --rows 1
    python scripts/make_arc_checkpoint.py --out /tmp/trm-arc --shape trm-arc --rows 1

TRM's shapes are its README's runs: Sudoku-Extreme with `mlp_t`, no positions, H_cycles 3,
L_cycles 6 (81 + 16 tokens); ARC-AGI with attention, RoPE, H_cycles 3, L_cycles 4 (900 + 16).

Weights are random and non-degenerate (upstream zero-inits the Q head and the puzzle table).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from hrm_mlir.checkpoint.synthetic import random_state
from hrm_mlir.models.registry import family_of

ARC2_ROWS = 1_045_829
ARC2_ARCH = {
    "name": "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
    "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
    "H_cycles": 2,
    "L_cycles": 2,
    "H_layers": 4,
    "L_layers": 4,
    "hidden_size": 512,
    "expansion": 4,
    "num_heads": 8,
    "pos_encodings": "rope",
    "puzzle_emb_ndim": 512,
    "halt_max_steps": 16,
    "halt_exploration_prob": 0.1,
    "forward_dtype": "bfloat16",
}
SEQ_LEN, VOCAB = 900, 12  # 30x30 canvas; PAD, EOS and 10 colours
TRM_ARCH = {  # TinyRecursiveModels' config/arch/trm.yaml
    "name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
    "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
    "H_cycles": 3,
    "L_cycles": 6,
    "H_layers": 0,
    "L_layers": 2,
    "hidden_size": 512,
    "expansion": 4,
    "num_heads": 8,
    "pos_encodings": "rope",
    "puzzle_emb_ndim": 512,
    "puzzle_emb_len": 16,
    "mlp_t": False,
    "no_ACT_continue": True,
    "halt_max_steps": 16,
    "halt_exploration_prob": 0.1,
    "forward_dtype": "bfloat16",
}
# --shape: (arch, seq_len, vocab)
SHAPES = {
    "hrm-arc2": (ARC2_ARCH, SEQ_LEN, VOCAB),
    "trm-sudoku": ({**TRM_ARCH, "mlp_t": True, "pos_encodings": "none"}, 81, 11),
    "trm-arc": ({**TRM_ARCH, "L_cycles": 4}, SEQ_LEN, VOCAB),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument(
        "--rows", type=int, default=ARC2_ROWS, help=f"puzzle identifiers (default: {ARC2_ROWS:,})"
    )
    p.add_argument("--seed", type=int, default=0, help="weight seed (default: 0)")
    p.add_argument("--shape", choices=sorted(SHAPES), default="hrm-arc2")
    return p.parse_args(argv)


def make_checkpoint(out: Path, rows: int, seed: int = 0, shape: str = "hrm-arc2") -> Path:
    """Write the checkpoint directory; returns the weights file."""
    arch_doc, seq_len, vocab = SHAPES[shape]
    family = family_of(arch_doc["name"])
    assert family is not None
    arch = {k: v for k, v in arch_doc.items() if k not in ("name", "loss")}
    config = family.config(**arch, vocab_size=vocab, seq_len=seq_len, num_puzzle_identifiers=rows)
    state = {"_orig_mod.model." + k: v for k, v in random_state(config, seed).items()}
    out.mkdir(parents=True, exist_ok=True)
    doc = {"arch": arch_doc, "data_path": "data", "global_batch_size": 768, "lr": 1e-4}
    (out / "all_config.yaml").write_text(yaml.safe_dump(doc))
    meta_dir = out / "data" / "train"
    meta_dir.mkdir(parents=True, exist_ok=True)
    meta = {"seq_len": seq_len, "vocab_size": vocab, "num_puzzle_identifiers": rows, "pad_id": 0}
    (meta_dir / "dataset.json").write_text(json.dumps(meta) + "\n")
    weights = out / "checkpoint"
    torch.save(state, weights)
    return weights


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    weights = make_checkpoint(args.out, args.rows, args.seed, args.shape)
    size = weights.stat().st_size / 2**20
    print(f"wrote {weights} ({size:.0f} MiB, {args.rows:,} puzzle rows) in "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
