"""The training run: config -> data -> Accelerate loop -> checkpoints -> the task's evaluation and report."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import broadcast_object_list, parse_flag_from_env, set_seed
from torch import nn
from tqdm.auto import tqdm

from data import PairBatch, train_batches
from training.build import dataset_urls
from training.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from training.config import (DEFAULT_PRESET, ConfigError, RunConfig, build_config, load_yaml, parse_override,
                             run_sources, save_config)
from training.schedule import warmup_exponential_decay
from training.tasks import Task, make_task


def resolve_config(preset: str | None, config_file: Path | None, resume: Path | None, overrides: list[str]) -> RunConfig:
    """Preset, then config file (each over its `base` chain), then overrides; a resumed run starts from its own
    saved config."""
    if resume is not None:
        if not (resume / "config.yaml").is_file():
            raise ConfigError(f"--resume {resume}: no config.yaml there, so it is not a run directory")
        sources = [load_yaml(resume / "config.yaml")]
    else:
        sources = run_sources(preset, config_file)
    return build_config(sources + [parse_override(text) for text in overrides])


@dataclass
class TrainResult:
    """What a finished run leaves in memory on every process (the files are on the main process only)."""

    run_dir: Path
    steps: int
    model: nn.Module  # unwrapped: identical on every process after data-parallel training


def wants_cpu() -> bool:
    """`accelerate launch --cpu` (or ACCELERATE_USE_CPU=1 under torchrun) asks for gloo processes on the CPU.
    PartialState does not read this variable itself, only AcceleratorState does, so without it a CPU-only
    torchrun launch would come up unconnected."""
    return parse_flag_from_env("ACCELERATE_USE_CPU")


def check_launch(state: PartialState) -> None:
    """Refuse launches that would silently train independent copies instead of one distributed model."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > state.num_processes:
        raise ConfigError(
            f"{world_size} processes were launched but they are not connected (Accelerate found "
            f"{state.distributed_type.value}; GPU visible: {torch.cuda.is_available()}); a MULTI_GPU "
            "config needs GPUs: use num_processes: 1 on this machine, or for several CPU processes "
            f"ACCELERATE_USE_CPU=1 torchrun --nproc_per_node {world_size} train_slots.py"
        )


