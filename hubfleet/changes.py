"""What a re-run of `create` would change on a live course, and who it affects (`hubfleet plan --diff`).

Pure: two descriptors and their plans in, a list of changes out. The descriptors are compared as
the JSON they are recorded as, field by field, so a field added to the model later is reported
too; the fields that matter get their own sentence, the rest "applied at the next create".
Secrets are never shown, not even their source: a secret's change is only "(changed)".
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable

from hubfleet.authenticators import KINDS
from hubfleet.descriptor import Course
from hubfleet.sizing import Plan

# A field whose name says it holds a secret, or where one comes from (password, secret, bind_password,
# consumer_key, tls.key): shown as "(changed)" only. username_key names a launch field, not a key.
SECRET_NAME = re.compile(r"password|secret|(?:^|_)key$")
NOT_SECRET = frozenset({"username_key"})
SECRET_SOURCE = re.compile(r"password|secret")  # a secret source: generate, env:VAR or file:/path
NONE = "(none)"
CHANGED = "(changed)"
SECRET = "(secret)"
MAX_SHOWN = 200  # a value longer than this is cut: the line is a summary, the descriptor has the rest
GENERIC = "applied at the next `hubfleet create`"


@dataclass(frozen=True)
class Change:
    """One difference between the live course and the descriptor, and what it does to whom."""

    path: str  # the field, as descriptor errors name it: image, load.memory_per_user, plan.hosts
    old: str | None  # the value shown; None for a secret
    new: str | None
    effect: str  # one sentence: what happens, and to whom
    secret: bool = False

    @property
    def shown(self) -> str:
        return CHANGED if self.secret else f"{self.old} → {self.new}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Context:
    old: Course
    new: Course
    old_plan: Plan
    new_plan: Plan


def compare(old: Course, new: Course, old_plan: Plan, new_plan: Plan) -> list[Change]:
    """The changes from the live course (`old`, as recorded at its last create) to `new`, descriptor then plan."""
    context = Context(old, new, old_plan, new_plan)
    changes = [
        _change(path, before, after, context)
        for path, before, after in differences(old.model_dump(mode="json"), new.model_dump(mode="json"))
    ]
    return changes + plan_changes(old_plan, new_plan, new.name)


def differences(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, old, new) of every leaf that differs, walking the mappings both sides have.

    An absent field and a null one are the same (the model's "not given"). A section that appears
    or goes is one change; so is a mapping whose `kind` changed (another authenticator), whose
    other fields belong to that kind and mean nothing next to the old one's.
    """
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        if "kind" in old and "kind" in new and old["kind"] != new["kind"]:
            return [(_join(path, "kind"), old["kind"], new["kind"])]
        found = []
        for key in [*new, *(k for k in old if k not in new)]:
            found += differences(old.get(key), new.get(key), _join(path, str(key)))
        return found
    return [(path, old, new)]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def is_secret(path: str) -> bool:
    name = path.rsplit(".", 1)[-1]
    return name not in NOT_SECRET and SECRET_NAME.search(name) is not None


