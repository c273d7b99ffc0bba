"""The course's environments (the descriptor's `environments`): the choice on the spawn page, and what it sets.

hubfleet writes them into the hub's configuration as a list of {"name", "title", "image", "mem_limit",
"cpu_limit"}; the first is the default. A student picks one on the spawn page, or an LTI link picks it
for them with /hub/spawn?environment=NAME; JupyterHub keeps the choice for their next starts.
"""

from __future__ import annotations

import html

FIELD = "environment"


def names(environments: list[dict]) -> list[str]:
    return [environment["name"] for environment in environments]


def form(environments: list[dict], previous: str | None = None) -> str:
    """The spawn page's choice: one radio button per environment, the previous choice (else the first) checked."""
    checked = previous if previous in names(environments) else environments[0]["name"]
    rows = []
    for environment in environments:
        name = html.escape(environment["name"], quote=True)
        rows.append(
            '<div class="form-check mb-2">'
            f'<input class="form-check-input" type="radio" name="{FIELD}" id="environment-{name}" value="{name}"'
            f'{" checked" if environment["name"] == checked else ""}>'
            f'<label class="form-check-label" for="environment-{name}"><strong>{html.escape(environment["title"])}'
            f'</strong> <span class="text-muted">({html.escape(environment["image"])}, '
            f'{html.escape(str(environment["mem_limit"]))} memory, {environment["cpu_limit"]:g} CPU)</span></label>'
            "</div>")
    return ('<fieldset><legend class="h5">Choose your environment</legend>'
            + "".join(rows) + "<p class=\"small text-muted\">Your files are the same in every environment.</p>"
            "</fieldset>")


def options(environments: list[dict], data: dict) -> dict:
    """The spawn page's form (or /hub/spawn's query) as user_options; an unknown name is refused with the choices."""
    given = data.get(FIELD) or []
    if isinstance(given, str):
        given = [given]
    if not given:
        return {FIELD: environments[0]["name"]}
    if len(given) > 1 or given[0] not in names(environments):
        asked = given[0] if len(given) == 1 else ", ".join(given)
        raise ValueError(f"environment: {asked[:64]!r} is not offered in this course — choose one of: "
                         + ", ".join(names(environments)))
    return {FIELD: given[0]}


def chosen(environments: list[dict], user_options: dict | None) -> tuple[dict, bool]:
    """The environment a start runs, and whether it is the one asked for (a name the course no longer offers,
    kept from an earlier start, gives the default)."""
    asked = (user_options or {}).get(FIELD)
    for environment in environments:
        if environment["name"] == asked:
            return environment, True
    return environments[0], asked is None
