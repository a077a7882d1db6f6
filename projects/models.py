from django.db import models


class Project(models.Model):
    """A computer-vision project in one workspace of a tenant: its datasets, slices and models hang off it."""

    workspace_id = models.CharField(max_length=100, db_index=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace_id", "name"], name="project_name_unique_in_workspace")
        ]
        indexes = [models.Index(fields=["workspace_id", "-created_at", "-id"], name="project_workspace_recent")]

    def __str__(self) -> str:
        return self.name
