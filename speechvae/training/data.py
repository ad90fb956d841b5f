"""Training data: power spectrograms of clean speech, computed once and cached on disk.

The cache is one float32 memory-mapped array of shape ``(frames, freq)`` plus the frame offset
of each file, so a corpus larger than memory trains in bounded RAM: batches are read from the
memory map. Waveforms are peak-normalised and leading/trailing silence is trimmed before
analysis (DESIGN §2-3).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import load_audio
from ..stft import DEFAULT_STFT, STFTConfig, power_spectrogram

__all__ = ["SegmentSampler", "SpectrogramCache", "build_cache", "trim_silence"]


def trim_silence(power: np.ndarray, top_db: float = 40.0) -> np.ndarray:
    """Drop leading and trailing frames whose energy is more than ``top_db`` below the
    loudest frame. ``power``: ``(freq, time)``; returns ``(freq, time')``."""
    energy = power.sum(axis=0)
    if energy.max() <= 0:
        return power[:, :0]
    db = 10 * np.log10(np.maximum(energy, 1e-20) / energy.max())
    keep = np.flatnonzero(db > -top_db)
    return power[:, keep[0]: keep[-1] + 1]


@dataclass
class SpectrogramCache:
    """Memory-mapped power spectrograms of a list of files.

    Attributes:
        frames: array ``(total_frames, freq)``, float32, linear power.
        offsets: int64 ``(files + 1,)``: file i spans ``frames[offsets[i]:offsets[i+1]]``.
        files: the source files, in order.
    """

    frames: np.ndarray
    offsets: np.ndarray
    files: list[str]

    @property
    def num_frames(self) -> int:
        return int(self.offsets[-1])

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _cache_key(files: list[str], stft: STFTConfig, top_db: float) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([stft.to_dict(), top_db]).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def build_cache(files, cache_dir: str | os.PathLike, stft: STFTConfig = DEFAULT_STFT,
                top_db: float = 40.0, progress: bool = True) -> SpectrogramCache:
    """Compute (or reuse) the spectrogram cache of ``files`` under ``cache_dir``.

    The cache is keyed by the file list (paths, sizes, times), the STFT config and the trim
    threshold; it is written to a temporary name and renamed, so an interrupted build is
    simply redone.

    In a ``torchrun`` launch every rank calls this: the first process of each node
    (``LOCAL_RANK`` 0) builds a missing cache while the others wait at a barrier, then all
    open the same memory map (the operating system shares its pages between the processes).
    Nodes sharing a file system may each build it; the renames make that harmless.
    """
    from .. import distributed as D

    files = [str(f) for f in files]
    if not files:
        raise ValueError("no training files")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _cache_key(files, stft, top_db)
    data_path = cache_dir / f"spec-{key}.f32"
    meta_path = cache_dir / f"spec-{key}.json"
    launch = D.init_distributed()  # no-op unless WORLD_SIZE > 1 (gloo if no group yet)
    builder = launch.local_rank == 0
    if builder and not (data_path.exists() and meta_path.exists()):
        from ..checkpoint import temp_beside

        tmp = temp_beside(data_path, ".part")
        offsets = [0]
        try:
            _write_cache(files, tmp, offsets, stft, top_db, progress, cache_dir.name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, data_path)
        meta_tmp = temp_beside(meta_path, ".part")
        meta_tmp.write_text(json.dumps({"files": files, "offsets": offsets,
                                        "n_freq": stft.n_freq}))
        os.replace(meta_tmp, meta_path)
    D.barrier()
    meta = json.loads(meta_path.read_text())
    offsets = np.asarray(meta["offsets"], dtype=np.int64)
    frames = np.memmap(data_path, dtype=np.float32, mode="r",
                       shape=(int(offsets[-1]), meta["n_freq"]))
    return SpectrogramCache(frames, offsets, meta["files"])


def _write_cache(files, tmp, offsets, stft, top_db, progress, name):
    """Append each file's trimmed power spectrogram (frames x freq) to ``tmp``."""
    from tqdm.auto import tqdm

    with open(tmp, "wb") as fh:
        for f in tqdm(files, desc=f"spectrograms -> {name}", disable=not progress,
                      unit="file"):
            x, _ = load_audio(f, stft.sample_rate)
            x = x / np.max(np.abs(x))
            p = power_spectrogram(torch.from_numpy(x), stft).numpy()
            p = trim_silence(p, top_db)
            fh.write(np.ascontiguousarray(p.T, dtype=np.float32).tobytes())
            offsets.append(offsets[-1] + p.shape[1])


class SegmentSampler:
    """Batches of segments of ``length`` consecutive frames from a :class:`SpectrogramCache`.

    With ``length=1`` this is frame-wise sampling (the frame-wise VAE). Segments never cross
    file boundaries; files shorter than ``length`` are skipped. One epoch visits every
    non-overlapping segment start once, in a random order drawn from ``generator``.

    Segments whose mean frame energy is more than ``silence_db`` dB below the loudest frame
    of their file are skipped (digital silence inside recordings has zero power, where the
    Itakura–Saito divergence is degenerate); ``None`` keeps everything.

    Yields power tensors of shape ``(batch, freq, length)``.

    In a run of ``world_size`` processes (see :meth:`batches`) every process draws the same
    permutation and takes every ``world_size``-th segment of each batch, as
    ``torch.utils.data.DistributedSampler`` does over the whole epoch: the ranks' shards of a
    batch are disjoint and together they are the single-process batch. Segments are read from
    the memory map batch by batch, so no process holds the corpus in memory.
    """

    def __init__(self, cache: SpectrogramCache, length: int, batch_size: int,
                 silence_db: float | None = 50.0):
        self.cache, self.length, self.batch_size = cache, length, batch_size
        starts = []
        for a, b in zip(cache.offsets[:-1], cache.offsets[1:]):
            if b - a < length:
                continue
            st = np.arange(a, b - length + 1, length)
            if silence_db is not None:
                energy = np.asarray(cache.frames[a:b].sum(axis=1), dtype=np.float64)
                seg = energy[: (b - a) // length * length].reshape(-1, length).mean(1)
                st = st[: seg.size][seg > energy.max() * 10 ** (-silence_db / 10)]
            starts.append(st)
        if not starts or not sum(map(len, starts)):
            raise ValueError(f"no file has {length} non-silent frames")
        self.starts = np.concatenate(starts)

    def __len__(self) -> int:
        return int(-(-len(self.starts) // self.batch_size))

    def batches(self, generator: torch.Generator | None = None, shuffle: bool = True,
                rank: int = 0, world_size: int = 1):
        """One epoch of batches, ``(batch, freq, length)`` each.

        Args:
            generator: draws the order (every rank must pass an equally seeded one).
            shuffle: random order; else the cache order.
            rank, world_size: yield this rank's shard of every batch: segments
                ``rank, rank + world_size, ...`` of it (``batch_size // world_size`` or one
                more; possibly none in a last batch smaller than ``world_size``).
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        order = (torch.randperm(len(self.starts), generator=generator).numpy() if shuffle
                 else np.arange(len(self.starts)))
        idx = np.arange(self.length)
        for i in range(0, len(order), self.batch_size):
            s = np.sort(self.starts[order[i:i + self.batch_size][rank::world_size]])
            block = self.cache.frames[s[:, None] + idx[None, :]]  # (batch, length, freq)
            yield torch.from_numpy(np.ascontiguousarray(block.transpose(0, 2, 1)))
