"""Slot Attention building blocks: slot initialisers, the iterative attention, encoders (CNN or a timm
backbone) and decoders (pixels, or backbone features for DINOSAUR); the autoencoder put together from them
(`slots.build` turns a run's model options into its parts) and the protocol every slot model follows."""
from slots.attention import SlotAttention
from slots.backbone import TimmBackbone
from slots.backbone_weights import BackboneError
from slots.build import ModelOptionError, autoencoder_parts, build_autoencoder, with_duplicate_merging
from slots.decoder import SpatialBroadcastDecoder
from slots.dinosaur import DinosaurAutoencoder, DinosaurOutput
from slots.duplicates import MergeDuplicates
from slots.encoder import BackboneEncoder, CNNEncoder, ColourValues, SoftPositionEmbed, coordinate_grid
from slots.feature_decoder import MLPFeatureDecoder
from slots.frames import AttentionFrames, InvariantSlotAttention
from slots.glimpse import SlotGlimpse
from slots.init import GaussianSlotInit
from slots.mask_prior import AttentionMaskPrior
from slots.model import SlotAutoencoder, SlotAutoencoderOutput
from slots.protocol import SlotModel
from slots.set_prediction import SetPredictionOutput, SlotSetPredictor

__all__ = [
    "AttentionFrames",
    "AttentionMaskPrior",
    "BackboneEncoder",
    "BackboneError",
    "CNNEncoder",
    "ColourValues",
    "DinosaurAutoencoder",
    "DinosaurOutput",
    "GaussianSlotInit",
    "InvariantSlotAttention",
    "MLPFeatureDecoder",
    "MergeDuplicates",
    "ModelOptionError",
    "SlotAttention",
    "SlotGlimpse",
    "SlotAutoencoder",
    "SetPredictionOutput",
    "SlotAutoencoderOutput",
    "SlotModel",
    "SlotSetPredictor",
    "SoftPositionEmbed",
    "SpatialBroadcastDecoder",
    "TimmBackbone",
    "autoencoder_parts",
    "build_autoencoder",
    "coordinate_grid",
    "with_duplicate_merging",
]
