"""No command line makes `hubfleet` show a traceback: bad flags, names, files and settings exit non-zero with a message.

Property tests (Hypothesis) through click's CliRunner, in a throwaway state dir with no course in it,
so nothing is ever created or removed. Bounded: they add seconds to the unit run.
"""

from __future__ import annotations

import os

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubfleet.cli import cli

EXAMPLES = int(os.environ.get("HUBFLEET_PROPERTY_EXAMPLES", 150))
ODD = ["", " ", "-", "--", "²", "٣", "0", "-1", "65", "999999999999999999999", "1e3", "nan", "x\ny", "a\x00b",
       "{{ 7*7 }}", "../../etc/passwd", "/", "/dev/null", "/proc/self/mem", "é" * 300, "UPPER", "ok-name",
       "--json", "--help", "--hosts", "--flavors", "--no-probe", "--yes", "--no-archive", "--schema", "--config",
       "--password-file", "--port", "--bind", "--public-url", "-v", "-vv", "--state-dir", "--database-url",
       "sqlite:///:memory:", "garbage://", "http://x", "ops@example.edu", "not-an-email"]
VERBS = [["validate"], ["plan"], ["list"], ["status"], ["credentials"], ["lti-config"], ["destroy"], ["scale"],
         ["portal", "check-config"], ["portal", "add-operator"], ["portal", "add-teacher"], ["create"]]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Files the fuzzer may name: broken descriptors and settings of every kind (never a valid descriptor,
    so `create` cannot start anything)."""
    folder = tmp_path_factory.mktemp("cli-props")
    contents = {
        "empty.yaml": b"", "list.yaml": b"- a\n- b\n", "binary.yaml": b"\xff\xfe\x00\x01",
        "laughs.yaml": b"a: &a [x,x,x,x,x,x,x,x,x,x]\n" + b"".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 10)}]\n".encode() for i in range(8)),
        "deep.yaml": b"name: " + b"[" * 5000 + b"]" * 5000,
        "nul.yaml": b"name: a\x00b\n", "newline.yaml": yaml.safe_dump({"name": "x\n", "title": "t"}).encode(),
        "tls-off.yaml": yaml.safe_dump({"name": "course", "tls": None}).encode(),
        "flavors.yaml": b"docker: {name: x}\n", "flavors-list.yaml": b"- 1\n",
        "portal.yaml": b"workers: 999\nldap_ca_certificate: /nonexistent\n", "pw": b"short\n",
        "pw-binary": b"\xff\x00", "pw-lines": b"a-long-enough-password\nsecond line\n",
        "big.yaml": b"title: " + b"x" * 70_000,
    }
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    (folder / "a-directory").mkdir()
    return [str(folder / name) for name in [*contents, "a-directory", "missing.yaml"]]


@st.composite
def command_lines(draw, files: list[str]) -> list[str]:
    verb = draw(st.sampled_from(VERBS))
    pool = st.one_of(st.sampled_from(ODD), st.sampled_from(files), st.text(max_size=12))
    args = draw(st.lists(pool, max_size=5))
    if verb == ["create"]:
        args = [draw(st.sampled_from(files))] + [a for a in args if a not in ("--help",)]
    return [*verb, *args]


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_command_line_shows_a_traceback(files, tmp_path_factory, data):
    argv = data.draw(command_lines(files))
    state = tmp_path_factory.getbasetemp() / "cli-props-state"
    result = CliRunner().invoke(cli, ["--state-dir", str(state), *argv], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"hubfleet {argv!r} raised {result.exception!r}\n{result.output}") from result.exception
    assert "Traceback" not in result.output, argv
    if result.exit_code not in (0, 1):  # 1 is the prompt aborted by an empty stdin (add-operator)
        assert result.output.strip(), f"hubfleet {argv!r} exited {result.exit_code} without saying why"
    assert result.exit_code in (0, 1, 2, 3, 5, 7), (argv, result.exit_code, result.output)


@pytest.mark.parametrize("argv, words", [
    (["status", "a\nb"], "is not a course name"),
    (["destroy", "../../etc", "--yes"], "is not a course name"),
    (["plan", "{deep}"], "nested more than"),
    (["validate", "{laughs}"], "more than 5000 values"),
    (["validate", "{binary}"], "is not UTF-8"),
    (["validate", "{a-directory}"], "is a directory"),
    (["validate", "{big}"], "larger than 64 kB"),
    (["validate", "{tls-off}"], "HTTPS cannot be turned off"),
    (["--database-url", "garbage://", "list"], "--database-url"),
    (["portal", "add-teacher", "t@example.edu", "--password-file", "{pw-binary}"], "not a UTF-8 text file"),
    (["portal", "add-teacher", "t@example.edu", "--password-file", "{pw-lines}"], "more than one line"),
    (["portal", "add-teacher", "t@exa\x1bmple.edu", "--password-file", "{pw}"], "is not an email address"),
    (["portal", "check-config", "--config", "{portal}"], "ldap_ca_certificate"),
])
def test_bad_input_names_the_field_and_exits_2(files, tmp_path, argv, words):
    by_name = {os.path.basename(path).removesuffix(".yaml"): path for path in files}
    argv = [by_name[arg[1:-1]] if arg.startswith("{") else arg for arg in argv]
    result = CliRunner().invoke(cli, ["--state-dir", str(tmp_path / "state"), *argv])
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output
