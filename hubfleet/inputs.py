"""Input from outside, bounded before anything trusts it: YAML files, text values, whole numbers.

Every descriptor, settings file and form goes through here first, so that no input can make
hubfleet crash, loop or eat memory, and every refusal names the field and the fix:

    data = load_yaml(text, source="course.yaml")   # size, nesting, aliases, scalars bounded
    problem = text_problem(value)                  # control characters in a text field
    number = whole_number(text, field="students")  # ASCII digits only, bounded
"""

from __future__ import annotations

import ipaddress
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from hubfleet.errors import FieldProblem, InvalidInput

MAX_FILE_BYTES = 64 * 1024  # a descriptor is a few hundred bytes; settings files a few kB
MAX_DEPTH = 12  # the deepest honest value is authenticator.search.bind_dn (3 levels)
MAX_NODES = 5_000  # values after expanding aliases: a billion-laughs file stops here
MAX_SCALAR = 4_096  # characters in one value (a file path, a DN, a URL)
MAX_DIGITS = 9  # whole numbers typed into forms: up to 999 999 999

# Characters that are never part of an honest value and break the files values are written into:
# C0/C1 controls (newline, tab, NUL, ESC, DEL), surrogates, line and paragraph separators.
_REFUSED_CATEGORIES = {"Cc", "Cs", "Zl", "Zp"}
_NAMES = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL byte",
          "\x1b": "an escape character", "\x7f": "a delete character"}


def text_problem(value: str) -> str | None:
    """Why this text cannot be a value (a control character), or None."""
    for position, char in enumerate(value):
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            name = _NAMES.get(char) or unicodedata.name(char, "a control character").lower()
            return (f"contains U+{ord(char):04X} ({name}) at position {position + 1} — remove line breaks, "
                    "tabs and other invisible characters")
    return None


