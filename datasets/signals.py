"""What datasets' writers announce once a change is made, for the apps above them: search indexes the rows again
(search/apps.py connects its indexing hand-off). Datasets sit below search, so they send these instead of calling it.
The arguments are search.indexing's of the same name."""

from django.dispatch import Signal

# project_id, datarow_ids: tags, labels or metadata of these datarows changed.
datarows_changed = Signal()
# project_id, datarow_ids: these datarows were deleted.
datarows_deleted = Signal()
# project_id, dataset_id, since: the dataset's datarows updated at or after `since` (all without it), after an import.
dataset_changed = Signal()
# project_id, dataset_id: the dataset and its datarows were deleted.
dataset_deleted = Signal()
