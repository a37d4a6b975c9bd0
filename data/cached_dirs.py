"""Data set directories that appear only when complete, for every shard format (frame pairs in `data.shards`,
voxel objects in `data.voxel_shards`).

Two kinds. A *cached* directory is named by a hash of everything that determines its bytes and lives in a cache
root: it is reused while its manifest records the same parameters and its shards match their checksums, and
regenerated otherwise (it can always be made again). A converter's *output* directory is named by the user: it
is reused when it already holds the same data set, refused when it holds anything else, and never deleted. Both
are written into a staging directory (`data.staging`) and renamed into place when complete, so an interrupted
run never leaves something that looks finished; the manifest is sealed with the shards' sha256 first
(`data.integrity`).
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from data.errors import DataError
from data.integrity import CHECKSUMS_KEY, seal_manifest
from data.staging import discard, remove_stale_staging, staging_dir

MANIFEST_NAME = "manifest.json"


class HasManifest(Protocol):
    manifest: dict[str, Any]


Info = TypeVar("Info", bound=HasManifest)


def read_manifest(root: Path, required: Sequence[str], what: str = "data set") -> dict[str, Any]:
    """The parsed manifest of a data set directory; DataError naming the file when it is missing, not JSON or
    lacks one of the `required` keys."""
    path = root / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"no {MANIFEST_NAME} in {what} directory {root}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path} must hold a JSON object, got {type(manifest).__name__}")
    missing = [key for key in required if key not in manifest]
    if missing:
        raise DataError(f"{path} lacks key(s) {missing}")
    return manifest


def recorded_params(root: Path) -> Any:
    """The `params` a directory's manifest records; None without a readable manifest."""
    try:
        return json.loads((root / MANIFEST_NAME).read_text()).get("params")
    except (OSError, ValueError, AttributeError):
        return None


def cached(final: Path, params: dict[str, Any], load: Callable[[Path], Info], what: str = "dataset") -> Info | None:
    """The cached data set at `final` if it is complete and undamaged; otherwise None, after removing it.

    `load` reads and verifies a directory (DataError when damaged). A data set with the right parameters that
    fails verification (damaged since it was written, or written before checksums were recorded) is reported in
    one line on stderr: it is about to be regenerated, which takes a while, and the user should know why.
    """
    if not final.exists():
        return None
    if recorded_params(final) != params:
        warnings.warn(f"{what} directory {final} is incomplete or stale; regenerating it")
        discard(final)
        return None
    try:
        info = load(final)
        if CHECKSUMS_KEY not in info.manifest:
            raise DataError(f"{final / MANIFEST_NAME} has no {CHECKSUMS_KEY!r} checksums (written by an older version)")
    except DataError as error:
        print(f"note: cached {what} {final} failed verification ({error}); regenerating it", file=sys.stderr)
        discard(final)
        return None
    return info


def ensure_cached(root: Path, final_name: str, params: dict[str, Any], load: Callable[[Path], Info],
                  write: Callable[[Path], Any], info_of: Callable[[Path, dict[str, Any]], Info],
                  what: str = "dataset") -> Info:
    """The data set `root/final_name`: reused if intact (`cached`), else written by `write(staging)` (shards and
    manifest), sealed and renamed into place. Safe against interruption and against two processes racing to
    make it: the loser uses the winner's copy. `info_of(final, sealed manifest)` describes a fresh one without
    hashing its shards again."""
    final = root / final_name
    remove_stale_staging(root)
    existing = cached(final, params, load, what)
    if existing is not None:
        return existing
    root.mkdir(parents=True, exist_ok=True)
    with staging_dir(root, final_name) as staging:
        write(staging)
        manifest = seal_manifest(staging, MANIFEST_NAME)
        try:
            os.rename(staging, final)
        except OSError:
            if recorded_params(final) != params:  # not another process's finished copy
                raise
            return load(final)
    return info_of(final, manifest)


def convert_into(out: str | os.PathLike, params: dict[str, Any], load: Callable[[Path], Info],
                 write: Callable[[Path], Any], what: str = "dataset") -> Info:
    """A converter's output directory: reused if it already holds a data set with these parameters, refused if
    it holds anything else, else filled by `write(staging)` in a temporary sibling that is renamed into place
    when complete. Never deletes what the user named: a damaged previous output is an error."""
    out = Path(out)
    remove_stale_staging(out.parent, out.name)
    if recorded_params(out) == params:
        try:
            return load(out)
        except DataError as error:
            raise DataError(f"output {out} holds this {what} but it is damaged ({error}); remove it and convert "
                            "again") from None
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output {out} exists and is not a {what} with these parameters; remove it or choose another")
    out.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(out.parent, out.name) as staging:
        write(staging)
        seal_manifest(staging, MANIFEST_NAME)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.rename(staging, out)
    return load(out)
