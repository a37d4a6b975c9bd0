"""The training run: config -> data -> Accelerate loop -> checkpoints -> the task's evaluation and report."""
from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, TypeVar

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedDataParallelKwargs, broadcast_object_list, parse_flag_from_env, set_seed
from torch import nn
from tqdm.auto import tqdm

from data import PairBatch
from training.allocator import keep_freed_memory
from training.checkpoint import (NonFiniteWeightsError, ResumePoint, TrainerState, choose_resume_checkpoint,
                                 list_checkpoints, load_checkpoint, save_checkpoint)
from training.config import (DEFAULT_PRESET, ConfigError, RunConfig, build_config, load_yaml, parse_override,
                             read_yaml, run_sources, save_config)
from training.jsonl import append_jsonl, truncate_jsonl
from training.precision import resolve_mixed_precision
from training.resume_config import explicit_keys, flatten, resumed_config
from training.run_lock import RunLock, RunLockError
from training.schedule import learning_rate_schedule
from training.tasks import Task, make_task

T = TypeVar("T")

#: exit codes of train_slots.py beyond 0 (done) and 2 (bad settings, a busy run directory, no usable checkpoint)
EXIT_NONFINITE, EXIT_INTERRUPTED, EXIT_TERMINATED = 3, 130, 143


class TrainingStopped(Exception):
    """The run stopped before its report; the message is the one line to print, `exit_code` the status."""

    exit_code = 1

    def __init__(self, message: str, show: bool = True) -> None:
        super().__init__(message)
        self.show = show  # False on the other processes of a multi-process run: one line, not one per rank


class NonFiniteError(TrainingStopped):
    exit_code = EXIT_NONFINITE


class Interrupted(TrainingStopped):
    exit_code = EXIT_INTERRUPTED


class Terminated(TrainingStopped):
    exit_code = EXIT_TERMINATED


def resolve_config(preset: str | None, config_file: Path | None, resume: Path | None, overrides: list[str]) -> RunConfig:
    """Preset, then config file (each over its `base` chain), then overrides; a resumed run starts from its own
    saved config, and may change only what resume_config allows."""
    return resolve_run_config(preset, config_file, resume, overrides)[0]


def resolve_run_config(preset: str | None, config_file: Path | None, resume: Path | None, overrides: list[str]
                       ) -> tuple[RunConfig, list[str]]:
    """(config, changes applied to a resumed run's saved config as "key old -> new"). Reads files only, so a
    refused resume leaves the run directory untouched. On --resume, the settings asked for are the saved
    config with the overrides on top, or, with --preset/--config, that preset and file with the overrides."""
    override_values = [parse_override(text) for text in overrides]
    if resume is None:
        return build_config(run_sources(preset, config_file) + override_values), []
    if not (resume / "config.yaml").is_file():
        raise ConfigError(f"--resume {resume}: no config.yaml there, so it is not a run directory")
    saved_values = load_yaml(resume / "config.yaml")
    saved = build_config([saved_values])
    if preset is None and config_file is None:
        requested = build_config([saved_values] + override_values)
        explicit = explicit_keys(override_values)
    else:
        requested = build_config(run_sources(preset, config_file) + override_values)
        explicit = explicit_keys(override_values + ([read_yaml(config_file)] if config_file is not None else []))
    return resumed_config(saved, requested, explicit, str(resume))


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
    core idle; on the CPU, use every core this process may run on, shared between local processes, and keep
    freed memory in the process."""
    if state.device.type != "cpu":
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(requested or max(1, cores // local_processes))
    keep_freed_memory()  # steps reuse freed blocks instead of faulting fresh mappings in (training/allocator.py)


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


def mean_over_processes(accelerator: Accelerator, values: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Scalars averaged over every process (each saw its own part of the global batch). A collective:
    every process must call it at the same steps."""
    if not values:
        return {}
    stacked = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=accelerator.device).detach().reshape(())
                           for v in values.values()])
    return dict(zip(values, accelerator.reduce(stacked, reduction="mean").tolist()))


