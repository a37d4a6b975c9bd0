"""Does per-object weak supervision disentangle slots? Three models, same data, budget and seeds:

- `autoencoder`: the plain Slot Attention autoencoder (task discovery), its slot vectors scored;
- `slot_vae`: the slot VAE trained on the frames independently (no pairing);
- `ada_gvae`: the slot VAE with the weak pair objective (matched slots share unchanged dimensions).

Each run is scored by FG-ARI (both frames) and per-object disentanglement (slots matched to true objects by
mask IoU). Writes results.csv (one row per run), results.md (medians and the bar) and results.png.

    python -m studies.weak_slots --out results/weak_slots_study --seeds 0,1,2 [train.max_steps=1800 ...]
    python -m studies.weak_slots --scenes objects64 --out results/weak_slots_64 --seeds 0,1,2

Runs are resumable and shareable between processes (see `studies.runner`). Run directories are not kept in
git, the CSV is: a run recorded in `<out>/results.csv` with the same settings (the digest of its resolved
configuration) counts as finished when its directory is gone, so seeds and models trained on other machines
add up in one table.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from studies.runner import (PlannedRun, add_only_option, check_only, csv_number, ensure_run, read_metrics,
                            recorded_rows, results_doc, run_dir, settings_digest, study_parser, trained_digest,
                            write_results)
from viz.plots import plt

#: The block of the results document the study writes: between <!-- weak_slots_study:begin --> and <!-- weak_slots_study:end -->.
README_BLOCK = "weak_slots_study"

#: scenes -> (the autoencoder's preset, the slot VAEs' preset): the default run's 32x32 scenes, or the
#: per-object disentanglement scenes (64x64, 2-3 objects 14-28 px across; configs/discovery_64.yaml)
SCENES = {"default": ("default", "weak_slots"), "objects64": ("discovery_64", "weak_slots_64")}
#: name -> (which of the scenes' two presets, overrides) of the three compared models: the autoencoder and the
#: slot VAEs built on the same model options, at the same budget and on the same data.
MODELS = {
    "autoencoder": (0, ()),
    "slot_vae": (1, ("weak_slots.method=slot_vae",)),
    "ada_gvae": (1, ("weak_slots.method=ada_gvae",)),
}
SCORES = ("fg_ari", "object_dci_disentanglement", "object_dci_completeness", "object_mig", "object_sap",
          "object_modularity", "object_matched_fraction", "object_vector_dci_disentanglement",
          "object_angle_agreement", "object_angle_chance")
COLUMNS = ("model", "seed", *SCORES, "steps", "train_seconds", "total_seconds", "overrides", "settings_digest")
#: "clearly above": the weak objective's median per-object DCI must beat both baselines' by this much.
DCI_MARGIN = 0.05
FG_ARI_TOLERANCE = 0.03


def planned_run(out: Path, model: str, seed: int, overrides: list[str], scenes: str = "default") -> PlannedRun:
    which, extra = MODELS[model]
    preset = SCENES[scenes][which]
    name = f"{model}-seed{seed}"
    # The discovery task does not score objects itself: score its slots once it has finished. Every model's
    # slot vectors are also scored without their frames (what the vector adds to position and scale).
    run = str(out / "runs" / name)
    after = ((("eval.per_object", "--run", run),) if model == "autoencoder" else ()) + (
        ("eval.per_object", "--run", run, "--vector-only"),)
    return PlannedRun(name, preset, (*extra, f"train.seed={seed}", *overrides), after,
                      required=("object_dci_disentanglement", "object_vector_dci_disentanglement"))


def recorded_metrics(out: Path, digests: dict[str, str]) -> dict[str, dict]:
    """Metrics of the runs `<out>/results.csv` records with the planned run's settings (`recorded_rows`)."""
    numbers = (*SCORES, "steps", "train_seconds", "total_seconds")
    records = recorded_rows(out, digests, lambda line: f"{line['model']}-seed{line['seed']}")
    return {name: {key: csv_number(line.get(key, ""), key == "steps") for key in numbers}
            for name, line in records.items()}


def median(rows: list[dict], key: str) -> float:
    """Median over the runs that report `key` (NaN if none: a metric left out by the overrides)."""
    values = [r[key] for r in rows if r[key] is not None]
    return float(np.median(values)) if values else float("nan")


def medians(rows: list[dict]) -> list[dict]:
    summary = []
    for model in MODELS:
        group = [r for r in rows if r["model"] == model]
        if group:
            summary.append({"model": model, "seeds": len(group), **{key: median(group, key) for key in SCORES}})
    return summary


def verdict(summary: list[dict]) -> str:
    """The issue's bar, in words: met, NOT met (and why), or undecided (missing models or seeds)."""
    by_model = {s["model"]: s for s in summary}
    if set(by_model) != set(MODELS):
        return "undecided (not every model has finished runs)"
    weak = by_model["ada_gvae"]
    dci_ok = all(weak["object_dci_disentanglement"] >= by_model[m]["object_dci_disentanglement"] + DCI_MARGIN
                 for m in ("autoencoder", "slot_vae"))
    ari_ok = weak["fg_ari"] >= by_model["autoencoder"]["fg_ari"] - FG_ARI_TOLERANCE
    result = "met" if dci_ok and ari_ok else "NOT met" + ("" if dci_ok else " (per-object DCI)") + (
        "" if ari_ok else " (FG-ARI)")
    if any(s["seeds"] < 3 for s in summary):
        result = f"undecided (fewer than 3 seeds in some model; on these runs it would be {result})"
    return result


