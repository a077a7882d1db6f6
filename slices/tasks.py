from jobs.models import Job
from jobs.runner import job_task
from jobs.services import job_report_progress
from mlops.db_routing import WRITER
from slices.models import Slice
from slices.services import SLICE_FREEZE_JOB_KIND, slice_delete, slice_freeze_members


@job_task(kind=SLICE_FREEZE_JOB_KIND)
def slice_freeze(job: Job, *, slice_id: int) -> None:
    """Fill a frozen slice too large for a request. A freeze that fails or is cancelled deletes its slice, so the
    slice either ends up frozen with every match or is gone; never frozen with some of them."""
    pending = Slice.objects.using(WRITER).select_related("project").get(pk=slice_id)
    try:
        frozen = slice_freeze_members(slice=pending)
        # The one progress report, which also sees a cancel requested while the INSERT ran.
        job_report_progress(
            job=job,
            done=frozen.member_count,
            total=frozen.member_count,
            counters={"slice_id": frozen.pk, "members": frozen.member_count},
            message=f"{frozen.member_count} datarows frozen into slice '{frozen.name}'",
        )
    except Exception:
        slice_delete(slice=pending)
        raise
