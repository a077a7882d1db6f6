"""The search tasks keep their Celery names wherever their code lives: queued messages and queued jobs carry them."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
NAMES = {
    "search.tasks.index_datarows",
    "search.tasks.index_dataset",
    "search.tasks.index_slice_members",
    "search.tasks.delete_dataset_documents",
    "search.tasks.search_reindex",
    "search.tasks.search_bulk_action",
}


def test_a_fresh_process_knows_every_search_task_by_its_name_once_django_is_set_up():
    # given a process that imports no tasks module itself (a web server, a command: they enqueue by these names)
    code = (
        "import django; django.setup(); from mlops.celery import app; "
        "print(' '.join(sorted(name for name in app.tasks if name.startswith('search.'))))"
    )
    # when Django is set up
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=os.environ, capture_output=True, text=True, timeout=120
    )
    # then Celery knows each search task under the name it has always had
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == NAMES
