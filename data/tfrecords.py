"""Read GZIP-compressed TFRecord files without TensorFlow.

A TFRecord file is a sequence of records, each framed as: the payload length (little-endian
uint64), the masked CRC32C of those 8 bytes, the payload, the masked CRC32C of the payload.
The DeepMind multi-object datasets compress the whole file as one GZIP stream, so it can only
be read front to back. Both checksums are verified, and every failure (a file that is not
GZIP, a corrupted or truncated stream, a bad checksum) becomes a DataError naming the file and
the record, instead of a garbled image several stages later.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Iterator
from typing import IO

import crc32c

from data.errors import DataError

#: TFRecord's checksum mask (tensorflow/core/lib/hash/crc32c.h).
CRC_MASK_DELTA = 0xA282EAD8
HEADER = struct.Struct("<QI")  # length, masked CRC32C of the length
FOOTER = struct.Struct("<I")  # masked CRC32C of the payload


def masked_crc32c(data: bytes | memoryview) -> int:
    """TFRecord's masked CRC32C: rotate right by 15 bits, add a constant (mod 2^32)."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + CRC_MASK_DELTA) & 0xFFFFFFFF


def _read_exactly(handle: IO[bytes], size: int, path: str, index: int, what: str) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise DataError(f"{path}: record {index}: truncated {what}: expected {size} bytes, got {len(data)}")
    return data


def _read_record(handle: IO[bytes], path: str, index: int) -> bytes | None:
    """The payload of the next record, or None at a clean end of the stream."""
    header = handle.read(HEADER.size)
    if not header:
        return None
    if len(header) != HEADER.size:
        raise DataError(f"{path}: record {index}: truncated header: expected {HEADER.size} bytes, got {len(header)}")
    length, length_crc = HEADER.unpack(header)
    if masked_crc32c(header[:8]) != length_crc:
        raise DataError(f"{path}: record {index}: corrupted length field (CRC32C mismatch)")
    payload = _read_exactly(handle, length, path, index, "payload")
    (payload_crc,) = FOOTER.unpack(_read_exactly(handle, FOOTER.size, path, index, "checksum"))
    if masked_crc32c(payload) != payload_crc:
        raise DataError(f"{path}: record {index}: corrupted payload ({length} bytes, CRC32C mismatch)")
    return payload


def iter_records(path: str | os.PathLike) -> Iterator[bytes]:
    """Yield the payload of every record of a GZIP-compressed TFRecord file, in file order."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"TFRecord file not found: {path}")
    index = 0
    with gzip.open(path, "rb") as handle:
        while True:
            try:
                payload = _read_record(handle, path, index)
            except EOFError as error:
                raise DataError(f"{path}: truncated GZIP stream: it ends inside record {index} ({error})") from None
            except (OSError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
                raise DataError(
                    f"{path}: corrupted GZIP stream at record {index} ({error}); the multi-object datasets are "
                    "GZIP-compressed TFRecord files"
                ) from None
            if payload is None:
                return
            yield payload
            index += 1
