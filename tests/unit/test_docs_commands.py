"""Every command the README and the docs site show exists.

Reads the shell code blocks of README.md and docs/**/*.md and checks each command in them:

- ``huracan GROUP COMMAND ...``: the command path is in the Typer app ``huracan.cli:app`` and its
  ``--help`` exits 0 (in process, through ``typer.testing.CliRunner``);
- ``python -m huracan.MODULE ...``: the module exists; for the Hydra apps (train, tune, sizer,
  nightly) Hydra's ``--help`` runs and exits 0 (one subprocess per app, run side by side);
- ``make TARGET``: the Makefile defines the target.

Also: README.md stays under 200 lines, every page of mkdocs.yml's nav exists, and the mkdocs hook
builds the CLI reference's Click command from the app. The site build itself
(``mkdocs build --strict``) runs in CI.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from huracan.cli import app

REPO = Path(__file__).resolve().parents[2]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
HYDRA_APPS = {"huracan.train", "huracan.tune", "huracan.sizer", "huracan.nightly"}
SHELL_LANGS = {"bash", "sh", "shell", "console", ""}
FENCE = re.compile(r"^([ \t]*)```(\w*)[^\n]*\n(.*?)^\1```", re.M | re.S)
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def shell_lines(text: str) -> list[str]:
    """The logical lines (backslash continuations joined, comments cut) of the shell blocks."""
    out: list[str] = []
    for match in FENCE.finditer(text):
        if match.group(2).lower() not in SHELL_LANGS:
            continue
        body = re.sub(r"\\\n", " ", match.group(3))
        for line in body.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                out.append(line)
    return out


def split_commands(line: str) -> list[list[str]]:
    """The simple commands of one line (split at ``&&``, ``||``, ``;``, ``|``), as tokens,
    leading ``VAR=value`` assignments dropped."""
    commands = []
    for part in re.split(r"&&|\|\||;|\|", line):
        try:
            tokens = shlex.split(part)
        except ValueError:  # an unbalanced quote: a JSON body spread over lines
            tokens = part.split()
        while tokens and ENV_ASSIGNMENT.match(tokens[0]):
            tokens = tokens[1:]
        if tokens:
            commands.append(tokens)
    return commands


def collect() -> tuple[dict[tuple[str, ...], str], dict[str, str], dict[str, str]]:
    """Commands shown in the docs: huracan command paths, python -m modules, make targets, each
    mapped to the first file showing it."""
    root = typer.main.get_command(app)
    huracan_paths: dict[tuple[str, ...], str] = {}
    modules: dict[str, str] = {}
    targets: dict[str, str] = {}
    for path in DOC_FILES:
        where = str(path.relative_to(REPO))
        for line in shell_lines(path.read_text()):
            for tokens in split_commands(line):
                exe = tokens[0].rsplit("/", 1)[-1]  # "huracan/" (a folder) is no command
                if exe == "huracan":
                    huracan_paths.setdefault(command_path(root, tokens[1:]), where)
                elif re.fullmatch(r"python(3(\.\d+)?)?", exe) and tokens[1:2] == ["-m"]:
                    if len(tokens) > 2 and tokens[2].split(".")[0] == "huracan":
                        modules.setdefault(tokens[2], where)
                elif exe == "make":
                    for token in tokens[1:]:
                        if not token.startswith("-") and "=" not in token:
                            targets.setdefault(token, where)
    return huracan_paths, modules, targets


def command_path(root: Any, args: list[str]) -> tuple[str, ...]:
    """The words of ``args`` that name (sub)commands: as deep as the app's groups go. A word that
    is no subcommand of a group is kept, so that the check below reports it. (Typer vendors its
    own Click, so a group is recognised by its ``commands``, not by ``click.Group``.)"""
    path: list[str] = []
    command = root
    for word in args:
        if not hasattr(command, "commands") or word.startswith("-") or word == "...":
            break
        path.append(word)
        sub = command.commands.get(word)
        if sub is None:
            break
        command = sub
    return tuple(path)


HURACAN_PATHS, MODULES, TARGETS = collect()


def test_the_docs_show_commands_of_every_kind():
    # the extraction itself: a regex gone wrong would make every check below pass vacuously
    assert ("registry", "rollback") in HURACAN_PATHS
    assert ("drift", "report") in HURACAN_PATHS
    assert {"huracan.train", "huracan.tune", "huracan.nightly"} <= set(MODULES)
    assert {"train", "test", "mlflow-ui"} <= set(TARGETS)
    assert len(HURACAN_PATHS) >= 20


def test_shell_lines_join_continuations_and_cut_comments():
    text = "```bash\n.venv/bin/huracan lake import f.parquet \\\n    --lake x   # a note\n```\n"
    assert shell_lines(text) == [".venv/bin/huracan lake import f.parquet      --lake x"]
    assert split_commands("cd /a && X=1 python -m huracan.train seed=7") == [
        ["cd", "/a"], ["python", "-m", "huracan.train", "seed=7"]]


def test_every_huracan_command_in_the_docs_exists_and_shows_its_help():
    runner = CliRunner()
    failures = []
    for path, where in sorted(HURACAN_PATHS.items()):
        result = runner.invoke(app, [*path, "--help"])
        if result.exit_code != 0:
            failures.append(f"{where}: huracan {' '.join(path)} --help -> exit {result.exit_code}: "
                            f"{result.output.strip().splitlines()[-1:]}")
    assert not failures, "\n".join(failures)


def test_every_python_m_module_in_the_docs_exists():
    missing = [f"{where}: python -m {m}" for m, where in sorted(MODULES.items())
               if importlib.util.find_spec(m) is None]
    assert not missing, "\n".join(missing)


def test_the_hydra_apps_in_the_docs_show_their_help():
    apps = sorted(set(MODULES) & HYDRA_APPS)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = {m: subprocess.Popen([sys.executable, "-m", m, "--help"], cwd=REPO, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for m in apps}
    failures = []
    for m, proc in procs.items():
        out, _ = proc.communicate(timeout=240)
        if proc.returncode != 0 or f"python -m {m} --hydra-help" not in out:  # conf/hydra/help/
            failures.append(f"python -m {m} --help -> exit {proc.returncode}: {out[-500:]}")
    assert not failures, "\n".join(failures)


def test_every_make_target_in_the_docs_is_in_the_makefile():
    makefile = (REPO / "Makefile").read_text()
    defined = set(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", makefile, re.M))
    missing = [f"{where}: make {t}" for t, where in sorted(TARGETS.items()) if t not in defined]
    assert not missing, "\n".join(missing)
    assert {"docs", "docs-build"} <= defined


def test_readme_is_under_200_lines():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines; move the detail into docs/"


def nav_files(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [f for item in nav for f in nav_files(item)]
    if isinstance(nav, dict):
        return [f for value in nav.values() for f in nav_files(value)]
    return []


def test_every_page_of_the_nav_exists_and_every_page_is_in_the_nav():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    docs = REPO / config.get("docs_dir", "docs")
    pages = nav_files(config["nav"])
    assert len(pages) > 20
    missing = [p for p in pages if not (docs / p).is_file()]
    assert not missing, missing
    on_disk = {str(p.relative_to(docs)) for p in docs.rglob("*.md")}
    assert on_disk == set(pages), f"pages outside the nav: {sorted(on_disk - set(pages))}"


def test_the_mkdocs_hook_builds_the_cli_reference_command_from_the_app():
    hook_path = REPO / "docs" / "hooks" / "cli_reference.py"
    spec = importlib.util.spec_from_file_location("cli_reference_hook", hook_path)
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    try:
        assert hook.on_config({"nav": []}) == {"nav": []}
        command = sys.modules[hook.MODULE].command
        assert hasattr(command, "context_class")  # what mkdocs-click accepts
        assert {"registry", "drift", "db", "lake", "nightly", "select", "size"} <= set(
            command.commands)
    finally:
        sys.modules.pop(hook.MODULE, None)


@pytest.mark.parametrize("line, expected", [
    ("huracan registry ...", ("registry",)),
    ("huracan lake import candles.parquet --exchange binance", ("lake", "import")),
    ("huracan select BTC/USDT --timeframe 1h", ("select",)),
])
def test_command_path_stops_at_arguments(line, expected):
    assert command_path(typer.main.get_command(app), shlex.split(line)[1:]) == expected


def test_the_sphinx_roles_hook_keeps_the_code_and_drops_the_role():
    spec = importlib.util.spec_from_file_location(
        "sphinx_roles_hook", REPO / "docs" / "hooks" / "sphinx_roles.py")
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    html = "see :func:<code>execute</code> and :py:class:<code>Fill</code>; a :note: stays"
    expected = "see <code>execute</code> and <code>Fill</code>; a :note: stays"
    assert hook.strip_roles(html) == expected
