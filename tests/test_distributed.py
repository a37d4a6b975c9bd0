"""Two CPU processes (torchrun, gloo) train one model through the real loop on shards of uneven sizes,
split over ranks and data workers: nobody hangs, both take the same steps and end with the same weights,
only rank 0 writes the run directory, and a 2-process run resumes from rank 0's checkpoint exactly.

Each launch runs tests/distributed_worker.py, which reports per-rank steps, a parameter digest and the
files each rank wrote into a directory outside the run directory.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed

from distributed_worker import created_by_other_ranks, state_digest

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="needs torch.distributed with gloo")

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("distributed_worker.py")
LAUNCH_TIMEOUT_S = 180  # a healthy launch takes 30-50 s on a busy 2-core machine
NUM_PROCESSES, NUM_WORKERS = 2, 2
# 1 to 9 pairs per shard; 40 shards = 10 x ranks x workers. Unsplit, these would give ranks unequal batch counts.
TRAIN_SHARD_SIZES = [1 + (7 * i) % 9 for i in range(40)]
EVAL_SHARD_SIZES = [5, 3]
MAX_STEPS, RESUME_FROM = 8, 3  # batches_per_epoch 4 (smoke): the resumed run restarts mid-epoch, crosses one
RUN_OVERRIDES = (f"train.max_steps={MAX_STEPS}", "train.checkpoint_every=3", "train.keep_checkpoints=3",
                 "train.eval_every=4", "train.eval_images=8", "eval.sweep_slots=[2]", "eval.num_visualise=2",
                 f"data.num_workers={NUM_WORKERS}")


def write_shards(out: Path, split: str, sizes: list[int]) -> None:
    """Shards of the given numbers of pairs, written with the data set's own encoder."""
    import webdataset as wds

    from data import encode_pair, make_generator

    generator = make_generator("multi_dsprites", resolution=16)
    out.mkdir(parents=True)
    start = 0
    for shard, size in enumerate(sizes):
        with wds.TarWriter(str(out / f"{split}-{shard:06d}.tar"), encoder=False, mtime=0) as sink:
            for index in range(start, start + size):
                sink.write(encode_pair(generator.pair([0, len(split)], index), key=f"{split}-{index:08d}"))
        start += size


def launch(root: Path, label: str, args: list[str]) -> dict[int, dict]:
    """torchrun the worker with train_slots.py's `args`; the per-rank reports. Fails with both ranks' output
    on a non-zero exit or when the launch outlives LAUNCH_TIMEOUT_S (a hung rank)."""
    report_dir = root / f"reports-{label}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "WEAKSLOTS_REPORT_DIR": str(report_dir), "WEAKSLOTS_WATCH_DIR": str(root / "runs")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={NUM_PROCESSES}",
               "--tee=3", str(WORKER), *args]
    log = root / f"{label}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=LAUNCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_tree(process)
            pytest.fail(f"{label}: no exit after {LAUNCH_TIMEOUT_S} s (a rank hangs); both ranks:\n{tail(log)}")
    assert code == 0, f"{label}: exit code {code}; both ranks:\n{tail(log)}"
    missing = [rank for rank in range(NUM_PROCESSES) if not (report_dir / f"rank{rank}.json").is_file()]
    assert not missing, f"{label}: no report from rank(s) {missing}; both ranks:\n{tail(log)}"
    return {rank: json.loads((report_dir / f"rank{rank}.json").read_text()) for rank in range(NUM_PROCESSES)}


def kill_tree(process: subprocess.Popen) -> None:
    """Kill the launcher and everything it started: torchrun puts each rank in a session of its own, so
    the ranks and their data workers are found as descendants, not as a process group."""
    import psutil

    descendants = psutil.Process(process.pid).children(recursive=True)
    for child in [psutil.Process(process.pid), *descendants]:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(descendants, timeout=10)
    process.wait()


def tail(log: Path, lines: int = 25) -> str:
    """The last lines of each rank (torchrun's --tee prefix `[defaultN]:`) and of the launcher itself."""
    by_source: dict[str, list[str]] = {}
    for line in log.read_text(errors="replace").splitlines():
        prefix, separator, rest = line.partition("]:")
        source = prefix[1:] if separator and prefix.startswith("[default") else "launcher"
        by_source.setdefault(source, []).append(rest if source != "launcher" else line)
    sources = [f"default{rank}" for rank in range(NUM_PROCESSES)] + ["launcher"]
    return "\n".join(f"--- {source} (last {lines} lines) ---\n" + "\n".join(by_source.get(source, ["(no output)"])[-lines:])
                     for source in sources)


def read_log(path: Path) -> dict[int, dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    steps = [record["step"] for record in records]
    assert len(steps) == len(set(steps)), f"{path.name}: steps logged more than once: {steps}"
    return {record.pop("step"): record for record in records}


def expected_learning_rates(learning_rate: float, warmup: int, decay: int) -> dict[int, float]:
    """The schedule stepped once per optimiser step (not once per process)."""
    from training.schedule import warmup_exponential_decay

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=learning_rate)
    scheduler = warmup_exponential_decay(optimizer, warmup, decay)
    rates = {}
    for step in range(1, MAX_STEPS + 1):
        optimizer.step()
        scheduler.step()
        rates[step] = scheduler.get_last_lr()[0]
    return rates


def created_by_rank_1(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if created_by_other_ranks(p))


