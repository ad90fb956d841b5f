#!/usr/bin/env python3
"""Ship a trained prior: copy its checkpoint into speechvae/pretrained/ and write its card.

Usage: python recipes/ship_prior.py runs/vae/best.pt --name vae
           [--eval-table runs/eval/vae.md] [--log runs/vae/log.csv] [--note LINE ...]

Works for every registered prior kind (VAE, RVAE causal / non-causal, DKF). The card is written
from facts stored in the checkpoint (data split, recipe, command, epochs, validation loss) and,
when given, the dev-set benchmark output of recipes/eval/run.py.
"""
import argparse
import csv
import json
import shutil
from pathlib import Path

from speechvae.priors import load_checkpoint

PRETRAINED = Path(__file__).resolve().parents[1] / "speechvae" / "pretrained"


def describe(prior) -> tuple[str, str, str]:
    """(title, model sentence with its source, architecture) of a prior, for its card."""
    cfg = prior.config
    chain = " → ".join
    if prior.name == "vae":
        title = "frame-wise VAE speech prior"
        model = ("Clean-speech prior for unsupervised speech enhancement (Leglaive, Girin & "
                 "Horaud, MLSP 2018): `z_t ~ N(0, I)`, speech STFT coefficients "
                 "`s_ft | z_t ~ N_c(0, v_f(z_t))`.")
        arch = (f"encoder {cfg.n_freq} → {chain(map(str, cfg.hidden_dims))} (tanh) → "
                f"{cfg.latent_dim} (mean, log-variance); decoder mirrored → {cfg.n_freq} "
                "log-variances")
    elif prior.name == "rvae":
        rnn = "forward LSTM" if cfg.causal else "bidirectional LSTM"
        title = f"{'causal' if cfg.causal else 'non-causal'} recurrent VAE speech prior"
        model = ("Recurrent VAE prior (Leglaive, Alameda-Pineda, Girin & Horaud, ICASSP 2020): "
                 "`z_t ~ N(0, I)` i.i.d., speech STFT coefficients `s_ft | z ~ N_c(0, v_ft)` "
                 f"with `v_t` from a {rnn} over "
                 + ("`z_{1:t}`." if cfg.causal else "`z_{1:T}`."))
        arch = (f"decoder {rnn} ({cfg.hidden_dim} units per direction) over the "
                f"{cfg.latent_dim}-dim latents → {cfg.n_freq} log-variances; encoder "
                f"{'backward' if cfg.causal else 'bidirectional'} LSTM over the spectrogram "
                f"+ forward LSTM ({cfg.hidden_dim}) over the drawn `z_{{1:t-1}}` → dense "
                f"{chain(map(str, cfg.dense_dims))} (tanh) → {cfg.latent_dim} "
                "(mean, log-variance)")
    elif prior.name == "dkf":
        title = "deep Kalman filter speech prior"
        model = ("Deep Kalman filter prior (Krishnan, Shalit & Sontag, AAAI 2017, as reviewed "
                 "by Girin et al., 2021): gated nonlinear Gaussian transition "
                 "`p(z_t | z_{t-1})`, speech STFT coefficients `s_ft | z_t ~ N_c(0, v_f(z_t))`.")
        arch = (f"emission MLP {cfg.latent_dim} → {chain(map(str, cfg.decoder_dims))} (tanh) "
                f"→ {cfg.n_freq} log-variances; transition gate / proposed-mean width "
                f"{cfg.transition_dim}; encoder dense "
                f"{chain(map(str, cfg.encoder_dense_dims)) or '–'} → backward LSTM "
                f"({cfg.rnn_dim}) over the spectrogram, combined with `z_{{t-1}}` → "
                f"{chain(map(str, cfg.combiner_dims)) or '–'} → {cfg.latent_dim} "
                "(mean, log-variance)")
    elif prior.name == "tcvae":
        title = "temporal-convolutional VAE speech prior"
        model = ("Time-parallel dynamical prior (ours; recipes/tcvae/README.md): `z_t ~ N(0, I)` "
                 "i.i.d., speech STFT coefficients `s_ft | z ~ N_c(0, v_ft)` with `v_{1:T}` from "
                 "a non-causal dilated temporal convolutional network over `z_{1:T}` (the "
                 "non-causal RVAE of Leglaive et al., ICASSP 2020, with its BLSTM replaced by a "
                 "TCN, Bai, Kolter & Koltun 2018); mean-field encoder from a TCN over the "
                 "spectrogram (no per-frame loop).")
        def stack(n_in, dil):
            return (f"{n_in} → {cfg.hidden_dim} (1x1, tanh), {len(dil)} residual blocks "
                    f"(kernel {cfg.kernel_size}, dilations {', '.join(map(str, dil))}, "
                    f"{cfg.activation})")
        arch = (f"decoder {stack(cfg.latent_dim, cfg.decoder_dilations)} → {cfg.n_freq} "
                f"log-variances; encoder {stack(cfg.n_freq, cfg.encoder_dilations)} → "
                f"{cfg.latent_dim} (mean, log-variance); norm {cfg.norm}")
    else:
        raise SystemExit(f"error: no card template for prior kind {prior.name!r}")
    return title, model, arch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--name", default="vae")
    ap.add_argument("--eval-table", type=Path, help="Markdown table printed by recipes/eval/run.py")
    ap.add_argument("--log", type=Path, help="training log.csv (default: beside the checkpoint)")
    ap.add_argument("--note", action="append", default=[],
                    help="a line for the card's 'Training history' section (repeatable)")
    a = ap.parse_args()
    prior = load_checkpoint(a.checkpoint)  # restricted loader: refuses unsafe files
    meta = prior.metadata
    log = a.log or a.checkpoint.parent / "log.csv"
    rows = []
    if log.exists():
        with open(log, newline="") as fh:
            rows = list(csv.DictReader(fh))
    dest = PRETRAINED / f"{a.name}.pt"
    shutil.copyfile(a.checkpoint, dest)
    load_checkpoint(dest)
    n_params = sum(p.numel() for p in prior.parameters())
    cfg = prior.config
    data = meta.get("data", {})
    tc = meta.get("train_config", {})
    title, model, architecture = describe(prior)
    seq = tc.get("sequence_length", 1)
    unit = "frames" if seq == 1 else f"segments of {seq} frames"
    lines = [
        f"# Model card: `{a.name}` ({title})",
        "",
        model,
        "",
        "| | |",
        "|---|---|",
        f"| architecture | {architecture} |",
        f"| encoder input | {cfg.encoder_input} spectrogram |",
        f"| parameters | {n_params:,} |",
        (f"| STFT | {prior.stft_config.sample_rate} Hz, n_fft {prior.stft_config.n_fft}, hop "
         f"{prior.stft_config.hop_length}, {prior.stft_config.window} window; waveform "
         "peak-normalised; leading/trailing silence (40 dB below the loudest frame) trimmed |"),
        ("| loss | Itakura–Saito divergence + β·KL, β = "
         f"{tc.get('beta', '?')}; segments > {tc.get('silence_db', '?')} dB below their "
         "file's loudest frame skipped |"),
        (f"| data | ../shared/data speech splits {', '.join(data.get('splits', []))}: "
         f"{data.get('train_files', '?')} training files "
         f"({meta.get('train_frames', '?'):,} frames), {data.get('val_files', '?')} validation "
         f"files ({meta.get('val_frames', '?'):,} frames) from {data.get('val_speakers', '?')} "
         "held-out speakers (speaker-disjoint; see recipes/vae/README.md). Licences: "
         "LibriSpeech CC BY 4.0, MS-SNSD clean speech (PTDB-TUG ODbL 1.0, VCTK CC BY 4.0), "
         "speechocean762 (CC BY 4.0 per OpenSLR) |"),
        f"| recipe | `{meta.get('recipe', '?')}` at commit {meta.get('commit', '?')} |",
        f"| command | `{meta.get('command', '?')}` |",
        (f"| optimiser | Adam, lr {tc.get('lr', '?')}, batch {tc.get('batch_size', '?')} {unit}, "
         f"KL warm-up over {tc.get('kl_warmup_epochs', 0)} epochs, early stopping "
         f"(patience {tc.get('patience', '?')}), seed {tc.get('seed', '?')}; "
         f"learning rate x{tc.get('lr_decay_factor', '?')} after "
         f"{tc.get('lr_decay_patience', '?')} epochs without improvement; gradient norm "
         f"clipped at {tc.get('grad_clip', '?')} (final settings; see Training history) |"),
        (f"| epochs | {len(rows) or '?'} run, best at epoch {meta.get('best_epoch', '?')} "
         f"(0-based) |"),
        (f"| validation loss | {meta.get('val_loss_per_frame', float('nan')):.2f} nats per frame "
         "(IS + KL, 513 bins) |"),
        "",
    ]
    if a.note:
        lines += ["## Training history", ""] + [f"- {n}" for n in a.note] + [""]
    if a.eval_table and a.eval_table.exists():
        lines += ["## Dev-set scores (VEM, `recipes/eval/run.py`)", "",
                  a.eval_table.read_text().strip(), ""]
    (PRETRAINED / f"{a.name}.md").write_text("\n".join(lines))
    print(f"wrote {dest} and {PRETRAINED / (a.name + '.md')}")
    print(json.dumps({"epochs": len(rows), "best_epoch": meta.get("best_epoch"),
                      "val_loss": meta.get("val_loss_per_frame")}))


if __name__ == "__main__":
    main()
