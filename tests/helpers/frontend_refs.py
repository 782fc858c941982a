"""Independent fbank references for the frontend tests.

kaldi-native-fbank (Kaldi's C++ algorithm) and transformers' numpy spectrogram as
``ASTFeatureExtractor`` configures it. Both use the samples as given (no 32768 factor).
"""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np


def knf_fbank(wave: np.ndarray, **options) -> np.ndarray:
    """kaldi-native-fbank with our option names; frames collected into [frames, bins]."""
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.use_energy = False
    frame = {
        "sample_frequency": "samp_freq",
        "frame_length": "frame_length_ms",
        "frame_shift": "frame_shift_ms",
        "preemphasis_coefficient": "preemph_coeff",
        "window_type": "window_type",
        "remove_dc_offset": "remove_dc_offset",
        "snip_edges": "snip_edges",
        "round_to_power_of_two": "round_to_power_of_two",
        "blackman_coeff": "blackman_coeff",
    }
    mel = {"num_mel_bins": "num_bins", "low_freq": "low_freq", "high_freq": "high_freq"}
    merged = {"window_type": "hanning", "num_mel_bins": 80, "low_freq": 20.0} | options
    for key, value in merged.items():
        if key in frame:
            setattr(opts.frame_opts, frame[key], value)
        elif key in mel:
            setattr(opts.mel_opts, mel[key], value)
        else:
            setattr(opts, key, value)
    online = knf.OnlineFbank(opts)
    online.accept_waveform(opts.frame_opts.samp_freq, wave.tolist())
    online.input_finished()
    return np.array([online.get_frame(i) for i in range(online.num_frames_ready)])


def hf_fbank(wave: np.ndarray, num_mel_bins: int = 128, sample_rate: int = 16000) -> np.ndarray:
    """transformers' numpy Kaldi fbank as ASTFeatureExtractor configures it (25/10 ms).

    AST's configuration is 128 bins at 16 kHz; kaldi-native-fbank refuses it (some banks
    cover no FFT bin), transformers computes it (with a warning).
    """
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    size, shift = sample_rate // 40, sample_rate // 100
    fft = int(2 ** np.ceil(np.log2(size)))  # next power of two
    mel = mel_filter_bank(
        num_frequency_bins=fft // 2 + 1,
        num_mel_filters=num_mel_bins,
        min_frequency=20,
        max_frequency=sample_rate / 2,
        sampling_rate=sample_rate,
        norm=None,
        mel_scale="kaldi",
        triangularize_in_mel_space=True,
    )
    return spectrogram(
        wave,
        window_function(size, "hann", periodic=False),
        frame_length=size,
        hop_length=shift,
        fft_length=fft,
        power=2.0,
        center=False,
        preemphasis=0.97,
        mel_filters=mel,
        log_mel="log",
        mel_floor=1.192092955078125e-07,
        remove_dc_offset=True,
    ).T


def hf_feature_extractor(**options):
    """transformers' ASTFeatureExtractor on its numpy path (fails if torchaudio would be used)."""
    from transformers import ASTFeatureExtractor
    from transformers.utils import is_speech_available

    assert not is_speech_available(), "torchaudio present: reference would not be numpy"
    return ASTFeatureExtractor(**options)
