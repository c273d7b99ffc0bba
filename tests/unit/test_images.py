"""Content tags of hubfleet's images: they change exactly when something that goes into an image changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubfleet.providers.docker import images
from hubfleet.errors import ProvisionError
from hubfleet.providers.docker.images import Recipe, content_tag, files_under


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.conf").write_text("a = 1\n")
    return tmp_path


def recipe_of(directory: Path, **params: str) -> Recipe:
    return Recipe("hubfleet/test", files_under(directory), dict(params))


def test_tag_is_stable_when_nothing_changes(recipe_dir: Path) -> None:
    first = content_tag(recipe_of(recipe_dir, parent="hubfleet/base:1"))
    (recipe_dir / "conf" / "a.conf").touch()  # a new mtime is not new content
    assert content_tag(recipe_of(recipe_dir, parent="hubfleet/base:1")) == first
    assert len(first) == images.TAG_LENGTH and all(c in "0123456789abcdef" for c in first)


def test_tag_changes_with_a_file_content(recipe_dir: Path) -> None:
    before = content_tag(recipe_of(recipe_dir))
    (recipe_dir / "conf" / "a.conf").write_text("a = 2\n")
    assert content_tag(recipe_of(recipe_dir)) != before


def test_tag_changes_with_a_new_or_renamed_file(recipe_dir: Path) -> None:
    before = content_tag(recipe_of(recipe_dir))
    (recipe_dir / "conf" / "b.conf").write_text("b = 1\n")
    with_new = content_tag(recipe_of(recipe_dir))
    (recipe_dir / "conf" / "b.conf").rename(recipe_dir / "conf" / "c.conf")
    assert len({before, with_new, content_tag(recipe_of(recipe_dir))}) == 3


def test_tag_changes_with_the_executable_bit(recipe_dir: Path) -> None:
    before = content_tag(recipe_of(recipe_dir))
    (recipe_dir / "conf" / "a.conf").chmod(0o755)
    assert content_tag(recipe_of(recipe_dir)) != before


def test_tag_changes_with_the_parent(recipe_dir: Path) -> None:
    assert content_tag(recipe_of(recipe_dir, parent="hubfleet/base:1")) != content_tag(
        recipe_of(recipe_dir, parent="hubfleet/base:2")
    )


def test_child_tag_follows_a_change_in_the_base(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.crt"
    bundle.write_text("one\n")
    monkeypatch.setattr(images, "MACHINE_CA_BUNDLE", bundle)
    host_before, notebook_before = images.host_recipe().ref, images.notebook_image_ref()
    assert images.host_recipe().ref == host_before  # pure: same inputs, same answer
    bundle.write_text("two\n")
    assert images.host_recipe().ref != host_before
    assert images.notebook_image_ref() != notebook_before


def test_the_roles_install_steps_are_inputs_of_the_baked_image(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A copy of the tree's bake inputs, so the test can change one without touching the real roles.
    for pattern in images.BAKE_INPUTS:
        for path in images.PROJECT_ROOT.glob(pattern):
            target = tmp_path / path.relative_to(images.PROJECT_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    monkeypatch.setattr(images, "PROJECT_ROOT", tmp_path)
    before = images.host_recipe()
    before_tag = before.tag  # the tag is computed from the files when asked
    assert "roles/hub/files/hub-requirements.txt" in before.files and "playbooks/bake.yml" in before.files
    assert "roles/engine/tasks/install.yml" in before.files
    notebook, stock = images.notebook_recipe().tag, images.stock_recipe().tag
    (tmp_path / "roles/hub/files/hub-requirements.txt").write_text("jupyterhub==6.1.2\n")
    assert images.host_recipe().tag != before_tag
    (tmp_path / "roles/hub/templates").mkdir(parents=True)
    (tmp_path / "roles/hub/templates/jupyterhub_config.py.j2").write_text("# a course's setting\n")
    after = images.host_recipe().tag
    (tmp_path / "roles/hub/templates/jupyterhub_config.py.j2").write_text("# another\n")
    assert images.host_recipe().tag == after, "configuration is not baked: changing it does not re-bake"
    assert (images.notebook_recipe().tag, images.stock_recipe().tag) == (notebook, stock)


def test_real_recipes_hash_without_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no docker binary reachable: hashing must not need it
    refs = [images.base_recipe().ref, images.stock_recipe().ref, images.host_recipe().ref, images.notebook_image_ref()]
    assert [ref.split(":")[0] for ref in refs] == ["hubfleet/base", "hubfleet/stock", "hubfleet/host",
                                                  "hubfleet/notebook"]
    assert "Dockerfile" in images.stock_recipe().files and "Dockerfile" in images.notebook_recipe().files
    assert images.host_recipe().params["parent"] == images.stock_recipe().ref


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="missing"):
        files_under(tmp_path / "nope")
    with pytest.raises(ProvisionError, match="cannot read"):
        content_tag(Recipe("hubfleet/test", {"x": tmp_path / "absent"}))
