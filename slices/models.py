"""Slices: named selections of a project's datarows.

A slice is a live query (its members are whatever matches now), a fixed list of ids, or a frozen snapshot of a
query. Ids and frozen slices keep their members in SliceMember, one narrow row per member, written set-based;
a frozen slice may be split into train / validation / test, stored on the member rows.
"""

from django.db import models


class Slice(models.Model):
    class Kind(models.TextChoices):
        QUERY = "query"  # live: members are the query's matches at read time
        IDS = "ids"  # the datarow ids given at creation
        FROZEN = "frozen"  # the query's matches when it was frozen

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="slices")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The query text (live and frozen slices) and the dataset it was limited to, if any.
    query = models.TextField(blank=True, default="")
    dataset = models.ForeignKey("datasets.Dataset", null=True, on_delete=models.CASCADE, related_name="slices")
    # Stored members of ids and frozen slices; null for live slices (counted on read).
    member_count = models.BigIntegerField(null=True)
    frozen_at = models.DateTimeField(null=True)
    # The job filling a frozen slice too large to freeze in the request; frozen_at stays null until it is done.
    freeze_job = models.ForeignKey("jobs.Job", null=True, on_delete=models.SET_NULL, related_name="+")
    # The stored split, if any: its seed, fractions ({"train": .8, "validation": .1, "test": .1}) and whether
    # it was stratified by class.
    split_seed = models.BigIntegerField(null=True)
    split_fractions = models.JSONField(null=True)
    split_stratified = models.BooleanField(default=False)
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="slice_name_unique_in_project")]

    def __str__(self) -> str:
        return self.name


class Split(models.IntegerChoices):
    TRAIN = 0, "train"
    VALIDATION = 1, "validation"
    TEST = 2, "test"


class SliceMember(models.Model):
    """One datarow of an ids or frozen slice; (slice, datarow) is the key, so members page by datarow id."""

    pk = models.CompositePrimaryKey("slice_id", "datarow_id")
    # No foreign key constraints: their per-row checks made a 1M-member freeze about three times slower. Members
    # are only ever inserted from a SELECT of existing datarows, and statement-level triggers delete them with
    # their datarow or slice, whoever deletes it (slices/migrations/0003).
    # Indexed by the key (slice first) and slice_member_datarow, not by indexes of their own.
    slice = models.ForeignKey(
        Slice, on_delete=models.CASCADE, related_name="members", db_constraint=False, db_index=False
    )
    datarow = models.ForeignKey(
        "datasets.DataRow",
        on_delete=models.CASCADE,
        related_name="slice_memberships",
        db_constraint=False,
        db_index=False,
    )
    split = models.SmallIntegerField(choices=Split.choices, null=True)

    class Meta:
        # "Members of a split" read the key's range of the slice: an index on split would make every split an
        # update of all indexes instead of a HOT update of the heap (docs/design/slices.md), for which the
        # table keeps half of each page free (fillfactor 50, slices/migrations/0003).
        indexes = [
            # "Which slices hold this row", for datarow deletes.
            models.Index(fields=["datarow"], name="slice_member_datarow"),
        ]
