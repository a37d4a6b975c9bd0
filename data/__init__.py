"""Seeded frame-pair datasets for object-centric learning with weak supervision.

Generators (``multi_dsprites``, ``tetrominoes``, ``dsprites``, and ``glyphs``: rotated
asymmetric glyphs for orientation search) make pairs of frames that differ in a few recorded
(object, factor) entries; ``shards`` writes them into WebDataset tar shards with a cached,
hash-named dataset directory; ``loader`` streams deterministic batches (``PairBatch``) from
them; ``check_shards`` decodes shards once so damage fails at start-up. ``ground_truth``
serves dSprites factors and images to the metrics.
"""

from data.batch import PairBatch
from data.codec import SAMPLE_KEYS, decode_sample, encode_pair
from data.dsprites import DSprites
from data.errors import DataError
from data.glyphs import Glyphs
from data.ground_truth import DSpritesSource, NpzDSpritesSource
from data.integrity import check_shards, is_unlabelled
from data.loader import TrainBatches, collate_pairs, eval_batches, train_batches
from data.pairs import SceneGenerator
from data.registry import GENERATORS, make_generator
from data.resolve import resolve_shards
from data.scene import FramePair
from data.shards import DatasetInfo, ensure_dataset, load_dataset, write_split
from data.sprites import MultiDSprites
from data.tetrominoes import Tetrominoes
from data.version import DATA_VERSION

__all__ = [
    "DATA_VERSION",
    "GENERATORS",
    "SAMPLE_KEYS",
    "DSprites",
    "DSpritesSource",
    "DataError",
    "DatasetInfo",
    "FramePair",
    "Glyphs",
    "MultiDSprites",
    "NpzDSpritesSource",
    "PairBatch",
    "SceneGenerator",
    "Tetrominoes",
    "TrainBatches",
    "check_shards",
    "collate_pairs",
    "decode_sample",
    "encode_pair",
    "ensure_dataset",
    "is_unlabelled",
    "eval_batches",
    "load_dataset",
    "make_generator",
    "resolve_shards",
    "train_batches",
    "write_split",
]
