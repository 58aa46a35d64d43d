"""The README and docs/ stay whole: links resolve, every setting, CLI verb and API route is
documented."""

import argparse
import re
from itertools import product
from pathlib import Path

from cli.main import parser
from studio.api import api

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```.*?```", re.S)


def headings(path: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    text = FENCE.sub("", path.read_text())
    titles = re.findall(r"^#+\s+(.+)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-") for title in titles}


def test_every_relative_link_reaches_a_file_and_heading():
    broken = []
    for page in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path) if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in headings(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_every_file_and_test_the_docs_name_exists():
    """`tests/x.py::test_y` and `compute/x.py` in the docs and bench/README.md point at real
    files and tests, so a move or a rename cannot leave a page pointing at nothing."""
    named = re.compile(
        r"`((?:tests|compute|runs|studio|pipelines|sweeps|cli|bench|scripts|docs)/[\w/.-]+"
        r"\.(?:py|md|sh|html))(?:::(\w+))?"
    )
    missing = []
    for page in [*DOCS, ROOT / "bench" / "README.md"]:
        for path, test in named.findall(page.read_text()):
            source = ROOT / path
            if not source.exists():
                missing.append(f"{page.name}: {path}")
            elif test and not re.search(rf"def {test}\b", source.read_text()):
                missing.append(f"{page.name}: {path}::{test}")
    assert missing == []


def test_every_setting_is_in_the_settings_page():
    source = (ROOT / "studio" / "settings.py").read_text()
    names = set(re.findall(r"(?:getenv|env\w+)\(\s*\"([A-Z_]+)\"", source))
    assert {"DATA_DIR", "REDIS_URL", "WORKSPACE_CREATORS"} <= names
    page = (ROOT / "docs" / "settings.md").read_text()
    assert sorted(name for name in names if f"`{name}`" not in page) == []


def leaves(command: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subparsers = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield path
    for action in subparsers:
        for name, sub in action.choices.items():
            yield from leaves(sub, (*path, name))


def test_every_cli_verb_is_in_the_cli_page():
    lines = (ROOT / "docs" / "cli.md").read_text().splitlines()
    verbs = list(leaves(parser()))
    assert ("workspace", "member", "remove") in verbs

    def documented(path: tuple[str, ...]) -> bool:
        *group, verb = path
        head = " ".join(group)
        return any(
            f"`{head} " in line and re.search(rf"\b{re.escape(verb)}\b", line.split(head, 1)[1])
            for line in lines
            if head
        ) or any(line.startswith(f"| `{verb}`") for line in lines)

    assert [" ".join(p) for p in verbs if not documented(p)] == []


def documented_routes(text: str) -> set[str]:
    """`/api/v1/...` routes of a page, `[optional]` parts and `a|b` choices spelled out,
    each `{parameter}` as `{}`."""
    routes = set()
    for route in re.findall(r"/api/v1(/[^\s`]*)", text):
        route = re.sub(r"\{\w+\}", "{}", route.replace("\\|", "|"))
        parts = re.split(r"(\[[^\]]*\])", route)
        options = [[part[1:-1], ""] if part.startswith("[") else [part] for part in parts]
        for chosen in product(*options):
            spelled = "".join(chosen)
            words = re.split(r"([\w-]+(?:\|[\w-]+)+)", spelled)
            for pick in product(*[w.split("|") if "|" in w else [w] for w in words]):
                routes.add("".join(pick))
    return routes


def test_every_api_route_is_in_the_api_page():
    schema = api.get_openapi_schema(path_prefix="")
    routes = {re.sub(r"\{\w+\}", "{}", path) for path in schema["paths"]}
    assert "/runs/{}/logs" in routes
    page = documented_routes((ROOT / "docs" / "api.md").read_text())
    assert sorted(routes - page) == []