def run(preset: str | None, config_file: Path | None, resume: Path | None, overrides: list[str], start_time: float,
        resume_inexact: bool = False) -> Path:
    """Train, evaluate and report; returns the run directory."""
    return train(preset, config_file, resume, overrides, start_time, resume_inexact=resume_inexact).run_dir


def on_main(state: PartialState, action: Callable[[], T]) -> T:
    """`action` run on the main process only; its result, or its error, shared with every process, so that
    a refusal (a busy run directory, no intact checkpoint) stops every rank alike instead of leaving the
    others waiting at the next collective."""
    payload: list = [None]
    error: Exception | None = None
    if state.is_main_process:
        try:
            payload[0] = (None, action())
        except Exception as raised:  # shared before re-raising: the other ranks must not wait forever
            error = raised
            payload[0] = (type(raised) if isinstance(raised, (ConfigError, RunLockError)) else RuntimeError,
                          str(raised))
    if state.num_processes > 1:
        broadcast_object_list(payload)
    if error is not None:
        raise error
    error_type, value = payload[0]
    if error_type is not None:
        raise error_type(value)
    return value


def resume_command(run_dir: Path, num_processes: int) -> str:
    """The command that continues this run (config, steps and options come from the run directory)."""
    launcher = "accelerate launch" if num_processes > 1 else "python"
    return f"{launcher} train_slots.py --resume {shlex.quote(str(run_dir))}"


class StopRequest:
    """SIGTERM, what a scheduler sends before it kills a job: inside the loop it asks for a checkpoint at
    the end of the current step and a clean stop (every process agrees on the step, see step_verdict);
    outside the loop there is nothing new to save, so it stops at once. Also tracks the step, so that an
    interruption can say where the run stands and how to resume it."""

    def __init__(self, run_dir: Path, num_processes: int, main: bool) -> None:
        self.run_dir, self.num_processes, self.main = run_dir, num_processes, main
        self.requested, self.in_loop, self.step = False, False, 0
        self._previous: object = None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: object) -> None:
        if self.in_loop:
            self.requested = True
        else:
            raise Terminated(self.describe("terminated (SIGTERM)"), show=self.main)

    def describe(self, what: str) -> str:
        """One line: what happened, at which step, the checkpoint a resume starts from, the command."""
        checkpoints = list_checkpoints(self.run_dir)
        last = f"last checkpoint {checkpoints[-1].name}" if checkpoints else "no checkpoint yet"
        return f"{what} at step {self.step} ({last}): resume with: {resume_command(self.run_dir, self.num_processes)}"


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


def train(preset: str | None, config_file: Path | None, resume: Path | None, overrides: list[str], start_time: float,
          resume_inexact: bool = False) -> TrainResult:
    """The whole run on this process. Every process trains the same model on its share of the shards; only
    the main process writes files (config, logs, TensorBoard, checkpoints but each process's RNG state,
    metrics and pictures), and only while it holds the run directory's lock. Everything that can refuse the
    run (settings, a busy run directory, no intact checkpoint) is checked before the first write."""
    config, changes = resolve_run_config(preset, config_file, resume, overrides)
    task = make_task(config)
    state = PartialState(cpu=wants_cpu())
    check_launch(state)
    set_cpu_threads(state, config.train.cpu_threads)
    run_dir = decide_run_dir(state, config, preset, resume)
    lock = RunLock(run_dir)
    on_main(state, lock.acquire)
    stop = StopRequest(run_dir, state.num_processes, state.is_main_process)
    try:
        with stop:
            resume_point = None
            if resume is not None:
                resume_point = on_main(state, lambda: choose_resume_checkpoint(run_dir, state.num_processes,
                                                                               resume_inexact))
                if resume_point is not None and resume_point.step > config.train.max_steps:
                    raise ConfigError(f"--resume {run_dir}: train.max_steps={config.train.max_steps} is below the "
                                      f"step of the checkpoint to resume from ({resume_point.step})")
            return train_locked(config, task, run_dir, changes, resume_point, start_time, stop)
    except KeyboardInterrupt:
        raise Interrupted(stop.describe("interrupted"), show=state.is_main_process) from None
    finally:
        lock.release()


