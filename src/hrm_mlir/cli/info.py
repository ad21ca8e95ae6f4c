"""`hrm-mlir info`: a checkpoint's config, derived sizes and weights."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from hrm_mlir.cli.common import (
    CHECKPOINT_HELP,
    add_seq_len_option,
    checkpoint_arg,
    out,
    print_notes,
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="show a checkpoint's config, dimensions and weights")
    p.add_argument("checkpoint", type=checkpoint_arg, help=CHECKPOINT_HELP)
    add_seq_len_option(p)
    p.add_argument(
        "--json", action="store_true", help="print JSON incl. H_init/L_init (default: off)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrm_mlir.checkpoint.load import load_checkpoint

    ck = load_checkpoint(args.checkpoint, seq_len=args.seq_len)
    cfg = ck.config
    if args.json:
        h_init, l_init = ck.initial_carry_vectors()
        doc = {
            "source": ck.source,
            "config_path": str(ck.config_path),
            "weights_path": str(ck.weights_path),
            "family": {"arch_name": ck.family.arch_name, "title": ck.family.title},
            "config": cfg.model_dump(mode="json", by_alias=True),
            "derived": {
                "puzzle_emb_len": cfg.puzzle_emb_len,
                "total_seq_len": cfg.total_seq_len,
                "head_dim": cfg.head_dim,
                "intermediate_size": cfg.intermediate_size,
                "halt_rule": str(cfg.halt_rule),
            },
            "seq_len_source": ck.seq_len_source,
            "parameter_count": ck.parameter_count,
            "dtypes": ck.dtypes,
            "notes": ck.notes,
            "H_init": h_init.float().tolist(),
            "L_init": l_init.float().tolist(),
        }
        print(json.dumps(doc, indent=2))
        return 0
    print_notes(ck.notes)
    if ck.source is not None:
        out.print(f"from {ck.source}")
    t = Table(title=f"{ck.weights_path}", show_header=False)
    t.add_column("field")
    t.add_column("value")
    t.add_row("family", f"{ck.family.title}: {ck.family.arch_name}")
    for key, value in cfg.model_dump(by_alias=True).items():
        if key != "family":
            t.add_row(key, str(value))
    t.add_section()
    t.add_row("seq_len from", ck.seq_len_source)
    t.add_row("puzzle_emb_len", str(cfg.puzzle_emb_len))
    t.add_row("activations", f"[B, {cfg.total_seq_len}, {cfg.hidden_size}]")
    t.add_row("SwiGLU width", str(cfg.intermediate_size))
    if cfg.mlp_t:
        t.add_row("token SwiGLU width", str(cfg.token_mixer_size))
    t.add_row("Q-halting rule", str(cfg.halt_rule))
    t.add_row("parameters", f"{ck.parameter_count:,}")
    t.add_row("stored dtypes", ", ".join(f"{k} x{v}" for k, v in ck.dtypes.items()))
    out.print(t)
    return 0
