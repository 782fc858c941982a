"""AST's patch arithmetic: how many patches a spectrogram axis gives, and back.

The one place that knows the convolution's output size ``(length - patch) // stride + 1``;
the checkpoint loader (max_length checks) and the ``.pth`` converter (stride inference)
both use it.
"""

from __future__ import annotations


def num_patches(length: int, patch_size: int, stride: int) -> int:
    """Patches along one axis of ``length`` frames or mel bins."""
    return (length - patch_size) // stride + 1


def length_range(patches: int, patch_size: int, stride: int) -> tuple[int, int]:
    """The inclusive range of axis lengths that give ``patches`` patches."""
    low = (patches - 1) * stride + patch_size
    return low, low + stride - 1