def checkpoint_digest(checkpoint: Path) -> str:
    from safetensors.torch import load_file

    return state_digest(load_file(str(checkpoint / "model.safetensors")))


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, dict]]:
    """One uninterrupted 2-process run: (its run directory, the per-rank reports)."""
    root = tmp_path_factory.mktemp("distributed")
    write_shards(root / "shards" / "train", "train", TRAIN_SHARD_SIZES)
    write_shards(root / "shards" / "eval", "eval", EVAL_SHARD_SIZES)
    args = ["--preset", "smoke", f"output_dir={root / 'runs'}", "name=straight",
            f"data.train_shards={root / 'shards' / 'train'}", f"data.eval_shards={root / 'shards' / 'eval'}",
            *RUN_OVERRIDES]
    return root / "runs" / "straight", launch(root, "straight", args)


def test_two_processes_train_one_model_and_only_rank_0_writes(straight):
    run_dir, reports = straight
    assert [reports[rank]["world_size"] for rank in (0, 1)] == [2, 2]
    assert [reports[rank]["steps"] for rank in (0, 1)] == [MAX_STEPS, MAX_STEPS]
    assert reports[0]["digest"] == reports[1]["digest"], "the ranks ended with different parameters"
    final = run_dir / "checkpoints" / f"step_{MAX_STEPS:08d}"
    assert checkpoint_digest(final) == reports[0]["digest"], "rank 0's checkpoint is not the trained model"

    assert reports[1]["writes"] == [], "rank 1 wrote into the run directory"
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["step_00000003", "step_00000006", "step_00000008"]
    assert created_by_rank_1(run_dir) == [f"checkpoints/{name}/random_states_1.pkl" for name in checkpoints], \
        "rank 1 may add only its own RNG state to a checkpoint"
    assert all((run_dir / "checkpoints" / name / "random_states_0.pkl").is_file() for name in checkpoints)
    for name in ("config.yaml", "metrics.json", "slots.png", "slot_sweep.csv", "slot_sweep.png"):
        assert (run_dir / name).stat().st_size > 0, name
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1, "one TensorBoard writer"

    from training.config import load_run_config

    train = load_run_config(run_dir).train
    log = read_log(run_dir / "train_log.jsonl")
    assert sorted(log) == list(range(1, MAX_STEPS + 1))
    expected = expected_learning_rates(train.learning_rate, train.warmup_steps, train.decay_steps)
    assert {step: record["lr"] for step, record in log.items()} == expected
    assert sorted(read_log(run_dir / "eval_log.jsonl")) == [4, 8]
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == MAX_STEPS


def test_two_process_run_resumes_exactly_from_rank_0s_checkpoint(straight):
    straight_dir, straight_reports = straight
    root = straight_dir.parent.parent
    resumed_dir = root / "runs" / "resumed"
    start = f"step_{RESUME_FROM:08d}"
    shutil.copytree(straight_dir / "checkpoints" / start, resumed_dir / "checkpoints" / start)
    shutil.copy(straight_dir / "config.yaml", resumed_dir / "config.yaml")

    reports = launch(root, "resumed", ["--resume", str(resumed_dir)])
    assert [reports[rank]["steps"] for rank in (0, 1)] == [MAX_STEPS, MAX_STEPS]
    assert reports[0]["digest"] == reports[1]["digest"] == straight_reports[0]["digest"], \
        "the resumed run did not reach the uninterrupted run's parameters"
    assert reports[1]["writes"] == [], "rank 1 wrote into the run directory"
    expected_rank_1 = [f"checkpoints/{name}/random_states_1.pkl" for name in (start, "step_00000006", "step_00000008")]
    assert created_by_rank_1(resumed_dir) == expected_rank_1
    resumed_log = read_log(resumed_dir / "train_log.jsonl")
    straight_log = read_log(straight_dir / "train_log.jsonl")
    assert sorted(resumed_log) == list(range(RESUME_FROM + 1, MAX_STEPS + 1))
    assert resumed_log == {step: straight_log[step] for step in resumed_log}  # losses and rates, exactly


def test_two_processes_choose_the_same_candidate_vae_and_train_only_it(tmp_path):
    """Candidate VAEs stop training all but one member: data-parallel training must expect the unused weights,
    and both ranks must keep the same member although each tallies the losses of its own batches."""
    args = ["--preset", "dsprites_vae", f"data.root={tmp_path / 'data'}", f"output_dir={tmp_path / 'runs'}",
            "name=candidates", "data.num_train=160", "data.num_eval=16", "data.pairs_per_shard=4",
            "train.batch_size=4", "train.max_steps=4", "train.batches_per_epoch=4", "train.eval_every=0",
            "train.checkpoint_every=4", "train.log_every=1", "vae.candidates=3", "vae.candidate_steps=2",
            "vae.candidate_window=2",
            "vae.metrics=[mig]", "vae.metric_sizes={mig_num_train: 200}"]
    reports = launch(tmp_path, "candidates", args)
    assert [reports[rank]["steps"] for rank in (0, 1)] == [4, 4]
    assert reports[0]["digest"] == reports[1]["digest"], "the ranks ended with different candidates or weights"
    log = read_log(tmp_path / "runs" / "candidates" / "train_log.jsonl")
    assert [log[step]["candidates_training"] for step in sorted(log)] == [3.0, 3.0, 1.0, 1.0]
