"""The weak-supervision study of Locatello et al. (2020) at a laptop budget: the weak methods (Ada-GVAE,
Ada-ML-VAE, GVAE; k random) against the unsupervised ones (beta-VAE with beta in {1, 4, 16}, beta-TCVAE,
FactorVAE), several seeds each, same budget; writes one CSV row per run, a markdown table, a plot, and the
Spearman correlation between training reconstruction loss and DCI disentanglement within the weak and
within the unsupervised models (the paper's model-selection claim). With `--labels 100,1000` every run is
also scored from only N labelled points (`eval.few_labels`), and the table says how often selecting the
best run by that score picks the run the full-label score picks (Locatello et al., "few labels").

    python -m studies.weak_vae --out results/weak_study --seeds 0,1,2 [--labels 100,1000] [train.max_steps=1500 ...]

Each run is `train_slots.py --preset dsprites_vae` in its own process (see `studies.runner`): an
interrupted study continues where it stopped, and starting the same command several times trains several
runs at once; the last process to finish writes the full table. Run directories are not kept in git, the CSV
is: a run recorded in `<out>/results.csv` with the same settings (the digest of its resolved configuration)
counts as finished when its directory is gone, so a later `--only` adds methods to the table instead of
dropping the recorded ones; a record made under other settings (another preset version, other overrides) is
left out of the table and kept in the CSV. The thread count (`train.cpu_threads`) is not a setting: the
timed runs can train alone with two threads and the baselines side by side with one, in one table.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from metrics.disentanglement.few_labels import selection_from_few_labels
from studies.runner import (PlannedRun, add_only_option, check_only, comma_separated_ints, csv_number, ensure_run,
                            read_metrics, recorded_rows, results_doc, run_dir, settings_digest, study_parser,
                            trained_digest, write_results)
from training.errors import ConfigError
from viz.plots import plt

#: The block of the results document the study writes: between <!-- weak_study:begin --> and <!-- weak_study:end -->.
README_BLOCK = "weak_study"

#: (method, beta) of the study: the paper's weak methods at the preset's beta and the unsupervised ones,
#: beta-VAE at three strengths.
SETTINGS = (("ada_gvae", 4.0), ("ada_mlvae", 4.0), ("gvae", 4.0), ("beta_vae", 1.0), ("beta_vae", 4.0),
            ("beta_vae", 16.0), ("beta_tcvae", 4.0), ("factor_vae", 1.0))
WEAK_METHODS = ("ada_gvae", "ada_mlvae", "gvae", "mlvae")
#: Metrics computed per run; BetaVAE and FactorVAE scores need ~2M encoder calls at dlib's sizes, so the
#: study leaves them to `train_slots.py` runs that ask for them.
STUDY_METRICS = "[mig, dci, sap, modularity]"
COLUMNS = ("method", "beta", "seed", "dci_disentanglement", "dci_completeness", "dci_informativeness_test", "mig",
           "sap", "modularity", "explicitness_test", "recon_loss", "eval_recon_loss", "steps", "train_seconds",
           "total_seconds", "overrides", "settings_digest", "few_label_dci")
#: CSV columns that are not numbers.
TEXT_COLUMNS = ("method", "overrides", "settings_digest", "few_label_dci")


def setting_name(setting: tuple[str, float]) -> str:
    """`beta_vae-beta16`: one (method, beta) of the study, as its run directories begin, for `--only`."""
    method, beta = setting
    return f"{method}-beta{beta:g}"


def selected(setting: tuple[str, float], only: list[str] | None) -> bool:
    """`--only` names a method (all its betas) or one setting of it (`beta_vae-beta16`)."""
    return only is None or setting[0] in only or setting_name(setting) in only


def run_name(method: str, beta: float, seed: int) -> str:
    return f"{setting_name((method, beta))}-seed{seed}"


def planned_run(method: str, beta: float, seed: int, overrides: list[str], out: Path,
                labels: list[int] | None = None, draws: int = 10) -> PlannedRun:
    """One run of the study; with `labels`, also scored from that many labelled points (`eval.few_labels`)."""
    name = run_name(method, beta, seed)
    after = (("eval.few_labels", "--run", str(out / "runs" / name), "--labels", *map(str, labels), "--draws",
              str(draws)),) if labels else ()
    return PlannedRun(name, "dsprites_vae", (f"vae.method={method}", f"vae.beta={beta}", f"train.seed={seed}",
                                             f"vae.metrics={STUDY_METRICS}", *overrides),
                      after=after, required=("few_label_dci",) if labels else ())


def row(metrics: dict, overrides: list[str], digest: str) -> dict:
    """One CSV row; the settings and few-label scores travel with it so the CSV alone can rebuild the table."""
    found = {key: metrics.get("train_recon_loss") if key == "recon_loss" else metrics.get(key) for key in COLUMNS}
    found["overrides"], found["settings_digest"] = " ".join(overrides), digest
    found["few_label_dci"] = json.dumps(metrics["few_label_dci"]) if metrics.get("few_label_dci") else ""
    return found


def recorded_metrics(out: Path, digests: dict[str, str]) -> dict[str, dict]:
    """Metrics of the runs `<out>/results.csv` records with the planned run's settings (`recorded_rows`)."""
    recorded = {}
    for name, line in recorded_rows(out, digests, lambda line: run_name(line["method"], float(line["beta"]),
                                                                          int(line["seed"]))).items():
        metrics = {key: value if key in TEXT_COLUMNS else csv_number(value, key in ("seed", "steps"))
                   for key, value in line.items() if key in COLUMNS}
        metrics["train_recon_loss"] = metrics.pop("recon_loss")
        few = metrics.pop("few_label_dci")
        if few:
            metrics["few_label_dci"] = json.loads(few)
        recorded[name] = metrics
    return recorded


