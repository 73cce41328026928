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
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
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
    for anchor in (
        'id="labloop.run.best.best_trial"',
        'id="labloop.run.objectives.TrialData"',
        'id="labloop.devkit.conformance.check_device"',
    ):
        assert anchor in api, f"the API page lost {anchor}"
    assert "architecture.svg" in _page(site, "architecture") and (site / "architecture.svg").exists()
    for page in site.rglob("*.html"):  # offline: no page pulls a script, style or font from elsewhere
        if "sample-report" in page.parts:
            continue
        remote = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(?:https?:)?//[^"]+"', page.read_text())
        assert not remote, f"{page.relative_to(site)} loads {remote[0]}"
    home = _page(site, "")
    # MkDocs links a folder's index.html as the folder
    for target, href in (
        ("sample-report/index.html", "sample-report/"),
        ("sample-report-tco/index.html", "sample-report-tco/"),
        ("screenshots/dashboard-live.png", "screenshots/dashboard-live.png"),
    ):
        assert f'href="{href}"' in home, f"the home page does not link {target}"
        assert (site / target).is_file(), f"{target} is not in the built site"


# ------------------------------------------------------------------------------------------------- relative links
# Every relative link (and image) in README.md, BENCHMARKS.md and the docs must reach a file, and an #anchor into a
# page a heading of it: README and BENCHMARKS are read on the repository's front page, outside MkDocs' own checks,
# and they link deep into the docs and the benchmarks archive. Anchors into docs pages are read from the built site
# (generated pages and API entries have their ids only there); anchors into other Markdown files from the file.
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


def _markdown_files() -> list[Path]:
    docs = [p for p in sorted((ROOT / "docs").rglob("*.md")) if "hooks" not in p.relative_to(ROOT / "docs").parts]
    return [ROOT / "README.md", ROOT / "BENCHMARKS.md", *docs]


def _links(path: Path) -> list[str]:
    text = CODE.sub("", FENCE.sub("", path.read_text()))
    return LINK.findall(text)


def _ids(html_text: str) -> set[str]:
    return set(re.findall(r'\sid="([^"]+)"', html_text))


def _anchors(target: Path, site: Path) -> set[str]:
    docs = ROOT / "docs"
    if target.is_relative_to(docs):
        rel = target.relative_to(docs).with_suffix("")
        page = site / (rel.parent if rel.name == "index" else rel) / "index.html"
        return _ids(page.read_text())
    import markdown

    return _ids(markdown.markdown(target.read_text(), extensions=["toc", "attr_list", "tables", "fenced_code"]))


def test_every_relative_link_reaches_a_file_and_its_anchor(site):
    checked, broken = 0, []
    for source in _markdown_files():
        for link in _links(source):
            if re.match(r"[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
                continue
            path, _, anchor = link.partition("#")
            target = (source.parent / path).resolve() if path else source
            where = f"{source.relative_to(ROOT)} -> {link}"
            checked += 1
            if not target.exists():
                broken.append(f"{where}: no such file")
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target, site):
                broken.append(f"{where}: no heading with that anchor")
    assert checked > 100  # the walk found the links, not an empty set
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_checker_finds_a_broken_link_and_a_broken_anchor(site, tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n[ok](#top) [gone](nothing.md) [bad](#nowhere)\n```\n[in code](skipped.md)\n```\n")
    assert _links(page) == ["#top", "nothing.md", "#nowhere"]
    assert "top" in _anchors(page, site) and "nowhere" not in _anchors(page, site)


def test_the_readme_reaches_every_part_of_the_site_in_one_click():
    """Each audience goes from the README to its part of the docs in one click: the README links at least one page
    of every top-level section of the site's navigation, and the benchmarks' claims."""
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    readme = {(ROOT / link.partition("#")[0]).resolve() for link in _links(ROOT / "README.md")}

    def pages(entry) -> list[str]:
        if isinstance(entry, str):
            return [entry]
        if isinstance(entry, list):
            return [p for e in entry for p in pages(e)]
        return [p for v in entry.values() for p in pages(v)]

    for section in nav:
        ((title, entry),) = section.items()
        targets = {(ROOT / "docs" / p).resolve() for p in pages(entry)}
        if title == "Benchmarks":
            targets.add((ROOT / "BENCHMARKS.md").resolve())
        assert readme & targets, f"the README links no page of the site's {title!r} section"
    assert len(ROOT.joinpath("README.md").read_text().splitlines()) < 120, "the README is an overview: link, don't copy"
