"""The exploration loop behind results/time_to_disentanglement/README.md: the dsprites_vae objective and
model trained in-process on an in-memory pool of dSprites pairs drawn with the generator's semantics (k ~ U{1..4}
changed factors, each to a different value), DCI (random forest, 5000 / 2000 points), MIG and the DCI
importance matrix printed every --every steps. Quicker to vary than train_slots.py; the figures of record
come from train_slots.py runs (the study and bench commands in the README).

    python results/time_to_disentanglement/explore.py --lr 1e-3 --beta 4 --bf16 --out lr1e3b4.jsonl

--fresh draws new pairs every step (rendering 128 frames costs ~6 ms here) instead of reusing the pool;
--sampler dlib reproduces disentanglement_lib's simple_dynamics, which differs from the paper's text and from
our generator: it changes one factor with probability 1/2 (else k), and draws the new value uniformly, so it
may equal the old one; --beta-warmup N raises beta linearly from 1 over N steps; --share-from F [--share-steps N]
moves Ada-*'s threshold to a fraction F of the way from the smallest to the largest per-latent KL (0.5 is the
paper's midpoint), rising linearly to 0.5 over N steps.
"""
import argparse, json, time, sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from data.dsprites import DSprites, FACTOR_SIZES
from data.ground_truth import DSpritesSource
from metrics.disentanglement import sample_representations, dci, mig, factor_importance
from weak_supervision import GaussianEncoderVAE, MethodConfig, vae_loss
import weak_supervision.methods as methods_module
from weak_supervision.aggregation import adaptive_share_mask

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=5e-4)
p.add_argument("--bs", type=int, default=64)
p.add_argument("--beta", type=float, default=1.0)
p.add_argument("--method", default="ada_gvae")
p.add_argument("--steps", type=int, default=3000)
p.add_argument("--every", type=int, default=500)
p.add_argument("--pool", type=int, default=20000)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--k", default="random")
p.add_argument("--out", required=True)
p.add_argument("--eps", type=float, default=1e-8)
p.add_argument("--b1", type=float, default=0.9)
p.add_argument("--latent", type=int, default=10)
p.add_argument("--bf16", action="store_true")
p.add_argument("--decay", type=int, default=0)
p.add_argument("--fresh", action="store_true", help="draw new pairs every step instead of from the pool")
p.add_argument("--sampler", default="ours", choices=["ours", "dlib"],
               help="dlib: disentanglement_lib's simple_dynamics (k=1 with prob 1/2, new value may equal the old)")
p.add_argument("--beta-warmup", type=int, default=0, help="steps over which beta rises linearly from 1")
p.add_argument("--warmup", type=int, default=0, help="steps over which the learning rate rises linearly from 0")
p.add_argument("--cosine", action="store_true", help="cosine decay of the learning rate to 0 at --steps")
p.add_argument("--share-from", type=float, default=None,
               help="Ada-* threshold tau = min + f (max - min) of the pair's per-latent KLs, f rising linearly from "
                    "this value to 0.5 (the paper's midpoint) over --share-steps; below 0.5 fewer latents are shared")
p.add_argument("--share-steps", type=int, default=0, help="steps of the --share-from ramp (0: f stays constant)")
p.add_argument("--norm", default="none", choices=["none", "batch", "group"],
               help="a normalisation layer after every hidden convolution of encoder and decoder")
p.add_argument("--decoder", default="deconv", choices=["deconv", "broadcast"], help="dlib's or a spatial broadcast")
a = p.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
gen = DSprites(64, a.k)
rng = np.random.default_rng(a.seed + 100)
sizes = np.array(list(FACTOR_SIZES.values()))
def draw_pairs(n):
    f0 = rng.integers(0, sizes, size=(n, 5))
    f1 = f0.copy()
    for i in range(n):
        k = rng.integers(1, 5) if a.k == "random" else int(a.k)
        if a.sampler == "dlib":
            k = rng.choice([1, k])
            for j in rng.choice(5, size=k, replace=False):
                f1[i, j] = rng.integers(0, sizes[j])
            continue
        for j in rng.choice(5, size=k, replace=False):
            f1[i, j] = (f1[i, j] + rng.integers(1, sizes[j])) % sizes[j]
    return (torch.from_numpy(gen.render_batch(f0)).float()[:, None],
            torch.from_numpy(gen.render_batch(f1)).float()[:, None])
