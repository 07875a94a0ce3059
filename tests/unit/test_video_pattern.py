"""The synthetic camera picture of the e2e video tests (tests/support/video_pattern.py):
frame numbers and colour bars read back at every simulcast layer's size."""

from __future__ import annotations

import numpy as np
import pytest

from support.video_pattern import (BARS, COUNTER_MOD, PatternWriter, check_bars, counter_gap, encode_counter,
                                   read_counter)


def luma(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.float64)
    return 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255  # BT.601


def downscale(rgba: np.ndarray, factor: int) -> np.ndarray:
    h, w = rgba.shape[:2]
    return rgba.reshape(h // factor, factor, w // factor, factor, 4).astype(np.float64).mean(axis=(1, 3))


@pytest.mark.parametrize("factor", [1, 2, 4], ids=["1280x720", "640x360", "320x180"])
@pytest.mark.parametrize("n", [0, 1, 77, 1234, COUNTER_MOD - 1, COUNTER_MOD + 5])
def test_frame_number_and_bars_read_back_at_every_layer(factor, n):
    frame = downscale(PatternWriter(1280, 720).draw(n), factor)
    noisy = frame + np.random.default_rng(n).normal(0, 6, frame.shape)  # codec-like noise
    assert read_counter(luma(noisy)) == (n % COUNTER_MOD, True)
    assert check_bars(noisy) < 10


def test_black_white_and_wrong_pictures_fail_the_check():
    assert read_counter(np.zeros((180, 320)))[1] is False
    assert read_counter(np.full((180, 320), 255.0))[1] is False
    assert check_bars(np.zeros((180, 320, 4))) >= BARS.max() - 1
    assert len(encode_counter(5)) == 16


def test_counter_gap():
    assert counter_gap(None, 5) == 0
    assert counter_gap(5, 6) == 0
    assert counter_gap(5, 9) == 3
    assert counter_gap(COUNTER_MOD - 1, 1) == 1  # wraps
    assert counter_gap(9, 5) == 0 and counter_gap(5, 5) == 0  # late or repeated: no gap
