#!/usr/bin/env python3
"""Recreate examples/noisy.wav and examples/clean.wav from ../shared/data.

Speech: LibriSpeech 229-130880-0000 (speaker 229, CC BY 4.0), a validation speaker of the
shipped prior (never used to train it), first 6 s. Noise: Google Speech Commands
`_background_noise_/doing_the_dishes.wav` (CC BY 4.0). Mixed at 5 dB SNR with the corpus'
own mixing rule (make_mixtures.mix), 16 kHz, 16-bit PCM.
"""
import sys
from pathlib import Path

import soundfile as sf

HERE = Path(__file__).resolve().parent
root = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[1] / "shared" / "data"
sys.path.insert(0, str(root))
from make_mixtures import mix

clean, sr = sf.read(root / "speech/train/libri229/229-130880-0000.flac", dtype="float64")
noise, _ = sf.read(root / "noise/home/speechcommands_doing_the_dishes.flac", dtype="float64")
clean = clean[: 6 * sr]
c, y = mix(clean, noise, 20 * sr, 5.0)
sf.write(HERE / "clean.wav", c, sr, subtype="PCM_16")
sf.write(HERE / "noisy.wav", y, sr, subtype="PCM_16")
print("wrote", HERE / "noisy.wav", HERE / "clean.wav")
