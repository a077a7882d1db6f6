"""The ASGI application imports every view when it loads, then freezes what it loaded out of the garbage collector:
a full collection then walks only what requests create, not the ~140k objects of the code itself."""

import json

from tests.fresh_process import run_python

REPORT = (
    "import gc, json, sys; import mlops.asgi; "
    "print(json.dumps({'view_loaded': 'search.apis' in sys.modules, 'frozen': gc.get_freeze_count(), "
    "'tracked': len(gc.get_objects())}))"
)


def test_loading_the_asgi_application_imports_the_views_and_freezes_them():
    # when
    result = run_python(REPORT, {"MLOPS_ENV": "development", "MLOPS_DEV_AUTH": "1"})
    # then: the views were imported by the URLconf at load, not by the first request, and then frozen
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["view_loaded"]
    assert report["frozen"] > 50_000
    assert report["tracked"] < report["frozen"] / 20, report
