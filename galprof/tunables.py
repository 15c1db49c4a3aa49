"""The tunables of galprof's analysis as data: tunables.toml beside this module.

`@defaults("section")` makes a class a frozen dataclass whose fields take their defaults
from that section, so every value and the reason for it are written down once, in the
data file. A section and its class must name the same fields (checked on import).
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from pathlib import Path

from galprof.errors import SetupError

PATH = Path(__file__).with_name("tunables.toml")
AUTO = "auto"            # TOML has no null: "auto" means "let the code decide" (None)


@functools.lru_cache(maxsize=1)
def _data() -> dict:
    try:
        with open(PATH, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SetupError(f"{PATH}: unreadable tunables ({e})") from None


def section(name: str) -> dict:
    values = _data().get(name)
    if not isinstance(values, dict):
        raise SetupError(f"{PATH}: no [{name}] section")
    return {k: None if v == AUTO else tuple(v) if isinstance(v, list) else v
            for k, v in values.items()}


def defaults(name: str):
    """Class decorator: a frozen dataclass with the defaults of section `name`."""
    def wrap(cls):
        values = section(name)
        fields = list(cls.__dict__.get("__annotations__", {}))
        missing = [f for f in fields if f not in values]
        extra = [k for k in values if k not in fields]
        if missing or extra:
            raise SetupError(f"{PATH} [{name}] does not match {cls.__name__}: "
                             + "; ".join(x for x in (f"missing {missing}" if missing else "",
                                                     f"unknown {extra}" if extra else "") if x))
        for field in fields:
            setattr(cls, field, values[field])
        return dataclasses.dataclass(frozen=True)(cls)
    return wrap
