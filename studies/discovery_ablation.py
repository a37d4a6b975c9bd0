"""What each choice of the default run buys: FG-ARI at 5, 10 and 15 minutes of wall clock, with and without it.

Every run trains on its own (one at a time: minutes are only comparable on an otherwise idle machine), for at
most `train.time_limit_minutes` (15 unless overridden) counted from its start, data generation included.
FG-ARI at a mark is the last quick evaluation (first `train.eval_images` held-out images, every
`train.eval_every` steps) logged before it; a run that finished earlier keeps its final value. The whole
held-out split is scored at the end. The default trains with every seed given, each variant (the default
with one choice undone) with the first.

    python -m studies.discovery_ablation --out results/discovery_ablation --seeds 0,1,2 [section.key=value ...]

Writes results.csv (one row per run), results.md (the table) and results.png (FG-ARI against minutes).
Runs are resumable (see `studies.runner`).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from studies.runner import PlannedRun, ensure_run, read_metrics, run_dir, results_doc, study_parser, write_results
from viz.plots import plt

#: The block of the results document the study writes: between <!-- discovery_ablation:begin --> and <!-- discovery_ablation:end -->.
README_BLOCK = "discovery_ablation"

#: variant -> overrides of the default preset that undo one of its choices
VARIANTS = {
    "default": (),
    "no attention mask prior": ("model.mask_prior=none",),
    "3-layer 5x5 decoder": ("model.decoder_layers=3",),
    "no colour values": ("model.colour_values=false",),
    "no slot frames in the decoder": ("model.slot_frames=none",),
    "scale-normalised key locality": ("model.invariant_attention=quadratic",),
    "no key locality": ("model.invariant_attention=none",),
    "5 slots": ("model.num_slots=5",),
}
MARKS = (5, 10, 15)
BUDGET_MINUTES = 15
COLUMNS = ("variant", "seed", *(f"fg_ari_{m}min" for m in MARKS), "fg_ari", "fg_ari_unmerged", "steps",
           "steps_per_second", "total_minutes")


def slug(variant: str) -> str:
    return variant.replace(" ", "_").replace("-", "_")


def planned_run(variant: str, seed: int, overrides: list[str]) -> PlannedRun:
    return PlannedRun(f"{slug(variant)}-seed{seed}", "default",
                      (*VARIANTS[variant], f"train.time_limit_minutes={BUDGET_MINUTES}", f"train.seed={seed}",
                       *overrides))


def curve(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "eval_log.jsonl").read_text().splitlines()]


def at_mark(rows: list[dict], minutes: float) -> float:
    """FG-ARI of the last quick evaluation logged by `minutes` (NaN if none was)."""
    before = [row["fg_ari"] for row in rows if row["seconds"] <= minutes * 60]
    return before[-1] if before else float("nan")


def row_of(out: Path, variant: str, seed: int, run: PlannedRun, metrics: dict) -> dict:
    rows = curve(run_dir(out, run))
    return {"variant": variant, "seed": seed, **{f"fg_ari_{m}min": at_mark(rows, m) for m in MARKS},
            "fg_ari": metrics["fg_ari"], "fg_ari_unmerged": metrics.get("fg_ari_unmerged", float("nan")),
            "steps": metrics["steps"], "steps_per_second": metrics["steps"] / metrics["train_seconds"],
            "total_minutes": metrics["total_seconds"] / 60}


def markdown(rows: list[dict], overrides: list[str]) -> str:
    marks = " / ".join(str(m) for m in MARKS)
    lines = [f"| variant | seed | FG-ARI at {marks} min | final FG-ARI (held-out) | before merging duplicates "
             "| steps | steps/s | minutes |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        at = " / ".join(f"{row[f'fg_ari_{m}min']:.3f}" for m in MARKS)
        lines.append(f"| {row['variant']} | {row['seed']} | {at} | {row['fg_ari']:.3f} | "
                     f"{row['fg_ari_unmerged']:.3f} | {row['steps']} | {row['steps_per_second']:.2f} | "
                     f"{row['total_minutes']:.1f} |")
    defaults = [row["fg_ari"] for row in rows if row["variant"] == "default"]
    if defaults:
        lines += ["", f"Default over {len(defaults)} seed(s): median final FG-ARI {np.median(defaults):.3f} "
                      f"(min {min(defaults):.3f}, max {max(defaults):.3f})."]
    lines.append(f"Overrides: {' '.join(overrides) or '(none)'}; each run alone, at most {BUDGET_MINUTES} min.")
    return "\n".join(lines) + "\n"


def plot_from(out: Path, plan: list[tuple[str, int, PlannedRun]]):
    def plot(rows: list[dict], path: Path) -> None:
        fig, axis = plt.subplots(figsize=(7, 4.2))
        for variant, seed, run in plan:
            if read_metrics(out, run) is not None:
                points = curve(run_dir(out, run))
                axis.plot([p["seconds"] / 60 for p in points], [p["fg_ari"] for p in points],
                          label=f"{variant} (seed {seed})", linewidth=2 if variant == "default" else 1)
        axis.set_xlabel("wall-clock minutes (data generation included)")
        axis.set_ylabel("FG-ARI (quick evaluation)")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return plot


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__, "results/discovery_ablation")
    args = parser.parse_args(argv)
    doc = results_doc(args, README_BLOCK)
    start = time.time()
    plan = [("default", seed, planned_run("default", seed, args.overrides)) for seed in args.seeds]
    plan += [(variant, args.seeds[0], planned_run(variant, args.seeds[0], args.overrides))
             for variant in VARIANTS if variant != "default"]
    if not args.finished_only:
        for _, _, run in plan:
            ensure_run(args.out, run)
    rows = [row_of(args.out, variant, seed, run, metrics) for variant, seed, run in plan
            if (metrics := read_metrics(args.out, run)) is not None]
    if not rows:
        print(f"no finished runs under {args.out / 'runs'} yet", file=sys.stderr)
        return 0
    write_results(args.out, rows, COLUMNS, markdown(rows, args.overrides), plot_from(args.out, plan), start,
                  doc, README_BLOCK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