def retire_report(run_dir: Path) -> None:
    """A resumed run has no result until its report is written again: metrics.json of an earlier end moves
    aside (metrics.step_N.json), so a run that then fails leaves nothing that looks like its result."""
    report = run_dir / "metrics.json"
    if report.is_file():
        try:
            steps = int(json.loads(report.read_text()).get("steps", 0))
        except (ValueError, AttributeError):
            steps = 0
        aside = report.with_name(f"metrics.step_{steps}.json")
        os.replace(report, aside)
        print(f"resume: the earlier report moved to {aside.name}; metrics.json is written again at the end",
              file=sys.stderr)


def train_locked(config: RunConfig, task: Task, run_dir: Path, changes: list[str], resume_point: ResumePoint | None,
                 start_time: float, stop: StopRequest) -> TrainResult:
    """train() once the run directory is this run's and the checkpoint to resume from (if any) is chosen."""
    on_cpu = wants_cpu()
    mixed_precision = resolve_mixed_precision(config.train.mixed_precision, on_cpu)
    precision = {"mixed_precision": mixed_precision} if mixed_precision else {}
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if task.has_unused_parameters else []
    accelerator = Accelerator(cpu=on_cpu, log_with="tensorboard", project_dir=str(run_dir),
                              step_scheduler_with_optimizer=False, kwargs_handlers=handlers, **precision)
    main = accelerator.is_main_process
    if main:
        for line in [f"resume: {change}" for change in changes] + (resume_point.notes if resume_point else []):
            print(line, file=sys.stderr)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
        retire_report(run_dir)
    set_seed(config.train.seed)

    with accelerator.main_process_first():
        train_urls, eval_urls, dataset = task.datasets(progress=main)  # a damaged eval split fails now
    data_seconds = time.time() - start_time

    model = task.build_model()
    optimizer = torch.optim.Adam(task.param_groups(model), lr=config.train.learning_rate)
    scheduler = learning_rate_schedule(optimizer, config.train.lr_schedule, config.train.warmup_steps,
                                       config.train.decay_steps, config.train.max_steps)
    training_step, optimizer, scheduler = accelerator.prepare(TrainingStep(task, model), optimizer, scheduler)
    resumed = TrainerState(0)
    if resume_point is not None:
        resumed = load_checkpoint(accelerator, resume_point.path)
        stop.step = resumed.step
        if main and not resumed.has_seconds:
            print(f"note: checkpoint {resume_point.path} predates the kept training time: train_seconds will count "
                  "only the time from this resume", file=sys.stderr)
    accelerator.init_trackers("tensorboard", config={k: str(v) for k, v in flatten(asdict(config)).items()})
    try:
        step, train_seconds, skipped = train_steps(config, task, accelerator, training_step, optimizer, scheduler,
                                                   train_urls, eval_urls, run_dir, resumed, start_time, stop)
        if main:
            summary = {"steps": step, "train_seconds": train_seconds, "data_seconds": data_seconds,
                       "resumed_from_step": resumed.step, "dataset": dataset, "start_time": start_time}
            task.report(model, run_dir, eval_urls, {**summary, **({"nonfinite_steps": skipped} if skipped else {})})
    finally:
        accelerator.end_training()
    return TrainResult(run_dir, step, model)


