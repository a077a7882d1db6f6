"""The training core runs as a plain script: importing all of it pulls in neither Django nor Celery."""

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import json, sys
import training.core.cli, training.core.image_classifier, training.core.images, training.core.interface
import training.core.networks, training.core.opener, training.core.registry
trainer = training.core.registry.get_trainer("image-classifier")
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in ("django", "celery", "rest_framework"))))
"""


def test_importing_the_training_core_imports_neither_django_nor_celery():
    # A fresh interpreter without DJANGO_SETTINGS_MODULE: this test process has Django loaded already.
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin"})

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
