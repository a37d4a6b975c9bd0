"""Turn a folder of a user's images, or a video, into the project's frame-pair shards, so that training runs on
the user's own pictures with the existing presets.

Every task reads WebDataset shards of frame pairs (``data.codec``); this writes them from real pictures instead
of a generator. Each picture is prepared by ``data.images``, as for segmenting with a trained run (the centred
square, resized with Lanczos to ``--resolution``), so a model sees the same pixels in training and in use.
Pairs:

- ``consecutive`` (default): frame t with frame t + ``--gap`` of one sequence (a video, or numbered frames):
  nearby frames show the same objects slightly moved, the weak supervision of a frame pair;
- ``same``: each frame with itself, for a folder of unrelated photos; static pairs are treated as single
  images (``data.batch.PairBatch.is_static``).

The last ``--eval-fraction`` of the frames form the eval split, the rest train; no pair straddles the
boundary, so no eval frame is seen in training. Masks are all background (0) and ``factors.json`` says
``"unlabelled": true`` with the source file of each frame (``"video.mp4#frame=17"`` for a video). The output
directory appears atomically (``data.shards.convert_into``): an identical re-run reuses it without decoding
again, a different non-empty ``--out`` is refused. The data set's identity is a sha256 of the source files'
bytes, not their paths, so a moved folder still matches. The fitted frames are held in memory until written
(12 KiB each at 64x64; ``--max-frames`` bounds a long video). Bad input is one ``error: ...`` line on stderr
and exit status 2, with nothing written.

Examples::

    python -m data.from_images --images my_frames/ --out shards/my_frames --resolution 64
    python -m data.from_images --images 'photos/*.jpg' --out shards/photos --pairs same
    python -m data.from_images --video clip.mp4 --out shards/clip --every 2 --max-frames 5000 --gap 1
    accelerate launch train_slots.py data.train_shards='shards/clip/train-*.tar' \\
        data.eval_shards='shards/clip/eval-*.tar' data.resolution=64
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
import webdataset as wds
from tqdm import tqdm

from data.codec import encode_pair
from data.errors import DataError
from data.images import conversion_note, fit_square, list_images, read_rgb, size_note
from data.integrity import file_sha256
from data.scene import FramePair
from data.shards import MANIFEST_NAME, MIN_TRAIN_SHARDS, DatasetInfo, convert_into, shard_name
from data.version import DATA_VERSION

PAIR_RULES = ("consecutive", "same")
#: Below this a centred square keeps too little of a picture to learn objects from.
MIN_RESOLUTION = 8


@dataclass(frozen=True)
class Frames:
    """The frames of a source, fitted to the model's square, with the name of each and notes for the user."""

    pixels: list[np.ndarray]  # uint8 [R, R, 3] each
    names: list[str]  # file names relative to the folder, or "clip.mp4#frame=17"
    notes: list[str]  # one line each, printed on stderr (conversions, mixed sizes)


class FrameSource(Protocol):
    """Where frames come from: ``kind`` names the generator in the manifest, ``name`` the source."""

    kind: str
    name: str

    def sha256(self, every: int, max_frames: int | None) -> str: ...

    def read(self, resolution: int, every: int, max_frames: int | None, same_size: bool, progress: bool
             ) -> Frames: ...


def _selected(items: list[Any], every: int, max_frames: int | None) -> list[Any]:
    """Every ``every``-th item, at most ``max_frames`` of them: thinning a sequence before it is paired."""
    return items[::every][:max_frames]


