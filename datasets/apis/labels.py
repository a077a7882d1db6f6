from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets.models import AnnotationKind
from datasets.selectors import datarow_get, dataset_get_for_caller, label_get
from datasets.services.labels import label_create, label_delete, label_update


class BoxField(serializers.Field):
    """[x, y, width, height] of an object (a polygon's bounding box); null for a classification."""

    def __init__(self, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, annotation):
        if annotation.kind == AnnotationKind.CLASSIFICATION:
            return None
        return [annotation.x, annotation.y, annotation.w, annotation.h]


class LabelOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    class_name = serializers.CharField(source="ontology_class.name")
    kind = serializers.CharField()
    box = BoxField()
    polygon = serializers.JSONField()
    area = serializers.FloatField()
    attributes = serializers.JSONField()
    source = serializers.CharField()
    updated_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class LabelCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        class_name = serializers.CharField(max_length=500)
        # Shapes and bounds are checked as imports check them (datasets/importers/records.py).
        box = serializers.JSONField(required=False, allow_null=True)
        polygon = serializers.JSONField(required=False, allow_null=True)
        attributes = serializers.JSONField(required=False)

    def post(self, request, project_id: int, dataset_id: int, datarow_id: int):
        dataset = dataset_get_for_caller(principal=request.user, project_id=project_id, dataset_id=dataset_id)
        datarow = datarow_get(dataset=dataset, datarow_id=datarow_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        label = label_create(principal=request.user, datarow=datarow, **data.validated_data)
        return Response(LabelOutputSerializer(label).data, status=status.HTTP_201_CREATED)


class LabelDetailApi(APIView):
    class UpdateInputSerializer(serializers.Serializer):
        class_name = serializers.CharField(max_length=500, required=False)
        box = serializers.JSONField(required=False, allow_null=True)
        polygon = serializers.JSONField(required=False, allow_null=True)
        attributes = serializers.JSONField(required=False)

    def _label(self, request, project_id: int, dataset_id: int, datarow_id: int, label_id: int):
        dataset = dataset_get_for_caller(principal=request.user, project_id=project_id, dataset_id=dataset_id)
        return label_get(datarow=datarow_get(dataset=dataset, datarow_id=datarow_id), label_id=label_id)

    def patch(self, request, project_id: int, dataset_id: int, datarow_id: int, label_id: int):
        """Sending `box` or `polygon` replaces the label's geometry with what is sent."""
        label = self._label(request, project_id, dataset_id, datarow_id, label_id)
        data = self.UpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = data.validated_data
        geometry_input = ({"box": changes.get("box"), "polygon": changes.get("polygon")}
                          if "box" in changes or "polygon" in changes else None)
        label = label_update(principal=request.user, label=label, class_name=changes.get("class_name"),
                             geometry_input=geometry_input, attributes=changes.get("attributes"))
        return Response(LabelOutputSerializer(label).data)

    def delete(self, request, project_id: int, dataset_id: int, datarow_id: int, label_id: int):
        label_delete(label=self._label(request, project_id, dataset_id, datarow_id, label_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
