"""The one argument parser class of every ``llmcosim`` command and script.

Abbreviations are off (``--prefil`` must not run as ``--prefill``), and an unknown flag names
the closest real one. Subparsers inherit the class: ``add_subparsers`` builds its parsers with
``type(parent)``, so giving the top parser this class covers every ``sub.add_parser``.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["StrictParser", "closest_flag"]


def closest_flag(given: str, flags: Sequence[str]) -> str | None:
    """The flag in ``flags`` nearest to ``given`` (``--prefil`` -> ``--prefill``), or None."""
    name = given.split("=", 1)[0]
    longs = [f for f in flags if f.startswith("--")]
    # a prefix of a flag (an abbreviation) is always a match, the rest by similarity (0.6:
    # difflib's default cutoff)
    prefixed = [f for f in longs if f.startswith(name) and name.startswith("--")]
    if len(prefixed) == 1:
        return prefixed[0]
    close = difflib.get_close_matches(name, longs or list(flags), n=1)
    return close[0] if close else None


class StrictParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` without abbreviations; unknown flags get a suggestion."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        # argparse runs a subcommand through its parser's parse_known_args and only
        # reports leftovers at the top; reporting them here names the subcommand's flags.
        self._given = list(sys.argv[1:] if args is None else args)
        ns, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(self._unrecognized(extras))
        return ns, extras

    def error(self, message: str) -> NoReturn:
        # "--cont 4" for "--context 4" also leaves a required flag missing; name the typo,
        # the likely cause, rather than the flag it hid (only in a parser without subcommands,
        # whose flags are all its own).
        unknown = [a for a in getattr(self, "_given", None) or []
                   if a.startswith("--") and a != "--"
                   and a.split("=", 1)[0] not in self._option_string_actions]
        if unknown and not self._subparsers and "unrecognized" not in message:
            message = f"{self._unrecognized(unknown)}; {message}"
        bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if bad:  # a misspelt command or choice: name the closest one too
            choices = re.findall(r"'([^']*)'", bad.group(2)) or bad.group(2).split(", ")
            close = difflib.get_close_matches(bad.group(1), choices, n=1)
            message += f" (did you mean {close[0]}?)" if close else ""
        super().error(message)

    def _unrecognized(self, extras: list[str]) -> str:
        msg = f"unrecognized arguments: {' '.join(extras)}"
        flags = list(self._option_string_actions)
        for arg in extras:
            if arg.startswith("-") and arg not in ("-", "--"):
                hint = closest_flag(arg, flags)
                if hint:
                    return f"{msg} (did you mean {hint}?)"
        return msg
