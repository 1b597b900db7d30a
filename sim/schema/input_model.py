"""The base of every model read from a scenario or sweep file.

Unknown keys are errors (a typo must not be a silently ignored setting), the
models are frozen, and ``true``/``false`` are refused where a number is
expected: pydantic's lax mode reads ``workers: true`` as 1 worker, which no
one writing a scenario means.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

_NUMBERS = (int, float)


def _is_number_type(annotation: Any) -> bool:
    """int or float, alone or with None."""
    if annotation in _NUMBERS:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(a in _NUMBERS for a in args)
    return False


class InputModel(BaseModel):
    """Unknown keys refused, frozen, and no booleans taken for numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        """A boolean given for an int or float field is an error at that field's key (the
        "scenario" error type with a key path relative to this model, see describe_error)."""
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                if not isinstance(value, bool) or field is None or not _is_number_type(field.annotation):
                    continue
                if any(isinstance(m, BeforeValidator) for m in field.metadata):
                    continue  # the field reads booleans itself (swap: false means off)
                message = f"expected a number, got {str(value).lower()}"
                context = {"loc": (key,), "relative": True, "where": key, "message": message}
                raise PydanticCustomError("scenario", "{where}: {message}", context)
        return data
