from __future__ import annotations

import click

from hubfleet.app import Application
from hubfleet.cli.params import COURSE
from hubfleet.lti import lti_config


def _lines_11(cfg: dict[str, str]) -> list[str]:
    return [
        "edX (Studio: Settings > Advanced Settings > LTI Passports, then an LTI component):",
        f"  LTI passport:        {cfg['edx_lti_passport']}",
        f"  LTI ID:              {cfg['edx_lti_id']}",
        f"  LTI URL:             {cfg['launch_url']}",
        f"  Custom parameters:   [\"{cfg['custom_parameter_to_open_a_notebook']}\"]   (optional: opens that notebook)",
        "",
        "Moodle (External tool, configured manually, LTI 1.0/1.1):",
        f"  Tool URL:            {cfg['launch_url']}",
        "  LTI version:         LTI 1.0/1.1",
        f"  Consumer key:        {cfg['consumer_key']}",
        f"  Shared secret:       {cfg['consumer_secret']}",
        f"  Custom parameters:   {cfg['custom_parameter_to_open_a_notebook']}   (optional: opens that notebook)",
        "",
        f"The hub names each student by the launch's {cfg['username_from']}"
        + (f"; it may be framed by {cfg['lms_origin']}." if cfg["lms_origin"] else "."),
        *([f"Grades go back to each graded activity with the custom parameter "
           f"{cfg['custom_parameter_of_a_graded_activity']} (edX: [\"assignment=ps1\"]), once the student "
           "has launched it."] if cfg.get("custom_parameter_of_a_graded_activity") else []),
    ]


def _lines_13(cfg: dict[str, str]) -> list[str]:
    return [
        "Moodle 4 (Site administration > Plugins > External tool > Manage tools > configure a tool manually):",
        f"  Tool URL:            {cfg['tool_url']}",
        "  LTI version:         LTI 1.3",
        "  Public key type:     Keyset URL",
        f"  Public keyset:       {cfg['public_keyset_url']}",
        f"  Initiate login URL:  {cfg['initiate_login_url']}",
        f"  Redirection URI(s):  {cfg['redirection_uris']}",
        f"  To open a notebook, give an activity the tool URL {cfg['tool_url_to_open_a_notebook']}",
        "",
        "The platform details the hub trusts (from the descriptor; Moodle shows them under Tool configuration details):",
        f"  Platform ID (issuer):  {cfg['platform_issuer']}",
        f"  Client ID:             {cfg['client_id']}",
        f"  Deployment ID(s):      {cfg['deployment_ids']}",
        f"  Authentication URL:    {cfg['platform_authorize_url']}",
        f"  Public keyset URL:     {cfg['platform_jwks_url']}",
        *([f"  Access token URL:      {cfg['platform_token_url']}"] if cfg.get("platform_token_url") else []),
        *(["", f"Grades and the class list (the course grades with nbgrader): in the tool's Services, {cfg['services']}.",
           "An activity whose custom parameters say assignment=<nbgrader assignment> gets that assignment's grades."]
          if cfg.get("services") else []),
        "",
        f"The hub names each student by the id_token's {cfg['username_from']} claim"
        + (f"; it may be framed by {cfg['lms_origin']}." if cfg["lms_origin"] else "."),
    ]


@click.command("lti-config")
@click.argument("name", type=COURSE)
@click.option("--json", "as_json", is_flag=True, help="Print the settings as JSON on stdout.")
@click.pass_obj
def command(app: Application, name: str, as_json: bool) -> None:
    """What the LMS administrator enters to add a course's hub as an LTI tool.

    LTI 1.1: the edX LTI passport and URL, and Moodle's tool URL, key and secret.
    LTI 1.3: Moodle's tool URL, initiate login URL, redirection URI and public keyset URL.
    The LTI 1.1 secret is printed here (and by `credentials`) and nowhere else.

    \b
    Examples:
      hubfleet lti-config mooc-queues
      hubfleet lti-config stats-101 --json
    """
    cfg = lti_config(app.store, name)
    if as_json:
        app.print_json(cfg)
        return
    if cfg["lti_version"] == "1.1":
        app.warn("the consumer secret follows: paste it only into the LMS, never in tickets or chats")
        lines = _lines_11(cfg)
    else:
        lines = _lines_13(cfg)
    click.echo(f"{name}: LTI {cfg['lti_version']}")
    click.echo("")
    for line in lines:
        click.echo(line)
