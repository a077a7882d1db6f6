"""The layers of docs/architecture.md, enforced: the import contracts (.importlinter) and one owner per table."""

import ast
import re
import subprocess
import sys
from pathlib import Path

from django.apps import apps

ROOT = Path(__file__).resolve().parent.parent
APPS = (
    "mlops",
    "tenancy",
    "jobs",
    "projects",
    "datasets",
    "search",
    "slices",
    "predictions",
    "evaluations",
    "training",
)
# The trainers library owns no table, so any table name in it is another's.
PRODUCTION_PACKAGES = (*APPS, "trainers")


def test_the_import_contracts_hold():
    # given the contracts in .importlinter (layers between apps, so no cycles; the libraries free of Django)
    # when lint-imports checks the code
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # then every contract is kept
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _production_modules():
    for app in PRODUCTION_PACKAGES:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.relative_to(ROOT).parts:
                yield app, path


def _strings(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_module_spells_another_apps_table_name():
    # given each table's owner, from the models
    owners = {model._meta.db_table: model._meta.app_label for model in apps.get_models(include_auto_created=True)}
    spelled = re.compile(r"\b(" + "|".join(map(re.escape, sorted(owners, key=len, reverse=True))) + r")\b")
    # when every string of every production module is read
    foreign = [
        f"{path.relative_to(ROOT)}:{line}: {match}"
        for app, path in _production_modules()
        for line, text in _strings(ast.parse(path.read_text(), filename=str(path)))
        for match in spelled.findall(text)
        if owners[match] != app
    ]
    # then none names another app's table: raw SQL takes those names from mlops.tables
    assert foreign == []


def test_the_table_registry_names_each_models_table():
    from mlops import tables

    for name, label in tables.MODELS.items():
        assert getattr(tables, name) == apps.get_model(label)._meta.db_table
