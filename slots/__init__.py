"""Slot Attention building blocks: slot initialisers, the iterative attention, encoders and decoders."""
from slots.attention import SlotAttention
from slots.decoder import SpatialBroadcastDecoder
from slots.encoder import CNNEncoder, SoftPositionEmbed, coordinate_grid
from slots.init import GaussianSlotInit
from slots.model import SlotAutoencoder, SlotAutoencoderOutput
from slots.set_prediction import SetPredictionOutput, SlotSetPredictor

__all__ = [
    "CNNEncoder",
    "GaussianSlotInit",
    "SlotAttention",
    "SlotAutoencoder",
    "SetPredictionOutput",
    "SlotAutoencoderOutput",
    "SlotSetPredictor",
    "SoftPositionEmbed",
    "SpatialBroadcastDecoder",
    "coordinate_grid",
]
