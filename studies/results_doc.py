"""Write a study's table and plot into a marked block of a README, so the published figures are the ones
the study command computed and a rerun replaces them instead of leaving a hand-copied table stale.

The block is delimited by two HTML comments (invisible when the Markdown is rendered):

    <!-- weak_slots_study:begin -->
    ...replaced on every run...
    <!-- weak_slots_study:end -->
"""
from __future__ import annotations

import os
from pathlib import Path


class ReadmeBlockError(ValueError):
    """The README cannot take the block: missing file, missing, repeated or misordered markers."""


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def block_text(name: str, table: str, plot: Path | None, readme: Path) -> str:
    """The block's content: the table, then the plot linked relative to the README's folder."""
    lines = [table.rstrip("\n")]
    if plot is not None:
        link = Path(os.path.relpath(plot.resolve(), readme.resolve().parent)).as_posix()
        lines += ["", f"![{name}]({link})"]
    return "\n".join(lines)


def marker_offsets(text: str, marker: str) -> list[tuple[int, int]]:
    """(start, end) of every line that is exactly `marker` (surrounding spaces aside): a marker quoted in
    prose, e.g. in backticks, is documentation, not a block boundary."""
    offsets, position = [], 0
    for line in text.splitlines(keepends=True):
        if line.strip() == marker:
            offsets.append((position, position + len(line.rstrip("\r\n"))))
        position += len(line)
    return offsets


def block_span(readme: Path, name: str) -> tuple[str, int, int]:
    """The README's text and where the `name` block's content starts and stops; raises ReadmeBlockError
    naming the file and what is wrong, so a study can check its target before hours of training."""
    if not readme.is_file():
        raise ReadmeBlockError(f"{readme}: no such file to write the {name} table into")
    text = readme.read_text()
    begin, end = markers(name)
    begins, ends = marker_offsets(text, begin), marker_offsets(text, end)
    if (len(begins), len(ends)) != (1, 1):
        raise ReadmeBlockError(f"{readme}: expected the markers {begin!r} and {end!r} once each, each on a line "
                               f"of its own, found them {len(begins)} and {len(ends)} times; add them where "
                               "the table should go")
    start, stop = begins[0][1], ends[0][0]
    if stop < start:
        raise ReadmeBlockError(f"{readme}: {end!r} comes before {begin!r}")
    return text, start, stop


def write_block(readme: Path, name: str, table: str, plot: Path | None = None) -> None:
    """Replace what lies between the `name` markers of `readme` with `table` (and a link to `plot`)."""
    text, start, stop = block_span(readme, name)
    updated = f"{text[:start]}\n{block_text(name, table, plot, readme)}\n{text[stop:]}"
    partial = readme.with_name(f".{readme.name}.partial")
    partial.write_text(updated)
    partial.replace(readme)  # atomic: a crash leaves the old README, never half of one
