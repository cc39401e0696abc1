"""Value rules the service records share: printable text, a small measurement environment, and
numbers that JSON can hold."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from latency_lut.kit import environment_problems


def printable(value: str, what: str) -> str:
    """Refuse control characters (PostgreSQL cannot even store NUL in text or JSON)."""
    if not value.isprintable():
        raise ValueError(f"{what} must be printable text, got {value!r}")
    return value


def checked_environment(value: dict[str, str]) -> dict[str, str]:
    """A measurement environment as stored: a small flat map of short printable strings."""
    problems = environment_problems(value, "environment")
    if problems:
        raise ValueError(problems[0])
    return value


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: such a number (e.g. an undefined Spearman rho) becomes None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


FiniteFloat = Annotated[float | None, BeforeValidator(finite_or_none)]
"""A float of a report; null where it is undefined (NaN) or infinite."""


class TimedMeasurement(BaseModel):
    """What every uploaded measurement says about its timing (a block key's or a whole network's)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    median_ms: float = Field(gt=0, allow_inf_nan=False)
    iqr_ms: float = Field(ge=0, allow_inf_nan=False)
    runs: int = Field(ge=1, le=1_000_000)
    runtime_version: str = Field(min_length=1, max_length=50)

    @field_validator("runtime_version")
    @classmethod
    def _printable(cls, value: str) -> str:
        return printable(value, "runtime_version")
