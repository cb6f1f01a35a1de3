"""Philox4x32-10 known-answer vectors (Random123, kat_vectors)."""

import numpy as np
import pytest
from tenure.engine.rng import normal_table, philox_block, seed_key


@pytest.mark.parametrize(
    ("counter", "key", "expected"),
    [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        (
            (0xFFFFFFFF,) * 4,
            (0xFFFFFFFF,) * 2,
            (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
        ),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_philox_known_answers(counter, key, expected):
    out = philox_block(np.array([counter], dtype=np.uint32), np.uint32(key[0]), np.uint32(key[1]))
    assert tuple(int(x) for x in out[0]) == expected


def test_philox_words_are_uniform():
    # 2**16 counters -> 2**18 words; a chi-square test over 64 bins at the 0.1 % level.
    n = 1 << 16
    ctr = np.zeros((n, 4), dtype=np.uint32)
    ctr[:, 0] = np.arange(n)
    words = philox_block(ctr, np.uint32(7), np.uint32(0)).ravel()
    counts = np.bincount(words >> 26, minlength=64)
    expected = words.size / 64
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 103.4  # chi-square 0.999 quantile with 63 degrees of freedom


def test_seed_key_splits_and_rejects():
    assert seed_key(2**32 + 5) == (5, 1)
    with pytest.raises(ValueError):
        seed_key(-1)


def test_normal_table_moments():
    t = normal_table()
    assert abs(float(t.mean())) < 1e-6
    # Discretisation at 4096 midpoints loses a little variance in the tails.
    assert 0.995 < float(t.var()) < 1.0