def shown(value: Any) -> str:
    """A value as one short line; secrets inside a mapping are replaced, never shown."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (dict, list)):
        text = json.dumps(_redacted(value), ensure_ascii=False, separators=(", ", ": "))
    else:
        text = str(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _redacted(value: Any) -> Any:
    """The value without its secrets (each replaced by "(secret)") and without its unset fields."""
    if isinstance(value, dict):
        return {k: (SECRET if is_secret(str(k)) else _redacted(v)) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _change(path: str, old: Any, new: Any, context: Context) -> Change:
    effect = _effect_for(path)(context)
    if is_secret(path):
        return Change(path, None, None, effect, secret=True)
    return Change(path, shown(old), shown(new), effect)


# --- what each field's change does ------------------------------------------------------------


def _image(c: Context) -> str:
    return ("placed on every host first; each student gets it at their next server start, running servers "
            "keep the old one until then")


def _limit(c: Context) -> str:
    return "at each student's next server start; running servers keep the old limit until then"


def _disk(c: Context) -> str:
    return ("sizes the hosts' disks in the plan (a student's volume has no quota of its own); hosts made from "
            "now on get the new size")


def _load(c: Context) -> str:
    before, after = len(c.old_plan.hosts), len(c.new_plan.hosts)
    if after == before:
        return f"hosts per the new plan: still {after}"
    what = f"{after - before} added" if after > before else "none removed by `hubfleet create`"
    return f"hosts per the new plan: {before} → {after} ({what}; see plan.hosts)"


def _max_hosts(c: Context) -> str:
    return (f"a rush may grow the course to {c.new_plan.elastic_hosts} host(s) instead of {c.old_plan.elastic_hosts} "
            "(`hubfleet autoscale` adds them near capacity and removes them once empty)")


def _login(c: Context) -> str:
    sentence = ("students log in the new way once the hub restarts with it (running servers keep running); work "
                "stays in volumes keyed by hub username, so a student whose username differs under the new login "
                "(an LMS user id instead of a typed name) starts with an empty notebook — the old volume is kept, "
                "not carried over")
    return sentence + _lms_hint(c, "the LMS needs the tool's settings")


def _username_key(c: Context) -> str:
    return ("hub usernames come from the new launch field at each student's next launch: a student whose "
            "username changes starts with an empty notebook — the old volume is kept, not carried over")


def _domain(c: Context) -> str:
    return (f"a certificate for {c.new.domain} is obtained and served instead of the old one, so the old URL stops "
            "working (browsers refuse it): tell students the new one"
            + _lms_hint(c, "change the tool's URLs in the LMS"))


def _lms_hint(c: Context, what: str) -> str:
    return f"; {what} (`hubfleet lti-config {c.new.name}`)" if KINDS[c.new.authenticator.kind].from_lms else ""


def _secret_source(c: Context) -> str:
    return ("the hub takes the secret from its new source at the next `hubfleet create` (`generate` keeps the "
            f"stored one); students or the LMS then need the new value, which `hubfleet credentials {c.new.name}` "
            "shows")


def _consumer_key(c: Context) -> str:
    return ("launches signed with the old consumer key are refused from the next `hubfleet create` until the LMS "
            f"has the new one (`hubfleet lti-config {c.new.name}`)")


def _tls(c: Context) -> str:
    return "the hub's certificate comes from the new source at the next `hubfleet create`; the URL stays"


def _start(c: Context) -> str:
    return ("the term's timers (`hubfleet reconcile`) follow the new start: a hub not made yet is made and warmed "
            "before it; a live hub is left as it is")


def _end(c: Context) -> str:
    return ("the term's timers (`hubfleet reconcile`) follow the new end: the banner telling students to take "
            "their work home, then the archive and removal after the grace period, move with it")


def _term(c: Context) -> str:
    return "the term's timers (`hubfleet reconcile`) act on the new dates"


def _class_hours(c: Context) -> str:
    return ("`hubfleet autoscale` warms the hosts before each class by the new hours once `hubfleet create` "
            "records them")


def _title(c: Context) -> str:
    return "shown on the hub's login page from the next `hubfleet create`"


def _provider(c: Context) -> str:
    return (f"refused: `hubfleet create` does not move a course from {c.old.provider} to {c.new.provider} — "
            "destroy it (its work is archived) and create it again")


def _name(c: Context) -> str:
    return (f"not a change of this course: `hubfleet create` would make a new course {c.new.name!r} beside "
            f"{c.old.name!r}")


def _generic(c: Context) -> str:
    return GENERIC


def _environments(c: Context) -> str:
    return ("the spawn page's choice once the hub restarts with it; every image placed on every host first; a student "
            "gets the environment they choose at their next server start (a choice no longer offered: the first), "
            "running servers keep theirs until then")


def _egress(c: Context) -> str:
    effect = "every host's firewall changes at once, running servers included"
    if c.new.egress == "package-index":
        return effect + "; pip, conda and apt use the proxy from each student's next server start"
    if c.old.egress == "package-index":
        return effect + ("; a server started before keeps the proxy setting, which no longer answers, until its "
                         "next start")
    return effect


def _shared_data(c: Context) -> str:
    if c.old.shared_data is None:
        return "the shared folder is made on every host; each server gets it at its next start"
    if c.new.shared_data is None:
        return ("the folder stops being copied and servers started from now on go without it; its files stay on "
                "the hub host and in the archive")
    return ("the new source's files reach the folder at the next create (files of the same name replaced, the "
            "teachers' other files kept), every host within a minute")


def _contacts(c: Context) -> str:
    return "who reconcile mails about the course (ready, ending, archived); nothing on the hub changes"


EFFECTS: dict[str, Callable[[Context], str]] = {
    "name": _name,
    "title": _title,
    "provider": _provider,
    "image": _image,
    "authenticator.kind": _login,
    "authenticator.username_key": _username_key,
    "authenticator.consumer_key": _consumer_key,
    "load.students": _load,
    "load.concurrent": _load,
    "load.memory_per_user": _limit,
    "load.cpu_per_user": _limit,
    "load.disk_per_user": _disk,
    "load.max_hosts": _max_hosts,
    "dates.start": _start,
    "dates.end": _end,
    "dates": _term,
    "domain": _domain,
    "tls": _tls,
    "tls.email": _generic,
    "class_hours": _class_hours,
    "contacts": _contacts,
    "environments": _environments,
    "egress": _egress,
    "shared_data": _shared_data,
}


def _effect_for(path: str) -> Callable[[Context], str]:
    """The field's own sentence, a secret's, its nearest parent's, else the generic one."""
    if path in EFFECTS:
        return EFFECTS[path]
    if SECRET_SOURCE.search(path.rsplit(".", 1)[-1]):
        return _secret_source
    parts = path.split(".")
    for end in range(len(parts) - 1, 0, -1):
        found = EFFECTS.get(".".join(parts[:end]))
        if found:
            return found
    return _generic