def show(value: Any, limit: int = 60) -> str:
    """A short, safe repr for messages: long text is cut, huge numbers are described, never converted."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 100:
            return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
        return repr(value)
    text = repr(value) if isinstance(value, (str, float)) else f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 1] + "…'"


def whole_number(text: str, *, largest: int = 10**MAX_DIGITS - 1) -> int | None:
    """A whole number written in ASCII digits (not '²', not '١٢', not 5000 digits), or None."""
    text = text.strip()
    if not text or len(text) > MAX_DIGITS or not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if number <= largest else None


# --- YAML --------------------------------------------------------------------------------------


class _Frame:
    """One open mapping or sequence while reading YAML events: its size so far and where it is."""

    __slots__ = ("kind", "anchor", "size", "path", "keys", "expect_key", "key", "index")

    def __init__(self, kind: str, anchor: str | None, path: str):
        self.kind, self.anchor, self.path = kind, anchor, path
        self.size, self.keys, self.expect_key, self.key, self.index = 1, set(), True, None, 0

    def child_path(self) -> str:
        if self.kind == "seq":
            return f"{self.path}[{self.index}]"
        if self.expect_key:
            return self.path
        key = self.key if isinstance(self.key, str) else "?"
        return f"{self.path}.{key}" if self.path else key


def check_yaml_shape(text: str) -> list[FieldProblem]:
    """Problems with the shape of a YAML text, found from its events before anything is built.

    Depth, expanded size (aliases count as often as they are used: a billion-laughs file is
    refused after MAX_NODES, in time linear in the text), value length and duplicate keys.
    """
    anchors: dict[str, int] = {}  # expanded size of each finished anchored value
    stack: list[_Frame] = []
    total = 0

    def add(size: int, anchor: str | None, path: str, key_text: str | None = None) -> FieldProblem | None:
        nonlocal total
        total += size
        if anchor is not None:
            anchors[anchor] = size
        if total > MAX_NODES:
            return FieldProblem(path, f"the file expands to more than {MAX_NODES} values (aliases count each time "
                                      "they are used) — write the values out; a course needs a few dozen")
        if stack:
            parent = stack[-1]
            parent.size += size
            if parent.kind == "seq":
                parent.index += 1
            elif parent.expect_key:
                if key_text is not None and key_text in parent.keys:
                    where = f"{parent.path}.{key_text}" if parent.path else key_text
                    return FieldProblem(where, "appears twice — keep one (YAML would silently use the last)")
                if key_text is not None:
                    parent.keys.add(key_text)
                parent.key, parent.expect_key = key_text, False
            else:
                parent.expect_key = True
        return None

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            path = stack[-1].child_path() if stack else ""
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    return [FieldProblem(path, f"is nested more than {MAX_DEPTH} levels deep — a course descriptor "
                                               "needs three or four")]
                stack.append(_Frame("map" if isinstance(event, yaml.MappingStartEvent) else "seq",
                                    event.anchor, path))
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frame = stack.pop()
                problem = add(frame.size, frame.anchor, frame.path)
                if problem:
                    return [problem]
            elif isinstance(event, yaml.ScalarEvent):
                if len(event.value) > MAX_SCALAR:
                    return [FieldProblem(path, f"is {len(event.value)} characters long — keep a value under "
                                               f"{MAX_SCALAR}")]
                problem = add(1, event.anchor, path, key_text=event.value)
                if problem:
                    return [problem]
            elif isinstance(event, yaml.AliasEvent):
                if any(frame.anchor == event.anchor for frame in stack):
                    return [FieldProblem(path, f"the alias *{event.anchor} refers to a value that contains it — "
                                               "write the value out")]
                if event.anchor not in anchors:
                    return []  # an undefined alias: the loader names its line
                problem = add(anchors[event.anchor], None, path)
                if problem:
                    return [problem]
    except yaml.YAMLError:
        return []  # the loader reports syntax errors with their line
    return []


def load_yaml(text: str, *, source: str) -> Any:
    """The data of a YAML text, or InvalidInput naming the field (or line) and the fix."""
    if len(text) > MAX_FILE_BYTES:
        raise InvalidInput([FieldProblem("", f"is {len(text)} characters long — a descriptor or settings file "
                                             f"holds less than {MAX_FILE_BYTES // 1024} kB")], source=source)
    problems = check_yaml_shape(text)
    if problems:
        raise InvalidInput(problems, source=source)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise InvalidInput(
            [FieldProblem("", f"{where}not valid YAML ({getattr(exc, 'problem', None) or 'syntax error'}) — "
                              "check indentation and quotes")],
            source=source,
        ) from None
    except Exception as exc:  # noqa: BLE001 — PyYAML's constructors raise anything on bad scalars (`!!int ''`, 2027-02-30)
        raise InvalidInput([FieldProblem("", f"a value cannot be read ({type(exc).__name__}: {show(str(exc), 120)}) "
                                             "— quote it, or fix it")], source=source) from None


def read_yaml(path: Path | str, *, missing: str = "check the path") -> Any:
    """A YAML file's data, read within the bounds above; InvalidInput naming the file, field or line."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InvalidInput([FieldProblem("", f"no such file: {path} — {missing}")], source=source) from None
    except IsADirectoryError:
        raise InvalidInput([FieldProblem("", f"{path} is a directory — give the YAML file in it")],
                           source=source) from None
    except OSError as exc:
        raise InvalidInput([FieldProblem("", f"cannot read {path}: {exc.strerror or exc}")], source=source) from None
    except ValueError:  # a NUL in the path
        raise InvalidInput([FieldProblem("", f"{show(str(path))} is not a file name — check the path")],
                           source=show(str(path))) from None
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidInput([FieldProblem("", f"is larger than {MAX_FILE_BYTES // 1024} kB — a descriptor or settings "
                                             "file holds a few hundred bytes; is it the right file?")], source=source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput([FieldProblem("", f"is not UTF-8 text (byte {exc.start + 1}) — save it as UTF-8")],
                           source=source) from None
    return load_yaml(text, source=source)


DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DURATION_SECONDS = 366 * 86400


def duration_problem(value: Any) -> str | None:
    """Why this is not a duration such as `2d`, `12h`, `30m` or `1w` (at most a year), or None."""
    if not isinstance(value, str):
        return f"{show(value)} is not a duration — write a number and a unit in quotes: \"2d\", \"12h\", \"30m\", \"1w\""
    text = value.strip()
    if text in ("0", "0d"):
        return None
    if len(text) < 2 or text[-1] not in DURATION_UNITS or not text[:-1].isascii() or not text[:-1].isdigit() \
            or len(text) > 8:
        return f"{show(value)} is not a duration — write a whole number and one of m, h, d, w: \"2d\", \"12h\", \"30m\""
    if int(text[:-1]) * DURATION_UNITS[text[-1]] > MAX_DURATION_SECONDS:
        return f"{show(value)} is longer than a year — give at most \"366d\""
    return None


def duration_seconds(value: str) -> int:
    """Seconds in a duration that `duration_problem` accepted."""
    text = value.strip()
    return 0 if text == "0" else int(text[:-1]) * DURATION_UNITS[text[-1]]


def ipv4_network(value: Any, example: str, why: str = "the hosts' networks here are IPv4") -> ipaddress.IPv4Network:
    """An IPv4 range as written (host bits not set), or a ValueError naming the fix."""
    try:
        net = ipaddress.ip_network(str(value).strip(), strict=True)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 range — write one such as {example}") from None
    if net.version != 4:
        raise ValueError(f"{value} is IPv6 — {why}: write a range such as {example}")
    return net