def train_steps(config: RunConfig, task: Task, accelerator: Accelerator, training_step: nn.Module,
                optimizer: torch.optim.Optimizer, scheduler, train_urls: list[str], eval_urls: list[str], run_dir: Path,
                resumed: TrainerState, start_time: float, stop: StopRequest) -> tuple[int, float, int]:
    """The optimisation from `resumed` to train.max_steps (or the time limit, or SIGTERM); returns (steps
    done, training seconds of every part of the run, non-finite steps skipped). Raises NonFiniteError,
    without writing a checkpoint or a report, once more steps are non-finite than train.max_nonfinite_steps
    allows, and Terminated after checkpointing on SIGTERM."""
    train = config.train
    main = accelerator.is_main_process
    model = accelerator.unwrap_model(training_step).model
    quick_eval = main and train.eval_every > 0
    if quick_eval:
        task.prepare_quick_eval(eval_urls)
    log_path, eval_log_path = run_dir / "train_log.jsonl", run_dir / "eval_log.jsonl"
    if main:
        for path in (log_path, eval_log_path):
            truncate_jsonl(path, resumed.step)
    stream = task.train_batches(train_urls, resumed.step)
    progress = tqdm(total=train.max_steps, initial=resumed.step, desc="training", disable=not main, dynamic_ncols=True)
    train_start = time.time()
    step, skipped = resumed.step, resumed.nonfinite_steps
    stop.step, stop.in_loop = step, True

    def trainer_state() -> TrainerState:
        return TrainerState(step, resumed.train_seconds + time.time() - train_start, skipped)

    try:
        while step < train.max_steps:
            with accelerator.autocast():  # a no-op unless mixed precision is on
                loss, logs = training_step(next(stream).to(accelerator.device), step)
            accelerator.backward(loss)
            grad_norm = gradient_norm(accelerator, training_step, train.grad_clip)
            finite, terminate = step_verdict(accelerator, loss, grad_norm, stop.requested)
            if finite:
                optimizer.step()
            else:
                skipped += 1
                handle_nonfinite(accelerator, step + 1, loss, logs, grad_norm, skipped, train.max_nonfinite_steps,
                                 run_dir)
            step_scheduler(scheduler, finite)
            optimizer.zero_grad(set_to_none=True)
            step += 1
            stop.step = step
            progress.update(1)
            ending = step == train.max_steps or (
                not terminate and train.time_limit_minutes is not None and step % train.log_every == 0
                and out_of_time(accelerator, start_time, train.time_limit_minutes))
            if step % train.log_every == 0 or ending:
                scalars = mean_over_processes(accelerator, {"loss": loss, **{k: v for k, v in logs.items() if k != "loss"}})
                record = {"step": step, "loss": scalars.pop("loss"), "lr": scheduler.get_last_lr()[0], **scalars}
                progress.set_postfix(loss=f"{record['loss']:.4f}")
                accelerator.log({f"train/{key}": value for key, value in record.items() if key != "step"}, step=step)
                if main:
                    append_jsonl(log_path, record)
            if quick_eval and (step % train.eval_every == 0 or ending):
                metrics = task.quick_eval(model)
                accelerator.log({f"eval/{key}": value for key, value in metrics.items()}, step=step)
                append_jsonl(eval_log_path, {"step": step, "seconds": time.time() - start_time,
                                             "train_seconds": trainer_state().train_seconds, **metrics})
            if step % train.checkpoint_every == 0 or ending or terminate:
                checkpoint(accelerator, run_dir, trainer_state(), train.keep_checkpoints)
            if terminate:
                raise Terminated(f"terminated (SIGTERM) at step {step}: checkpoint step_{step:08d} saved; resume "
                                 f"with: {resume_command(run_dir, accelerator.num_processes)}", show=main)
            if ending:
                break
    finally:
        stop.in_loop = False
        progress.close()
    return step, trainer_state().train_seconds, skipped


