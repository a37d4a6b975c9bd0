"""Every command in the docs runs, at smoke size.

The commands are extracted from the fenced ```bash blocks of README.md and docs/**/*.md (backslash
continuations joined, `&&` chains split, `pip install` skipped, `NAME="..."` lines substituted into the
commands after them). SMOKE below maps each command's program (`train_slots.py`, a module such as
`eval.slot_sweep`, `python -c`, `pytest`) to how it runs at smoke size: the same program and arguments with
tiny data and models, placeholders such as `runs/<name>` replaced by a run trained once per module, input
files (a dSprites .npz, DeepMind TFRecords, weights) written by the converter tests' fixture helpers. A
command whose program has no entry fails, naming the doc and the command: a new command in the docs needs a
smoke mapping here. Every command runs as its own process in a scratch workspace, two at a time
(DOCS_COMMANDS_TIMES=1 prints the seconds each took).

Most of a smoke command's time is the interpreter importing torch and the project (~2.5 s of ~4). With
DOCS_COMMANDS_FORKSERVER=1 a `python ...` command runs instead in a child forked from a fork server that has
imported them once (ForkServer below): a process of its own, with the command's argv, working directory,
environment and exit status, run as `python` runs it (runpy, then the atexit handlers); about 3x faster. It is
opt-in: forking a process that has imported torch is not guaranteed safe, and one such child exited with
status 255 after finishing its work, so by default every command is a fresh interpreter.
"""
from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.forkserver
import os
import re
import runpy
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
WORKERS = 2  # commands run side by side; each training run uses one thread
TIMEOUT_S = 300  # per command


# --- extraction ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DocCommand:
    doc: str  # path relative to the repository
    line: int  # first line of the command in the doc
    text: str  # as written, continuations joined
    env: tuple[tuple[str, str], ...]  # leading NAME=value assignments
    launcher: str  # "python", "accelerate", "torchrun" or the program itself
    launcher_options: tuple[str, ...]  # e.g. accelerate launch's --config_file FILE
    program: str  # the SMOKE key: a script, a module, "python -c", "pytest"
    args: tuple[str, ...]  # what follows the program

    @property
    def key(self) -> tuple:
        """What runs: the same command in two places runs once."""
        return self.env, self.launcher, self.launcher_options, self.program, self.args

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line} {self.program}"

    def where(self) -> str:
        return f"{self.doc}:{self.line}: `{self.text}`"


ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def bash_blocks(path: Path) -> list[list[tuple[int, str]]]:
    """The ```bash blocks of a Markdown file: (line number, logical line) pairs, continuations joined."""
    blocks, current, pending, start = [], None, "", 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if current is None:
            if stripped == "```bash":
                current = []
            continue
        if stripped == "```":
            blocks.append(current)
            current, pending = None, ""
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        current.append((start, pending + line))
        pending = ""
    return blocks


def parse_command(doc: str, line: int, tokens: list[str], text: str) -> DocCommand:
    env = []
    while tokens and ASSIGNMENT.match(tokens[0]):
        name, value = tokens.pop(0).split("=", 1)
        env.append((name, value))
    launcher, options, program, args = tokens[0], (), tokens[0], tuple(tokens[1:])
    if tokens[0] in ("python", "python3"):
        launcher = "python"
        if tokens[1] == "-m":
            program, args = tokens[2], tuple(tokens[3:])
        elif tokens[1] == "-c":
            program, args = "python -c", tuple(tokens[2:])
        else:
            program, args = tokens[1], tuple(tokens[2:])
    elif tokens[:2] == ["accelerate", "launch"] or tokens[0] == "torchrun":
        launcher = tokens[0]
        rest = tokens[2:] if launcher == "accelerate" else tokens[1:]
        script = next((i for i, token in enumerate(rest) if token.endswith(".py")), None)
        if script is not None:
            options, program, args = tuple(rest[:script]), rest[script], tuple(rest[script + 1:])
    return DocCommand(doc, line, text, tuple(env), launcher, options, program, args)


def extract_commands(path: Path, root: Path = ROOT) -> list[DocCommand]:
    doc = path.relative_to(root).as_posix()
    commands = []
    for block in bash_blocks(path):
        variables: dict[str, str] = {}
        for line, text in block:
            expanded = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                              lambda m: variables.get(m.group(1), m.group(0)), text)
            tokens = shlex.split(expanded, comments=True)
            if not tokens:
                continue
            if all(ASSIGNMENT.match(token) for token in tokens):  # NAME="..." on its own: a shell variable
                variables.update(token.split("=", 1) for token in tokens)
                continue
            shown = " ".join(re.split(r"\s#\s", text)[0].split())  # without a trailing comment
            chain, part = [], []
            for token in tokens + ["&&"]:
                if token == "&&":
                    chain.append(part)
                    part = []
                else:
                    part.append(token)
            for part in chain:
                if part[:2] == ["pip", "install"]:
                    continue
                unset = [token for token in part if "$" in token]
                command = parse_command(doc, line, part, shown)
                if unset:
                    raise ValueError(f"{command.where()}: unset shell variable in {unset}")
                commands.append(command)
    return commands


