from django.db import models
from django_tenants.models import TenantMixin


class Tenant(TenantMixin):
    """A customer: one PostgreSQL schema (bridge model), or later a database of its own (silo)."""

    class Status(models.TextChoices):
        PROVISIONING = "provisioning"  # row exists, schema not (fully) migrated yet
        ACTIVE = "active"
        SUSPENDED = "suspended"

    name = models.CharField(max_length=200)
    # The database cluster that holds this tenant's schema; the platform's connection info must agree.
    database = models.CharField(max_length=100, default="main")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PROVISIONING)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Schemas are created and migrated by tenant_provision, explicitly, never as a side effect of save().
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        db_table = "tenancy_tenant"

    def __str__(self) -> str:
        return self.schema_name
