from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from datasets.models import ObjectAttribute
from datasets.selectors import object_attribute_list, ontology_class_list
from datasets.services.ontology import MAX_ATTRIBUTE_NAME, object_attribute_declare, ontology_class_create
from mlops.apis import Api
from mlops.exception_handler import ErrorSerializer
from mlops.pagination import CreatedCursorPagination
from mlops.serializers import CursorPageQuerySerializer, StrictSerializer, page_of
from projects.selectors import project_get


class OntologyClassPagination(CreatedCursorPagination):
    """Keyset pages in name order (unique in a project), so a parent comes before its children."""

    ordering = ("name",)
    page_size = 500
    max_page_size = 1000


class OntologyClassOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    parent_id = serializers.IntegerField(allow_null=True)
    parent_name = serializers.CharField(source="parent.name", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class OntologyClassListCreateApi(Api):
    class CreateInputSerializer(StrictSerializer):
        name = serializers.CharField(
            max_length=500, help_text="A path like 'vehicle/car/sedan'; missing parents are added too."
        )

    query_serializers = {"get": CursorPageQuerySerializer}

    @extend_schema(responses={200: page_of(OntologyClassOutputSerializer)})
    def get(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return self.page_response(
            ontology_class_list(project=project), OntologyClassOutputSerializer, pagination=OntologyClassPagination
        )

    @extend_schema(
        request=CreateInputSerializer,
        responses={
            201: OntologyClassOutputSerializer,
            409: OpenApiResponse(ErrorSerializer, description="The project has a class of that name already."),
        },
    )
    def post(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        data = self.CreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ontology_class = ontology_class_create(project=project, **data.validated_data)
        return Response(OntologyClassOutputSerializer(ontology_class).data, status=status.HTTP_201_CREATED)


class ObjectAttributePagination(CreatedCursorPagination):
    ordering = ("name",)
    page_size = 500
    max_page_size = 1000


class ObjectAttributeOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    value_type = serializers.ChoiceField(choices=ObjectAttribute.ValueType.choices)
    enum_values = serializers.ListField(child=serializers.CharField())
    declared = serializers.BooleanField(help_text="Declared here; false: inferred by an import.")
    updated_at = serializers.DateTimeField()


class ObjectAttributeListDeclareApi(Api):
    """The project's label attribute catalog: what imports inferred and what was declared. Conditions on these
    attributes (`label(attributes.occluded = true)`) with values of their type are answered from typed indexes."""

    class DeclareInputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=MAX_ATTRIBUTE_NAME, help_text="The key under a label's attributes.")
        value_type = serializers.ChoiceField(choices=ObjectAttribute.ValueType.choices)
        enum_values = serializers.ListField(
            child=serializers.CharField(max_length=MAX_ATTRIBUTE_NAME),
            required=False,
            max_length=ObjectAttribute.MAX_ENUM_VALUES,
            help_text="An enum's values (required for an enum, absent otherwise).",
        )

    query_serializers = {"get": CursorPageQuerySerializer}

    @extend_schema(responses={200: page_of(ObjectAttributeOutputSerializer)})
    def get(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return self.page_response(
            object_attribute_list(project=project),
            ObjectAttributeOutputSerializer,
            pagination=ObjectAttributePagination,
        )

    @extend_schema(request=DeclareInputSerializer, responses={200: ObjectAttributeOutputSerializer})
    def post(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        data = self.DeclareInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        attribute = object_attribute_declare(project=project, **data.validated_data)
        return Response(ObjectAttributeOutputSerializer(attribute).data)
