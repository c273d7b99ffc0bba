"""The LTI 1.1 course shared by test_lti11.py and test_browser_lti.py (pytest plugin: one course per run).

Creating a course takes a minute or two on a small machine, so both modules use this one. The
LMS origin allowed to frame it is a port on 127.0.0.1 chosen now, where the browser test later
serves its course page.
"""

from __future__ import annotations

import json
import secrets

import pytest

from tests.support.courses import (
    TestCourse,
    course_env,
    create_course,
    destroy_course,
    free_port,
    hubfleet,
    reaching,
    write_descriptor,
)


@pytest.fixture(scope="session")
def lti11_course(tmp_path_factory) -> TestCourse:
    """An LTI 1.1 course made with `hubfleet create` (HTTPS from the embedded ACME server, the default, as an
    LMS requires), removed at the end of the run."""
    name = f"t-lti11-{secrets.token_hex(2)}"
    lms_port = free_port()
    directory = tmp_path_factory.mktemp(name)
    env = course_env(directory / "state")
    authenticator = {"kind": "lti11", "secret": "generate", "lms_origin": f"http://127.0.0.1:{lms_port}"}
    descriptor = write_descriptor(directory, name, authenticator)
    try:
        course = create_course(env, descriptor, name)
        assert course.url.startswith("https://")
        course.extra.update(json.loads(hubfleet(env, "lti-config", name, "--json").stdout), lms_port=lms_port)
        with reaching(course):
            yield course
    finally:
        destroy_course(env, name)
