"""The trainers library runs as a plain script: importing all of it pulls in neither Django, Celery nor the training
app; and a web process validates a trainer config without importing torch (a training workers' dependency)."""

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def imported_top_level_packages(code: str) -> set[str]:
    """Top-level packages in sys.modules after `code` runs in a fresh interpreter (this test process has
    Django loaded already), without DJANGO_SETTINGS_MODULE or anything else of this environment."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}})))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_importing_the_whole_trainers_library_imports_neither_django_nor_celery():
    modules = imported_top_level_packages(
        "import trainers.cli, trainers.classifier_training, trainers.image_classifier\n"
        "import trainers.images, trainers.interface, trainers.networks, trainers.opener\n"
        "import trainers.registry"
    )

    assert "torch" in modules  # the check is not vacuous: the heavy modules were imported
    assert modules.isdisjoint({"django", "celery", "rest_framework", "kombu", "training"})


def test_validating_an_image_classifier_config_imports_no_torch():
    modules = imported_top_level_packages(
        "from trainers.registry import get_trainer\n"
        "print(get_trainer('image-classifier').validate_config({'architecture': 'resnet18'}))"
    )

    assert "trainers" in modules
    assert modules.isdisjoint({"torch", "numpy", "PIL", "django", "celery"})
