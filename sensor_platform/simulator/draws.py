"""Counter-based random draws: each draw is a pure function of (seed, names, index).

The simulator never keeps a running random state. A stream is named by the seed and a few strings
(device, metric, purpose); its i-th draw is SplitMix64 of the stream key and i. Any window of
time therefore regenerates exactly the same numbers, however the time range is split.
"""

from hashlib import blake2b

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_UNIT = 2.0**-53


def stream_key(seed: int, *names: str) -> np.uint64:
    """The 64-bit key of the stream named by `seed` and `names`."""
    text = "\x1f".join((str(seed), *names)).encode()
    return np.uint64(int.from_bytes(blake2b(text, digest_size=8).digest(), "little"))


def uniform(key: np.uint64, index: np.ndarray | int) -> np.ndarray:
    """Draws in [0, 1) of stream `key` at each (int64) index; the same index gives the same draw."""
    counter = np.atleast_1d(np.asarray(index, dtype=np.int64)).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = counter * _GOLDEN + key
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * _UNIT


def uniform_one(key: np.uint64, index: int) -> float:
    return float(uniform(key, index)[0])
