"""What every study needs: many `train_slots.py` runs under one directory, resumable, reused only when
trained with the same settings, and shareable between processes.

Each run trains in its own process; a run that finished is read back, one interrupted mid-training is
resumed exactly (`--resume`). Start the same study command several times to train several runs at once:
each process takes the runs no other process holds (an advisory file lock per run, released by the OS
when its holder exits, even on a crash).
"""
from __future__ import annotations

import argparse
import csv
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from studies.results_doc import ReadmeBlockError, block_span, markers, write_block
from training.config import load_run_config
from training.loop import resolve_config

ROOT = Path(__file__).resolve().parent.parent
#: Config sections a task does not read may differ between a finished run and the settings asked for now.
IGNORED_SECTIONS = {"discovery": ("set_prediction.", "vae.", "weak_slots.", "dinosaur.", "backbone."),
                    "vae": ("model.", "set_prediction.", "weak_slots.", "dinosaur.", "backbone."),
                    "weak_slots": ("set_prediction.", "vae.", "dinosaur.", "backbone."),
                    "orientation": ("model.", "set_prediction.", "vae.", "weak_slots.", "dinosaur.", "backbone.")}


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: `after` commands (python -m module args) run once training has finished, e.g.
    extra scoring; the run is complete when metrics.json holds every key in `required`."""

    name: str
    preset: str
    overrides: tuple[str, ...] = ()
    after: tuple[tuple[str, ...], ...] = ()
    required: tuple[str, ...] = ()


def run_dir(out: Path, run: PlannedRun) -> Path:
    return out / "runs" / run.name


def read_metrics(out: Path, run: PlannedRun) -> dict | None:
    """The run's metrics.json if the run is complete, else None."""
    path = run_dir(out, run) / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return metrics if all(key in metrics for key in run.required) else None


def ensure_run(out: Path, run: PlannedRun) -> dict | None:
    """Train (or resume, or reuse) one run; None if another process is training it now."""
    directory = run_dir(out, run)
    settings = [f"output_dir={out / 'runs'}", f"name={run.name}", *run.overrides]
    if (directory / "config.yaml").is_file():
        check_same_settings(directory, run.preset, settings)
    metrics = read_metrics(out, run)
    if metrics is not None:
        return metrics
    with run_lock(out, run.name) as held:
        if not held:
            print(f"[study] {run.name}: being trained by another process, skipped", flush=True)
            return None
        if not (directory / "metrics.json").is_file():
            command = [sys.executable, str(ROOT / "train_slots.py"), "--preset", run.preset, *settings]
            if (directory / "config.yaml").is_file():  # interrupted mid-training: continue it exactly
                command = [sys.executable, str(ROOT / "train_slots.py"), "--resume", str(directory)]
            print(f"[study] {run.name}", flush=True)
            subprocess.run(command, check=True, cwd=ROOT)
        if read_metrics(out, run) is None:
            for module, *args in run.after:
                subprocess.run([sys.executable, "-m", module, *args], check=True, cwd=ROOT)
    return read_metrics(out, run)


@contextmanager
def run_lock(out: Path, name: str) -> Iterator[bool]:
    """Yield whether this process holds the run's lock; the OS releases it if the holder dies."""
    lock_dir = out / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_same_settings(directory: Path, preset: str, settings: list[str]) -> None:
    """A study reuses a run only if it was trained with exactly the settings asked for now."""
    def flat(values: dict) -> dict:
        return {f"{section}.{key}" if isinstance(inner, dict) else section: value
                for section, inner in values.items()
                for key, value in (inner.items() if isinstance(inner, dict) else [(section, inner)])}

    expected = flat(asdict(resolve_config(preset, None, None, settings)))
    actual = flat(asdict(load_run_config(directory)))
    ignored = IGNORED_SECTIONS.get(expected["task"], ())
    different = sorted(key for key in expected
                       if key in actual and not key.startswith(ignored) and expected[key] != actual[key])
    if different:
        raise SystemExit(f"error: {directory} was trained with other settings ({', '.join(different)} differ); "
                         "use another --out or the same overrides")


#: Options added after run records began to carry digests, as (section, switch, value that trains as before,
#: the options that act only with the switch on). At that value they are left out of the digest, so a record
#: made before they existed still counts; add each new option here with its neutral value.
LATER_OPTIONS = (("vae", "candidates", 1, ("candidates", "candidate_steps", "candidate_window")),)


#: Options that say how a run is executed, not what it trains, as (section, key): left out of the digest, so
#: one table can hold runs trained alone with two threads beside runs trained side by side with one. Sums may
#: round differently with the thread count, as they do from one CPU to another, which no digest sees either.
EXECUTION_OPTIONS = (("train", "cpu_threads"),)


def config_digest(config) -> str:
    """A short hash of a resolved configuration, where the run writes, how it is executed (EXECUTION_OPTIONS)
    and options at their neutral value (LATER_OPTIONS) left out."""
    values = asdict(config)
    for key in ("output_dir", "name"):
        values.pop(key, None)
    for section, key in EXECUTION_OPTIONS:
        values.get(section, {}).pop(key, None)
    for section, switch, neutral, keys in LATER_OPTIONS:
        options = values.get(section, {})
        if options.get(switch, neutral) == neutral:
            for key in keys:
                options.pop(key, None)
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def settings_digest(run: PlannedRun) -> str:
    """The digest of the configuration a run trains with (preset resolved with its overrides): a record of a
    run counts only while the code and presets would train the same run again."""
    return config_digest(resolve_config(run.preset, None, None, list(run.overrides)))


