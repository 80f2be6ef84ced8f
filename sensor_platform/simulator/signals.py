"""Sensor values: the normal daily cycle with noise, and the out-of-range values of anomalies."""

import numpy as np

from sensor_platform.simulator.draws import stream_key, uniform, uniform_one
from sensor_platform.simulator.fleet import MetricSpec

DAY_SECONDS = 86_400
PEAK_SECOND = 14 * 3600  # the cycle peaks mid-afternoon UTC ...
PEAK_SPREAD_SECONDS = 7200  # ... shifted by up to ±1 h per device and metric
DRIFT_PERIODS_SECONDS = (5 * 3600, 13 * 3600)  # a sensor's slow wander: two slow waves
THRESHOLD_LEVEL = 60.0  # seed 000: temperature CRITICAL at 60 °C
THRESHOLD_MARGIN = (5.0, 20.0)  # readings in a threshold episode lie 5..25 °C above the level
RISE_PER_MINUTE = (10.0, 10.0)  # a fire's rise: 10..20 °C per minute (rate rule: 8 °C/min)


def finish(values: np.ndarray, spec: MetricSpec | None = None) -> np.ndarray:
    """Values as published: multiples of the metric's resolution (if any), 3 decimals, and never
    "-0.0"."""
    if spec is not None and spec.resolution:
        values = np.round(values / spec.resolution) * spec.resolution
    return np.round(values, 3) + 0.0


def normal_values(seed: int, device_id: str, spec: MetricSpec, tick_s: np.ndarray) -> np.ndarray:
    """The metric's normal readings at the given event times (epoch seconds), inside its range.

    A daily cosine of `daily_amplitude` around the middle of the range, a slow wander of up to
    `drift`, triangular noise of at most `noise` and Gaussian noise of `noise_sd`, clipped to the
    range and published at the metric's resolution.
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
    if spec.drift:
        values += spec.drift * _wander(seed, device_id, spec.name, ticks)
    if spec.noise_sd:
        values += spec.noise_sd * _gaussian(seed, device_id, spec.name, ticks)
    return finish(np.clip(values, spec.min, spec.max), spec)


def _wander(seed: int, device_id: str, metric: str, ticks: np.ndarray) -> np.ndarray:
    """A slow wave in [-1, 1]: the mean of two sines of the drift periods, phases per device."""
    waves = []
    for period in DRIFT_PERIODS_SECONDS:
        phase = (
            2 * np.pi * uniform_one(stream_key(seed, device_id, metric, "drift", str(period)), 0)
        )
        waves.append(np.sin(np.mod(ticks, period) * (2 * np.pi / period) + phase))
    return (waves[0] + waves[1]) / 2


def _gaussian(seed: int, device_id: str, metric: str, ticks: np.ndarray) -> np.ndarray:
    """Standard normal draws per tick (Box-Muller on two counter-based uniform streams)."""
    u1 = uniform(stream_key(seed, device_id, metric, "gauss-r"), ticks)
    u2 = uniform(stream_key(seed, device_id, metric, "gauss-angle"), ticks)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)


def spike_value(seed: int, device_id: str, spec: MetricSpec, tick_s: int) -> float:
    """One reading far above the range: more than 3x its maximum (or its width, if larger), but
    never past what the unit can say (a relative humidity tops out at 100 %): a glitch a real
    sensor sends, not one the quality gate would throw out as impossible."""
    scale = max(abs(spec.max), spec.max - spec.min) or 1.0
    draw = uniform_one(stream_key(seed, device_id, spec.name, "spike"), tick_s)
    value = spec.max + 3 * scale * (1.0 + draw)
    if spec.unit == "%":
        value = min(value, 100.0)
    return float(finish(np.array([value]), spec)[0])


def threshold_values(seed: int, device_id: str, spec: MetricSpec, tick_s: np.ndarray) -> np.ndarray:
    """Over-temperature readings of a fire episode, all well above THRESHOLD_LEVEL."""
    draws = uniform(stream_key(seed, device_id, spec.name, "threshold"), tick_s)
    low, spread = THRESHOLD_MARGIN
    return finish(THRESHOLD_LEVEL + low + spread * draws, spec)


def rise_values(
    seed: int, device_id: str, spec: MetricSpec, tick_s: np.ndarray, start_s: int, cadence: int
) -> np.ndarray:
    """A fire's fast rise from the normal readings: RISE_PER_MINUTE (drawn per episode) on top of
    them, the first affected tick already one cadence into the rise."""
    draw = uniform_one(stream_key(seed, device_id, spec.name, "rise"), start_s)
    low, spread = RISE_PER_MINUTE
    per_second = (low + spread * draw) / 60
    base = normal_values(seed, device_id, spec, tick_s)
    return finish(base + per_second * (np.asarray(tick_s) - start_s + cadence), spec)
