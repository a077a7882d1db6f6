from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.response import Response

from datasets.selectors import datarow_get, dataset_get_for_caller, label_get
from datasets.serializers import LabelInputSerializer, LabelOutputSerializer
from datasets.services.labels import label_create, label_delete, label_update
from mlops.apis import Api

LABEL_EXAMPLE = OpenApiExample(
    "A box",
    value={"class": "vehicle/car", "box": [100, 50, 200, 100], "attributes": {"occluded": False}},
    request_only=True,
)


class LabelCreateApi(Api):
    class InputSerializer(LabelInputSerializer):
        pass

    @extend_schema(request=InputSerializer, responses={201: LabelOutputSerializer}, examples=[LABEL_EXAMPLE])
    def post(self, request, project_id: int, dataset_id: int, datarow_id: int):
        dataset = dataset_get_for_caller(principal=request.user, project_id=project_id, dataset_id=dataset_id)
        datarow = datarow_get(dataset=dataset, datarow_id=datarow_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = dict(data.validated_data)
        label = label_create(principal=request.user, datarow=datarow, class_name=options.pop("class"), **options)
        return Response(LabelOutputSerializer(label).data, status=status.HTTP_201_CREATED)


class LabelDetailApi(Api):
    class UpdateInputSerializer(LabelInputSerializer):
        class_required = False

    def _label(self, request, project_id: int, dataset_id: int, datarow_id: int, label_id: int):
        dataset = dataset_get_for_caller(principal=request.user, project_id=project_id, dataset_id=dataset_id)
        return label_get(datarow=datarow_get(dataset=dataset, datarow_id=datarow_id), label_id=label_id)

    @extend_schema(
        request=UpdateInputSerializer,
        responses={200: LabelOutputSerializer},
        examples=[
            OpenApiExample("Reclassify as a classification", value={"class": "daytime", "box": None}, request_only=True)
        ],
    )
    def patch(self, request, project_id: int, dataset_id: int, datarow_id: int, label_id: int):
        """Sending `box` or `polygon` replaces the label's geometry with what is sent."""
        label = self._label(request, project_id, dataset_id, datarow_id, label_id)
        data = self.UpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = data.validated_data
        geometry_input = (
            {"box": changes.get("box"), "polygon": changes.get("polygon")}
            if "box" in changes or "polygon" in changes
            else None
        )
        label = label_update(
            principal=request.user,
            label=label,
            class_name=changes.get("class"),
            geometry_input=geometry_input,
            attributes=changes.get("attributes"),
        )
        return Response(LabelOutputSerializer(label).data)

    @extend_schema(responses={204: None})
    def delete(self, request, project_id: int, dataset_id: int, datarow_id: int, label_id: int):
        label_delete(label=self._label(request, project_id, dataset_id, datarow_id, label_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
