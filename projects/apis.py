from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from mlops.apis import Api
from mlops.exception_handler import ErrorSerializer
from mlops.serializers import CursorPageQuerySerializer, StrictSerializer, page_of
from projects.selectors import project_get, project_list
from projects.services import project_create, project_delete, project_update


class ProjectOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    workspace_id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ProjectListCreateApi(Api):
    class CreateInputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, allow_blank=True, default="")

    query_serializers = {"get": CursorPageQuerySerializer}

    @extend_schema(responses={200: page_of(ProjectOutputSerializer)})
    def get(self, request):
        return self.page_response(project_list(principal=request.user), ProjectOutputSerializer)

    @extend_schema(request=CreateInputSerializer, responses={201: ProjectOutputSerializer})
    def post(self, request):
        data = self.CreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_create(principal=request.user, **data.validated_data)
        return Response(ProjectOutputSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(Api):
    class UpdateInputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(responses={200: ProjectOutputSerializer})
    def get(self, request, project_id: int):
        return Response(ProjectOutputSerializer(project_get(principal=request.user, project_id=project_id)).data)

    @extend_schema(request=UpdateInputSerializer, responses={200: ProjectOutputSerializer})
    def patch(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        data = self.UpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_update(project=project, **data.validated_data)
        return Response(ProjectOutputSerializer(project).data)

    @extend_schema(responses={204: None, 409: OpenApiResponse(ErrorSerializer, description="It still has datasets.")})
    def delete(self, request, project_id: int):
        project_delete(project=project_get(principal=request.user, project_id=project_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
