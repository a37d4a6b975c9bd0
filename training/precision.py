"""Which mixed precision a run asks Accelerate for: `train.mixed_precision` as given, or for "auto" bf16
where the device computes it natively (CUDA GPUs with bf16, CPUs with AMX or AVX512-bf16, whose oneDNN
convolutions run 1.3-2.6x faster in bf16 for the dSprites VAE) and float32 elsewhere, where emulated bf16
would be slower than float32."""
from __future__ import annotations

import torch


def cpu_has_native_bf16() -> bool:
    """AMX tiles or AVX512-bf16 (torch's own capability checks; False if this torch build lacks them)."""
    checks = (getattr(torch.cpu, "_is_amx_tile_supported", None), getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    return any(check is not None and check() for check in checks)


def resolve_mixed_precision(setting: str | None, on_cpu: bool) -> str | None:
    """The Accelerator's `mixed_precision` for a config value (None: leave it to the launcher)."""
    if setting != "auto":
        return setting
    if on_cpu or not torch.cuda.is_available():
        return "bf16" if cpu_has_native_bf16() else "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "no"
