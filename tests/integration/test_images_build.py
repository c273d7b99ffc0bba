"""Image builds against the real engine: a cached image answers at once; a failed build says why."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hubfleet.providers.docker import images
from hubfleet.errors import ProvisionError

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]  # a first build takes minutes


def test_a_built_image_is_returned_from_cache_at_once() -> None:
    refs = [images.ensure_base_image(print), images.ensure_stock_image(print), images.ensure_notebook_image(print)]
    messages: list[str] = []
    started = time.monotonic()
    again = [images.ensure_base_image(messages.append), images.ensure_stock_image(messages.append),
             images.ensure_notebook_image(messages.append)]
    assert again == refs and time.monotonic() - started < 1.0
    assert not any("building" in message for message in messages)
    assert images.image_id("hubfleet/notebook:latest") == images.image_id(refs[2])
    assert images.image_id("hubfleet/stock:latest") == images.image_id(refs[1])


def test_a_failed_build_raises_with_the_log_tail(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ARG BASE\nFROM ${BASE}\nRUN echo the-reason-it-broke && exit 3\n")
    recipe = images.Recipe("hubfleet/test-broken", {"Dockerfile": dockerfile},
                           {"parent": images.ensure_base_image(print)})
    messages: list[str] = []
    with pytest.raises(ProvisionError) as info:
        images._ensure(recipe, images._build_dockerfile_image, messages.append)
    assert "the-reason-it-broke" in str(info.value) and "docker build" in str(info.value)
    assert any("Step 3/" in message for message in messages)  # steps are reported, coarsely
    assert images.image_id(recipe.ref) is None


def test_stale_tags_are_removed_and_current_ones_kept() -> None:
    current = images.ensure_base_image(print)
    stale = "hubfleet/base:000000000000"
    assert images.run_docker(["tag", current, stale]).returncode == 0
    removed = images.remove_stale_images(print)
    assert stale in removed and current not in removed
    assert images.image_id(stale) is None and images.image_id(current) is not None