def per_seed(rows: list[dict]) -> list[str]:
    """Each model's FG-ARI, per-object DCI and steps seed by seed: a median hides a seed that failed."""
    seeds = sorted({r["seed"] for r in rows})
    names = " / ".join(map(str, seeds))
    lines = [f"| model | FG-ARI, seeds {names} | per-object DCI, seeds {names} | steps |", "|---|---|---|---|"]
    for model in MODELS:
        by_seed = {r["seed"]: r for r in rows if r["model"] == model}
        if by_seed:
            cells = [" / ".join("-" if seed not in by_seed or by_seed[seed][key] is None else
                                format(by_seed[seed][key], spec) for seed in seeds)
                     for key, spec in (("fg_ari", ".3f"), ("object_dci_disentanglement", ".3f"), ("steps", ".0f"))]
            lines.append(f"| {model} | {' | '.join(cells)} |")
    return lines


def markdown(summary: list[dict], overrides: list[str], rows: list[dict]) -> str:
    lines = ["| model | seeds | median FG-ARI | median per-object DCI disentanglement | completeness | MIG | SAP "
             "| modularity | objects matched | DCI of the vector alone |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {s['model']} | {s['seeds']} | {s['fg_ari']:.3f} | {s['object_dci_disentanglement']:.3f} "
              f"| {s['object_dci_completeness']:.3f} | {s['object_mig']:.3f} | {s['object_sap']:.3f} "
              f"| {s['object_modularity']:.3f} | {s['object_matched_fraction']:.2f} "
              f"| {s['object_vector_dci_disentanglement']:.3f} |" for s in summary]
    searched = [s for s in summary if not np.isnan(s["object_angle_agreement"])]
    if searched:  # runs with model.orientation_search: does the chosen angle follow the object's orientation?
        lines += ["", "| model | median angle agreement | uniform angles would reach |", "|---|---|---|"]
        lines += [f"| {s['model']} | {s['object_angle_agreement']:.3f} | {s['object_angle_chance']:.3f} |"
                  for s in searched]
    lines += ["", *per_seed(rows)]
    lines += ["", f"Bar (median per-object DCI of ada_gvae >= both baselines + {DCI_MARGIN}, FG-ARI at most "
                  f"{FG_ARI_TOLERANCE} below the autoencoder): {verdict(summary)}",
              f"Overrides: {' '.join(overrides) or '(presets as they are)'}; per-run rows in the CSV."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for axis, key, label in ((axes[0], "object_dci_disentanglement", "per-object DCI disentanglement"),
                             (axes[1], "fg_ari", "FG-ARI")):
        for index, model in enumerate(MODELS):
            values = [r[key] for r in rows if r["model"] == model]
            if values:
                axis.scatter([index] * len(values), values, alpha=0.7)
                axis.hlines(np.median(values), index - 0.25, index + 0.25, color="black")
        axis.set_xticks(range(len(MODELS)), list(MODELS))
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_title("per seed (bar: median)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__, "results/weak_slots_study")
    parser.add_argument("--scenes", choices=tuple(SCENES), default="default",
                        help="default: the default run's 32x32 scenes (presets default, weak_slots); objects64: "
                             "64x64 scenes of 2-3 large objects (presets discovery_64, weak_slots_64)")
    add_only_option(parser, "model", "ada_gvae")
    args = parser.parse_args(argv)
    check_only(parser, args.only, "model", list(MODELS))
    doc = results_doc(args, README_BLOCK)
    start = time.time()
    plan = [(model, seed, planned_run(args.out, model, seed, args.overrides, args.scenes))
            for seed in args.seeds for model in MODELS]
    digests = {run.name: settings_digest(run) for _, _, run in plan}
    recorded = recorded_metrics(args.out, digests)
    if not args.finished_only:
        for model, _, run in plan:
            wanted = args.only is None or model in args.only
            if wanted and (run.name not in recorded or run_dir(args.out, run).is_dir()):
                ensure_run(args.out, run)
    rows = []
    for model, seed, run in plan:
        metrics = read_metrics(args.out, run) or recorded.get(run.name)
        if metrics is not None:
            rows.append({"model": model, "seed": seed, **{key: metrics.get(key) for key in COLUMNS[2:-2]},
                         "overrides": " ".join(args.overrides),
                         "settings_digest": trained_digest(args.out, run, digests[run.name])})
    if not rows:
        print(f"no finished runs under {args.out / 'runs'} yet", file=sys.stderr)
        return 0
    write_results(args.out, rows, COLUMNS, markdown(medians(rows), args.overrides, rows), plot, start,
                  doc, README_BLOCK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