def trained_digest(out: Path, run: PlannedRun, planned: str) -> str:
    """The digest of the settings a run was trained with (its config.yaml), the planned one when its directory
    is gone: a table rebuilt with other overrides (`--finished-only`) must not stamp its runs with those."""
    config = run_dir(out, run) / "config.yaml"
    return config_digest(load_run_config(config.parent)) if config.is_file() else planned


def recorded_rows(out: Path, digests: dict[str, str], name_of: Callable[[dict], str]) -> dict[str, dict]:
    """The rows of `<out>/results.csv` (as text, by run name `name_of(row)`) whose settings digest is the
    planned run's (`digests`): the record of finished runs whose directories are gone (run directories are
    not kept in git, the CSV is). Records of other settings are not comparable: left out here, kept in the CSV."""
    recorded, other = {}, 0
    for line in read_records(out):
        name = name_of(line)
        if not line.get("settings_digest") or line["settings_digest"] != digests.get(name):
            other += 1
            continue
        recorded[name] = line
    if other:
        print(f"[study] {out / 'results.csv'}: {other} recorded run(s) of other settings (presets, overrides or "
              "seeds) left out of the table; the CSV keeps them", flush=True)
    return recorded


def read_records(out: Path) -> list[dict]:
    """The rows of `<out>/results.csv` as text; none when there is no CSV yet."""
    path = out / "results.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def csv_number(value: str, integer: bool = False) -> int | float | None:
    """A number read back from a results CSV ('' is a metric the run did not report)."""
    return None if value == "" else int(float(value)) if integer else float(value)


def comma_separated_ints(text: str) -> list[int]:
    """argparse type of the studies' lists of numbers (seeds, label counts): '0,1,2' -> [0, 1, 2]."""
    return [int(value) for value in text.split(",")]


def study_parser(description: str, default_out: str) -> argparse.ArgumentParser:
    """The command line every study shares: where, which seeds, summarise only, overrides for every run."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(default_out))
    parser.add_argument("--seeds", type=comma_separated_ints, default=[0, 1, 2],
                        help="comma-separated training seeds (default: 0,1,2)")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: summarise the runs that have finished so far")
    parser.add_argument("--readme", type=Path, default=None, metavar="DOC.md",
                        help="the results document to write the table and plot into, between this study's "
                             "markers (<!-- NAME:begin --> ... <!-- NAME:end -->); default: OUT/README.md, "
                             "created with the markers if it does not exist")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="applied to every run")
    return parser


def add_only_option(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    """--only: train a slice of the study (e.g. one model while another process or machine trains the rest);
    the table still summarises every finished run, so slices add up to the whole study."""
    parser.add_argument("--only", type=lambda text: text.split(","), default=None, metavar=f"{what.upper()},...",
                        help=f"train only these {what}s' runs (e.g. {example}); the table still summarises every "
                             "finished run of the study")


def check_only(parser: argparse.ArgumentParser, only: list[str] | None, what: str, known: Sequence[str]) -> None:
    """A name --only does not know ends the study at once with the study's names, not after hours of the rest."""
    unknown = set(only or ()) - set(known)
    if unknown:
        parser.error(f"--only: unknown {what}(s) {', '.join(sorted(unknown))}; "
                     f"the study's: {', '.join(dict.fromkeys(known))}")


@contextmanager
def readme_errors() -> Iterator[None]:
    """A README that cannot take the block ends the study with the one-line error, not a traceback."""
    try:
        yield
    except ReadmeBlockError as error:
        raise SystemExit(f"error: {error}") from None


def results_doc(args: argparse.Namespace, block: str) -> Path:
    """The document the study writes into (`--readme`, else OUT/README.md), checked at start-up, not after the
    last run has trained; a study's own results document is created with its markers when missing."""
    doc = args.readme if args.readme is not None else args.out / "README.md"
    if args.readme is None and not doc.exists():
        doc.parent.mkdir(parents=True, exist_ok=True)
        begin, end = markers(block)
        doc.write_text(f"# {block}\n\n{begin}\n{end}\n")
    with readme_errors():
        block_span(doc, block)
    return doc


def write_results(out: Path, rows: list[dict], columns: Sequence[str], table: str,
                  plot: Callable[[list[dict], Path], None], start: float, doc: Path, block: str) -> None:
    """results.csv (one row per run), results.md (the table) and results.png, the table and plot between the
    `block` markers of the results document `doc`, then the table on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    # A record of other settings (another preset version, other overrides) is not in this table, but it is
    # still the only record of a run whose directory may be gone: it stays in the CSV, after this table's rows.
    written = {row["settings_digest"] for row in rows}
    kept = [line for line in read_records(out) if line.get("settings_digest") not in written]
    partial = out / f"results.csv.{os.getpid()}.partial"  # processes sharing a study finish at their own times
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore", restval="")
        writer.writeheader()
        writer.writerows(rows + kept)
    partial.replace(out / "results.csv")
    (out / "results.md").write_text(table)
    plot(rows, out / "results.png")
    with readme_errors():
        write_block(doc, block, table, out / "results.png")
    print(table + f"wrote {out / 'results.csv'}, results.md, results.png and {doc} in "
                  f"{(time.time() - start) / 60:.1f} min")
