from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from mlops.pagination import CreatedCursorPagination
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


class ProjectListCreateApi(APIView):
    class CreateInputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, allow_blank=True, default="")

    def get(self, request):
        paginator = CreatedCursorPagination()
        page = paginator.paginate_queryset(project_list(principal=request.user), request, view=self)
        return paginator.get_paginated_response(ProjectOutputSerializer(page, many=True).data)

    def post(self, request):
        data = self.CreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_create(principal=request.user, **data.validated_data)
        return Response(ProjectOutputSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    class UpdateInputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(required=False, allow_blank=True)

    def get(self, request, project_id: int):
        return Response(ProjectOutputSerializer(project_get(principal=request.user, project_id=project_id)).data)

    def patch(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        data = self.UpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_update(project=project, **data.validated_data)
        return Response(ProjectOutputSerializer(project).data)

    def delete(self, request, project_id: int):
        project_delete(project=project_get(principal=request.user, project_id=project_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