def set_cpu_threads(state: PartialState, requested: int | None) -> None:
    """`accelerate launch` pins OMP_NUM_THREADS=1 for single-process CPU runs, which leaves every other
    core idle; on the CPU, use every core this process may run on, shared between local processes."""
    if state.device.type != "cpu":
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(requested or max(1, cores // local_processes))


def decide_run_dir(state: PartialState, config: RunConfig, preset: str | None, resume: Path | None) -> Path:
    if resume is not None:
        return resume
    name = [config.name or f"{preset or DEFAULT_PRESET}-{time.strftime('%Y%m%d-%H%M%S')}"]
    if state.num_processes > 1:
        broadcast_object_list(name)  # every rank must agree on a timestamped name
    run_dir = Path(config.output_dir) / name[0]
    if list_checkpoints(run_dir):
        raise ConfigError(f"run directory {run_dir} already has checkpoints: pass --resume {run_dir} or another name=")
    config.name = name[0]
    return run_dir


def batch_stream(urls: list[str], config: RunConfig, accelerator: Accelerator, start_step: int) -> Iterator[PairBatch]:
    """Endless training batches; epoch e is a pure function of (seed, e, rank), so resuming at any step
    replays exactly the batches an uninterrupted run would have seen. Ranks draw disjoint shards."""
    per_epoch = config.train.batches_per_epoch
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        batches = train_batches(
            urls, config.train.batch_size, seed=config.train.seed, epoch=epoch,
            batches_per_epoch=per_epoch, shuffle_buffer=config.data.shuffle_buffer,
            num_workers=config.data.num_workers, resolution=config.data.resolution,
        )
        for index, batch in enumerate(batches):
            if index >= skip:
                yield batch
        epoch, skip = epoch + 1, 0


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop records logged after the checkpoint a run resumes from, so they are not logged twice."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= last_step]
        path.write_text("".join(line + "\n" for line in kept))


def append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def mean_over_processes(accelerator: Accelerator, values: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Scalars averaged over every process (each saw its own part of the global batch). A collective:
    every process must call it at the same steps."""
    if not values:
        return {}
    stacked = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=accelerator.device).detach().reshape(())
                           for v in values.values()])
    return dict(zip(values, accelerator.reduce(stacked, reduction="mean").tolist()))


def run(preset: str | None, config_file: Path | None, resume: Path | None, overrides: list[str], start_time: float) -> Path:
    """Train, evaluate and report; returns the run directory."""
    return train(preset, config_file, resume, overrides, start_time).run_dir


class TrainingStep(nn.Module):
    """The task's loss computed inside `forward`, the module handed to `accelerator.prepare`.

    DistributedDataParallel synchronises gradients only for work done inside its forward; tasks that call
    their model's parts (a VAE and its discriminator, a slot VAE refining both frames of a pair) would
    otherwise train unsynchronised copies on each rank, and mixed precision would not cover them. The
    state dict is the model's own, so checkpoints keep the model's keys.
    """

    def __init__(self, task: Task, model: nn.Module) -> None:
        super().__init__()
        self.task, self.model = task, model

    def forward(self, batch: PairBatch, step: int) -> tuple[torch.Tensor, dict]:
        return self.task.training_loss(self.model, batch, step)

    def state_dict(self, *args, **kwargs) -> dict:
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)


def train(preset: str | None, config_file: Path | None, resume: Path | None, overrides: list[str], start_time: float
          ) -> TrainResult:
    """The whole run on this process. Every process trains the same model on its share of the shards; only
    the main process writes files (config, logs, TensorBoard, checkpoints but each process's RNG state,
    metrics and pictures)."""
    config = resolve_config(preset, config_file, resume, overrides)
    task = make_task(config)
    state = PartialState(cpu=wants_cpu())
    check_launch(state)
    set_cpu_threads(state, config.train.cpu_threads)
    run_dir = decide_run_dir(state, config, preset, resume)
    accelerator = Accelerator(cpu=wants_cpu(), log_with="tensorboard", project_dir=str(run_dir),
                              step_scheduler_with_optimizer=False)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    set_seed(config.train.seed)

    with accelerator.main_process_first():
        train_urls, eval_urls, dataset = dataset_urls(config, progress=accelerator.is_main_process)
    data_seconds = time.time() - start_time

    model = task.build_model()
    optimizer = torch.optim.Adam(task.param_groups(model), lr=config.train.learning_rate)
    scheduler = warmup_exponential_decay(optimizer, config.train.warmup_steps, config.train.decay_steps)
    training_step, optimizer, scheduler = accelerator.prepare(TrainingStep(task, model), optimizer, scheduler)
    start_step = 0
    if resume is not None and list_checkpoints(run_dir):
        start_step = load_checkpoint(accelerator, list_checkpoints(run_dir)[-1])
    accelerator.init_trackers("tensorboard", config={k: str(v) for k, v in _flat(asdict(config)).items()})

    quick_eval = accelerator.is_main_process and config.train.eval_every > 0
    if quick_eval:
        task.prepare_quick_eval(eval_urls)

    log_path, eval_log_path = run_dir / "train_log.jsonl", run_dir / "eval_log.jsonl"
    if accelerator.is_main_process:
        for path in (log_path, eval_log_path):
            truncate_jsonl(path, start_step)
    stream = batch_stream(train_urls, config, accelerator, start_step)
    progress = tqdm(total=config.train.max_steps, initial=start_step, desc="training",
                    disable=not accelerator.is_main_process, dynamic_ncols=True)
    train_start = time.time()
    step = start_step
    while step < config.train.max_steps:
        loss, logs = training_step(next(stream).to(accelerator.device), step)
        accelerator.backward(loss)
        if config.train.grad_clip > 0:
            accelerator.clip_grad_norm_(training_step.parameters(), config.train.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        progress.update(1)
        final = step == config.train.max_steps or (
            config.train.time_limit_minutes is not None and step % config.train.log_every == 0
            and out_of_time(accelerator, start_time, config.train.time_limit_minutes))
        if step % config.train.log_every == 0 or final:
            scalars = mean_over_processes(accelerator, {"loss": loss, **{k: v for k, v in logs.items() if k != "loss"}})
            record = {"step": step, "loss": scalars.pop("loss"), "lr": scheduler.get_last_lr()[0], **scalars}
            progress.set_postfix(loss=f"{record['loss']:.4f}")
            accelerator.log({f"train/{key}": value for key, value in record.items() if key != "step"}, step=step)
            if accelerator.is_main_process:
                append_jsonl(log_path, record)
        if quick_eval and (step % config.train.eval_every == 0 or final):
            metrics = task.quick_eval(model)
            accelerator.log({f"eval/{key}": value for key, value in metrics.items()}, step=step)
            append_jsonl(eval_log_path, {"step": step, "seconds": time.time() - start_time, **metrics})
        if step % config.train.checkpoint_every == 0 or final:
            save_checkpoint(accelerator, run_dir, step, config.train.keep_checkpoints)
        if final:
            break
    progress.close()
    train_seconds = time.time() - train_start

    if accelerator.is_main_process:
        task.report(model, run_dir, eval_urls,
                    {"steps": step, "train_seconds": train_seconds, "data_seconds": data_seconds,
                     "resumed_from_step": start_step, "dataset": dataset, "start_time": start_time})
    accelerator.end_training()
    return TrainResult(run_dir, step, model)


def out_of_time(accelerator: Accelerator, start_time: float, minutes: float) -> bool:
    """Whether the run has used its wall-clock budget. A collective: every process stops at the same step
    once any of them is late, so data-parallel ranks never wait for a step another has skipped."""
    late = torch.tensor(float(time.time() - start_time >= minutes * 60), device=accelerator.device)
    return bool(accelerator.reduce(late, reduction="sum").item() > 0)


def _flat(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "generator_kwargs":
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
