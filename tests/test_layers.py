"""The import contract: each layer imports only what its job needs (docs/architecture.md).

Every import in the packages is read from the source (including imports inside
functions), so a leak fails the suite before it reaches a review.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("collector", "worker", "sightline")
TOP_LAYER = {"sightline.cli", "sightline.up", "sightline.__main__"}
"""The command line: the only modules that may import both the collector and the worker."""


@dataclass(frozen=True)
class Rule:
    modules: str
    """A module name or package prefix the rule applies to."""
    forbidden: tuple[str, ...]
    why: str

    def applies_to(self, module: str) -> bool:
        return module == self.modules or module.startswith(self.modules + ".")


RULES = (
    Rule("worker", ("collector",), "the worker never imports the collector"),
    Rule("collector", ("worker",), "the collector never imports the worker"),
    Rule("sightline", ("collector", "worker"), "the shared package imports neither app"),
    Rule(
        "sightline.dialects",
        ("starlette", "sqlalchemy", "redis", "rq", "sightline.store", "uvicorn"),
        "a dialect module is pure: wire schema, validation, normalise",
    ),
    Rule("collector.endpoints", ("sqlalchemy",), "endpoints call named store functions, no SQL"),
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports, absolute, wherever in the file the import is."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def violations(root: Path) -> list[str]:
    """Each import that breaks a rule, as ``module imports name: why``."""
    found: list[str] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            if module in TOP_LAYER:
                continue
            imported = imports_of(path, module)
            for rule in RULES:
                if not rule.applies_to(module):
                    continue
                for name in sorted(imported):
                    if any(name == f or name.startswith(f + ".") for f in rule.forbidden):
                        found.append(f"{module} imports {name}: {rule.why}")
    return found


def test_the_layers_keep_their_imports() -> None:
    assert violations(ROOT) == []


def test_a_leak_is_found(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "sightline" / "dialects").mkdir()
    (tmp_path / "sightline" / "dialects" / "__init__.py").write_text("")
    (tmp_path / "worker" / "jobs.py").write_text("def f():\n    import collector.app\n")
    (tmp_path / "sightline" / "status.py").write_text("from worker import main\n")
    (tmp_path / "sightline" / "cli.py").write_text("import collector, worker\n")
    (tmp_path / "sightline" / "dialects" / "x.py").write_text("from ..store import db\n")
    assert violations(tmp_path) == [
        "worker.jobs imports collector.app: the worker never imports the collector",
        "sightline.dialects.x imports sightline.store: a dialect module is pure: "
        "wire schema, validation, normalise",
        "sightline.dialects.x imports sightline.store.db: a dialect module is pure: "
        "wire schema, validation, normalise",
        "sightline.status imports worker: the shared package imports neither app",
        "sightline.status imports worker.main: the shared package imports neither app",
    ]


def test_dialect_modules_stay_small() -> None:
    """A dialect module holds one format's schema, rules and mapping: under 300 lines."""
    sizes = {
        path.name: len(path.read_text(encoding="utf-8").splitlines())
        for path in (ROOT / "sightline" / "dialects").glob("*.py")
    }
    assert {name: size for name, size in sizes.items() if size >= 300} == {}
