"""A picture of what each slot took: inputs, reconstructions, segmentations and per-slot renderings."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from einops import rearrange  # noqa: E402

from slots.model import SlotAutoencoderOutput  # noqa: E402


def _to_numpy_image(image: torch.Tensor):
    """[3, H, W] in [-1, 1] -> [H, W, 3] in [0, 1]."""
    return rearrange((image.float().clamp(-1, 1) + 1) / 2, "c h w -> h w c").cpu().numpy()


def save_slot_grid(images: torch.Tensor, output: SlotAutoencoderOutput, path: Path, true_masks: torch.Tensor | None = None) -> None:
    """One row per image: input, reconstruction, (true segmentation), predicted segmentation, then each
    slot's RGB weighted by its mask over white, with the slot's share of the image in the title."""
    num_images, num_slots = output.masks.shape[:2]
    fixed = ["input", "reconstruction"] + (["true segments"] if true_masks is not None else []) + ["slot segments"]
    columns = len(fixed) + num_slots
    fig, axes = plt.subplots(num_images, columns, figsize=(1.3 * columns, 1.35 * num_images), squeeze=False)
    segment_cmap = plt.get_cmap("tab20")
    for row in range(num_images):
        panels = [_to_numpy_image(images[row]), _to_numpy_image(output.reconstruction[row])]
        cmaps: list = [None, None]
        if true_masks is not None:
            panels.append(true_masks[row].cpu().numpy())
            cmaps.append(segment_cmap)
        panels.append(output.masks[row].argmax(0).cpu().numpy())
        cmaps.append(segment_cmap)
        for column, (panel, cmap) in enumerate(zip(panels, cmaps)):
            axis = axes[row, column]
            axis.imshow(panel, cmap=cmap, vmin=0 if cmap else None, vmax=19 if cmap else None, interpolation="nearest")
            if row == 0:
                axis.set_title(fixed[column], fontsize=7)
        for slot in range(num_slots):
            mask = output.masks[row, slot]
            rgb = (output.slot_rgb[row, slot].float().clamp(-1, 1) + 1) / 2
            shown = (rgb * mask + (1 - mask)).clamp(0, 1)  # rounding can step outside [0, 1]
            axis = axes[row, len(fixed) + slot]
            axis.imshow(rearrange(shown, "c h w -> h w c").cpu().numpy(), interpolation="nearest")
            axis.set_title(f"slot {slot} ({mask.mean().item():.0%})", fontsize=6)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
