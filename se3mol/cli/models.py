"""``se3mol models``: the shipped, pretrained models and their measured accuracy."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def models(as_json: Annotated[bool, typer.Option("--json", help="Print the model cards as JSON.")] = False) -> None:
    """List the shipped models: targets, units, measured test MAE, and the registered model families."""
    from se3mol.nn.registry import get_entry, model_names
    from se3mol.pretrained import list_model_cards, models_dir

    cards = list_model_cards()
    if as_json:
        print(json.dumps(cards, indent=2))
        return
    # A terminal's width on a terminal; elsewhere (a pipe, make demo in CI) the tables' natural width, unfolded.
    con = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title=f"Shipped models ({models_dir()}); measured on the QM9 test split")
    table.add_column("name", no_wrap=True)
    for c in ("family", "targets", "test metric", "test n", "epochs", "train h"):
        table.add_column(c, justify="right" if c in ("test n", "epochs", "train h") else "left")
    for card in cards:
        if card.get("task") == "conformers":
            mae = _conformer_metric(card)
        else:
            mae = ", ".join(f"MAE {k} {v:.4g} {card['units'][k]}" for k, v in card.get("test_mae", {}).items())
        family = card.get("model", "") + (f" x{card['ensemble_size']}" if card.get("ensemble_size") else "")
        epochs = str(card.get("epochs", ""))
        if (card.get("base") or {}).get("epoch"):
            epochs = f"{card['base']['epoch']}+{epochs}"  # fine-tuned from a run's epoch
        table.add_row(card["name"], family, ", ".join(card.get("targets", [])), mae,
                      str((card.get("benchmark") or {}).get("n_molecules") or card.get("test_n", "?")), epochs,
                      f"{(card.get('wall_time_s') or 0) / 3600:.1f}")
    con.print(table)
    fam = Table(title="Model families (for se3mol train --model)")
    fam.add_column("name")
    fam.add_column("description")
    for n in model_names(include_controls=True):
        fam.add_row(n, get_entry(n).description)
    con.print(fam)


def _conformer_metric(card: dict) -> str:
    """COV-R / MAT-R of the shipped score model from its card's benchmark, else its test DSM loss."""
    for row in (card.get("benchmark") or {}).get("results", []):
        if row.get("method") == "clofnet" and row.get("cov_r_mean") is not None:
            return f"COV-R {100 * row['cov_r_mean']:.1f}%, MAT-R {row['mat_r_mean']:.3f} A"
    for row in (card.get("benchmark_drugs") or {}).get("results", []):  # benchmarks/conformers/drugs.py
        if row.get("method") in ("hybrid", "clofnet") and row.get("COV-R@1.25"):
            return (f"drugs ({row['method']}): COV-R {100 * row['COV-R@1.25']['mean']:.1f}%, "
                    f"MAT-R {row['mat_r']['mean']:.3f} A")
    loss = card.get("test_dsm_loss")
    return f"DSM loss {loss:.4g}" if loss is not None else "-"
