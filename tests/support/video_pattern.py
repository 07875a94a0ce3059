"""A synthetic camera picture that survives VP8 and simulcast scaling, and its checker.

Used by `sdk_agent.py`: the publisher draws it into every frame, the subscriber reads it
back from the decoded frames. Everything is placed in fractions of the frame, so the same
checks work on every simulcast layer (1280x720, 640x360, 320x180, ...).

Layout (rows as fractions of the height)::

    0.00-0.50  eight vertical colour bars (75 % SMPTE order: white, yellow, cyan, green,
               magenta, red, blue, black)                       -> `check_bars`
    0.50-0.75  diagonal grey stripes scrolling 4 px per frame: real motion, so that the
               encoder produces realistically sized delta frames (and loss hurts)
    0.75-1.00  sixteen black/white blocks: the frame number (12 bits) and a 4-bit check
               (`encode_counter` / `read_counter`)

Needs numpy only.
"""

from __future__ import annotations

import numpy as np

BARS = np.array([
    (191, 191, 191), (191, 191, 0), (0, 191, 191), (0, 191, 0),
    (191, 0, 191), (191, 0, 0), (0, 0, 191), (0, 0, 0),
], dtype=np.float64)
BITS = 16
COUNTER_BITS = 12
COUNTER_MOD = 1 << COUNTER_BITS
STRIPE_PERIOD = 64
STRIPE_STEP = 4


def _check(counter: int) -> int:
    c = counter & (COUNTER_MOD - 1)
    return ((c ^ (c >> 4) ^ (c >> 8)) & 0xF) ^ 0x5  # all-black and all-white frames fail


def encode_counter(counter: int) -> list[int]:
    """The 16 bits (MSB first) drawn for frame `counter`: 12 counter bits + 4 check bits."""
    value = ((counter & (COUNTER_MOD - 1)) << 4) | _check(counter)
    return [(value >> (BITS - 1 - i)) & 1 for i in range(BITS)]


class PatternWriter:
    """Draws frame n of the pattern into an RGBA buffer of `width` x `height`."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.base = np.zeros((height, width, 4), dtype=np.uint8)
        self.base[..., 3] = 255
        x_edges = [round(i * width / len(BARS)) for i in range(len(BARS) + 1)]
        self.y_bars, self.y_band, self.y_bits = round(height * 0.5), round(height * 0.75), height
        for i, color in enumerate(BARS):
            self.base[:self.y_bars, x_edges[i]:x_edges[i + 1], :3] = color.astype(np.uint8)
        yy, xx = np.mgrid[0:self.y_band - self.y_bars, 0:width + STRIPE_PERIOD]
        stripes = (128 + 90 * np.sin(2 * np.pi * (xx + yy) / STRIPE_PERIOD)).astype(np.uint8)
        self.stripes = np.repeat(stripes[..., None], 3, axis=2)
        self.bit_edges = [round(i * width / BITS) for i in range(BITS + 1)]
        self.frame = self.base.copy()

    def draw(self, n: int) -> np.ndarray:
        """The RGBA pixels of frame `n` (a buffer reused between calls)."""
        f = self.frame
        off = (n * STRIPE_STEP) % STRIPE_PERIOD
        f[self.y_bars:self.y_band, :, :3] = self.stripes[:, off:off + self.width]
        for i, bit in enumerate(encode_counter(n)):
            f[self.y_band:self.y_bits, self.bit_edges[i]:self.bit_edges[i + 1], :3] = 255 if bit else 0
        return f


def read_counter(luma: np.ndarray) -> tuple[int, bool]:
    """(frame number mod 4096, check bits valid) from a decoded frame's Y plane (h x w)."""
    h, w = luma.shape
    y0, y1 = int(h * 0.80), max(int(h * 0.95), int(h * 0.80) + 1)
    bits = []
    for i in range(BITS):
        x0, x1 = int((i + 0.25) * w / BITS), max(int((i + 0.75) * w / BITS), int((i + 0.25) * w / BITS) + 1)
        bits.append(1 if luma[y0:y1, x0:x1].mean() > 128 else 0)
    value = 0
    for bit in bits:
        value = (value << 1) | bit
    counter = value >> 4
    return counter, (value & 0xF) == _check(counter)


def check_bars(rgba: np.ndarray) -> float:
    """The largest deviation (0-255) of a bar centre's mean colour from the expected one."""
    h, w = rgba.shape[:2]
    y0, y1 = int(h * 0.1), max(int(h * 0.4), int(h * 0.1) + 1)
    worst = 0.0
    for i, color in enumerate(BARS):
        x0 = int((i + 0.3) * w / len(BARS))
        x1 = max(int((i + 0.7) * w / len(BARS)), x0 + 1)
        mean = rgba[y0:y1, x0:x1, :3].reshape(-1, 3).mean(axis=0)
        worst = max(worst, float(np.abs(mean - color).max()))
    return worst


def counter_gap(previous: int | None, current: int) -> int:
    """Frames skipped between two decoded frame numbers (mod 4096); 0 if consecutive or
    repeated/out of order."""
    if previous is None:
        return 0
    step = (current - previous) % COUNTER_MOD
    return step - 1 if 0 < step < COUNTER_MOD // 2 else 0