class Images:
    """Image files named by a directory, a glob or one file (``data.images.list_images``), in natural order."""

    kind = "images"

    def __init__(self, spec: str | os.PathLike):
        text = str(spec)
        self.paths = list_images(text)
        given = Path(text)
        self.root = given if given.is_dir() else Path(os.path.commonpath([p.parent for p in self.paths]))
        folder = self.root.resolve().name
        self.name = folder if given.is_dir() else f"{folder}/{given.name}"

    def sha256(self, every: int, max_frames: int | None) -> str:
        """A hash of the kept files' bytes in order (names and paths left out, so a moved folder matches)."""
        digest = hashlib.sha256()
        for path in _selected(self.paths, every, max_frames):
            try:
                digest.update(bytes.fromhex(file_sha256(path)))
            except OSError as error:
                raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
        return digest.hexdigest()

    def read(self, resolution: int, every: int, max_frames: int | None, same_size: bool, progress: bool
             ) -> Frames:
        """Decode and fit the kept files; with ``same_size``, a file whose size differs from the first's is an
        error (frames of one sequence share a size, so a stray photo is a mistake worth stopping for)."""
        paths = _selected(self.paths, every, max_frames)
        pixels, names, modes, sizes = [], [], [], []
        for path in tqdm(paths, desc="reading images", unit="image", disable=not progress):
            rgb, mode = read_rgb(path)
            size = (rgb.shape[1], rgb.shape[0])
            if same_size and sizes and size != sizes[0]:
                raise DataError(
                    f"{paths[0]} is {sizes[0][0]}x{sizes[0][1]} but {path} is {size[0]}x{size[1]}: frames of one "
                    "sequence share a size (use --pairs same for a folder of unrelated photos)")
            pixels.append(fit_square(rgb, resolution))
            names.append(path.relative_to(self.root).as_posix())
            modes.append(mode)
            sizes.append(size)
        notes = [note for note in (conversion_note(modes), size_note(sizes, resolution)) if note]
        return Frames(pixels, names, notes)


class Video:
    """The frames of a video file, decoded with PyAV."""

    kind = "video"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: no such video file")
        if not self.path.is_file():
            raise DataError(f"{self.path}: not a video file (a directory or device)")
        self.name = self.path.name

    def sha256(self, every: int, max_frames: int | None) -> str:
        """The whole file's sha256 (as ``sha256sum`` prints it); the options are recorded beside it."""
        return file_sha256(self.path)

    def _decoded(self, every: int, max_frames: int | None) -> Iterator[tuple[int, np.ndarray]]:
        """(index in the video, uint8 RGB [H, W, 3]) of every ``every``-th frame, at most ``max_frames``;
        DataError naming the file where PyAV cannot open or decode it."""
        kept = 0
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise DataError(f"{self.path}: not a readable video (no video stream)")
                for index, frame in enumerate(container.decode(video=0)):
                    if index % every:
                        continue
                    yield index, frame.to_ndarray(format="rgb24")
                    kept += 1
                    if max_frames is not None and kept >= max_frames:
                        return
        except av.error.FFmpegError as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise DataError(f"{self.path}: not a readable video ({reason})") from None

    def read(self, resolution: int, every: int, max_frames: int | None, same_size: bool, progress: bool
             ) -> Frames:
        """Decode and fit the kept frames (a video's frames share one size: nothing to check or report)."""
        pixels, names = [], []
        for index, rgb in tqdm(self._decoded(every, max_frames), desc="decoding video", unit="frame",
                               disable=not progress):
            pixels.append(fit_square(rgb, resolution))
            names.append(f"{self.name}#frame={index}")
        if not pixels:
            raise DataError(f"{self.path}: not a readable video (no frames decoded)")
        return Frames(pixels, names, [])


