"""Moving students' files from one host of a live course to the others, so an added host can go.

A student's files live in a volume on the node where their server first ran, and the spawner keeps
them there (hubfleet_spawner.py: the node is a placement constraint). An extra host added in a rush
therefore holds the files of whoever started there; it can leave the course only once those files
live elsewhere. A move, for each student, in this order:

1. the hub is told (`move`): it refuses while the student's server runs or they wait in line, and
   from then on holds their next start until the move ends;
2. copy (playbooks/move_volumes.yml): the volume is packed on its host, fetched, unpacked into a new
   volume on the new host and compared with the pack (GNU tar's --compare, as the archive does);
3. the hub is told (`moved`): the new host is the student's home from now on;
4. only then is the old volume removed.

Anything failing before 3 tells the hub `unmove`: the student's home stays where their files are,
and nothing is removed. A move cut off (the process killed) leaves the hub holding the student's
starts: the next round, holding the course's lock, finds the hub's list of moves and releases them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Callable

from hubfleet import ansible
from hubfleet.errors import HubfleetError, ProvisionError
from hubfleet.usernames import spawner_escape

Progress = Callable[[str, str], None]


@dataclass
class MoveResult:
    source: str
    moved: dict[str, str] = field(default_factory=dict)  # student -> new host
    stayed: dict[str, str] = field(default_factory=dict)  # student -> why their files stayed


def new_homes(students: list[str], source: str, nodes: dict) -> dict[str, str]:
    """A new host for each student: the ready, active nodes other than `source`, fewest homes first.

    `nodes`: name -> NodeSeats (capacity, pinned, ready, active) as the hub reports them.
    """
    homes = {name: len(node.pinned) for name, node in nodes.items()
             if name != source and node.ready and node.active and node.capacity > 0}
    if not homes:
        return {}
    chosen = {}
    for student in sorted(students):
        target = min(sorted(homes), key=lambda name: homes[name])
        chosen[student] = target
        homes[target] += 1
    return chosen


def release_stale(tell_hub: Callable[[dict], dict], moving: dict[str, str], progress: Progress) -> None:
    """Moves the hub still holds from a round that was cut off: the files never changed home, so release them."""
    for student in sorted(moving):
        tell_hub({"unmove": {"user": student}})
        progress("info", f"released {student}'s unfinished move to {moving[student]}: their files stay where they were")


def move_homes(*, source: str, students: list[str], nodes: dict, tell_hub: Callable[[dict], dict],
               run: Callable[[str, list[dict]], None], volume_prefix: str, progress: Progress) -> MoveResult:
    """Move `students`' files (hub usernames) off `source`; `run(step, moves)` runs the playbook's step.

    Returns who moved and who stayed (and why). Raises ProvisionError only after every begun move
    was released, with nothing removed.
    """
    result = MoveResult(source)
    homes = new_homes(students, source, nodes)
    for student in students:
        if student not in homes:
            result.stayed[student] = "no other ready host takes students"
    begun: list[dict] = []
    for student, target in homes.items():
        try:
            tell_hub({"move": {"user": student, "to": target}})
        except HubfleetError as exc:  # their server runs, or they are in line: their files stay this round
            result.stayed[student] = exc.message
            continue
        begun.append({"user": student, "volume": volume_prefix + spawner_escape(student), "to": target})
    if not begun:
        return result
    progress("step", f"moving the files of {len(begun)} student(s) off {source} (copied, compared, then removed)")
    try:
        run("copy", begun)
    except ProvisionError as exc:
        for move in begun:
            _release(tell_hub, move["user"])
        raise ProvisionError(f"moving students' files off {source} failed; their files stay there and nothing was "
                             f"removed: {exc.message}", hint=exc.hint) from None
    confirmed = []
    for move in begun:
        try:
            tell_hub({"moved": {"user": move["user"], "to": move["to"]}})
        except HubfleetError as exc:  # the hub forgot the move (restarted): the copy is not their home
            result.stayed[move["user"]] = exc.message
            _release(tell_hub, move["user"])
            continue
        confirmed.append(move)
        result.moved[move["user"]] = move["to"]
    if confirmed:
        run("remove", confirmed)
        progress("ok", f"{len(confirmed)} student(s)' files now live on "
                       f"{', '.join(sorted(set(result.moved.values())))}; removed from {source}")
    return result


def _release(tell_hub: Callable[[dict], dict], student: str) -> None:
    try:
        tell_hub({"unmove": {"user": student}})
    except HubfleetError:
        pass  # the hub forgot it already: the student's home never changed


def playbook_runner(*, workdir, inventory, source: str, verbosity: int = 0,
                    progress: Progress | None = None) -> Callable[[str, list[dict]], None]:
    """`run(step, moves)` for move_homes: playbooks/move_volumes.yml against the course's inventory."""
    def run(step: str, moves: list[dict]) -> None:
        fetch = workdir / "move-packs"
        shutil.rmtree(fetch, ignore_errors=True)
        fetch.mkdir(parents=True, mode=0o700)
        try:
            ansible.run_playbook("move_volumes.yml", workdir=workdir, inventory=inventory, progress=progress,
                                 verbosity=verbosity,
                                 variables={"move_step": step, "move_source": source, "move_fetch_dir": str(fetch),
                                            "move_list": [{"volume": m["volume"], "to": m["to"]} for m in moves]})
        finally:
            shutil.rmtree(fetch, ignore_errors=True)  # students' files never stay on the controller
    return run