COMMANDS = [command for path in DOC_FILES for command in extract_commands(path)]


# --- the workspace every command runs in ------------------------------------------------------------------

@dataclass
class Invocation:
    argv: list[str]
    cwd: Path | None = None  # default: the workspace
    env: dict[str, str] = field(default_factory=dict)
    expect: list[Path] = field(default_factory=list)  # files the command must leave


@dataclass
class Skip:
    reason: str


class Workspace:
    """A scratch directory with the repository's entry points linked in, shared by the commands of one test
    module; inputs that commands read (shards, runs, files) are made on first use, once, under a lock."""

    def __init__(self, root: Path):
        self.root = root
        for name in ("train_slots.py", "accelerate_config.yaml"):
            (root / name).symlink_to(ROOT / name)
        self._locks: dict[object, threading.Lock] = {}
        self._guard = threading.Lock()
        self._done: set[object] = set()
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                    "HF_HOME": str(root / "hf_home"), "MPLBACKEND": "Agg"}  # no user Accelerate config
        self.fork_server: ForkServer | None = None

    def once(self, key: object, make: Callable[[], object]) -> None:
        """Run `make` the first time `key` is asked for; later callers wait for it."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._done:
                make()
                self._done.add(key)

    @property
    def ran(self) -> set:
        return {key[1] for key in self._done if isinstance(key, tuple) and key[0] == "ran"}

    def run(self, invocation: Invocation, what: str) -> subprocess.CompletedProcess:
        cwd, env = invocation.cwd or self.root, {**self.env, **invocation.env}
        if self.fork_server is not None and ForkServer.runs(invocation.argv):
            result = self.fork_server.run(invocation.argv, cwd, env, self.root / "logs")
        else:
            result = subprocess.run(invocation.argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                    text=True, timeout=TIMEOUT_S)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-3000:]
            raise CommandFailed(f"{what}\nran: {shlex.join(invocation.argv)}\nexit code {result.returncode}\n{tail}")
        missing = [str(path) for path in invocation.expect if not path.exists()]
        if missing:
            raise CommandFailed(f"{what}\nran: {shlex.join(invocation.argv)}\nexit code 0 but missing: {missing}")
        return result

    def slug(self, command: DocCommand) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "-", f"{Path(command.doc).stem}-{command.line}-{command.program}").strip("-")


class CommandFailed(AssertionError):
    pass


# --- the fork server: `python ...` commands without the interpreter's start-up ---------------------------

#: what every smoke command imports, loaded once by the fork server (the entry modules themselves are not:
#: each command runs its own module as __main__, as `python -m` does)
PRELOAD = ["torch", "torch._dynamo", "torch.utils.tensorboard", "numpy", "scipy.optimize", "sklearn.ensemble",
           "matplotlib.pyplot", "timm", "accelerate", "webdataset", "data", "slots", "weak_supervision", "scoring",
           "viz", "metrics.disentanglement", "training.loop", "training.tasks", "eval.run_loading", "studies.runner"]


def run_as_python(argv: list[str], cwd: str, env: dict[str, str], log: str) -> None:
    """In a child of the fork server: `argv` (`python -m MODULE ...`, `python -c CODE ...` or `python SCRIPT
    ...`) run as the interpreter runs it, in `cwd` with exactly `env`, stdout and stderr into `log`. Its exit
    status is the command's: SystemExit's code, 1 on an uncaught exception (multiprocessing's rules are
    Python's)."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    with open(log, "w") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    flag, *args = argv[1:]
    try:
        if flag == "-m":
            sys.path.insert(0, cwd)
            sys.argv = list(args)  # runpy puts the module's file first
            runpy.run_module(args[0], run_name="__main__", alter_sys=True)
        elif flag == "-c":
            sys.path.insert(0, "")
            sys.argv = ["-c", *args[1:]]
            exec(compile(args[0], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.path.insert(0, os.path.dirname(os.path.realpath(flag)))  # a script's directory, links resolved
            sys.argv = [flag, *args]
            runpy.run_path(flag, run_name="__main__")
    finally:
        atexit._run_exitfuncs()  # what the interpreter runs at exit; a forked child ends with os._exit
        sys.stdout.flush()
        sys.stderr.flush()


class ForkServer:
    """Starts `python ...` commands as children of multiprocessing's fork server, which has imported PRELOAD
    once, with the workspace's environment: each command is still a process of its own (its own memory,
    working directory, environment and exit status), without the ~2.5 s of imports a fresh interpreter
    would spend."""

    def __init__(self, env: dict[str, str]):
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload([*PRELOAD, __name__])
        self._count = 0
        self._guard = threading.Lock()
        saved = dict(os.environ)
        os.environ.update(env)  # the server, and what it imports, see the workspace's environment
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    @staticmethod
    def runs(argv: list[str]) -> bool:
        """Whether `argv` is a `python` command run_as_python understands."""
        return (len(argv) >= 2 and argv[0] == sys.executable
                and (argv[1] in ("-m", "-c") and len(argv) >= 3 or argv[1].endswith(".py")))

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], logs: Path) -> subprocess.CompletedProcess:
        with self._guard:
            self._count += 1
            log = logs / f"{self._count:03d}.log"
        logs.mkdir(exist_ok=True)
        child = self.context.Process(target=run_as_python, args=(argv, str(cwd), env, str(log)))
        child.start()
        child.join(TIMEOUT_S)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(argv, TIMEOUT_S)
        output = log.read_text(errors="replace") if log.exists() else ""
        return subprocess.CompletedProcess(argv, child.exitcode, output, "")


# --- smoke sizes ------------------------------------------------------------------------------------------

def smoke_sizes() -> dict[str, list[str]]:
    """Per task, the model and data sizes of the existing tests' tiny runs."""
    from test_set_prediction import TINY
    from test_slot_pairs import SMOKE_SIZES
    from test_vae_task import TINY_METRICS

    def keep(values, *prefixes):
        return [value for value in values if value.startswith(prefixes)]

    discovery = keep(SMOKE_SIZES, "data.resolution", "model.")
    return {
        "discovery": discovery,
        "weak_slots": [*discovery, *keep(SMOKE_SIZES, "weak_slots.")],
        "set_prediction": keep(TINY, "data.resolution", "model.", "set_prediction."),
        "vae": [*TINY_METRICS, "vae.quick_mig_points=64"],
        "dinosaur": ["data.resolution=16", "backbone.name=test_vit.r160_in1k", "backbone.image_size=64",
                     "model.num_slots=4", "model.slot_dim=16", "model.mlp_hidden_dim=32", "model.encoder_channels=16",
                     "dinosaur.decoder_hidden_dim=32", "dinosaur.decoder_layers=2"],
        "orientation": ["orientation.voxel_size=16", "orientation.width=8", "orientation.eval_objects=8",
                        "orientation.consistency_objects=2"],
    }


#: Extra sizes of one preset, after its task's.
PRESET_SIZES = {"set_prediction_attention": ["set_prediction.encoder_strides=[1, 2]"]}

#: The budget of every smoke training run: always applied, after the doc's own values.
BUDGET = ["train.max_steps=2", "train.warmup_steps=1", "train.decay_steps=1000", "train.batch_size=4",
          "train.batches_per_epoch=2", "train.log_every=1", "train.eval_every=0", "train.eval_images=8",
          "train.checkpoint_every=2", "train.time_limit_minutes=null", "train.cpu_threads=1", "eval.batch_size=8",
          "eval.num_visualise=1", "eval.sweep_slots=[2]", "data.num_train=16", "data.num_eval=4",
          "data.pairs_per_shard=4", "data.shuffle_buffer=8"]


def preset_values(preset: str) -> dict:
    from training.config import load_yaml, preset_path

    return load_yaml(preset_path(preset))


def option(args: list[str] | tuple[str, ...], name: str) -> str | None:
    args = list(args)
    return args[args.index(name) + 1] if name in args[:-1] else None


def replace_option(args: list[str], name: str, value: str) -> list[str]:
    args = list(args)
    if name in args:
        args[args.index(name) + 1] = value
        return args
    return [*args, name, value]


def training_args(ws: Workspace, preset: str, doc_args: list[str], name: str) -> list[str]:
    """The doc's arguments with the task's smoke sizes (where the doc does not set the key) and the budget."""
    values = preset_values(preset)
    task = values.get("task", "discovery")
    overrides = [arg for arg in doc_args if not arg.startswith("-") and "=" in arg]
    keys = {arg.split("=", 1)[0] for arg in overrides}
    sizes = [*smoke_sizes()[task], *PRESET_SIZES.get(preset, [])]
    if "data.train_shards" in keys or values.get("data", {}).get("generator", "multi_dsprites") != "multi_dsprites":
        sizes = [size for size in sizes if not size.startswith("data.")]  # the shards' or generator's resolution
    sizes = [size for size in sizes if size.split("=", 1)[0] not in keys]
    return [*doc_args, *sizes, *BUDGET, f"data.root={ws.root / 'data_cache' / name}",
            f"output_dir={ws.root / 'runs'}", f"name={name}"]


def launch(ws: Workspace, command: DocCommand, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """How the script starts: the real `accelerate launch` for the README's commands and for an explicit
    --config_file (one process, so the same as python), torchrun as `python -m torch.distributed.run`
    on a free port, `python` for the rest."""
    if command.launcher == "accelerate" and (command.doc == "README.md" or "--config_file" in command.launcher_options):
        return [sys.executable, "-m", "accelerate.commands.launch", *command.launcher_options, "train_slots.py",
                *args], dict(command.env)
    if command.launcher == "torchrun":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return [sys.executable, "-m", "torch.distributed.run", *command.launcher_options, f"--master-port={port}",
                "train_slots.py", *args], dict(command.env)
    return [sys.executable, "train_slots.py", *args], dict(command.env)


# --- inputs the doc commands read: made by the doc commands that write them, or by the tests' fixtures ------

def producers_of(directory: str) -> list[DocCommand]:
    out_options = {"data.make_shards": "--out-dir", "data.convert_dsprites": "--out", "data.convert_mod": "--out",
                   "data.from_images": "--out"}
    return [c for c in COMMANDS if c.program in out_options and option(c.args, out_options[c.program]) == directory]


def ensure_shards(ws: Workspace, pattern: str, what: str) -> None:
    """Shards named by a doc command (`shards/NAME/...`) exist: the doc commands that write them have run."""
    match = re.search(r"(shards/[^/]+)/", pattern)
    if match is None:
        return
    directory = match.group(1)
    producers = producers_of(directory)
    if not producers:
        raise CommandFailed(f"{what}: reads {directory}, which no command of the docs writes")
    for producer in producers:
        ws.once(("ran", producer.key), lambda p=producer: ws.run(SMOKE[p.program](ws, p), p.where()))


def local_urls(ws: Workspace, value: str, what: str) -> str:
    """Shard URLs (S3 through `pipe:aws s3 cp`, HTTP) read the same shard names from the workspace instead,
    through `pipe:cat`; every brace-expanded name exists (missing ones link to a shard of the same split)."""
    import braceexpand

    local = re.sub(r"^pipe:aws s3 cp s3://[^/]+/(\S+) -$", r"pipe:cat shards/\1", value)
    local = re.sub(r"^https?://[^/]+/(\S+)$", r"pipe:cat shards/\1", local)
    if local == value:
        return value
    path = local.removeprefix("pipe:cat ")
    ensure_shards(ws, path, what)
    for name in braceexpand.braceexpand(path):
        target = ws.root / name
        if not target.exists():
            split = target.name.split("-")[0]
            target.symlink_to(sorted(target.parent.glob(f"{split}-*.tar"))[0])
    return local


def ensure_npz(ws: Workspace, name: str) -> None:
    from test_dsprites import write_npz

    ws.once(f"npz {name}", lambda: (ws.root / name).exists() or write_npz(ws.root / name))


def ensure_weights(ws: Workspace, name: str) -> None:
    """The weights file the dinosaur command reads, written by the doc's `python -c` command."""
    savers = [c for c in COMMANDS if c.program == "python -c" and name in " ".join(c.args)]
    if not savers:
        raise CommandFailed(f"weights file {name}: no command of the docs writes it")
    ws.once(("ran", savers[0].key), lambda: ws.run(SMOKE["python -c"](ws, savers[0]), savers[0].where()))


class Runs:
    """Finished runs for the commands that read `runs/<name>`: one per task, trained once per module, copied
    for each command (commands write into the run they read)."""

    PRESETS = {"discovery": "smoke", "weak_slots": "weak_slots", "vae": "dsprites_vae",
               "set_prediction": "set_prediction", "orientation": "voxel_orientation"}

    def __init__(self, ws: Workspace):
        self.ws = ws

    def copy(self, kind: str, command: DocCommand) -> Path:
        source = self.ws.root / "fixture_runs" / kind
        self.ws.once(f"run {kind}", lambda: self.ws.run(Invocation(
            [sys.executable, "train_slots.py", "--preset", self.PRESETS[kind],
             *training_args(self.ws, self.PRESETS[kind], [], kind)[:-2],
             f"output_dir={source.parent}", f"name={kind}"], expect=[source / "metrics.json"]),
            f"the {kind} run for runs/<name>"))
        target = self.ws.root / "runs" / self.ws.slug(command)
        shutil.copytree(source, target)
        return target


# --- the smoke mapping: program -> how it runs -----------------------------------------------------------

def run_placeholder(ws: Workspace, command: DocCommand, kind: str) -> list[str]:
    """The doc's arguments with `runs/<name>` replaced by a copy of a finished run of `kind`."""
    run = Runs(ws).copy(kind, command)
    return [str(run) if arg == "runs/<name>" else arg for arg in command.args]


def smoke_train(ws: Workspace, command: DocCommand) -> Invocation | Skip:
    if "--multi_gpu" in command.launcher_options:
        return Skip("needs several GPUs (this machine has none); a multi-GPU launch without GPUs is refused")
    args = list(command.args)
    name = ws.slug(command)
    if "--resume" in args:
        run = Runs(ws).copy("discovery", command)
        args = [str(run) if arg == "runs/<name>" else arg for arg in args]
        argv, env = launch(ws, command, [*args, "train.max_steps=4"])
        return Invocation(argv, env=env, expect=[run / "checkpoints" / "step_00000004"])
    config = option(args, "--config")
    if config is not None and not (ws.root / config).exists():
        (ws.root / config).write_text("train:\n  learning_rate: 4.0e-4\n")
    for index, arg in enumerate(args):
        key, _, value = arg.partition("=")
        if key in ("data.train_shards", "data.eval_shards"):
            args[index] = f"{key}={local_urls(ws, value, command.where())}"
            ensure_shards(ws, args[index], command.where())
        elif key == "vae.npz":
            ensure_npz(ws, value)
        elif key == "backbone.weights":
            ensure_weights(ws, value)
    argv, env = launch(ws, command, training_args(ws, option(args, "--preset") or "default", args, name))
    return Invocation(argv, env=env, expect=[ws.root / "runs" / name / "metrics.json"])


def smoke_eval(kind: str, writes: str | None = None) -> Callable[[Workspace, DocCommand], Invocation]:
    def handler(ws: Workspace, command: DocCommand) -> Invocation:
        args = run_placeholder(ws, command, kind)
        run = Path(option(args, "--run"))
        if writes:
            (run / writes).unlink(missing_ok=True)
        return Invocation([sys.executable, "-m", command.program, *args], expect=[run / writes] if writes else [])
    return handler


def smoke_per_object(ws: Workspace, command: DocCommand) -> Invocation:
    args = [*run_placeholder(ws, command, "weak_slots"), "--max-images", "16"]
    run = Path(option(args, "--run"))
    expect = [run / "object_readout.json", run / "object_codes.json"] if "--readout" in args else [run / "metrics.json"]
    return Invocation([sys.executable, "-m", command.program, *args], expect=expect)


def smoke_few_labels(ws: Workspace, command: DocCommand) -> Invocation:
    """The doc's label counts give way to small ones (the forest needs only a handful of points here)."""
    args = run_placeholder(ws, command, "vae")
    if "--labels" in args:
        start = end = args.index("--labels")
        while end + 1 < len(args) and not args[end + 1].startswith("--"):
            end += 1
        del args[start:end + 1]
    run = Path(option(args, "--run"))
    return Invocation([sys.executable, "-m", command.program, *args, "--labels", "20", "--draws", "2"],
                      expect=[run / "metrics.json"])


def smoke_make_shards(ws: Workspace, command: DocCommand) -> Invocation:
    args = replace_option(replace_option(list(command.args), "--num-pairs", "8"), "--pairs-per-shard", "4")
    out = ws.root / option(args, "--out-dir")
    split = option(args, "--split") or "train"
    return Invocation([sys.executable, "-m", command.program, *args, "--num-workers", "1", "--no-progress"],
                      expect=[out / f"{split}-000000.tar"])


def smoke_convert_dsprites(ws: Workspace, command: DocCommand) -> Invocation:
    ensure_npz(ws, option(command.args, "--npz"))
    args = list(command.args)
    for name, value in (("--num-train", "16"), ("--num-eval", "4"), ("--pairs-per-shard", "4")):
        args = replace_option(args, name, value)
    return Invocation([sys.executable, "-m", command.program, *args, "--no-progress"],
                      expect=[ws.root / option(args, "--out") / "manifest.json"])


def smoke_convert_mod(ws: Workspace, command: DocCommand) -> Invocation:
    """The converter on a TFRecord in the original schema written by the converter tests' helpers: random
    scenes (CLEVR with at most --max-objects visible objects), six where a doc command trains on the shards,
    else three (a CLEVR scene is 240x320 pixels: most of this command's time is writing and reading them)."""
    import numpy as np
    from test_convert_mod import ORIGINAL, make_scene, record_of, write_tfrecord

    dataset, tfrecord = option(command.args, "--dataset"), option(command.args, "--tfrecord")
    entities = ORIGINAL[dataset][3]
    max_objects = option(command.args, "--max-objects")
    nulls = tuple(range(int(max_objects) + 1, entities)) if max_objects else ()
    out = option(command.args, "--out")
    read = any(f"{out}/" in " ".join(c.args) for c in COMMANDS if c.program == "train_slots.py")
    num_train, num_eval = (4, 2) if read else (2, 1)

    def write() -> None:
        rng = np.random.default_rng(0)
        scenes = [record_of(dataset, make_scene(dataset, rng, nulls)) for _ in range(num_train + num_eval)]
        write_tfrecord(ws.root / tfrecord, scenes)

    ws.once(f"tfrecord {tfrecord}", write)
    args = list(command.args)
    for name, value in (("--num-train", str(num_train)), ("--num-eval", str(num_eval)),
                        ("--pairs-per-shard", str(num_eval))):
        args = replace_option(args, name, value)
    return Invocation([sys.executable, "-m", command.program, *args, "--workers", "1", "--no-progress"],
                      expect=[ws.root / option(args, "--out") / "manifest.json"])


def smoke_convert_modelnet(ws: Workspace, command: DocCommand) -> Invocation:
    """The converter on a ModelNet10-shaped tree of hand-written boxes (the voxel tests' fixture), one mesh
    per class and split named by the command."""
    from test_voxels import _box, _off

    root = ws.root / option(command.args, "--root")
    classes = (option(command.args, "--classes") or "chair").split(",")
    for index, name in enumerate(classes):
        for split in ("train", "test"):
            (root / name / split).mkdir(parents=True, exist_ok=True)
            (root / name / split / f"{name}_0001.off").write_text(_off(*_box((2.0, 1.0 + index, 1.0))))
    args = replace_option(list(command.args), "--size", "16")
    return Invocation([sys.executable, "-m", command.program, *args, "--no-progress"],
                      expect=[ws.root / option(args, "--out") / "manifest.json"])


def ensure_frames(ws: Workspace, images: str) -> None:
    """A user's folder of frames named by a doc command: the moving squares of the own-images tests."""
    from test_own_images import moving_squares

    folder = ws.root / images.rstrip("/")
    ws.once(f"frames {folder}", lambda: folder.exists() or moving_squares(folder))


def ensure_video(ws: Workspace, name: str) -> None:
    """A user's video named by a doc command: the from_images tests' lossless clip of a moving square."""
    from test_from_images import moving_square, write_video

    path = ws.root / name

    def write() -> None:
        if not path.exists():  # FFmpeg reads the container from the bytes, whatever the suffix
            write_video(path.with_suffix(""), moving_square()).rename(path)

    ws.once(f"video {path}", write)


def smoke_from_images(ws: Workspace, command: DocCommand) -> Invocation:
    images, video = option(command.args, "--images"), option(command.args, "--video")
    if images is not None:
        ensure_frames(ws, images)
    if video is not None:
        ensure_video(ws, video)
    return Invocation([sys.executable, "-m", command.program, *command.args, "--no-progress"],
                      expect=[ws.root / option(command.args, "--out") / "manifest.json"])


def smoke_segment(ws: Workspace, command: DocCommand) -> Invocation:
    args = run_placeholder(ws, command, "discovery")
    ensure_frames(ws, option(args, "--images"))
    out = ws.root / "segments" / ws.slug(command)
    args = replace_option(args, "--out", str(out))
    return Invocation([sys.executable, "-m", command.program, *args, "--no-progress"],
                      expect=[out / "segments.jsonl"])


def smoke_study(ws: Workspace, command: DocCommand) -> Invocation:
    """A study summarises what has finished (`--finished-only`: no training) into a scratch copy of its
    folder, so the repository's results are never written."""
    out = ws.root / "study_out" / ws.slug(command)
    source = ROOT / option(command.args, "--out")
    if source.is_dir() and source.is_relative_to(ROOT / "results"):
        shutil.copytree(source, out)
    args = replace_option(list(command.args), "--out", str(out))
    return Invocation([sys.executable, "-m", command.program, *args,
                       *([] if "--finished-only" in args else ["--finished-only"])])


def smoke_property_ceiling(ws: Workspace, command: DocCommand) -> Invocation:
    out = ws.root / "study_out" / ws.slug(command)
    args = replace_option(list(command.args), "--out", str(out))
    for name, value in (("--train-pairs", "24"), ("--test-pairs", "4"), ("--epochs", "1")):  # a batch: 128 objects
        args = replace_option(args, name, value)
    return Invocation([sys.executable, "-m", command.program, *args], expect=[out / "property_ceiling.json"])


def smoke_bench(*extra: str) -> Callable[[Workspace, DocCommand], Invocation]:
    def handler(ws: Workspace, command: DocCommand) -> Invocation:
        args = list(command.args)
        for name in ("--steps", "--rounds"):  # the doc's counts give way to the smallest
            if name in args:
                del args[args.index(name):args.index(name) + 2]
        values = [value.replace("{ws}", str(ws.root)) for value in extra]
        return Invocation([sys.executable, "-m", command.program, *args, *values])
    return handler


def smoke_save_weights(ws: Workspace, command: DocCommand) -> Invocation | Skip:
    """The doc saves the DINO ViT-S/16 weights downloaded by timm; here timm's tiny random ViT stands in for
    it (no download), saved the same way under the same file name."""
    code = command.args[0]
    tiny = code.replace("timm.create_model('vit_small_patch16_224.dino', pretrained=True)",
                        "timm.create_model('test_vit.r160_in1k', pretrained=False)")
    if tiny == code:
        raise CommandFailed(f"{command.where()}: no smoke form for this `python -c` command")
    return Invocation([sys.executable, "-c", tiny])


def smoke_pytest(ws: Workspace, command: DocCommand) -> Invocation:
    """The suite itself, collected only: running it from inside itself would recurse."""
    return Invocation([sys.executable, "-m", "pytest", *command.args, "--collect-only", "-q", "-p", "no:cacheprovider"],
                      cwd=ROOT)


TINY_BENCH_MODEL = ("data.resolution=16", "model.slot_dim=16", "model.mlp_hidden_dim=16", "model.encoder_channels=8",
                    "train.batch_size=2")
SMOKE: dict[str, Callable[[Workspace, DocCommand], Invocation | Skip]] = {
    "train_slots.py": smoke_train,
    "eval.slot_sweep": smoke_eval("discovery", "slot_sweep.csv"),
    "eval.set_prediction": smoke_eval("set_prediction", "set_prediction_sweep.csv"),
    "eval.disentangle": smoke_eval("vae"),
    "eval.per_object": smoke_per_object,
    "eval.few_labels": smoke_few_labels,
    "eval.orientation": smoke_eval("orientation", "metrics.json"),
    "data.make_shards": smoke_make_shards,
    "data.convert_dsprites": smoke_convert_dsprites,
    "data.convert_mod": smoke_convert_mod,
    "data.convert_modelnet": smoke_convert_modelnet,
    "data.from_images": smoke_from_images,
    "eval.segment": smoke_segment,
    "bench.image_sizes": smoke_bench("--resolutions", "16", "32", "--steps", "1", "--images", "2"),
    "bench.slot_orientation": smoke_bench("--preset", "smoke", "--angles", "4", "--refine", "0", "1", "--steps", "1",
                                          "--images", "2", "model.slot_frames=translation_isotropic"),
    "studies.orientation": smoke_study,
    "bench.orientation_search": smoke_bench("--steps", "1", "--rounds", "1", "--size", "16", "--resolution", "16",
                                            "--width", "8", "--batch", "2", "--threads", "1"),
    "studies.weak_slots": smoke_study,
    "studies.weak_vae": smoke_study,
    "studies.discovery_ablation": smoke_study,
    "studies.property_ceiling": smoke_property_ceiling,
    "bench.speed": smoke_bench("--resolution", "16", "--steps", "1", "--ari-images", "50"),
    "bench.time_to_quality": smoke_bench("--preset", "smoke", "--output-dir", "{ws}/bench_results", "--eval-every",
                                         "2", "data.root={ws}/data_cache/time_to_quality", "train.max_steps=2",
                                         "train.cpu_threads=1", "train.eval_images=8", "eval.sweep_slots=[2]",
                                         "data.num_train=16", "data.num_eval=4"),
    "bench.weak_slots": smoke_bench("--steps", "1", "--rounds", "1", *TINY_BENCH_MODEL),
    "bench.allocator": smoke_bench("--cases", "discovery_64", "--steps", "1", "--rounds", "1", *TINY_BENCH_MODEL),
    "bench.time_to_disentanglement": smoke_bench("--minutes", "5", "--eval-every", "2", "--dci-points", "40",
                                                 "--output-dir", "{ws}/bench_results",
                                                 "data.root={ws}/data_cache/time_to_disentanglement",
                                                 "data.num_train=16", "data.num_eval=4", "data.pairs_per_shard=4",
                                                 "train.max_steps=2", "train.batch_size=4", "train.cpu_threads=1",
                                                 "train.eval_images=8", "vae.quick_mig_points=64",
                                                 "vae.metrics=[mig, dci]", "vae.metric_sizes={mig_num_train: 100, "
                                                 "dci_num_train: 100, dci_num_test: 50}"),
    "bench.set_prediction": smoke_bench("--steps", "1", "--rounds", "1", "data.resolution=16",
                                        "model.encoder_channels=8", "model.encoder_layers=2",
                                        "model.decoder_channels=8", "set_prediction.glimpse_size=7",
                                        "train.batch_size=2"),
    "python -c": smoke_save_weights,
    "pytest": smoke_pytest,
}


# --- running ---------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    skipped: str | None = None
    failure: str | None = None


def run_command(ws: Workspace, command: DocCommand) -> Outcome:
    import time
    start = time.time()
    outcome = _run_command(ws, command)
    if os.environ.get("DOCS_COMMANDS_TIMES"):
        print(f"[docs-commands] {time.time() - start:6.1f} s {command.id} "
              f"{'FAILED' if outcome.failure else 'skipped' if outcome.skipped else 'ok'}", file=sys.stderr, flush=True)
    return outcome


def _run_command(ws: Workspace, command: DocCommand) -> Outcome:
    handler = SMOKE.get(command.program)
    if handler is None:
        return Outcome(failure=f"{command.where()}: no smoke mapping for program {command.program!r}; add one to "
                               "SMOKE in tests/test_docs_commands.py")
    try:
        if command.key in ws.ran:  # the same command elsewhere in the docs: it ran there
            return Outcome()
        invocation = handler(ws, command)
        if isinstance(invocation, Skip):
            return Outcome(skipped=f"{command.where()}: {invocation.reason}")
        same = ("argv", tuple(invocation.argv), str(invocation.cwd))  # two doc commands, one smoke form
        ws.once(("ran", command.key), lambda: ws.once(same, lambda: ws.run(invocation, command.where())))
    except CommandFailed as error:
        return Outcome(failure=str(error))
    except Exception:  # a bug in a smoke mapping: say which command it was for
        return Outcome(failure=f"{command.where()}: the smoke mapping failed\n{traceback.format_exc()}")
    return Outcome()


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, Outcome]:
    """Run the selected commands, two at a time, in doc order (a command's inputs are made first)."""
    selected = {item.callspec.params["command"].id for item in request.session.items
                if item.originalname == "test_doc_command" and hasattr(item, "callspec")}
    ws = Workspace(tmp_path_factory.mktemp("docs_commands"))
    if os.environ.get("DOCS_COMMANDS_FORKSERVER"):
        ws.fork_server = ForkServer(ws.env)
    chosen = [command for command in COMMANDS if command.id in selected]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(lambda command: run_command(ws, command), chosen))
    return {command.id: outcome for command, outcome in zip(chosen, results)}


