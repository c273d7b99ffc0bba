"""Render one role template with Ansible itself (its real filters), then run a Python snippet as the hub would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from hubfleet.ansible import unsafe_yaml

ROOT = Path(__file__).resolve().parents[2]


def render(role: str, template: str, variables: dict, tmp_path: Path) -> str:
    """The template as the role writes it, variables given as hubfleet gives them (`!unsafe` YAML)."""
    dest = tmp_path / f"{role}-{template}"
    vars_file = tmp_path / f"{role}-{template}.vars.yml"
    vars_file.write_text(unsafe_yaml({**variables, "ansible_python_interpreter": sys.executable}))
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "vars_files": [str(vars_file)],
             "tasks": [{"ansible.builtin.template": {"src": str(ROOT / "roles" / role / "templates" / template),
                                                     "dest": str(dest)}}]}]
    playbook = tmp_path / "render.yml"
    playbook.write_text(yaml.safe_dump(play))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "False",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", str(playbook)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    return dest.read_text(encoding="utf-8")


def run_text(text: str, environ: dict[str, str] | None = None):
    """Run a rendered snippet against the recording stand-in of traitlets' config (tests/unit/test_auth_snippets)."""
    from tests.unit.test_auth_snippets import Config

    config = Config()
    old, saved_path = dict(os.environ), list(sys.path)
    os.environ.update(environ or {})
    try:
        exec(compile(text, "snippet.py", "exec"),  # noqa: S102
             {"get_config": lambda: config, "load_subconfig": lambda name: None})
    finally:
        os.environ.clear()
        os.environ.update(old)
        sys.path[:] = saved_path
    return config
