"""Units as devices spell them, brought to the one spelling per quantity that the quality rules,
the anomaly thresholds and the aggregates expect.

A fleet spells the same unit many ways ("C", "degC", "celsius", "%RH", "PPM"); each spelling
below becomes its canonical form. Fahrenheit is converted: the value becomes °C and the unit
°C, and the original unit is kept nowhere. Keeping °F as a unit of its own would let a window's
mean mix °C and °F readings of one device and let 100 °F cross the 40 °C alarm threshold; a
converted reading is simply a temperature like the others.

Spellings that could mean something else (a bare "C" could be coulombs, "RH" is humidity only)
apply only to a known metric whose unit they are. A known metric whose unit is none of its
spellings keeps the unit as given, so the quality check `unit_allowed` reports it and the
reading stays out of the aggregates. Unknown units pass through unchanged.
"""

from collections.abc import Callable

CELSIUS, FAHRENHEIT, PERCENT, PPM = "°C", "°F", "%", "ppm"

# The unit of each known metric when a payload names none (and the unit its spellings become).
DEFAULT_UNITS: dict[str, str] = {
    "temperature": CELSIUS,
    "humidity": PERCENT,
    "co2": PPM,
    "co_level": PPM,
    "gas_level": PPM,
    "smoke_density": "obs/m",
}

# Folded spelling (see _fold) -> canonical unit, for any metric.
SPELLINGS: dict[str, str] = {
    **dict.fromkeys(
        ("°c", "degc", "degreec", "degreesc", "celsius", "degcelsius", "degreescelsius", "℃"),
        CELSIUS,
    ),
    **dict.fromkeys(
        (
            "°f",
            "degf",
            "degreef",
            "degreesf",
            "fahrenheit",
            "degfahrenheit",
            "degreesfahrenheit",
            "℉",
        ),
        FAHRENHEIT,
    ),
    **dict.fromkeys(("%", "%rh", "percent", "percentrh", "pct"), PERCENT),
    **dict.fromkeys(("ppm", "ppmv", "partspermillion"), PPM),
}
# Spellings too short to trust on their own: only for a known metric measured in that unit.
SHORT_SPELLINGS: dict[str, str] = {"c": CELSIUS, "f": FAHRENHEIT, "rh": PERCENT}

# Units converted on the way in: unit -> (canonical unit, conversion of the value).
CONVERSIONS: dict[str, tuple[str, Callable[[float], float]]] = {
    FAHRENHEIT: (CELSIUS, lambda value: (value - 32.0) * 5.0 / 9.0),
}

_CANONICAL = frozenset(DEFAULT_UNITS.values()) - frozenset(CONVERSIONS)
_DEGREE_SIGNS = str.maketrans({"º": "°", "˚": "°", " ": None, "_": None, "-": None, ".": None})


def normalize_unit(metric: str, value: float, unit: str | None) -> tuple[float, str | None]:
    """The value and unit of one reading with the unit in its canonical spelling (°F as °C);
    a unit it does not know is returned as given. `None` stays `None` (the caller supplies the
    metric's default unit)."""
    if unit is None or unit in _CANONICAL:  # the common case, kept cheap: once per reading
        return value, unit
    expected = DEFAULT_UNITS.get(metric)
    folded = _fold(unit)
    canonical = SPELLINGS.get(folded)
    if canonical is None and expected is not None:
        canonical = SHORT_SPELLINGS.get(folded)
    if canonical is None:
        return value, unit
    target, convert = CONVERSIONS.get(canonical, (canonical, None))
    if expected is not None and target != expected:
        return value, unit  # e.g. "%" for co2: left for the quality check to report
    return (convert(value) if convert else value), target


def _fold(unit: str) -> str:
    """Case, spaces, underscores, dashes, dots and look-alike degree signs do not matter."""
    return unit.strip().casefold().translate(_DEGREE_SIGNS)
