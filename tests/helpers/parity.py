"""transformers' reference for Runtime.classify: the same checkpoint, activation by hand.

Long audio is windowed by hand (window and hop from the Kaldi framing formula), run
through the reference per window, and aggregated.
"""

from __future__ import annotations

import numpy as np

from helpers import SR

TOL = 1e-4  # fp32: max abs difference of scores


class Reference:
    """transformers on the same checkpoint; activation applied by hand."""

    def __init__(self, ckpt):
        import torch
        from transformers import ASTFeatureExtractor, ASTForAudioClassification

        self.torch = torch
        self.fe = ASTFeatureExtractor.from_pretrained(ckpt)
        self.model = ASTForAudioClassification.from_pretrained(ckpt).eval()
        multi = self.model.config.problem_type == "multi_label_classification"
        self.activation = torch.sigmoid if multi else (lambda x: torch.softmax(x, dim=-1))
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def scores(self, waves: list[np.ndarray]) -> np.ndarray:
        inputs = self.fe(waves, sampling_rate=SR, return_tensors="pt")
        with self.torch.no_grad():
            logits = self.model(**inputs).logits
        return self.activation(logits.double()).numpy()

    def window_and_hop(self) -> tuple[int, int]:
        # Kaldi framing (25 ms / 10 ms, snip_edges): n frames need 400 + (n - 1) * 160 samples.
        n = self.fe.max_length
        return 400 + (n - 1) * 160, (n // 2) * 160

    def windowed(self, wave: np.ndarray, how: str = "mean"):
        window, hop = self.window_and_hop()
        starts, s = [], 0
        while s + window < len(wave):  # full windows every hop, then one ending at the end
            starts.append(s)
            s += hop
        starts.append(len(wave) - window)
        per_window = self.scores([wave[s : s + window] for s in starts])
        agg = per_window.mean(axis=0) if how == "mean" else per_window.max(axis=0)
        return agg, per_window, starts


def assert_same(result, ref_scores: np.ndarray, labels: list[str], k: int = 5):
    np.testing.assert_array_less(np.abs(result.scores - ref_scores), TOL)
    want = np.argsort(-ref_scores, kind="stable")[:k]
    assert [p.index for p in result.labels] == list(want)
    assert [p.label for p in result.labels] == [labels[i] for i in want]
    np.testing.assert_allclose([p.score for p in result.labels], ref_scores[want], atol=TOL)