# --- the plan ---------------------------------------------------------------------------------


def _hosts_sentence(old: Plan, new: Plan, name: str) -> str:
    before, after = len(old.hosts), len(new.hosts)
    if after > before:
        return (f"{after - before} host(s) added at the next `hubfleet create`, joining the course's Swarm; new "
                "students go to the least loaded host")
    return (f"`hubfleet create` removes no host: `hubfleet scale {name} --hosts {after}` removes the ones that "
            "hold no student's work")


def _cost(plan: Plan) -> str:
    return "no prices in the catalogue" if plan.cost_per_day is None else f"{plan.cost_per_day:.2f} {plan.currency}/day"


def plan_changes(old: Plan, new: Plan, name: str) -> list[Change]:
    """Hosts, flavor, servers at once, elastic bound and cost, where the two plans differ."""
    rows = [
        ("plan.hosts", len(old.hosts), len(new.hosts), _hosts_sentence(old, new, name)),
        ("plan.flavor", old.flavor, new.flavor,
         "hosts made from now on get the new flavor; hosts that run keep theirs (`hubfleet create` resizes nothing)"),
        ("plan.servers_at_once", old.active_server_limit, new.active_server_limit,
         "servers the hosts carry at once from the next `hubfleet create`; students beyond them wait in line"),
        ("plan.elastic_hosts", old.elastic_hosts, new.elastic_hosts,
         "hosts `hubfleet autoscale` may grow the course to in a rush"),
        ("plan.cost_per_day", _cost(old), _cost(new),
         "what the planned hosts cost a day (hosts added in a rush cost more)"),
    ]
    return [Change(path, shown(before), shown(after), effect)
            for path, before, after, effect in rows if before != after]
