"""The course's exchange service (roles/grading/files/hubfleet_exchange.py): what it keeps, and who may do what.

The store is used directly; the web service runs in this process with the hub's answer about each
caller stood in for (the real hub is in tests/integration/test_teaching.py).
"""

from __future__ import annotations

import asyncio
import io
import sys
import tarfile
import threading
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles" / "grading" / "files"))
import hubfleet_exchange as exchange  # noqa: E402


def archive(files: dict[str, bytes], *, extra: list[tarfile.TarInfo] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buffer.getvalue()


NOTEBOOK = archive({"ps1.ipynb": b"{}", "data/table.csv": b"a,b\n"})


@pytest.fixture
def store(tmp_path):
    return exchange.Store(tmp_path, "stats-101")


def test_release_submit_collect_and_feedback_keep_who_sent_what(store):
    assert store.release("ps1", NOTEBOOK, force=False)["notebooks"] == ["ps1"]
    with pytest.raises(exchange.Refused, match="already released"):
        store.release("ps1", NOTEBOOK, force=False)
    store.release("ps1", NOTEBOOK, force=True)
    assert [a["assignment_id"] for a in store.released()] == ["ps1"]
    first = store.submit("ana", "ps1", NOTEBOOK)
    second = store.submit("ana", "ps1", archive({"ps1.ipynb": b'{"v": 2}'}))
    store.submit("ben", "ps1", NOTEBOOK)
    assert first["key"] < second["key"] and first["timestamp"].endswith(" UTC")
    assert [s["student_id"] for s in store.submissions("ps1", None)] == ["ana", "ana", "ben"]
    assert [s["key"] for s in store.submissions("ps1", "ana")] == [first["key"], second["key"]]
    store.give_feedback("ana", "ps1", second["key"], "ps1", b"<html>well done</html>")
    assert store.submissions("ps1", "ana")[1]["feedback"] == ["ps1.html"]
    assert store.feedback("ana", "ps1", second["key"], "ps1") == b"<html>well done</html>"
    with pytest.raises(exchange.Refused, match="no submission"):
        store.give_feedback("ben", "ps1", second["key"], "ps1", b"x")  # ana's submission, not ben's


def test_nothing_is_submitted_to_an_assignment_that_is_not_released(store):
    with pytest.raises(exchange.Refused) as err:
        store.submit("ana", "ps9", NOTEBOOK)
    assert err.value.status == 404


@pytest.mark.parametrize("name", ["../ps1", "ps/1", ".hidden", "a+b", "a*", "", " ps1", "x" * 101, "ps\n1", ".."])
def test_names_that_could_leave_the_course_folder_are_refused(store, name):
    with pytest.raises(exchange.Refused) as err:
        store.release(name, NOTEBOOK, force=True)
    assert err.value.status == 400


@pytest.mark.parametrize("name", ["Problem set 1", "Übung-2", "ps1.v2", "李-作业"])
def test_names_people_give_assignments_are_kept(store, name):
    assert store.release(name, NOTEBOOK, force=False)["assignment_id"] == name


def link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("upload, said", [
    (archive({"/etc/passwd": b"x"}), "not a relative path"),
    (archive({"../../outside": b"x"}), "not a relative path"),
    (archive({"a//b": b"x"}), "not a relative path"),
    (archive({}, extra=[link("evil", "/etc/shadow")]), "link or a device"),
    (archive({}, extra=[link("evil", "ps1.ipynb", tarfile.LNKTYPE)]), "link or a device"),
    (b"not a tar at all", "not a gzip'd tar"),
], ids=["absolute", "parent", "double-slash", "symlink", "hard-link", "not-a-tar"])  # stable: gzip stamps the time
def test_an_upload_with_links_or_paths_outside_is_refused(store, upload, said):
    store.release("ps1", NOTEBOOK, force=False)
    with pytest.raises(exchange.Refused, match=said):
        store.submit("ana", "ps1", upload)
    assert store.submissions("ps1", "ana") == []


def test_an_upload_larger_than_the_limit_is_refused():
    with pytest.raises(exchange.Refused) as err:
        exchange.check_archive(b"x" * 11, limit=10)
    assert err.value.status == 413


# --- the web service: who may do what ----------------------------------------------------------


@pytest.fixture
def service(tmp_path, monkeypatch):
    """The exchange's tornado app on 127.0.0.1; `X-Test-Caller: kind:name` stands for the hub's answer."""
    from jupyterhub.services.auth import HubAuthenticated
    from tornado.httpserver import HTTPServer
    from tornado.ioloop import IOLoop

    def current_user(handler):
        caller = handler.request.headers.get("X-Test-Caller")
        if not caller:
            return None
        kind, _, name = caller.partition(":")
        return {"kind": kind, "name": name}

    monkeypatch.setattr(HubAuthenticated, "get_current_user", current_user)
    store = exchange.Store(tmp_path, "stats-101")
    ready, holder = threading.Event(), {}

    def serve():
        asyncio.set_event_loop(asyncio.new_event_loop())
        server = HTTPServer(exchange.make_app(store, "/services/exchange/"))
        server.listen(0, "127.0.0.1")
        holder["port"] = next(iter(server._sockets.values())).getsockname()[1]
        holder["loop"] = IOLoop.current()
        ready.set()
        holder["loop"].start()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait(10)
    yield f"http://127.0.0.1:{holder['port']}/services/exchange/api/stats-101"
    holder["loop"].add_callback(holder["loop"].stop)


def call(method: str, url: str, caller: str | None, **kwargs) -> requests.Response:
    headers = {"X-Test-Caller": caller} if caller else {}
    return requests.request(method, url, headers=headers, timeout=10, allow_redirects=False, **kwargs)


GRADER, ANA, BEN = "service:grader", "user:ana", "user:ben"


def test_only_the_grader_releases_and_everyone_fetches(service):
    assert call("PUT", f"{service}/assignments/ps1", ANA, data=NOTEBOOK).status_code == 403
    assert call("PUT", f"{service}/assignments/ps1", "service:other", data=NOTEBOOK).status_code == 403
    assert call("PUT", f"{service}/assignments/ps1", GRADER, data=NOTEBOOK).status_code == 200
    assert [a["assignment_id"] for a in call("GET", f"{service}/assignments", BEN).json()] == ["ps1"]
    assert call("GET", f"{service}/assignments/ps1", BEN).content == NOTEBOOK
    anonymous = call("GET", f"{service}/assignments", None)
    assert anonymous.status_code in (302, 403), "no hub token, no exchange"
    other_course = call("GET", service.replace("stats-101", "history-1") + "/assignments", BEN)
    assert other_course.status_code == 404 and "stats-101" in other_course.json()["message"]


def test_a_student_submits_as_themselves_and_sees_only_their_own(service):
    call("PUT", f"{service}/assignments/ps1", GRADER, data=NOTEBOOK)
    mine = call("POST", f"{service}/submissions/ps1?student=ben", ANA, data=NOTEBOOK).json()
    assert mine["student_id"] == "ana", "the hub's answer names the student, not the request"
    call("POST", f"{service}/submissions/ps1", BEN, data=NOTEBOOK)
    assert [s["student_id"] for s in call("GET", f"{service}/submissions/ps1", ANA).json()] == ["ana"]
    assert call("GET", f"{service}/submissions/ps1?student=ben", ANA).status_code == 403
    assert call("GET", f"{service}/submissions/ps1/ben/{mine['key']}", ANA).status_code == 403
    assert sorted(s["student_id"] for s in call("GET", f"{service}/submissions/ps1", GRADER).json()) == ["ana", "ben"]
    assert call("GET", f"{service}/submissions/ps1/ana/{mine['key']}", GRADER).content == NOTEBOOK
    assert call("POST", f"{service}/submissions/ps1", GRADER, data=NOTEBOOK).status_code == 403


def test_feedback_comes_from_the_grader_and_goes_to_its_student_only(service):
    call("PUT", f"{service}/assignments/ps1", GRADER, data=NOTEBOOK)
    key = call("POST", f"{service}/submissions/ps1", ANA, data=NOTEBOOK).json()["key"]
    url = f"{service}/feedback/ps1/ana/{key}/ps1"
    assert call("PUT", url, ANA, data=b"<html>10/10</html>").status_code == 403
    assert call("PUT", url, GRADER, data=b"<html>2/10</html>").status_code == 200
    assert call("GET", url, ANA).content == b"<html>2/10</html>"
    assert call("GET", url, BEN).status_code == 403
    bad = call("POST", f"{service}/submissions/ps1", BEN, data=archive({"../x": b"1"}))
    assert bad.status_code == 400 and "relative path" in bad.json()["message"]