def spearman_by_group(rows: list[dict]) -> dict[str, dict]:
    """Rank correlation of training reconstruction loss with DCI disentanglement, weak vs unsupervised."""
    result = {}
    for group, members in (("weak", [r for r in rows if r["method"] in WEAK_METHODS]),
                           ("unsupervised", [r for r in rows if r["method"] not in WEAK_METHODS])):
        if len(members) < 3:
            result[group] = {"rho": float("nan"), "p": float("nan"), "runs": len(members)}
            continue
        rho, p = spearmanr([r["recon_loss"] for r in members], [r["dci_disentanglement"] for r in members])
        result[group] = {"rho": float(rho), "p": float(p), "runs": len(members)}
    return result


def medians(rows: list[dict]) -> list[dict]:
    """Median over seeds of each (method, beta) setting."""
    summary = []
    for method, beta in dict.fromkeys((r["method"], r["beta"]) for r in rows):
        group = [r for r in rows if (r["method"], r["beta"]) == (method, beta)]
        summary.append({"method": method, "beta": beta, "seeds": len(group),
                        **{key: float(np.median([r[key] for r in group]))
                           for key in ("dci_disentanglement", "mig", "sap", "modularity", "recon_loss")}})
    return summary


#: The bar: Ada-GVAE's median DCI at least this, and at least BAR_RATIO times the best beta-VAE median.
BAR_DCI, BAR_RATIO = 0.5, 2.0
#: The methods the bar compares (the weak one, the unsupervised one): each of their settings needs three
#: seeds before the bar is decided.
BAR_METHODS = ("ada_gvae", "beta_vae")


def bar_medians(summary: list[dict]) -> tuple[float, float] | None:
    """(Ada-GVAE's median DCI, the best beta-VAE setting's median DCI); None while either is missing."""
    weak, unsupervised = BAR_METHODS
    ada = [s["dci_disentanglement"] for s in summary if s["method"] == weak]
    beta = [s["dci_disentanglement"] for s in summary if s["method"] == unsupervised]
    return (ada[0], max(beta)) if ada and beta else None


def bar_met(summary: list[dict]) -> bool:
    """Median DCI of Ada-GVAE >= BAR_DCI and >= BAR_RATIO x the best beta-VAE setting's median."""
    compared = bar_medians(summary)
    return compared is not None and compared[0] >= BAR_DCI and compared[0] >= BAR_RATIO * compared[1]


def few_label_selection(rows: list[dict], runs: list[dict]) -> list[dict]:
    """Per number of labels and group of runs (all, weak): how well the few-label DCI selects the best run."""
    found = []
    labels = sorted({int(n) for metrics in runs for n in metrics.get("few_label_dci", {})})
    for n in labels:
        for group, keep in (("all", lambda r: True), ("weak", lambda r: r["method"] in WEAK_METHODS)):
            members = [(r, m) for r, m in zip(rows, runs, strict=True) if keep(r) and str(n) in m.get("few_label_dci", {})]
            if len(members) < 2:
                continue
            full = np.array([r["dci_disentanglement"] for r, _ in members])
            few = np.array([m["few_label_dci"][str(n)] for _, m in members]).T  # [draws, runs]
            found.append({"labels": n, "group": group, "runs": len(members), **selection_from_few_labels(full, few)})
    return found


