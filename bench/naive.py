"""A straightforward, unoptimised Slot Attention autoencoder with the same architecture and parameter
names as `slots.SlotAutoencoder`, used only as the speed baseline in `bench/`.

It does what a first implementation does: backpropagates through every iteration, decodes one slot at a
time in a Python loop, materialises the broadcast (slot, position) map and applies the first decoder
layer as a 1x1 convolution over it, and builds the attention with explicit transposes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from slots import SlotAutoencoder, SlotAutoencoderOutput
from slots.encoder import coordinate_grid


class NaiveSlotAutoencoder(SlotAutoencoder):
    def _attention(self, features: torch.Tensor, slots: torch.Tensor, num_iterations: int) -> torch.Tensor:
        module = self.slot_attention
        inputs = module.norm_inputs(features)
        keys, values = module.to_k(inputs), module.to_v(inputs)
        for _ in range(num_iterations):
            previous = slots
            queries = module.to_q(module.norm_slots(slots))
            logits = torch.bmm(keys, queries.transpose(1, 2)) * module.scale  # [B, N, K]
            attn = F.softmax(logits, dim=2) + module.eps
            attn = attn / attn.sum(dim=1, keepdim=True)
            updates = torch.bmm(attn.transpose(1, 2), values)
            batch, num_slots, dim = slots.shape
            slots = module.gru(updates.reshape(-1, dim), previous.reshape(-1, dim)).reshape(batch, num_slots, dim)
            slots = slots + module.mlp(module.norm_mlp(slots))
        return slots

    def _decode_one(self, slot: torch.Tensor) -> torch.Tensor:
        decoder = self.decoder
        height, width = decoder.grid_size
        grid = coordinate_grid(height, width, slot.device).permute(2, 0, 1).unsqueeze(0).expand(slot.shape[0], -1, -1, -1)
        tiled = slot[:, :, None, None].expand(-1, -1, height, width)
        broadcast = torch.cat([tiled, grid], dim=1)  # [B, D + 4, H, W]
        weight = torch.cat([decoder.slot_proj.weight, decoder.position_proj.weight], dim=1)[:, :, None, None]
        hidden = F.relu(F.conv2d(broadcast, weight, decoder.slot_proj.bias + decoder.position_proj.bias))
        return decoder.convs(hidden)

    def forward(self, images, num_slots=None, num_iterations=None, generator=None) -> SlotAutoencoderOutput:
        num_slots = num_slots or self.num_slots
        num_iterations = num_iterations or self.num_iterations
        features = self.encoder(images)
        slots = self._attention(features, self.slot_init(images.shape[0], num_slots, generator), num_iterations)
        decoded = torch.stack([self._decode_one(slots[:, k]) for k in range(num_slots)], dim=1)
        slot_rgb, alpha = decoded[:, :, :3], decoded[:, :, 3]
        masks = F.softmax(alpha, dim=1)
        reconstruction = torch.zeros_like(images)
        for k in range(num_slots):
            reconstruction = reconstruction + slot_rgb[:, k] * masks[:, k : k + 1]
        return SlotAutoencoderOutput(reconstruction, masks, slot_rgb, slots, torch.empty(0))
