"""The orientation posts' experiments (seed posts by Bidart) as one study: for each latent size, a VAE trained
on one orientation, one trained on all orientations, and one trained on all with the brute-force search before
each backward pass; on voxel objects (the 24 rotations of the cube) or on glyphs (36 planar angles). Writes a
table and plots into the results document:

1. reconstruction error on one orientation vs on all of them, per latent size;
2. test-time recovery: the one-orientation model, a randomly rotated test object, the rotation found by
   searching the group;
3. training with the search on randomly rotated inputs: its error against the plain VAE's on the same data,
   and how consistently it maps the rotations of one object to one pose;
4. whether the latent still predicts the input's orientation (a random forest's accuracy against chance).

    python -m studies.orientation --out results/orientation_study [--objects glyphs] [--latents 2,4,8,16,32]

Each run is `train_slots.py --preset voxel_orientation` (or `glyph_orientation`) in its own process, resumable
and shareable between processes like every study (`studies.runner`).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from studies.runner import (PlannedRun, comma_separated_ints, ensure_run, read_metrics, results_doc, study_parser,
                            write_results)
from viz.plots import plt

README_BLOCK = "orientation_study"
PRESETS = {"voxels": ("voxel_orientation", "cube"), "glyphs": ("glyph_orientation", "planar")}
#: model -> (training orientations, search, the reconstruction metric that is its own error)
MODELS = {"one": ("one", False, "recon_canonical"), "all": ("all", False, "recon_all"),
          "search": ("all", True, "recon_all_search")}
COLUMNS = ("model", "latent_dim", "seed", "recon", "recon_canonical", "recon_all", "recon_all_search",
           "recovery_accuracy", "recovery_identifiable", "consistency", "kind_agreement", "canonical_preferred", "orientation_probe_accuracy",
           "orientation_probe_chance", "steps", "train_seconds", "total_seconds")
#: The bar: with the search, consistency >= this, its error below the plain VAE's at every latent size, and
#: every run within the time limit.
BAR_CONSISTENCY, BAR_MINUTES = 0.9, 15.0


def planned_run(objects: str, model: str, latent: int, seed: int, overrides: list[str]) -> PlannedRun:
    preset, group = PRESETS[objects]
    orientations, search, _ = MODELS[model]
    return PlannedRun(f"{model}-z{latent}-seed{seed}", preset, (
        f"orientation.train_orientations={orientations}", f"orientation.search={group if search else 'none'}",
        f"orientation.latent_dim={latent}", f"train.seed={seed}", *overrides))


def row(model: str, metrics: dict) -> dict:
    found = {key: metrics.get(key) for key in COLUMNS}
    families = metrics.get("recovery_by_family", {})
    identifiable = families.get("furniture", families.get("glyphs"))  # the families with a preferred pose
    return found | {"model": model, "recon": metrics[MODELS[model][2]], "recovery_identifiable": identifiable}


def summarise(rows: list[dict]) -> list[dict]:
    """Median over seeds per (model, latent size)."""
    keys = ("recon", "recovery_accuracy", "recovery_identifiable", "consistency", "kind_agreement", "orientation_probe_accuracy",
            "total_seconds")
    summary = []
    for model, latent in sorted({(r["model"], r["latent_dim"]) for r in rows}, key=lambda k: (k[1], list(MODELS).index(k[0]))):
        group = [r for r in rows if (r["model"], r["latent_dim"]) == (model, latent)]
        summary.append({"model": model, "latent_dim": latent, "seeds": len(group),
                        **{key: float(np.median([np.nan if r[key] is None else r[key] for r in group])) for key in keys}})
    return summary


def verdict(summary: list[dict]) -> str:
    by = {(s["model"], s["latent_dim"]): s for s in summary}
    latents = sorted({s["latent_dim"] for s in summary})
    pairs = [(by.get(("search", z)), by.get(("all", z))) for z in latents]
    if not latents or any(a is None or b is None for a, b in pairs):
        return "undecided (the search and plain runs of some latent size are missing)"
    consistent = all(a["consistency"] >= BAR_CONSISTENCY for a, _ in pairs)
    lower = all(a["recon"] < b["recon"] for a, b in pairs)
    in_time = all(s["total_seconds"] <= BAR_MINUTES * 60 for s in summary)
    parts = [f"consistency >= {BAR_CONSISTENCY}: {'yes' if consistent else 'no'}",
             f"error below the plain VAE's at every latent size: {'yes' if lower else 'no'}",
             f"every run <= {BAR_MINUTES:g} min: {'yes' if in_time else 'no'}"]
    return ("met" if consistent and lower and in_time else "NOT met") + " (" + "; ".join(parts) + ")"


def markdown(summary: list[dict], objects: str, overrides: list[str]) -> str:
    lines = [f"Objects: {objects}. Reconstruction: Bernoulli nats per object on held-out objects (the one-orientation "
             "model on canonical poses, the others on random poses; the search model with its search). Recovery: "
             "the fraction of randomly posed asymmetric test objects the search returns exactly to the canonical "
             "pose (furniture: the family with a preferred pose; polycubes grow isotropically). Consistency: the fraction of asymmetric objects whose every pose the search maps to one pose. "
             "Kind agreement: objects of one kind (e.g. chairs) brought to the kind's most common pose. Probe: a "
             "random forest's held-out accuracy predicting the input's pose from the latent mean.", "",
             "| latent | model | seeds | recon | recovery (all) | recovery (furniture / glyphs) | consistency | kind agreement "
             "| orientation probe | minutes |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['latent_dim']} | {s['model']} | {s['seeds']} | {s['recon']:.1f} | {s['recovery_accuracy']:.2f} | "
                     f"{s['recovery_identifiable']:.2f} | "
                     f"{s['consistency']:.2f} | {s['kind_agreement']:.2f} | {s['orientation_probe_accuracy']:.2f} | "
                     f"{s['total_seconds'] / 60:.1f} |")
    lines += ["", f"Bar: {verdict(summary)}", f"Overrides: {' '.join(overrides) or '(preset as is)'}; per-run rows in the CSV."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    summary = summarise(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for model, marker in zip(MODELS, "osx"):
        points = sorted((s["latent_dim"], s["recon"], s["orientation_probe_accuracy"]) for s in summary if s["model"] == model)
        if points:
            latents, recon, probe = zip(*points)
            left.plot(latents, recon, marker=marker, label=model)
            right.plot(latents, probe, marker=marker, label=model)
    left.set_title("reconstruction error (nats per object)")
    right.set_title("orientation predicted from the latent")
    chance = [r["orientation_probe_chance"] for r in rows if r.get("orientation_probe_chance")]
    if chance:
        right.axhline(chance[0], color="grey", linestyle="--", label="chance")
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("latent size")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__, "results/orientation_study")
    parser.add_argument("--objects", choices=sorted(PRESETS), default="voxels")
    parser.add_argument("--latents", type=comma_separated_ints, default=[2, 4, 8, 16, 32],
                        help="comma-separated latent sizes (default: 2,4,8,16,32)")
    parser.add_argument("--models", type=lambda text: text.split(","), default=list(MODELS),
                        metavar="MODEL,...", help=f"which of {', '.join(MODELS)} to train (default: all three)")
    parser.set_defaults(seeds=[0])
    args = parser.parse_args(argv)
    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(f"--models: unknown model(s) {', '.join(sorted(unknown))}; known: {', '.join(MODELS)}")
    doc = results_doc(args, README_BLOCK)
    start = time.time()
    plan = [(model, planned_run(args.objects, model, latent, seed, args.overrides))
            for seed in args.seeds for latent in args.latents for model in MODELS]
    if not args.finished_only:
        for model, run in plan:
            if model in args.models:
                ensure_run(args.out, run)
    rows = [row(model, metrics) for model, run in plan if (metrics := read_metrics(args.out, run)) is not None]
    if not rows:
        print(f"no finished runs under {args.out / 'runs'} yet", file=sys.stderr)
        return 0
    write_results(args.out, rows, COLUMNS, markdown(summarise(rows), args.objects, args.overrides), plot, start, doc,
                  README_BLOCK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
