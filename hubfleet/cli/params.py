"""Parameter types the verbs share: a bad value is a usage error naming the parameter (exit 2), never a traceback."""

from __future__ import annotations

import click

from hubfleet.descriptor import NAME_RE
from hubfleet.inputs import show


class CourseName(click.ParamType):
    """A course's name as `hubfleet list` shows it: checked before any lookup."""

    name = "NAME"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and NAME_RE.fullmatch(value):
            return value
        self.fail(f"{show(value)} is not a course name — 2–32 lowercase letters, digits and hyphens; "
                  "`hubfleet list` shows the courses", param, ctx)


COURSE = CourseName()


class FilePath(click.Path):
    """click's Path, refusing a NUL byte as a usage error (click itself raises ValueError from os.stat)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and "\x00" in value:
            self.fail(f"{show(value)} is not a file name (it holds a NUL byte)", param, ctx)
        return super().convert(value, param, ctx)
