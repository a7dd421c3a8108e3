"""Typer's option coercion for the plain types xfer uses, without pydantic.

Typer 0.2x coerces every parameter through a pydantic ``TypeAdapter``: importing
pydantic and building one adapter per option cost about 0.1-0.2 s of each
``xfer send`` and ``xfer receive`` here, a third of a 1 KiB transfer's time per
process (py-spy; bench/README.md). xfer's options are ``str``, ``int``,
``float``, ``bool``, ``Path`` and lists of those, some with ``min``/``max``;
``install`` gives exactly those a plain-Python coercion with typer's own
messages, and leaves every other annotation, and any typer without this hook
(older ones coerce with click and never import pydantic), to typer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any, get_args, get_origin

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off", ""}
_INT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?", re.ASCII)  # "1.0" is 1, as with typer's own checks


def install() -> bool:
    """Route typer's plain parameters through ``_converter``; True if typer has the hook."""
    try:
        from dataclasses import dataclass

        from typer import _coercion, core
        from typer._click.exceptions import BadParameter
        from typer._param_types import coerce_cli_path
    except ImportError:
        return False
    original = getattr(core, "build_runtime_param", None)
    base = getattr(_coercion, "RuntimeParam", None)
    if original is None or base is None:
        return False
    if getattr(original, "xfer_plain", False):
        return True

    @dataclass(frozen=True)
    class PlainRuntimeParam(base):  # type: ignore[misc, valid-type]
        convert: Callable[[Any, Any, Any], Any]

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                return self.convert(value, param, ctx)
            except ValueError as exc:
                raise BadParameter(str(exc), ctx=ctx, param=param) from None

    def build_runtime_param(descriptor: Any) -> Any:
        convert = None
        if descriptor.file_annotation is None:
            convert = _converter(descriptor.annotation, descriptor.parameter_info, coerce_cli_path)
        if convert is None:
            return original(descriptor)
        return PlainRuntimeParam(
            annotation=descriptor.annotation, parameter_info=descriptor.parameter_info, convert=convert
        )

    build_runtime_param.xfer_plain = True  # type: ignore[attr-defined]
    build_runtime_param.typer_own = original  # type: ignore[attr-defined]
    core.build_runtime_param = build_runtime_param  # type: ignore[attr-defined]
    return True


def _converter(
    annotation: Any, info: Any, coerce_cli_path: Callable[..., Any]
) -> Callable[[Any, Any, Any], Any] | None:
    """A converter ``(value, param, ctx) -> value`` for ``annotation``, or None to leave it to typer."""
    if getattr(info, "parser", None) is not None or getattr(info, "clamp", False):
        return None
    if get_origin(annotation) is list:
        (item,) = get_args(annotation) or (None,)
        one = _converter(item, info, coerce_cli_path) if item is not None else None
        if one is None:
            return None
        return lambda value, param, ctx: [
            one(v, param, ctx) for v in (value if isinstance(value, (list, tuple)) else [value])
        ]
    if annotation is str:
        return lambda value, param, ctx: value if isinstance(value, str) else _text(value)
    if annotation is bool:
        return lambda value, param, ctx: _bool(value)
    if annotation is int or annotation is float:
        return _number(annotation, info.min, info.max)
    if isinstance(annotation, type) and issubclass(annotation, Path) and getattr(info, "path_type", None) is None:

        def path(value: Any, param: Any, ctx: Any) -> Any:
            if not isinstance(value, annotation):
                if not isinstance(value, (str, PathLike)):
                    raise ValueError(f"Input is not a valid path for {annotation}")
                value = annotation(value)  # typer's own checks below then need no pydantic
            return coerce_cli_path(value, info, path_type=annotation, param=param, ctx=ctx)

        return path
    return None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        import sys

        return value.decode(sys.getfilesystemencoding(), "surrogateescape")
    if value is None:
        raise ValueError("None is not a valid string")
    return str(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and float(value).is_integer():
        if value in (0, 1):
            return bool(value)
        raise ValueError("Input should be a valid boolean, unable to interpret input")
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError("Input should be a valid boolean, unable to interpret input")
    raise ValueError("Input should be a valid boolean")


def _number(kind: type, lo: float | None, hi: float | None) -> Callable[[Any, Any, Any], Any]:
    def convert(value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, (int, float, str)):
            raise ValueError(f"Input should be a valid {'integer' if kind is int else 'number'}")
        if isinstance(value, str):
            text = value.strip()
            try:
                if not text.isascii() or (kind is int and not _INT.fullmatch(text)):
                    raise ValueError(text)
                value = kind(text.split(".")[0]) if kind is int else kind(text)
            except ValueError:
                what = "an integer" if kind is int else "a number"
                raise ValueError(
                    f"Input should be a valid {'integer' if kind is int else 'number'}, "
                    f"unable to parse string as {what}"
                ) from None
        elif kind is int and isinstance(value, float):
            if not value.is_integer():
                raise ValueError("Input should be a valid integer, got a number with a fractional part")
            value = int(value)
        else:
            value = kind(value)
        # "not <=" rather than ">", so that nan fails a bound as it does with typer's own checks
        if hi is not None and not value <= hi:
            raise ValueError(f"Input should be less than or equal to {_bound(hi)}")
        if lo is not None and not value >= lo:
            raise ValueError(f"Input should be greater than or equal to {_bound(lo)}")
        return value

    return convert


def _bound(limit: float) -> str:
    return str(int(limit)) if float(limit).is_integer() else str(limit)
