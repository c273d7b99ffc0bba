"""The LTI 1.1 course shared by test_lti11.py and test_browser_lti.py (pytest plugin: one course per run).

Creating a course takes a minute or two on a small machine, so both modules use this one. The
LMS origin allowed to frame it is a port on 127.0.0.1 chosen now, where the browser test later
serves its course page.
"""

from __future__ import annotations

import json
import secrets

import pytest

from hubfleet.providers.docker import acme_local
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

# The scheme students use: https with a certificate from the embedded ACME server (roles/tls), as an
# LMS requires; add "http" to run the module against a plain-HTTP course as well (one more course).
LTI_SCHEMES = ["https"]
LOCAL_TLS = {"acme_server": "local", "email": "ops@example.edu"}


@pytest.fixture(scope="session", params=LTI_SCHEMES)
def lti11_course(request, tmp_path_factory) -> TestCourse:
    """An LTI 1.1 course made with `hubfleet create`, removed at the end of the run."""
    name = f"t-lti11-{secrets.token_hex(2)}"
    lms_port = free_port()
    directory = tmp_path_factory.mktemp(name)
    env = course_env(directory / "state")
    authenticator = {"kind": "lti11", "secret": "generate", "lms_origin": f"http://127.0.0.1:{lms_port}"}
    https = request.param == "https"
    descriptor = write_descriptor(directory, name, authenticator, **({"tls": LOCAL_TLS} if https else {}))
    try:
        course = create_course(env, descriptor, name)
        assert course.url.startswith(f"{request.param}://")
        course.extra.update(json.loads(hubfleet(env, "lti-config", name, "--json").stdout), lms_port=lms_port)
        with reaching(course):
            yield course
    finally:
        destroy_course(env, name)
        if https:
            acme_local.stop_local_acme(directory / "state")
