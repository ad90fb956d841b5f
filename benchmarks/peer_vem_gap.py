#!/usr/bin/env python3
"""Where does VEM with a sequential prior lose against the DVAE_SE code? One factor at a time.

Runs a plain VEM loop (written here, from Leglaive et al., ICASSP 2020 and Bie et al., TASLP
2022) whose conventions can be switched one by one between speechvae's VEM and the DVAE_SE
code's, with a given prior (e.g. the published RVAE, ``--prior ../shared/peer/dvae_se/wsj_rvae``),
on a few dev-set mixtures, and prints SI-SDR per variant. The row ``api`` is speechvae's own
VEM (``speechvae.enhance``) for reference: the loop in its ``ours`` setting should score like it.

Switches (``ours`` -> ``theirs``):
    step     the encoder's z-LSTM starts from a zero state (off) or is stepped once on z_0 = 0
             before frame 1 (on; ``RVAEConfig.encoder_z_initial_step``)
    fresh    the M-step uses the E-step's draw, made before the encoder update (off), or a
             fresh draw made after it (on)
    init     NMF start: uniform(0.1, 1.1) W, H scaled so that W H has the mixture's mean power
             (ours) or uniform(0, 1) W, H unscaled (theirs)
    wf       Wiener filter averaged over 16 posterior draws (ours), 1 draw (theirs' default)
             or the encoder mean path (mean)
    naive    (not a convention: a mapping error) the non-causal RVAE's two spectrogram LSTMs
             swapped, with the matching input columns of the first combining layer: what one
             gets by reading ``rnn_g_x.*_l0`` as the forward direction, overlooking that the
             DVAE_SE code runs that bidirectional LSTM on the time-reversed spectrogram

Usage:
    OMP_NUM_THREADS=1 python benchmarks/peer_vem_gap.py --devset runs/eval/devset \
        --prior ../shared/peer/dvae_se/wsj_rvae --pairs 44,1,46,3 --iterations 50 \
        --variant api --variant ours --variant ours,step ...
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

import speechvae
from speechvae.audio import load_audio
from speechvae.enhancement import VEMConfig
from speechvae.metrics import si_sdr
from speechvae.priors import load_prior
from speechvae.stft import istft, stft

TINY = 1e-10


@dataclasses.dataclass(frozen=True)
class Variant:
    step: bool = False
    fresh: bool = False
    init: str = "ours"
    wf: str = "16"
    iterations: int = 50
    lr: float = 1e-3
    naive: bool = False

    @classmethod
    def parse(cls, text: str, iterations: int, lr: float) -> Variant:
        v = cls(iterations=iterations, lr=lr)
        for item in filter(None, text.split(",")):
            if item == "ours":
                continue
            if item in ("step", "fresh", "naive"):
                v = dataclasses.replace(v, **{item: True})
            elif item == "init":
                v = dataclasses.replace(v, init="theirs")
            elif item.startswith("wf="):
                v = dataclasses.replace(v, wf=item[3:])
            elif item.startswith("it="):
                v = dataclasses.replace(v, iterations=int(item[3:]))
            elif item.startswith("lr="):
                v = dataclasses.replace(v, lr=float(item[3:]))
            elif item == "theirs":
                v = dataclasses.replace(v, step=True, fresh=True, init="theirs", wf="1")
            else:
                raise SystemExit(f"error: unknown variant item {item!r}")
        return v


def variant_prior(prior, step: bool, naive: bool = False):
    """The prior with ``encoder_z_initial_step`` set (same weights), and with the spectrogram
    directions swapped if ``naive`` (non-causal RVAE only)."""
    if not hasattr(prior.config, "encoder_z_initial_step"):
        return prior
    other = type(prior)(dataclasses.replace(prior.config, encoder_z_initial_step=step),
                        prior.stft_config)
    state = dict(prior.state_dict())
    if naive:
        if prior.config.causal:
            raise SystemExit("error: 'naive' applies to the non-causal RVAE only")
        h = prior.config.hidden_dim
        for k in [k for k in state if k.startswith("encoder_s_forward.")]:
            b = k.replace("encoder_s_forward.", "encoder_s_backward.")
            state[k], state[b] = state[b], state[k]
        first = "encoder_dense.0.weight" if prior.config.dense_dims else None
        for name in [first] if first else ["encoder_mean.weight", "encoder_logvar.weight"]:
            w = state[name]
            state[name] = torch.cat([w[:, h:2 * h], w[:, :h], w[:, 2 * h:]], 1)
    other.load_state_dict(state)
    return other.eval()


def m_step(power, vs, W, H, g):
    """Square-root multiplicative updates of W, H, then g (Leglaive et al. 2018), samples
    ``vs (R, F, N)`` of the unscaled speech variance; W normalised to unit column sums."""
    def inv(W, H):
        vx = g * vs + W @ H
        return vx.reciprocal()
    i = inv(W, H)
    a, b = (power * i.square()).sum(0), i.sum(0)
    W = W * ((a @ H.T) / (b @ H.T)).sqrt()
    i = inv(W, H)
    a, b = (power * i.square()).sum(0), i.sum(0)
    H = H * ((W.T @ a) / (W.T @ b)).sqrt()
    norm = W.sum(0, keepdim=True)
    W, H = W / norm, H * norm.T
    i = inv(W, H)
    g = g * ((vs * power * i.square()).sum((0, 1)) / (vs * i).sum((0, 1))).sqrt()
    return W.clamp_min(TINY), H.clamp_min(TINY), g.clamp_min(TINY)


def vem_loop(prior, x: torch.Tensor, v: Variant, rank: int, seed: int) -> torch.Tensor:
    """Speech STFT estimate ``(F, N)`` of one mixture STFT ``x (F, N)``."""
    gen = torch.Generator().manual_seed(seed)
    prior = variant_prior(prior, v.step, v.naive)
    local = type(prior)(prior.config, prior.stft_config)
    local.load_state_dict(prior.state_dict())
    local.eval()
    for p in local.parameters():
        p.requires_grad_(False)
    enc = list(local.encoder_parameters())
    for p in enc:
        p.requires_grad_(True)
    opt = torch.optim.Adam(enc, lr=v.lr)
    power = x.abs().square()
    f, n = power.shape
    if v.init == "theirs":
        W = torch.rand(f, rank, generator=gen).clamp_min(TINY)
        H = torch.rand(rank, n, generator=gen).clamp_min(TINY)
    else:
        W = torch.rand(f, rank, generator=gen) + 0.1
        H = torch.rand(rank, n, generator=gen) + 0.1
        H = H * power.mean() / (W @ H).mean()
        norm = W.sum(0, keepdim=True)
        W, H = W / norm, H * norm.T
    g = torch.ones(n)
    p3 = power[None]
    for _ in range(v.iterations):
        z, post = local.sample_posterior(p3, gen)
        vs = local.decode(z)[0]  # (F, N)
        vx = g * vs + W @ H
        loss = (power / vx + torch.log(vx)).sum() + local.kl(post, z).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            if v.fresh:
                z, _ = local.sample_posterior(p3, gen)
                vs = local.decode(z)[0]
            W, H, g = m_step(power, vs.detach()[None], W, H, g)
    with torch.no_grad():
        if v.wf == "mean":
            draws = [local.encode(p3).mean]
        else:
            draws = local.sample_posterior(p3, gen, num_samples=int(v.wf))[0].unbind(0)
        gain = torch.zeros_like(power)
        for z in draws:
            gvs = g * local.decode(z)[0]
            gain += gvs / (gvs + W @ H)
        gain /= len(draws)
    return gain * x


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devset", type=Path, required=True, help="rendered dev set (list.csv)")
    ap.add_argument("--prior", required=True)
    ap.add_argument("--pairs", default="44,1,46,3", help="row indices in list.csv")
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--nmf-rank", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", action="append", required=True,
                    help="'api', or comma-separated switches: ours, step, fresh, init, "
                         "wf=1|16|mean, it=N, lr=X, theirs (= step,fresh,init,wf=1)")
    ap.add_argument("--json-out", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(1)
    with open(a.devset / "list.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    pairs = [rows[int(i)] for i in a.pairs.split(",")]
    prior = load_prior(a.prior)
    data = []
    for p in pairs:
        clean, sr = load_audio(a.devset / p["clean"])
        noisy, _ = load_audio(a.devset / p["noisy"])
        data.append((p, clean, noisy, sr))
    results = {}
    for spec in a.variant:
        scores, seconds, audio = [], 0.0, 0.0
        for p, clean, noisy, sr in data:
            t0 = time.perf_counter()
            if spec.startswith("api"):  # api[,it=N][,naive][,nostep][,logpower]
                items = spec.split(",")[1:]
                its = next((int(i[3:]) for i in items if i.startswith("it=")), a.iterations)
                cfg = VEMConfig(iterations=its, lr=a.lr, nmf_rank=a.nmf_rank)
                used = prior
                if "naive" in items or "nostep" in items:
                    used = variant_prior(prior, "nostep" not in items, "naive" in items)
                if "logpower" in items:  # the same weights fed log(P + 1e-10): a mapping error
                    other = type(used)(dataclasses.replace(used.config,
                                                           encoder_input="log-power"),
                                       used.stft_config)
                    other.load_state_dict(used.state_dict())
                    used = other.eval()
                out = speechvae.enhance(noisy, sr, prior=used, algorithm="vem", config=cfg,
                                        seed=a.seed).waveform
            else:
                v = Variant.parse(spec, a.iterations, a.lr)
                peak = float(np.abs(noisy).max())
                x = stft(torch.from_numpy(noisy / peak).float(), prior.stft_config)
                s = vem_loop(prior, x, v, a.nmf_rank, a.seed)
                out = istft(s, len(noisy), prior.stft_config).numpy() * peak
            seconds += time.perf_counter() - t0
            audio += len(noisy) / sr
            scores.append(si_sdr(clean, out))
        noisy_scores = [si_sdr(c, n) for _, c, n, _ in data]
        results[spec] = {"si_sdr": scores, "mean": float(np.mean(scores)),
                         "rtf": seconds / audio}
        print(f"{spec:40s} SI-SDR {np.mean(scores):6.2f} dB (noisy {np.mean(noisy_scores):.2f}) "
              f"per file {' '.join(f'{s:.2f}' for s in scores)}  RTF {seconds / audio:.2f}",
              flush=True)
    if a.json_out:
        a.json_out.write_text(json.dumps({"pairs": [p["name"] for p in pairs],
                                          "prior": a.prior, "results": results}, indent=1))


if __name__ == "__main__":
    main()