def markdown(rows: list[dict], summary: list[dict], correlation: dict, overrides: list[str],
             selection: list[dict] | None = None) -> str:
    lines = ["| method | beta | seeds | median DCI disentanglement | median MIG | median SAP | median modularity "
             "| median train recon loss |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {s['method']} | {s['beta']:g} | {s['seeds']} | {s['dci_disentanglement']:.3f} | {s['mig']:.3f} "
              f"| {s['sap']:.3f} | {s['modularity']:.3f} | {s['recon_loss']:.1f} |" for s in summary]
    lines += ["", "| group | Spearman rho (train recon loss vs DCI) | p | runs |", "|---|---|---|---|"]
    lines += [f"| {g} | {c['rho']:.2f} | {c['p']:.3f} | {c['runs']} |" for g, c in correlation.items()]
    if selection:
        lines += ["", "| labels | runs | Spearman rho (few- vs full-label DCI) | best run picked | mean regret | "
                  "worst regret | draws |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {s['labels']} | {s['group']} ({s['runs']}) | {s['spearman']:.2f} | {s['agreement']:.0%} | "
                  f"{s['mean_regret']:.3f} | {s['max_regret']:.3f} | {s['draws']} |" for s in selection]
    verdict = "met" if bar_met(summary) else "NOT met"
    if any(s["seeds"] < 3 for s in summary if s["method"] in BAR_METHODS):
        verdict = (f"undecided (fewer than 3 seeds of Ada-GVAE or a beta-VAE setting; on these runs it would be "
                   f"{verdict})")
    compared = bar_medians(summary)
    if compared is not None and compared[1] > 0:
        ada, beta = compared
        verdict += f" (Ada-GVAE {ada:.3f}, best beta-VAE {beta:.3f}: {ada / beta:.2f}x)"
    lines += ["", f"Bar (median DCI of Ada-GVAE >= {BAR_DCI} and >= {BAR_RATIO:g}x the best beta-VAE median): {verdict}",
              f"Overrides: {' '.join(overrides) or '(preset as is)'}; per-run rows in the CSV."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    labels = list(dict.fromkeys(f"{r['method']}\nβ={r['beta']:g}" for r in rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for index, label in enumerate(labels):
        values = [r["dci_disentanglement"] for r in rows if f"{r['method']}\nβ={r['beta']:g}" == label]
        left.scatter([index] * len(values), values, alpha=0.7)
        left.hlines(np.median(values), index - 0.25, index + 0.25, color="black")
    left.set_xticks(range(len(labels)), labels, fontsize=8)
    left.set_ylabel("DCI disentanglement")
    left.set_title("per seed (bar: median)")
    for group, marker in (("weak", "o"), ("unsupervised", "x")):
        members = [r for r in rows if (r["method"] in WEAK_METHODS) == (group == "weak")]
        right.scatter([r["recon_loss"] for r in members], [r["dci_disentanglement"] for r in members],
                      marker=marker, label=group)
    right.set_xlabel("training reconstruction loss")
    right.set_ylabel("DCI disentanglement")
    right.set_title("model selection by reconstruction")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def digest_if_valid(run: PlannedRun) -> str | None:
    """The run's settings digest; None when the overrides do not apply to its method (e.g. vae.candidates with
    factor_vae): such a run has no record to reuse, and `--only` leaves it out or its launch says why."""
    try:
        return settings_digest(run)
    except ConfigError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__, "results/weak_study")
    parser.add_argument("--labels", type=comma_separated_ints, default=None,
                        help="comma-separated numbers of labelled points to score every run from (e.g. 100,1000)")
    parser.add_argument("--label-draws", type=int, default=10, help="draws of the labelled points per number")
    add_only_option(parser, "method", "ada_gvae,beta_vae or one setting: beta_vae-beta16")
    args = parser.parse_args(argv)
    doc = results_doc(args, README_BLOCK)
    start = time.time()
    check_only(parser, args.only, "method", [method for method, _ in SETTINGS] + list(map(setting_name, SETTINGS)))
    methods = [((method, beta), planned_run(method, beta, seed, args.overrides, args.out, args.labels,
                                            args.label_draws))
               for seed in args.seeds for method, beta in SETTINGS]
    plan = [run for _, run in methods]
    digests = {run.name: digest_if_valid(run) for run in plan}
    recorded = recorded_metrics(args.out, digests)
    trained = [] if args.finished_only else [run for setting, run in methods if selected(setting, args.only)]
    trained = [run for run in trained if run.name not in recorded or run_dir(args.out, run).is_dir()]
    for run in trained:
        ensure_run(args.out, run)
    # Runs other processes held may have finished meanwhile: read every metrics.json now, once.
    metrics_of = {run.name: read_metrics(args.out, run) or recorded.get(run.name) for run in plan}
    finished = [metrics for metrics in metrics_of.values() if metrics is not None]
    if args.finished_only and not finished:
        print(f"no finished runs under {args.out / 'runs'} yet", file=sys.stderr)
        return 0
    rows = [row(metrics_of[run.name], args.overrides, trained_digest(args.out, run, digests[run.name]))
            for run in plan if metrics_of[run.name] is not None]
    pending = [run for run in trained if metrics_of[run.name] is None]
    if pending:
        print(f"[study] {len(pending)} run(s) still training in other processes: the table below "
              "leaves them out; the last process to finish writes the full one", flush=True)
    if not rows:
        return 0
    summary, correlation = medians(rows), spearman_by_group(rows)
    table = markdown(rows, summary, correlation, args.overrides, few_label_selection(rows, finished))
    write_results(args.out, rows, COLUMNS, table, plot, start, doc, README_BLOCK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
