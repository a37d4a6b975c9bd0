"""Faults in data generation and in cached shards: each test injects one and checks that nothing is left
behind (worker processes, staging directories) and that no damaged shard is used silently."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

import data.shards as shards_module
from data import DataError, check_shards, ensure_dataset, eval_batches, make_generator, write_split
from data.shards import MANIFEST_NAME, convert_into, dataset_params, write_dataset
from data.staging import remove_stale_staging, staging_name, this_host

ROOT = Path(__file__).resolve().parent.parent
HAS_PROC = Path("/proc/self/stat").exists()
#: Small, fast datasets (few shards on purpose, hence the ignored warning).
SMALL = dict(num_train=8, num_eval=4, pairs_per_shard=4, seed=3, progress=False, num_workers=1)
#: Big enough that generating it with two workers takes a few seconds, so it can be hit mid-way.
SLOW = dict(num_train=3000, num_eval=100, pairs_per_shard=100, seed=5, progress=False, num_workers=2)

pytestmark = pytest.mark.filterwarnings("ignore:only [0-9]+ train shards")


# --- helpers ----------------------------------------------------------------------------------------


def process_state(pid: int) -> str | None:
    """The /proc state letter of a process (R, S, Z, ...), None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def is_running(pid: int) -> bool:
    """Exists and is not a zombie (a zombie holds no memory; only its parent can reap it)."""
    return process_state(pid) not in (None, "Z")


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.add(int(entry.name))
    return found


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def staging_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith(".tmp-")) if root.exists() else []


def start_generation(root: Path, log: Path, watchdog: bool = False) -> subprocess.Popen:
    """A separate Python process generating the SLOW multi_dsprites dataset into ``root``.

    ``watchdog``: pretend the kernel cannot signal parent death, so the workers' fallback must act.
    """
    fallback = "import data.workers as w; w._request_death_signal = lambda: False; " if watchdog else ""
    code = (f"{fallback}from data.shards import ensure_dataset; "
            f"ensure_dataset('multi_dsprites', {{}}, {str(root)!r}, **{SLOW!r})")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as handle:
        return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=handle, stderr=handle)


def generating_mid_way(process: subprocess.Popen, root: Path) -> set[int]:
    """Wait until ``process`` runs both workers and has finished a shard; returns the workers' pids."""
    def busy() -> bool:
        assert process.poll() is None, "generation ended before it could be interrupted"
        staged = staging_dirs(root)
        return len(children_of(process.pid)) >= 2 and bool(staged) and any(staged[0].glob("*.tar"))
    wait_for(busy, 60, "generation to be under way")
    return children_of(process.pid)


def stop(process: subprocess.Popen, workers: set[int]) -> None:
    """Whatever the outcome, leave none of the test's processes running (a failed test would orphan them)."""
    if process.poll() is None:
        process.kill()
        process.wait(10)
    for pid in workers:
        if is_running(pid):
            os.kill(pid, signal.SIGKILL)


def damage(path: Path, offset: int, replacement: bytes) -> None:
    """Overwrite bytes of a file in place (same size, so a size check cannot see it)."""
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(replacement)


def member_offset(shard: Path, name: str) -> tuple[int, int]:
    """(data offset, size) of a member of a tar file."""
    with tarfile.open(shard) as archive:
        member = archive.getmember(name)
        return member.offset_data, member.size


def shard_bytes(paths: list[str]) -> dict[str, bytes]:
    return {Path(p).name: Path(p).read_bytes() for p in paths}