def gradient_norm(accelerator: Accelerator, training_step: nn.Module, clip: float) -> torch.Tensor | None:
    """The total gradient norm as a device tensor (not read here). Clipping computes it anyway; without
    clipping, one fused norm over the gradients. None under fp16 loss scaling, whose scaler skips steps with
    infinite gradients by design (and then lowers the scale), so only the loss is checked there."""
    parameters = [p for p in training_step.parameters() if p.grad is not None]
    scaled = accelerator.scaler is not None
    if clip > 0:
        norm = accelerator.clip_grad_norm_(parameters, clip)
        if scaled or norm is not None:
            return None if scaled else norm
    if scaled or not parameters:
        return None
    grads = [p.grad for p in parameters]
    if hasattr(torch.nn.utils, "get_total_norm"):
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def step_verdict(accelerator: Accelerator, loss: torch.Tensor, grad_norm: torch.Tensor | None, stop_requested: bool
                 ) -> tuple[bool, bool]:
    """(loss and gradients finite, stop requested) as every process sees them: a collective, read from the
    device once per step (the one sync the check costs). Ranks average their gradients but not their losses,
    and a signal may reach one rank before another, so the flags are summed over processes (one small
    all-reduce) to make every rank skip, stop or checkpoint at the same step."""
    bad = ~torch.isfinite(loss.detach()).all()
    if grad_norm is not None:
        bad = bad | ~torch.isfinite(grad_norm)
    if accelerator.num_processes == 1:
        return not bool(bad), stop_requested
    flags = torch.stack([bad.float(), torch.tensor(float(stop_requested), device=bad.device)])
    nonfinite, stopping = accelerator.reduce(flags, reduction="sum").tolist()
    return nonfinite == 0, stopping > 0


def handle_nonfinite(accelerator: Accelerator, step: int, loss: torch.Tensor, logs: dict,
                     grad_norm: torch.Tensor | None, skipped: int, allowed: int, run_dir: Path) -> None:
    """A step whose loss or gradients are not finite: skipped with a warning while train.max_nonfinite_steps
    allows, else the run stops with one line naming the step and every loss part (a collective: every
    process takes this path at the same step)."""
    parts = mean_over_processes(accelerator, {"loss": loss, **{k: v for k, v in logs.items() if k != "loss"}})
    values = ", ".join(f"{key}={value:.6g}" for key, value in parts.items())
    if grad_norm is not None:
        values += f", gradient norm={float(grad_norm):.6g}"
    if skipped <= allowed:
        if accelerator.is_main_process:
            tqdm.write(f"warning: non-finite loss or gradient at step {step} ({values}): step skipped, no update "
                       f"({skipped} of train.max_nonfinite_steps={allowed})", file=sys.stderr)
        return
    checkpoints = list_checkpoints(run_dir)
    kept = f"last finite checkpoint {checkpoints[-1].name}" if checkpoints else "no checkpoint was written"
    raise NonFiniteError(f"error: non-finite loss or gradient at step {step} ({values}); non-finite steps: "
                         f"{skipped}, train.max_nonfinite_steps allows skipping {allowed}; stopped without a report; "
                         f"{kept}", show=accelerator.is_main_process)


def step_scheduler(scheduler, stepped: bool) -> None:
    """The schedule follows the step count, skipped steps included, so that a resumed run and one that
    skipped steps agree on the learning rate of every step; PyTorch warns about a scheduler step without
    an optimiser step, which here is deliberate."""
    if stepped:
        scheduler.step()
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scheduler.step()


def checkpoint(accelerator: Accelerator, run_dir: Path, state: TrainerState, keep: int) -> None:
    """save_checkpoint, with weights that turned non-finite (a finite loss and gradient notwithstanding)
    reported like a non-finite loss: never saved, the run stops without a report."""
    try:
        save_checkpoint(accelerator, run_dir, state.step, keep, state)
    except NonFiniteWeightsError as error:
        checkpoints = list_checkpoints(run_dir)
        kept = f"last finite checkpoint {checkpoints[-1].name}" if checkpoints else "no checkpoint was written"
        raise NonFiniteError(f"error: {error}; stopped without a report; {kept}",
                             show=accelerator.is_main_process) from None


def out_of_time(accelerator: Accelerator, start_time: float, minutes: float) -> bool:
    """Whether the run has used its wall-clock budget. A collective: every process stops at the same step
    once any of them is late, so data-parallel ranks never wait for a step another has skipped."""
    late = torch.tensor(float(time.time() - start_time >= minutes * 60), device=accelerator.device)
    return bool(accelerator.reduce(late, reduction="sum").item() > 0)