if not a.fresh:
    x0, x1 = draw_pairs(a.pool)
model = GaussianEncoderVAE(1, a.latent, decoder=a.decoder)
def with_norm(seq):
    layers = []
    for layer in seq:
        layers.append(layer)
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and layer.out_channels > 1:
            c = layer.out_channels
            layers.append(torch.nn.BatchNorm2d(c) if a.norm == "batch" else torch.nn.GroupNorm(8, c))
    return torch.nn.Sequential(*layers)
share = {"fraction": 0.5}
if a.share_from is not None:  # the loss calls the mask by its module name: route it through the current fraction
    methods_module.adaptive_share_mask = lambda *posteriors: adaptive_share_mask(*posteriors, fraction=share["fraction"])
if a.norm != "none":
    model.encoder.body = with_norm(model.encoder.body)
    model.decoder.net = with_norm(model.decoder.net)
model = model.to(memory_format=torch.channels_last)
opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(a.b1, 0.999), eps=a.eps)
cfg = MethodConfig(method=a.method, beta=a.beta, latent_dim=a.latent)
src = DSpritesSource(64)
def represent(obs):
    with torch.no_grad():
        return model.encode(torch.from_numpy(np.ascontiguousarray(obs, dtype=np.float32)))[0].double().numpy()
log = open(a.out, "w"); train_t = 0.0; recon_sum = loss_sum = 0.0; window = 0; g = torch.Generator().manual_seed(a.seed)
for step in range(1, a.steps + 1):
    t = time.perf_counter()
    if a.fresh:
        b0, b1 = draw_pairs(a.bs)
    else:
        ix = torch.randint(0, a.pool, (a.bs,), generator=g)
        b0, b1 = x0[ix], x1[ix]
    b0 = b0.contiguous(memory_format=torch.channels_last); b1 = b1.contiguous(memory_format=torch.channels_last)
    if a.beta_warmup:
        cfg.beta = 1.0 + (a.beta - 1.0) * min(1.0, step / a.beta_warmup)
    if a.share_from is not None:
        ramp = min(1.0, step / a.share_steps) if a.share_steps else 0.0
        share["fraction"] = a.share_from + (0.5 - a.share_from) * ramp
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
        loss, logs = vae_loss(model, None, cfg, b0, b1, step=step)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    recon_sum += logs["recon_loss"]; loss_sum += loss.item(); window += 1
    if a.decay:
        for group in opt.param_groups: group["lr"] = a.lr * 0.5 ** (step / a.decay)
    if a.warmup or a.cosine:
        scale = min(1.0, (step + 1) / a.warmup) if a.warmup else 1.0
        if a.cosine:
            scale *= 0.5 * (1 + np.cos(np.pi * min(step, a.steps) / a.steps))
        for group in opt.param_groups: group["lr"] = a.lr * scale
    train_t += time.perf_counter() - t
    if step % a.every == 0:
        model.eval(); r = np.random.default_rng(0)
        tr, ftr = sample_representations(src, represent, 5000, r, 256)
        te, fte = sample_representations(src, represent, 2000, r, 256)
        d = dci(tr, ftr, te, fte, "random_forest", np.random.default_rng(0))
        R = factor_importance(tr, ftr, te, fte, "random_forest", np.random.default_rng(0))[0]
        print(np.array2string(R.T, precision=2, suppress_small=True), flush=True)
        torch.save(model.state_dict(), a.out + f".{step}.pt")
        m = mig(tr, ftr)["mig"]
        model.train()
        rec = dict(step=step, train_s=round(train_t, 1), dci=round(d["dci_disentanglement"], 3), mig=round(m, 3),
                   info=round(d["dci_informativeness_test"], 3), recon=round(logs["recon_loss"], 1), kl=round(logs["kl"], 2),
                   shared=round(logs.get("shared_dims", 0), 2), mean_recon=round(recon_sum / window, 2),
                   mean_loss=round(loss_sum / window, 2))
        recon_sum = loss_sum = 0.0; window = 0
        print(json.dumps(rec), flush=True); log.write(json.dumps(rec) + "\n"); log.flush()
