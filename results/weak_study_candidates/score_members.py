"""Every candidate of a `vae.candidates` run scored on its own: the members that were not kept stopped training
at the choice, so their weights in the last checkpoint are those the choice compared. DCI (random forest) on
3,000 / 1,500 points and MIG on the 3,000, as the runs' quick evaluation does.

    python results/weak_study_candidates/score_members.py results/weak_study_candidates/runs/ada_gvae-beta4-seed0
"""
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from data.ground_truth import DSpritesSource  # noqa: E402
from metrics.disentanglement import dci, mig, sample_representations  # noqa: E402
from weak_supervision import GaussianEncoderVAE  # noqa: E402

run = Path(sys.argv[1])
checkpoint = sorted((run / "checkpoints").iterdir())[-1]
state = load_file(str(checkpoint / "model.safetensors"))
window = (state["vae.recon_tally"] / state["vae.tallied_steps"]).tolist()
print(f"{run.name} ({checkpoint.name}): kept member {int(state['vae.selected'])}")
for member in range(len(window)):
    prefix = f"vae.members.{member}."
    vae = GaussianEncoderVAE(1, 10)
    vae.load_state_dict({key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)})
    vae.eval()

    def represent(observations: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(np.ascontiguousarray(observations, dtype=np.float32))
        with torch.no_grad():
            return vae.encode(images)[0].double().numpy()

    rng = np.random.default_rng(0)
    train = sample_representations(DSpritesSource(64), represent, 3000, rng, 256, False)
    test = sample_representations(DSpritesSource(64), represent, 1500, rng, 256, False)
    print(f"member {member}: window recon {window[member]:.1f}, DCI "
          f"{dci(*train, *test, 'random_forest', rng)['dci_disentanglement']:.3f}, MIG {mig(*train)['mig']:.3f}")
