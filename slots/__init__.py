"""Slot Attention building blocks: slot initialisers, the iterative attention, encoders (CNN or a timm
backbone) and decoders (pixels, or backbone features for DINOSAUR)."""
from slots.attention import SlotAttention
from slots.backbone import TimmBackbone
from slots.backbone_weights import BackboneError
from slots.decoder import SpatialBroadcastDecoder
from slots.dinosaur import DinosaurAutoencoder, DinosaurOutput
from slots.encoder import BackboneEncoder, CNNEncoder, SoftPositionEmbed, coordinate_grid
from slots.feature_decoder import MLPFeatureDecoder
from slots.glimpse import SlotGlimpse
from slots.init import GaussianSlotInit
from slots.model import SlotAutoencoder, SlotAutoencoderOutput
from slots.set_prediction import SetPredictionOutput, SlotSetPredictor

__all__ = [
    "BackboneEncoder",
    "BackboneError",
    "CNNEncoder",
    "DinosaurAutoencoder",
    "DinosaurOutput",
    "GaussianSlotInit",
    "MLPFeatureDecoder",
    "SlotAttention",
    "SlotGlimpse",
    "SlotAutoencoder",
    "SetPredictionOutput",
    "SlotAutoencoderOutput",
    "SlotSetPredictor",
    "SoftPositionEmbed",
    "SpatialBroadcastDecoder",
    "TimmBackbone",
    "coordinate_grid",
]