def check_options(resolution: int, pairs: str, gap: int, every: int, max_frames: int | None, eval_fraction: float,
                  pairs_per_shard: int | None) -> None:
    """DataError for an option no data set can be made with, before any file is read."""
    if resolution < MIN_RESOLUTION:
        raise DataError(f"resolution must be at least {MIN_RESOLUTION}, got {resolution}")
    if pairs not in PAIR_RULES:
        raise DataError(f"pairs must be one of {', '.join(PAIR_RULES)}, got {pairs!r}")
    if gap < 1:
        raise DataError(f"gap must be at least 1 (frame t is paired with frame t + gap), got {gap}")
    if every < 1:
        raise DataError(f"every must be at least 1 (keep every n-th frame), got {every}")
    if max_frames is not None and max_frames < 1:
        raise DataError(f"max-frames must be at least 1, got {max_frames}")
    if not 0.0 < eval_fraction < 1.0:
        raise DataError(f"eval fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    if pairs_per_shard is not None and pairs_per_shard < 1:
        raise DataError(f"pairs-per-shard must be at least 1, got {pairs_per_shard}")


def frames_per_pair(pairs: str, gap: int) -> int:
    """How many frames one pair spans: a split shorter than this has no pair."""
    return gap + 1 if pairs == "consecutive" else 1


def eval_start(num_frames: int, eval_fraction: float, span: int, source: str) -> int:
    """Index of the first eval frame: the last ``eval_fraction`` of the frames, but each split spans a pair."""
    if num_frames < 2 * span:
        raise DataError(f"{source}: {num_frames} frame(s) are too few: one train and one eval pair, each spanning "
                        f"{span} frame(s), need at least {2 * span}")
    num_eval = min(max(span, int(eval_fraction * num_frames + 0.5)), num_frames - span)
    return num_frames - num_eval


def pair_indices(start: int, stop: int, pairs: str, gap: int) -> list[tuple[int, int]]:
    """The (frame 0, frame 1) indices of the pairs within frames [start, stop): none crosses ``stop``."""
    if pairs == "same":
        return [(t, t) for t in range(start, stop)]
    return [(t, t + gap) for t in range(start, stop - gap)]


def unlabelled_pair(frames: Frames, first: int, second: int) -> FramePair:
    """A pair without segmentation or factors: all-background masks and the frames' source names."""
    background = np.zeros(frames.pixels[first].shape[:2], dtype=np.uint8)
    factors = {"unlabelled": True, "source": [frames.names[first], frames.names[second]], "objects": [],
               "changed": []}
    return FramePair(frames.pixels[first], frames.pixels[second], background, background, factors)


def write_split(staging: Path, split: str, frames: Frames, pairs: list[tuple[int, int]], pairs_per_shard: int
                ) -> list[str]:
    """``{split}-000000.tar``, ... in ``staging`` (each written under a temporary name); returns the shard names."""
    names = []
    for shard, start in enumerate(range(0, len(pairs), pairs_per_shard)):
        path = staging / shard_name(split, shard)
        partial = path.with_name(path.name + ".partial")
        with wds.TarWriter(str(partial), encoder=False, mtime=0) as sink:
            for index in range(start, min(start + pairs_per_shard, len(pairs))):
                sink.write(encode_pair(unlabelled_pair(frames, *pairs[index]), key=f"{split}-{index:08d}"))
        os.replace(partial, path)
        names.append(path.name)
    return names


def write_dataset(staging: Path, params: dict[str, Any], frames: Frames, split_at: int) -> dict[str, Any]:
    """Both splits and ``manifest.json`` into ``staging`` (``convert_into`` adds the checksums and renames it)."""
    rule, gap, per_shard = params["pairs"], params["gap"], params["shard_size"]
    train = write_split(staging, "train", frames, pair_indices(0, split_at, rule, gap), per_shard)
    evals = write_split(staging, "eval", frames, pair_indices(split_at, len(frames.pixels), rule, gap), per_shard)
    manifest = {
        "params": params,
        "resolution": params["resolution"],
        "factor_names": [],
        "factor_sizes": {},
        "max_objects": 0,
        "train_shards": train,
        "eval_shards": evals,
        "labelled": False,
        "num_frames": len(frames.pixels),
        "eval_from_frame": split_at,
        "sources": frames.names,
    }
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _recorded_params(out: Path) -> dict[str, Any] | None:
    """The params of the manifest in ``out``, if it has a readable one."""
    try:
        params = json.loads((out / MANIFEST_NAME).read_text()).get("params")
    except (OSError, ValueError, AttributeError):
        return None
    return params if isinstance(params, dict) else None


def _earlier_output(out: Path, identity: dict[str, Any]) -> DatasetInfo | None:
    """``out`` if it already holds this data set (so a re-run skips decoding); DataError if it holds another.

    ``identity`` is everything known before decoding; the pair counts, known after, follow from it.
    """
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    recorded = _recorded_params(out)
    if recorded is None or "num_train" not in recorded or {k: recorded.get(k) for k in identity} != identity:
        raise DataError(f"output {out} exists and is not a dataset with these parameters; remove it or choose another")
    return convert_into(out, recorded, int(recorded["num_train"]), int(recorded["shard_size"]), _never_write)


def _never_write(staging: Path) -> None:
    raise AssertionError("convert_into was called to reuse a data set with its own recorded params")


def import_frames(
    frames_source: FrameSource,
    out: str | os.PathLike,
    *,
    resolution: int = 64,
    pairs: str = "consecutive",
    gap: int = 1,
    every: int = 1,
    max_frames: int | None = None,
    eval_fraction: float = 0.1,
    pairs_per_shard: int | None = None,
    progress: bool = True,
) -> DatasetInfo:
    """Write ``train-*.tar``, ``eval-*.tar`` and ``manifest.json`` of ``frames_source``'s frame pairs into ``out``.

    ``frames_source`` is ``Images(dir_or_glob)`` or ``Video(path)``; of its frames every ``every``-th is kept,
    at most ``max_frames``. ``pairs_per_shard`` None: as many as give ten train shards (`shard_size`), at most
    1,000, so that shard shuffling and splitting over workers and ranks work on a user's few hundred frames. Notes on converted or mixed-size images go to stderr, one line each. Raises
    DataError for bad options or input, and ``out`` is then untouched.
    """
    check_options(resolution, pairs, gap, every, max_frames, eval_fraction, pairs_per_shard)
    out = Path(out)
    identity = {
        "generator": frames_source.kind,
        "source": frames_source.name,
        "source_sha256": frames_source.sha256(every, max_frames),
        "resolution": int(resolution),
        "pairs": pairs,
        "gap": int(gap),
        "every": int(every),
        "max_frames": None if max_frames is None else int(max_frames),
        "eval_fraction": float(eval_fraction),
        "pairs_per_shard": None if pairs_per_shard is None else int(pairs_per_shard),
        "data_version": DATA_VERSION,
    }
    earlier = _earlier_output(out, identity)
    if earlier is not None:
        return earlier
    frames = frames_source.read(resolution, every, max_frames, same_size=pairs == "consecutive", progress=progress)
    split_at = eval_start(len(frames.pixels), eval_fraction, frames_per_pair(pairs, gap), frames_source.name)
    num_train = len(pair_indices(0, split_at, pairs, gap))
    params = {**identity, "num_train": num_train,
              "num_eval": len(pair_indices(split_at, len(frames.pixels), pairs, gap)),
              "shard_size": pairs_per_shard or shard_size(num_train)}
    for note in frames.notes:
        print(note, file=sys.stderr)
    return convert_into(out, params, params["num_train"], params["shard_size"],
                        lambda staging: write_dataset(staging, params, frames, split_at))


def shard_size(num_train: int) -> int:
    """Pairs per shard when not given: ten train shards or more (`data.shards.MIN_TRAIN_SHARDS`), at most 1,000
    pairs each; fewer than ten train pairs get a shard each."""
    return max(1, min(1_000, num_train // MIN_TRAIN_SHARDS))


def training_command(info: DatasetInfo) -> str:
    """The command that trains on these shards with the default preset (quoted for a POSIX shell)."""
    train, evals = shlex.quote(f"{info.root}/train-*.tar"), shlex.quote(f"{info.root}/eval-*.tar")
    return (f"accelerate launch train_slots.py data.train_shards={train} data.eval_shards={evals} "
            f"data.resolution={info.resolution}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.from_images",
        description="Turn a folder of images, or a video, into WebDataset frame-pair shards plus manifest.json.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="a directory of images, a quoted glob ('shots/*.jpg') or one file")
    source.add_argument("--video", help="a video file PyAV can decode")
    parser.add_argument("--out", required=True, help="dataset directory to create (train-*.tar, eval-*.tar, "
                                                     "manifest.json)")
    parser.add_argument("--resolution", type=int, default=64, help="side of the square frames (centre crop, resize)")
    parser.add_argument("--pairs", choices=PAIR_RULES, default="consecutive",
                        help="consecutive: frame t with t+gap of one sequence; same: each frame with itself")
    parser.add_argument("--gap", type=int, default=1, help="frames between the two of a consecutive pair")
    parser.add_argument("--every", type=int, default=1, help="keep every n-th frame")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many kept frames")
    parser.add_argument("--eval-fraction", type=float, default=0.1, help="the last fraction of frames for eval")
    parser.add_argument("--pairs-per-shard", type=int, default=None,
                        help="pairs per tar shard (default: enough for ten train shards, at most 1,000)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = {"resolution": args.resolution, "pairs": args.pairs, "gap": args.gap, "every": args.every,
               "max_frames": args.max_frames, "eval_fraction": args.eval_fraction,
               "pairs_per_shard": args.pairs_per_shard}
    try:
        check_options(**options)
        kind = Images if args.images is not None else Video
        source = kind(args.images if args.images is not None else args.video)
        with warnings.catch_warnings(record=True) as caught:  # a warning is one line here, not two with source
            warnings.simplefilter("always")
            info = import_frames(source, args.out, progress=not args.no_progress, **options)
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    manifest = info.manifest
    print(f"{info.root}: {info.num_train} train + {info.num_eval} eval pairs ({args.pairs}) of "
          f"{manifest['num_frames']} frames at {info.resolution}x{info.resolution} in "
          f"{len(info.train_shards) + len(info.eval_shards)} shards; train with: {training_command(info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
