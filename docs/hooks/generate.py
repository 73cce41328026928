"""MkDocs hook: the reference pages that must never drift from the code are generated at build time.

Why a hook and not hand-copied text: the CLI reference is read from the typer app itself (every command, its
usage, arguments and options with their help), the campaign-file schema from the pydantic models
(``CampaignSpec.model_json_schema()``), and the control protocol from ``labloop.control.protocol.METHODS``. A page
holds a marker such as ``<!-- generate: cli -->``; :func:`on_page_markdown` replaces it with the rendered Markdown.
``tests/test_docs.py`` builds the site with ``--strict`` and checks that every command and every top-level field is
on its page.

(The plugins for typer/click apps do not apply: typer now ships its own copy of click, which they do not know.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

MARKER = re.compile(r"<!--\s*generate:\s*([a-z-]+)\s*-->")


# ------------------------------------------------------------------------------------------------------- helpers
def _cell(text: Any) -> str:
    """Text fit for one Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------ CLI
def _commands():
    """(path, command, context) for the app and every command below it, in the order ``--help`` lists them."""
    import typer.main
    from typer.core import TyperGroup

    from labloop.cli import app

    root = typer.main.get_command(app)
    context_class = root.context_class

    def walk(cmd, path, parent):
        ctx = context_class(cmd, info_name=path[-1], parent=parent)
        yield path, cmd, ctx
        if isinstance(cmd, TyperGroup):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    yield from walk(sub, [*path, name], ctx)

    yield from walk(root, ["labloop"], None)


def command_paths() -> list[str]:
    """Every command's full name (``labloop users add``), the app itself included: what the CLI page must list."""
    return [" ".join(path) for path, _, _ in _commands()]


