"""Import rules that keep the architecture visible, checked by walking the source's import statements (ast).

Each rule names the offending ``module -> import`` pairs when it fails.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("voicebot", "tests", "bench", "fsdouble")


def module_name(path: Path) -> str:
    """``voicebot/esl/connection.py`` → ``voicebot.esl.connection`` (a package's ``__init__`` → the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(imported module, names taken from it) for every import in ``path``; relative imports made absolute."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((base, tuple(alias.name for alias in node.names)))
    return out


def python_files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts)


def importers_of(top: str, dirs: tuple[str, ...] = SOURCE_DIRS) -> list[str]:
    return [f"{module_name(p)} -> {mod}" for p in python_files(*dirs) for mod, _ in imports_of(p)
            if mod.split(".")[0] == top]


def test_the_walker_sees_imports() -> None:
    """The rules below are only as good as the walker: it must find what is there."""
    found = dict(imports_of(ROOT / "voicebot" / "engine.py"))
    assert "gevent" in found and found["voicebot.esl.connection"] and len(python_files("voicebot")) > 50


def test_greenswitch_is_neither_imported_nor_a_dependency() -> None:
    """docs/decisions.md entry 1: the engine has its own ESL client; greenswitch is not a dependency."""
    assert importers_of("greenswitch") == []
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    listed = [*project["dependencies"], *(d for extra in project.get("optional-dependencies", {}).values() for d in extra)]
    assert [d for d in listed if d.lower().startswith("greenswitch")] == []
