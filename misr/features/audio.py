"""Audio: the clip's sound track demuxed in-process (PyAV), resampled, and librosa frame features.

One feature frame every 1/frame_rate s (centred windows) on the clip's timeline: frame k is time
k / frame_rate, shared with the visual features, so a track that starts late starts with frames marked
absent. The first column, `present`, is 1 where the track has data at the frame's centre and 0 where it
has none (before the track starts, a hole in it); absent frames are zeros otherwise.
Then the set of `features.audio.features`:
  mfcc      n_mfcc cepstral coefficients
  f0        fundamental frequency in Hz (YIN), 0 where the frame is not voiced
  voicing   periodicity: normalised autocorrelation at the f0 period, in [0, 1]
  rms       energy in dB
  centroid, bandwidth, rolloff (Hz), flatness, zcr: spectral shape
"""

from __future__ import annotations

from typing import Any

import numpy as np

from misr.data.corpus import Clip
from misr.data.media import read_audio
from misr.features.base import Extractor
from misr.util.stop import check_stop

F0_RANGE = (60.0, 500.0)
VOICED = 0.45  # periodicity above which a frame counts as voiced
VOICED_FLOOR_DB = 35.0  # ... if its energy is within this many dB of the clip's loudest frame (hum is not speech)
BLOCK_SECONDS = 30.0  # long signals are done in blocks of this length (bounded memory, identical frames)


