"""Progress of long steps on stderr: each step (a role begins), each Ansible task under it, changes and failures marked."""

from __future__ import annotations

from hubfleet.app import Application


def printer(app: Application):
    def show(kind: str, message: str) -> None:
        if kind == "step":
            app.step(message)
        elif kind == "task":
            app.info(f"  {message}")
        elif kind == "changed":
            app.debug(f"  changed: {message}")
        elif kind == "ok":
            app.success(message)
        elif kind == "failed":
            app.err.print(f"[bold red]  ✗[/] {message}", markup=True, highlight=False)
        else:
            app.info(f"  {message}")

    return show