def cli_markdown() -> str:
    from typer.core import TyperGroup

    out = []
    for path, cmd, ctx in _commands():
        name = " ".join(path)
        level = "#" * min(len(path) + 1, 4)
        out.append(f"{level} `{name}`\n")
        help_text = (cmd.help or "").replace("\b\n", "").strip()
        if help_text:
            out.append(help_text + "\n")
        out.append("```\n" + cmd.get_usage(ctx).strip() + "\n```\n")
        rows = []
        for param in cmd.get_params(ctx):
            if getattr(param, "hidden", False) or "--help" in getattr(param, "opts", ()):
                continue
            record = param.get_help_record(ctx)
            if record is None:
                continue
            what, help_ = record
            kind = "argument" if param.param_type_name == "argument" else "option"
            rows.append([f"`{what}`", kind, help_ or ""])
        if rows:
            out.append(_table(["argument / option", "kind", "what it does"], rows) + "\n")
        if isinstance(cmd, TyperGroup):
            subs = [s for s in cmd.list_commands(ctx) if not cmd.get_command(ctx, s).hidden]
            out.append("Commands: " + ", ".join(f"`{name} {s}`" for s in subs) + ".\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- JSON schema -> md
def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(schema: dict[str, Any]) -> str:
    """A JSON-schema node as a short type for people: links to models, 'list of', 'map of', enums."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#{name.lower()})"
    if "const" in schema:
        return f"`{schema['const']!r}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [_type(s) for s in schema[key] if s.get("type") != "null"]
            text = " or ".join(dict.fromkeys(parts))
            if any(s.get("type") == "null" for s in schema[key]):
                text += " or null"
            return text
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(schema['items'])}" if "items" in schema else "list"
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"map of name → {_type(extra)}"
        return "mapping"
    names = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "null"}
    if isinstance(kind, list):
        return " or ".join(names.get(k, k) for k in kind)
    return names.get(kind, kind or "any")


_BOUNDS = {
    "minimum": ">=",
    "maximum": "<=",
    "exclusiveMinimum": ">",
    "exclusiveMaximum": "<",
    "minItems": "items >=",
    "maxItems": "items <=",
    "minLength": "length >=",
    "maxLength": "length <=",
}


def _bounds(schema: dict[str, Any]) -> list[str]:
    found = [f"{word} {schema[key]}" for key, word in _BOUNDS.items() if key in schema]
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key, ()):
            found += _bounds(sub)
    return found


def _default(schema: dict[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    if "default" not in schema:  # a default_factory: an empty list or mapping, or a model with its own defaults
        kind = schema.get("type")
        return "`[]`" if kind == "array" else "`{}`" if kind == "object" else "its fields' defaults"
    return f"`{json.dumps(schema['default'])}`"


def model_table(schema: dict[str, Any]) -> str:
    """One pydantic model's fields: name, type, default (or required), limits and description."""
    required = set(schema.get("required", ()))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        limits = ", ".join(_bounds(prop))
        desc = prop.get("description", "")
        rows.append([f"`{name}`", _type(prop), _default(prop, name in required), limits, desc])
    return _table(["field", "type", "default", "limits", "description"], rows)


def _model_section(name: str, schema: dict[str, Any], level: str = "###") -> str:
    text = [f"{level} {name}\n"]
    if schema.get("description"):
        text.append(" ".join(schema["description"].split()) + "\n")
    text.append(model_table(schema) + "\n")
    return "\n".join(text)


def campaign_fields() -> list[str]:
    """The top-level fields of a campaign file: what the schema page must list."""
    from labloop.spec import CampaignSpec

    return list(CampaignSpec.model_json_schema()["properties"])


def schema_markdown() -> str:
    from labloop.spec import BotorchOptions, CampaignSpec, RandomOptions

    schema = CampaignSpec.model_json_schema()
    out = [
        "## The campaign file (`CampaignSpec`)\n",
        " ".join(schema.get("description", "").split()) + "\n",
        model_table(schema) + "\n",
        "## The parts, in alphabetical order\n",
    ]
    for name, sub in sorted(schema.get("$defs", {}).items()):
        out.append(_model_section(name, sub))
    out.append("## `strategy.options`\n")
    out.append(
        "A plugin strategy gets its options as given; the built-in ones check them against these models "
        "when the file is read.\n"
    )
    for title, model in (("botorch", BotorchOptions), ("random", RandomOptions)):
        opts = model.model_json_schema()
        out.append(f"### Options of `strategy: {{name: {title}}}` ({model.__name__})\n")
        out.append(model_table(opts) + "\n")
        for name, sub in sorted(opts.get("$defs", {}).items()):
            out.append(_model_section(name, sub, "####"))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------------ protocol
def protocol_methods() -> list[str]:
    from labloop.control.protocol import METHODS

    return list(METHODS)


def protocol_markdown() -> str:
    from labloop.control.protocol import MAX_BYTES, METHODS, VERSION, Request

    out = [
        f"Protocol version **{VERSION}**; a message is at most {MAX_BYTES:,} bytes.\n",
        "## The request envelope\n",
        model_table(Request.model_json_schema()) + "\n",
        "## Methods and their `params`\n",
        "A method not listed here is refused with the error code `unknown_method`; unknown or mistyped "
        "params with `bad_params`.\n",
    ]
    for method, model in METHODS.items():
        schema = model.model_json_schema()
        out.append(f"### `{method}`\n")
        out.append(f"Params model: `{model.__name__}`.\n")
        if schema.get("description"):
            out.append(" ".join(schema["description"].split()) + "\n")
        if schema.get("properties"):
            out.append(model_table(schema) + "\n")
        else:
            out.append("No params.\n")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------- benchmarks
ROOT = Path(__file__).resolve().parents[2]


def benchmarks_markdown() -> str:
    """The claims table of ``BENCHMARKS.md``, whose links are written from the repository's root, as the site's page.

    Why generated: BENCHMARKS.md stays where readers of the repository and other helpers look for it, and the site
    shows the same table instead of a copy that could drift. Its H1 is dropped (the page has its own) and its links
    into ``docs/`` are made relative to ``docs/benchmarks/``, so MkDocs checks them like any page's."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    text = re.sub(r"\A# [^\n]*\n", "", text)
    text = text.replace("](docs/benchmarks/", "](")
    return text.replace("](docs/", "](../")


RENDERERS = {
    "cli": cli_markdown,
    "schema": schema_markdown,
    "protocol": protocol_markdown,
    "benchmarks": benchmarks_markdown,
}


def on_page_markdown(markdown: str, page, config, files) -> str:  # MkDocs' hook signature: all of them, used or not
    return MARKER.sub(lambda m: RENDERERS[m.group(1)](), markdown)


# The docstrings cross-reference in Sphinx's roles (:class:`~labloop.errors.ObjectiveError`), which mkdocstrings
# leaves as text. Turn each into an optional cross-reference that mkdocs-autorefs resolves to the object's API
# entry when the site documents it, and into the plain name when it does not ('~' shows only the last part).
ROLE = re.compile(r":(?:class|func|meth|attr|data|exc|mod|obj):<code>(~?)([\w.]+)</code>")


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    shown = target.rsplit(".", 1)[-1] if tilde else target
    return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'


def on_page_content(html: str, page, config, files) -> str:  # MkDocs' hook signature: all of them, used or not
    return ROLE.sub(_role, html)
