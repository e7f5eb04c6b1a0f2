"""Settings resolved as defaults < environment variables < command-line flags."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from series_selection.common.errors import InputError


@dataclass(frozen=True)
class Option:
    """One setting: its flag, the environment variable that can also set it, and its default."""

    flag: str
    env: str
    default: Any
    help: str
    choices: Sequence[str] | None = None
    type: Callable[[str], Any] = str
    """``bool`` makes a switch: a flag without a value, or the variable set to 1/true/yes/on
    (0/false/no/off for off)."""


SWITCH_WORDS = {"1": True, "true": True, "yes": True, "on": True}
SWITCH_WORDS |= {"0": False, "false": False, "no": False, "off": False}


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Declare each option on ``parser``; its default is resolved later, from the environment."""
    for option in options:
        default = "" if option.default is None else f"default: {option.default}; "
        shown = f" ({default}environment: {option.env})"
        if option.type is bool:
            parser.add_argument(
                option.flag, action="store_true", default=None, help=option.help + shown
            )
            continue
        parser.add_argument(
            option.flag,
            default=None,
            choices=option.choices,
            type=option.type,
            help=option.help + shown,
        )


def resolve(
    namespace: argparse.Namespace,
    options: Sequence[Option],
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Each option's value: the flag if given, else its environment variable, else its default."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for option in options:
        name = option.flag.lstrip("-").replace("-", "_")
        given = getattr(namespace, name)
        if given is not None:
            values[name] = given
        elif env.get(option.env):
            values[name] = _from_environment(option, env[option.env])
        else:
            values[name] = option.default
    return values


def _from_environment(option: Option, text: str) -> Any:
    if option.type is bool:
        switch = SWITCH_WORDS.get(text.strip().lower())
        if switch is None:
            raise InputError(f"{option.env}={text!r}: give 1 or 0 (or true/false, yes/no, on/off)")
        return switch
    try:
        value = option.type(text)
    except ValueError as error:
        raise InputError(f"{option.env}={text!r} is not a valid {option.flag} value") from error
    if option.choices is not None and value not in option.choices:
        raise InputError(f"{option.env}={text!r}: choose one of {', '.join(option.choices)}")
    return value
