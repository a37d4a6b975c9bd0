"""Strict tar reading for the loaders: a damaged shard is an error, never a short epoch.

Python's ``tarfile`` in stream mode ends iteration *silently* when a shard is cut at a
member boundary or has a garbled header after the first member; webdataset inherits that,
so a truncated shard would just yield fewer samples. Here the end of a tar must be its
end-of-archive marker (a zero block); anything else becomes a DataError naming the shard.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import suppress
from typing import Any

import webdataset as wds
from webdataset.tariterators import group_by_keys

from data.errors import DataError


class _StrictTarInfo(tarfile.TarInfo):
    """TarInfo whose header parsing turns 'silent end' conditions into ReadError."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EOFHeaderError:
            raise  # a zero block: the archive's proper end
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError):
            raise tarfile.ReadError(
                f"truncated: the data ends at byte {tarfile_.offset} without an end-of-archive marker"
            ) from None
        except tarfile.InvalidHeaderError as error:
            raise tarfile.ReadError(f"corrupt member header at byte {tarfile_.offset} ({error})") from None


def _open_shard(url: str):
    try:
        return wds.gopen(url, "rb")
    except FileNotFoundError:
        raise DataError(f"shard not found: {url}") from None
    except Exception as error:
        raise DataError(f"cannot open shard {url}: {error}") from None


def _close_shard(stream: Any, url: str) -> None:
    """Close a shard; a ``pipe:`` command (curl, aws, cat, ...) that failed reports here, by its exit status."""
    try:
        stream.close()
    except OSError:
        status = getattr(stream, "status", None)
        raise DataError(f"shard {url}: the command that streams it failed (exit status {status})") from None


def _position(reading: str | None, last_member: str | None) -> str:
    """Where in a shard reading failed, for the error message: in a member's data, or in the header after one."""
    if reading is not None:
        return f"in member {reading!r}"
    return f"after member {last_member!r}" if last_member is not None else "at its first member"


def _read_members(stream: Any, url: str) -> Iterator[dict[str, Any]]:
    count = 0
    last_member: str | None = None
    reading: str | None = None
    try:
        archive = tarfile.open(fileobj=stream, mode="r|*", tarinfo=_StrictTarInfo)
        for member in archive:
            if not member.isreg():
                continue
            reading = member.name
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            count += 1
            last_member, reading = member.name, None
            yield {"fname": member.name, "data": data, "__url__": url}
            archive.members = []  # stream mode: do not accumulate TarInfos
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise DataError(
            f"shard {url} is not a readable tar (corrupt or truncated) {_position(reading, last_member)}: {error}"
        ) from None
    if count == 0:
        raise DataError(f"shard {url} contains no files (expected samples with keys frame0.png, ...)")


def tar_members(url: str) -> Iterator[dict[str, Any]]:
    """Every regular file of one shard as ``{"fname", "data", "__url__"}``, strictly."""
    stream = _open_shard(url)
    try:
        yield from _read_members(stream, url)
    except DataError:
        _close_shard(stream, url)  # a failed download explains an unreadable stream better than the tar error
        raise
    except BaseException:  # the consumer stopped early (GeneratorExit) or was interrupted
        with suppress(OSError):
            stream.close()
        raise
    _close_shard(stream, url)


def expand_shards(urls: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """Pipeline stage: shard urls (str or ``{"url": ...}``) -> file records, ``{}`` after each shard.

    The empty dict tells ``group_by_keys`` that a shard ended, so a sample can never be
    stitched together from the tail of one shard and the head of the next.
    """
    for item in urls:
        url = item["url"] if isinstance(item, dict) else item
        yield from tar_members(url)
        yield {}


def group_samples(files: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Pipeline stage: file records -> samples keyed by extension (webdataset's grouping)."""
    try:
        yield from group_by_keys(files)
    except DataError:
        raise
    except ValueError as error:  # e.g. a duplicate file name inside one sample
        raise DataError(f"malformed shard: {error.args[0] if error.args else error}") from None
