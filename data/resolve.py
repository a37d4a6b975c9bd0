"""Turn a user's shard specification into a validated list of shard urls.

Accepts a directory (all ``*.tar`` in it, sorted), a glob, a brace pattern such as
``train-{000000..000019}.tar``, a single path, or a list of any of these. Local shards are
checked up front (exist, non-empty, end with a tar end-of-archive marker) so a typo or a
half-copied dataset fails at start-up with the file's name, not minutes into training.
Remote urls are streamed by webdataset's ``gopen``: ``pipe:CMD`` (CMD writes the shard to stdout,
e.g. ``pipe:aws s3 cp s3://bucket/train-000000.tar -``), ``http(s)://`` (through curl), ``gs://``
(gsutil), ``hf://``, ... They are brace-expanded but not globbed, and only their scheme is checked up
front: a scheme with no reader (``s3://``) fails at start-up with the ``pipe:`` form to use instead.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union
from urllib.parse import urlparse

import braceexpand
from webdataset.gopen import gopen_schemes

from data.errors import DataError

ShardSpec = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]
#: Every tar written by ``tarfile`` ends with two 512-byte zero blocks (plus zero padding).
END_OF_ARCHIVE = bytes(1024)


def is_remote(url: str) -> bool:
    """True for urls that name a stream rather than a local file (left unchecked)."""
    if url.startswith("pipe:"):
        return True
    scheme = urlparse(url).scheme
    return len(scheme) > 1 and scheme != "file"  # one letter would be a Windows drive


def check_remote_url(url: str) -> None:
    """Raise DataError for a remote url that webdataset cannot open, before any training starts."""
    if url.startswith("pipe:"):
        if not url[len("pipe:"):].strip():
            raise DataError(f"shard url {url!r} has no command after 'pipe:'")
        return
    scheme = urlparse(url).scheme
    if scheme not in gopen_schemes:
        example = f"pipe:aws s3 cp {url} -" if scheme == "s3" else "pipe:<command that writes the shard to stdout>"
        raise DataError(f"shard url {url}: no reader for {scheme}:// urls; stream it through a command: '{example}'")


def check_local_shard(path: str) -> None:
    """Raise DataError unless ``path`` is a non-empty file that ends like a complete tar."""
    if not os.path.exists(path):
        raise DataError(f"shard not found: {path}")
    if not os.path.isfile(path):
        raise DataError(f"shard is not a regular file: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise DataError(f"shard is an empty (0-byte) file: {path}")
    with open(path, "rb") as handle:
        handle.seek(max(size - len(END_OF_ARCHIVE), 0))
        tail = handle.read()
    if size < 2 * len(END_OF_ARCHIVE) or tail != END_OF_ARCHIVE:
        raise DataError(
            f"shard {path} is truncated or not a tar: expected it to end with a {len(END_OF_ARCHIVE)}-byte "
            f"zero end-of-archive marker ({size} bytes)"
        )


def _expand_one(spec: str) -> list[str]:
    if is_remote(spec):
        return list(braceexpand.braceexpand(spec))
    if spec.startswith("file:"):
        spec = urlparse(spec).path
    spec = os.path.expanduser(spec)
    if os.path.isdir(spec):
        found = sorted(str(p) for p in Path(spec).glob("*.tar"))
        if not found:
            raise DataError(f"no shards (*.tar) in directory {spec}")
        return found
    paths = list(braceexpand.braceexpand(spec))
    if len(paths) == 1 and glob.has_magic(spec):
        found = sorted(glob.glob(spec))
        if not found:
            raise DataError(f"no shards match the pattern {spec}")
        return found
    return paths


def resolve_shards(spec: ShardSpec) -> list[str]:
    """Validated shard urls for a directory, glob, brace pattern, path, or list of these."""
    if isinstance(spec, (str, os.PathLike)):
        specs = [os.fspath(spec)]
    elif isinstance(spec, Sequence):
        specs = [os.fspath(s) for s in spec]
    else:
        raise DataError(f"shards must be a path, pattern or list of them, got {type(spec).__name__}")
    urls = [url for one in specs for url in _expand_one(one)]
    if not urls:
        raise DataError(f"no shards given ({spec!r})")
    for url in urls:
        if is_remote(url):
            check_remote_url(url)
        else:
            check_local_shard(url)
    return urls
