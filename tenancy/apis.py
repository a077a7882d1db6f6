import hmac

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from mlops.apis import Api
from mlops.exceptions import NotAuthenticated
from mlops.serializers import StrictSerializer
from tenancy.authentication import bearer_token_from_header
from tenancy.services import tenant_provision


class IsPlatformService(BasePermission):
    """The platform calls these endpoints with its service key, not with a user's token."""

    def has_permission(self, request, view):
        token = bearer_token_from_header(request.headers.get("Authorization"))
        expected = settings.PLATFORM_SERVICE_KEY
        if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
            raise NotAuthenticated("Platform endpoints need the platform service key.")
        return True


class TenantProvisionApi(Api):
    authentication_classes: list = []
    permission_classes = [IsPlatformService]

    class InputSerializer(StrictSerializer):
        schema_name = serializers.CharField(max_length=48)
        name = serializers.CharField(max_length=200)
        database = serializers.CharField(max_length=100, default="main")

    class OutputSerializer(serializers.Serializer):
        schema_name = serializers.CharField()
        name = serializers.CharField()
        database = serializers.CharField()
        status = serializers.CharField()
        created_at = serializers.DateTimeField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer}, auth=[{"platformServiceKey": []}])
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = tenant_provision(**data.validated_data)
        return Response(self.OutputSerializer(tenant).data, status=status.HTTP_201_CREATED)
