"""Jobs are started by kind name: jobs.registry holds each kind's task, filled at start-up in every process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from jobs.models import Job
from jobs.services import job_create

ROOT = Path(__file__).resolve().parent.parent.parent


def test_a_fresh_process_knows_every_job_kinds_task_once_django_is_set_up():
    # given a process that imports no tasks module itself (a web server, a websocket server, a command)
    code = "import django; django.setup(); from jobs.registry import job_tasks; print(' '.join(sorted(job_tasks())))"
    # when Django is set up
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=os.environ, capture_output=True, text=True, timeout=120
    )
    # then every kind that has a time limit has its task, so job_create finds it by name
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == set(settings.JOB_TIME_LIMITS)


@pytest.mark.django_db
def test_a_job_of_a_kind_no_task_runs_is_not_created(in_tenant_a, principal):
    with pytest.raises(LookupError, match="no-such-kind"):
        job_create(principal=principal, kind="no-such-kind")
    assert not Job.objects.filter(kind="no-such-kind").exists()
