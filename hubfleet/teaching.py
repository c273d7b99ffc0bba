"""Teaching on a course's hub: who is a teacher, what teachers and students may do, how grading runs.

Two tables decide it and nothing else does: `LMS_ROLES` (which LMS roles make a person a teacher)
and `RIGHTS` (what each group may do, as JupyterHub scopes). docs/teaching.md shows both and
tests/unit/test_teaching.py keeps that page in step with them.
"""

from __future__ import annotations

from dataclasses import dataclass

TEACHERS_GROUP = "teachers"  # shared with the course's shared files (teachers write them)
STUDENTS_GROUP = "students"
EVERYONE = "everyone"  # every user of the hub and their server (JupyterHub's `user` and `server` roles)

# The hub services a graded course runs (roles/grading).
GRADER_SERVICE = "grader"  # the course's nbgrader formgrader, the teachers' shared grading server
EXCHANGE_SERVICE = "exchange"  # where released assignments, submissions and feedback travel between hosts
GRADES_SERVICE = "grades"  # sends finalised scores to the LMS and fills the roster from it


@dataclass(frozen=True)
class LmsRole:
    """One LMS role and the hub group it makes a person a member of."""

    name: str  # the LIS role's short name: Instructor, TeachingAssistant, Learner...
    where: tuple[str, ...]  # which of the LMS's role sets count: course (context), institution, system
    group: str


# A person holding any teacher role is a teacher; everyone else the LMS sends is a student.
# Only roles in *this* course count, and Administrator from the institution or system too: Canvas
# sends institution#Instructor for anyone who teaches anywhere, students of this course included.
LMS_ROLES: tuple[LmsRole, ...] = (
    LmsRole("Instructor", ("course",), TEACHERS_GROUP),
    LmsRole("TeachingAssistant", ("course",), TEACHERS_GROUP),
    LmsRole("Administrator", ("course", "institution", "system"), TEACHERS_GROUP),
    LmsRole("Learner", ("course",), STUDENTS_GROUP),
)
DEFAULT_GROUP = STUDENTS_GROUP  # no role, or one not in the table


@dataclass(frozen=True)
class Right:
    """What one group may do, and the JupyterHub scopes that allow exactly that."""

    group: str
    what: str
    scopes: tuple[str, ...]
    grading: bool = False  # only on a course with `grading:`


_STUDENTS = f"group={STUDENTS_GROUP}"
RIGHTS: tuple[Right, ...] = (
    Right(TEACHERS_GROUP, "see the course's students and their servers (the hub's admin page)",
          ("admin-ui", f"list:users!{_STUDENTS}", f"read:users!{_STUDENTS}", f"read:servers!{_STUDENTS}")),
    Right(TEACHERS_GROUP, "open, start and stop a student's server",
          (f"access:servers!{_STUDENTS}", f"servers!{_STUDENTS}")),
    Right(TEACHERS_GROUP, "the formgrader: create, release, collect, autograde, give feedback",
          (f"access:services!service={GRADER_SERVICE}",), grading=True),
    Right(TEACHERS_GROUP, "send finalised grades to the LMS and see each posting",
          (f"access:services!service={GRADES_SERVICE}",), grading=True),
    Right(EVERYONE, "fetch and submit assignments and fetch feedback, from their own server",
          (f"access:services!service={EXCHANGE_SERVICE}",), grading=True),
)


def group_scopes(*, grading: bool) -> dict[str, list[str]]:
    """Each group's scopes for the hub's `load_roles` (sorted, without duplicates)."""
    found: dict[str, set[str]] = {}
    for right in RIGHTS:
        if grading or not right.grading:
            found.setdefault(right.group, set()).update(right.scopes)
    return {group: sorted(scopes) for group, scopes in sorted(found.items())}


def lms_role_table() -> list[list]:
    """LMS_ROLES as the hub reads it: [[group, {where: [role names]}], ...], the first match wins.

    A list, not a mapping: JSON and YAML on the way to the hub sort a mapping's keys.
    """
    table: dict[str, dict[str, list[str]]] = {}
    for role in LMS_ROLES:
        for where in role.where:
            table.setdefault(role.group, {}).setdefault(where, []).append(role.name)
    return [[group, places] for group, places in table.items()]


GRADER_TOKEN_SECRET = "grader-api-token"  # the grader service's JupyterHub token (it reaches the exchange with it)


def role_variables(course, kind) -> dict:
    """The inventory's teaching variables: each group's rights, and roles/grading's when the course grades.

    `kind` is the course's authenticator class: where grades go depends on how people log in.
    """
    scopes = group_scopes(grading=course.grading is not None)
    variables: dict = {"hub_group_scopes": {g: s for g, s in scopes.items() if g != EVERYONE},
                       "hub_user_scopes": scopes.get(EVERYONE, []), "grading_enabled": course.grading is not None}
    if course.grading is not None:
        variables.update(grading_course_id=course.grading_course_id, grading_image=course.image,
                         **kind.grading_variables(course))
    return variables


def ensure_secrets(store, course, kind) -> dict:
    """roles/grading's secrets, made once and kept: the grader's hub token and what the LMS needs."""
    if course.grading is None:
        return {}
    return {"grading_grader_token": store.ensure_secret(course.name, GRADER_TOKEN_SECRET, nbytes=32),
            **kind.grading_secrets(store, course)}