# --- generation killed or stopped ---------------------------------------------------------------------


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc")
@pytest.mark.parametrize("watchdog", [False, True], ids=["death_signal", "watchdog"])
def test_kill_9_mid_generation_leaves_no_worker_and_next_run_cleans_up(tmp_path: Path, watchdog: bool) -> None:
    root = tmp_path / "cache"
    process = start_generation(root, tmp_path / "log", watchdog)
    workers: set[int] = set()
    try:
        workers = generating_mid_way(process, root)
        leftover = staging_dirs(root)
        process.kill()
        process.wait(10)
        wait_for(lambda: not any(is_running(pid) for pid in workers), 5, f"workers {sorted(workers)} to die")
    finally:
        stop(process, workers)
    assert len(leftover) == 1 and leftover[0].exists(), "kill -9 cannot clean up: the next run must"

    info = ensure_dataset("multi_dsprites", {}, root, **SLOW)
    assert staging_dirs(root) == [], "the dead process's staging directory must be removed"
    assert len(info.train_shards) == 30 and check_shards(info.eval_shards, resolution=32) == 100


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc")
def test_sigterm_mid_generation_removes_staging_and_workers(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    process = start_generation(root, tmp_path / "log")
    workers: set[int] = set()
    try:
        workers = generating_mid_way(process, root)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == -signal.SIGTERM, (tmp_path / "log").read_text()
        wait_for(lambda: not any(is_running(pid) for pid in workers), 5, f"workers {sorted(workers)} to die")
    finally:
        stop(process, workers)
    assert staging_dirs(root) == [], "SIGTERM must remove the process's own staging directory"
    assert [p.name for p in root.iterdir()] == []


def test_only_staging_of_dead_processes_on_this_host_is_removed(tmp_path: Path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = tmp_path / staging_name("multi_dsprites-0123456789abcdef").replace(f"-{os.getpid()}-", f"-{finished.pid}-")
    alive = tmp_path / staging_name("multi_dsprites-0123456789abcdef")
    elsewhere = tmp_path / dead.name.replace(f"@{this_host()}", "@some-other-host")
    legacy_dead = tmp_path / f".tmp-multi_dsprites-0123456789abcdef-{finished.pid}-0badc0de"
    unrelated = tmp_path / ".tmp-notes"
    for path in (dead, alive, elsewhere, legacy_dead, unrelated):
        path.mkdir()
        (path / "train-000000.tar.partial").write_bytes(b"x")
    assert sorted(remove_stale_staging(tmp_path)) == sorted([dead, legacy_dead])
    assert sorted(staging_dirs(tmp_path)) == sorted([alive, elsewhere, unrelated])


# --- damaged cached shards ----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["truncated", "byte_flipped", "no_checksums"])
def test_damaged_cached_dataset_is_regenerated_once(tmp_path: Path, fault: str, capsys: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    info = ensure_dataset("tetrominoes", {}, tmp_path, **SMALL)
    original = shard_bytes(info.train_shards + info.eval_shards)
    shard = Path(info.train_shards[1])
    if fault == "truncated":
        shard.write_bytes(original[shard.name][: len(original[shard.name]) // 2])
    elif fault == "byte_flipped":
        offset, _ = member_offset(shard, "train-00000005.factors.json")
        damage(shard, offset + 2, b"9")  # still valid JSON: only the checksum can see it
    else:
        manifest = json.loads((info.root / MANIFEST_NAME).read_text())
        del manifest["sha256"]
        (info.root / MANIFEST_NAME).write_text(json.dumps(manifest))
    capsys.readouterr()

    again = ensure_dataset("tetrominoes", {}, tmp_path, **SMALL)
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and note.startswith(f"note: cached dataset {info.root}") and "regenerating" in note
    assert fault == "no_checksums" or shard.name in note
    assert shard_bytes(again.train_shards + again.eval_shards) == original
    assert sorted(p.name for p in tmp_path.iterdir()) == [info.root.name]

    monkeypatch.setattr(shards_module, "write_split", lambda *a, **k: pytest.fail("regenerated a sound dataset"))
    ensure_dataset("tetrominoes", {}, tmp_path, **SMALL)
    assert capsys.readouterr().err == ""


def test_damaged_converted_output_is_reported_not_deleted(tmp_path: Path) -> None:
    generator = make_generator("tetrominoes")
    params = dataset_params(generator, 8, 4, 4, 0)
    out = tmp_path / "converted"

    def convert():
        return convert_into(out, params, 8, 4, lambda staging: write_dataset(
            generator, staging, params, 8, 4, 4, 0, False, 1))

    info = convert()
    shard = Path(info.eval_shards[0])
    offset, _ = member_offset(shard, "eval-00000002.factors.json")
    damage(shard, offset + 2, b"9")
    damaged = shard.read_bytes()
    with pytest.raises(DataError, match=f"output {re.escape(str(out))} holds this dataset but it is damaged.*{re.escape(str(shard))}"):
        convert()
    assert shard.read_bytes() == damaged


# --- damaged shards at start-up -----------------------------------------------------------------------


@pytest.fixture
def user_shards(tmp_path: Path) -> Path:
    """Shards the user provides (not a cached dataset): 3 shards of 4 multi_dsprites pairs."""
    out = tmp_path / "mine"
    write_split(make_generator("multi_dsprites"), out, "eval", 12, 4, 1, progress=False, num_workers=1)
    return out


@pytest.mark.parametrize("fault, member, message", [
    ("png", "eval-00000006.frame1.png", "sample 'eval-00000006' of shard {shard}: key 'frame1.png' is not a readable PNG"),
    ("json", "eval-00000005.factors.json", "sample 'eval-00000005' of shard {shard}: key 'factors.json' is not valid"),
    ("header", "eval-00000006.frame0.png", "shard {shard} is not a readable tar .* after member "
                                           "'eval-00000006.factors.json': corrupt member header"),
])
def test_damaged_user_shard_is_reported_with_file_and_member_and_kept(user_shards: Path, fault: str, member: str,
                                                                       message: str) -> None:
    shard = user_shards / "eval-000001.tar"
    offset, size = member_offset(shard, member)
    if fault == "png":
        damage(shard, offset, b"GIF89a")
    elif fault == "json":
        damage(shard, offset, b"}" * size)
    else:
        damage(shard, offset - 512, b"junk" * 8)  # the member's header block
    damaged = shard.read_bytes()

    with pytest.raises(DataError) as caught:
        check_shards(user_shards, resolution=32)
    text = str(caught.value)
    assert re.search(message.format(shard=re.escape(str(shard))), text) and "\n" not in text, text
    with pytest.raises(DataError, match=re.escape(str(shard))):
        list(eval_batches(user_shards, 4, resolution=32))
    assert shard.read_bytes() == damaged, "a user's shard is never rewritten or deleted"


def test_check_shards_names_a_damaged_eval_shard_of_a_generated_dataset(tmp_path: Path) -> None:
    info = ensure_dataset("multi_dsprites", {}, tmp_path, **SMALL)
    assert check_shards(info.eval_shards, resolution=32) == 4
    shard = Path(info.eval_shards[0])
    offset, _ = member_offset(shard, "eval-00000002.mask0.png")
    damage(shard, offset + 40, bytes(16))  # inside the compressed pixel data
    with pytest.raises(DataError, match=re.escape(f"sample 'eval-00000002' of shard {shard}: key 'mask0.png'")):
        check_shards(info.eval_shards, resolution=32)