def test_the_docs_have_commands_and_each_program_a_smoke_mapping():
    assert {"README.md", "docs/configuration.md", "docs/data.md"} <= {c.doc for c in COMMANDS}
    assert any(c.program == "train_slots.py" and c.doc == "README.md" for c in COMMANDS)
    unmapped = [command.where() for command in COMMANDS if command.program not in SMOKE]
    assert not unmapped, "doc commands without a smoke mapping in SMOKE:\n" + "\n".join(unmapped)


def test_extraction_joins_continuations_splits_chains_and_substitutes_variables(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text('text\n```bash\npip install -e . && accelerate launch train_slots.py   # note\n'
                   'X="a=1 b=2"\npython -m eval.slot_sweep --run runs/<name> \\\n    --num-slots 2 3 $X\n```\n')
    first, second = extract_commands(doc, root=tmp_path)
    assert (first.program, first.launcher, first.args, first.line) == ("train_slots.py", "accelerate", (), 3)
    assert second.program == "eval.slot_sweep" and second.line == 5
    assert second.args == ("--run", "runs/<name>", "--num-slots", "2", "3", "a=1", "b=2")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.id)
def test_doc_command(command: DocCommand, outcomes: dict[str, Outcome]):
    outcome = outcomes[command.id]
    if outcome.failure:
        pytest.fail(outcome.failure, pytrace=False)
    if outcome.skipped:
        pytest.skip(outcome.skipped)
