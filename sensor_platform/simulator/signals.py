"""Sensor values: the normal daily cycle with noise, and the out-of-range values of anomalies."""

import numpy as np

from sensor_platform.simulator.draws import stream_key, uniform, uniform_one
from sensor_platform.simulator.fleet import MetricSpec

DAY_SECONDS = 86_400
PEAK_SECOND = 14 * 3600  # the cycle peaks mid-afternoon UTC ...
PEAK_SPREAD_SECONDS = 7200  # ... shifted by up to ±1 h per device and metric
THRESHOLD_LEVEL = 60.0  # seed 000: temperature CRITICAL at 60 °C
THRESHOLD_MARGIN = (5.0, 20.0)  # readings in a threshold episode lie 5..25 °C above the level


def finish(values: np.ndarray) -> np.ndarray:
    """Values as published: 3 decimals, and never "-0.0"."""
    return np.round(values, 3) + 0.0


def normal_values(seed: int, device_id: str, spec: MetricSpec, tick_s: np.ndarray) -> np.ndarray:
    """The metric's normal readings at the given event times (epoch seconds), inside its range.

    A daily cosine of `daily_amplitude` around the middle of the range, plus triangular noise of
    at most `noise` (bounded, so an ordinary reading never looks like a spike).
    """
    ticks = np.asarray(tick_s, dtype=np.int64)
    shift = uniform_one(stream_key(seed, device_id, spec.name, "peak"), 0) - 0.5
    shift *= PEAK_SPREAD_SECONDS
    seconds = np.mod(ticks - PEAK_SECOND, DAY_SECONDS) - shift
    cycle = spec.daily_amplitude * np.cos(seconds * (2 * np.pi / DAY_SECONDS))
    noise_a = uniform(stream_key(seed, device_id, spec.name, "noise-a"), ticks)
    noise_b = uniform(stream_key(seed, device_id, spec.name, "noise-b"), ticks)
    middle = (spec.min + spec.max) / 2
    values = middle + cycle + spec.noise * (noise_a + noise_b - 1.0)
    return finish(np.clip(values, spec.min, spec.max))


def spike_value(seed: int, device_id: str, spec: MetricSpec, tick_s: int) -> float:
    """One reading far above the range: more than 3x its maximum (or its width, if larger)."""
    scale = max(abs(spec.max), spec.max - spec.min) or 1.0
    draw = uniform_one(stream_key(seed, device_id, spec.name, "spike"), tick_s)
    return float(finish(np.array([spec.max + 3 * scale * (1.0 + draw)]))[0])


def threshold_values(seed: int, device_id: str, metric: str, tick_s: np.ndarray) -> np.ndarray:
    """Over-temperature readings of a fire episode, all well above THRESHOLD_LEVEL."""
    draws = uniform(stream_key(seed, device_id, metric, "threshold"), tick_s)
    low, spread = THRESHOLD_MARGIN
    return finish(THRESHOLD_LEVEL + low + spread * draws)
