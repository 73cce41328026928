"""The docs site builds offline with ``mkdocs build --strict``, and its generated reference pages list everything
the code has: every command of the CLI with each of its options, every top-level field (and every part) of a
campaign file, every method of the control protocol. A new command, flag or field therefore shows up in the docs
by itself, and a page that stops being generated (or a link that breaks) fails here instead of drifting."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _page(site: Path, path: str) -> str:
    return html.unescape((site / path / "index.html").read_text())


def _typer_commands():
    """(full name, click command) for every visible command, read from the app as `labloop --help` shows it."""
    import typer.main
    from typer.core import TyperGroup

    from labloop.cli import app

    root = typer.main.get_command(app)
    todo = [(["labloop"], root, None)]
    while todo:
        path, cmd, parent = todo.pop()
        ctx = root.context_class(cmd, info_name=path[-1], parent=parent)
        yield " ".join(path), cmd, ctx
        if isinstance(cmd, TyperGroup):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if not sub.hidden:
                    todo.append(([*path, name], sub, ctx))


def _sections(page: str) -> dict[str, str]:
    """Heading id -> the HTML up to the next heading."""
    parts = re.split(r'<h[1-6] id="([^"]+)"', page)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_cli_reference_lists_every_command_and_option(site):
    sections = _sections(_page(site, "reference/cli"))
    commands = list(_typer_commands())
    assert len(commands) > 20  # the walk found the app's commands, not an empty group
    for name, cmd, ctx in commands:
        anchor = name.replace(" ", "-")
        assert anchor in sections, f"the CLI reference has no section for `{name}`"
        body = sections[anchor]
        for param in cmd.get_params(ctx):
            if param.hidden or "--help" in param.opts:
                continue
            flags = param.opts if param.param_type_name == "option" else [param.name]
            for flag in flags:
                assert flag in body, f"the CLI reference of `{name}` does not show {flag}"


def test_schema_page_lists_every_campaign_field_and_part(site):
    from labloop.spec import CampaignSpec

    sections = _sections(_page(site, "reference/campaign-file"))
    top = next(body for anchor, body in sections.items() if anchor.startswith("the-campaign-file"))
    for field in CampaignSpec.model_fields:
        assert f"<code>{field}</code>" in top, f"the schema page does not list the campaign field `{field}`"
    for part in CampaignSpec.model_json_schema()["$defs"]:
        assert part.lower() in sections, f"the schema page has no section for {part}"
    # a field's description comes from the model, not from a copy
    assert CampaignSpec.model_fields["workflow"].description in top


def test_protocol_page_lists_every_method(site):
    from labloop.control.protocol import METHODS

    sections = _sections(_page(site, "reference/protocol"))
    for method, model in METHODS.items():
        assert method in sections, f"the protocol page has no section for method `{method}`"
        for field in model.model_fields:
            assert f"<code>{field}</code>" in sections[method], f"`{method}` does not show its param `{field}`"


def test_api_and_architecture_pages_and_the_readme_links_still_reach(site):
    api = _page(site, "reference/api")
    for anchor in ('id="labloop.run.best.best_trial"', 'id="labloop.run.objectives.TrialData"',
                   'id="labloop.devkit.conformance.check_device"'):
        assert anchor in api, f"the API page lost {anchor}"
    assert "architecture.svg" in _page(site, "architecture") and (site / "architecture.svg").exists()
    for page in site.rglob("*.html"):  # offline: no page pulls a script, style or font from elsewhere
        if "sample-report" in page.parts:
            continue
        remote = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(?:https?:)?//[^"]+"', page.read_text())
        assert not remote, f"{page.relative_to(site)} loads {remote[0]}"
    home = _page(site, "")
    # MkDocs links a folder's index.html as the folder
    for target, href in (("sample-report/index.html", "sample-report/"), ("sample-report-tco/index.html",
                         "sample-report-tco/"), ("screenshots/dashboard-live.png", "screenshots/dashboard-live.png")):
        assert f'href="{href}"' in home, f"the home page does not link {target}"
        assert (site / target).is_file(), f"{target} is not in the built site"
