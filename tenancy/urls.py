from django.urls import path

from tenancy.apis import TenantProvisionApi

urlpatterns = [path("tenants", TenantProvisionApi.as_view(), name="platform-tenant-provision")]