class LibrosaExtractor(Extractor):
    name = "librosa"
    modality = "audio"
    version = "2"  # 2: frames on the clip's timeline, with the `present` column

    def __init__(self, features):
        super().__init__(features)
        self.cfg = features.audio
        self.hop = int(round(self.cfg.sample_rate / self.cfg.frame_rate))
        # long enough for two periods of the lowest f0, and a power of two for the FFT
        need = max(2 * self.hop, int(2 * self.cfg.sample_rate / F0_RANGE[0]) + 1)
        self.n_fft = 1 << (need - 1).bit_length()

    def config(self) -> dict[str, Any]:
        return {**self.cfg.model_dump(mode="json"), "n_fft": self.n_fft, "f0_range": list(F0_RANGE)}

    def feature_names(self) -> list[str]:
        names = ["present"]
        for f in self.cfg.features:
            names += {
                "mfcc": [f"mfcc_{i + 1}" for i in range(self.cfg.n_mfcc)],
                "f0": ["f0_hz"],
                "voicing": ["voicing"],
                "rms": ["rms_db"],
                "centroid": ["centroid_hz"],
                "bandwidth": ["bandwidth_hz"],
                "rolloff": ["rolloff_hz"],
                "flatness": ["flatness"],
                "zcr": ["zcr"],
            }[f]
        return names

    def extract(self, clip: Clip) -> dict[str, Any]:
        audio = read_audio(clip.path, self.cfg.sample_rate, max_gap=self.settings.max_gap_seconds)
        frames = self.features(audio.samples, audio.missing)
        return {"clip_key": clip.key, "frames": frames, "frame_rate": self.cfg.frame_rate}

    def features(self, y: np.ndarray, missing: list[tuple[int, int]] = ()) -> np.ndarray:
        """[T, D] float32 (the columns of `feature_names`) for a mono signal at the configured sample rate;
        frames whose centre falls in a `missing` sample range are marked absent.

        A long signal is done in blocks of BLOCK_SECONDS with enough context on each side that every kept
        frame sees exactly the samples it would see in one pass: the same numbers, in bounded memory
        (one pass over 10 minutes of audio held ~0.5 GB of spectra and YIN frames).
        """
        hop, n_fft, n_samples = self.hop, self.n_fft, y.size
        if y.size < n_fft:
            y = np.pad(y, (0, n_fft - y.size))
        total = 1 + y.size // hop  # centred frames
        block = max(1, int(BLOCK_SECONDS * self.cfg.frame_rate))
        context = -(-n_fft // hop) + 1  # frames whose windows reach across a block's edge
        pieces: list[dict[str, np.ndarray]] = []
        for t0 in range(0, total, block):
            check_stop("extraction")
            t1 = min(total, t0 + block)
            first = max(0, t0 - context)
            segment = y[first * hop : min(y.size, (t1 + context) * hop)]
            if t0 == 0 and t1 == total:
                segment = y
            raw = self._raw(segment)
            pieces.append({k: v[:, t0 - first : t1 - first] for k, v in raw.items()})
        raw = {k: np.concatenate([piece[k] for piece in pieces], axis=1) for k in pieces[0]}
        cols = []
        for f in self.cfg.features:
            if f == "mfcc":
                import librosa

                log_mel = np.maximum(raw["log_mel"], raw["log_mel"].max() - 80.0)  # librosa.power_to_db's top_db
                cols.append(librosa.feature.mfcc(S=log_mel, n_mfcc=self.cfg.n_mfcc))
            elif f == "f0":
                energy_db = raw["energy_db"][0]
                voiced = (raw["voicing"][0] >= VOICED) & (energy_db >= energy_db.max() - VOICED_FLOOR_DB)
                cols.append(np.where(voiced, raw["f0"][0], 0.0)[None])
            else:
                cols.append(raw[f])
        t = min(c.shape[1] for c in cols)
        frames = np.nan_to_num(np.concatenate([c[:, :t] for c in cols], axis=0).T.astype(np.float32))
        present = frames_with_data(t, hop, n_samples, list(missing))
        frames[~present] = 0.0
        return np.concatenate([present[:, None].astype(np.float32), frames], axis=1)

    def _raw(self, y: np.ndarray) -> dict[str, np.ndarray]:
        """Each configured feature [d, T] of one stretch of signal (f0 not yet masked by voicing)."""
        import librosa

        sr, hop, n_fft = self.cfg.sample_rate, self.hop, self.n_fft
        if y.size < n_fft:
            y = np.pad(y, (0, n_fft - y.size))
        spec = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)) ** 2
        out: dict[str, np.ndarray] = {}
        if "f0" in self.cfg.features or "voicing" in self.cfg.features:
            f0 = librosa.yin(y, fmin=F0_RANGE[0], fmax=F0_RANGE[1], sr=sr, frame_length=n_fft, hop_length=hop)
            out["f0"] = f0[None]
            out["voicing"] = periodicity(y, f0, sr, n_fft, hop)[None]
            out["energy_db"] = 10.0 * np.log10(spec.sum(axis=0)[None, : f0.size] + 1e-12)
        for f in self.cfg.features:
            if f == "mfcc":  # the log-mel spectrum; its floor (80 dB under the clip's peak) and DCT come after the blocks
                out["log_mel"] = librosa.power_to_db(librosa.feature.melspectrogram(S=spec, sr=sr), top_db=None)
            elif f == "rms":
                rms = librosa.feature.rms(S=np.sqrt(spec), frame_length=n_fft, hop_length=hop)
                out[f] = 20.0 * np.log10(rms + 1e-5)
            elif f == "centroid":
                out[f] = librosa.feature.spectral_centroid(S=np.sqrt(spec), sr=sr)
            elif f == "bandwidth":
                out[f] = librosa.feature.spectral_bandwidth(S=np.sqrt(spec), sr=sr)
            elif f == "rolloff":
                out[f] = librosa.feature.spectral_rolloff(S=np.sqrt(spec), sr=sr)
            elif f == "flatness":
                out[f] = librosa.feature.spectral_flatness(S=np.sqrt(spec))
            elif f == "zcr":
                out[f] = librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop)
        return out


def frames_with_data(n_frames: int, hop: int, n_samples: int, missing: list[tuple[int, int]]) -> np.ndarray:
    """[n_frames] bool: True where the sample at the frame's centre is decoded audio, not a filled hole."""
    centres = np.arange(n_frames) * hop
    present = centres < max(n_samples, 1)
    for start, end in missing:
        present &= ~((centres >= start) & (centres < end))
    return present


def periodicity(y: np.ndarray, f0: np.ndarray, sr: int, n_fft: int, hop: int) -> np.ndarray:
    """Normalised autocorrelation of each (centred) frame at the lag of its f0 estimate."""
    import librosa

    padded = np.pad(y, n_fft // 2)
    frames = librosa.util.frame(padded, frame_length=n_fft, hop_length=hop)[:, : f0.size]
    out = np.zeros(f0.size, dtype=np.float64)
    for t in range(frames.shape[1]):
        lag = int(round(sr / f0[t])) if f0[t] > 0 else 0
        if lag <= 0 or lag >= n_fft // 2:
            continue
        x = frames[:, t]
        a, b = x[:-lag], x[lag:]
        denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
        out[t] = max(0.0, float(np.dot(a, b) / denom)) if denom > 1e-12 else 0.0
    return out
