"""The shapes of datarows and labels that several APIs share (datasets, search, slices)."""

import base64
import binascii

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from datasets.models import AnnotationKind
from mlops.serializers import StrictSerializer


@extend_schema_field(OpenApiTypes.STR)
class DatarowCursorField(serializers.Field):
    """The opaque `cursor` of a datarow page: it encodes the last id of the page before."""

    default_error_messages = {"invalid": "Not a cursor from this API; pass next_cursor as it was given."}

    def to_internal_value(self, data) -> int:
        try:
            after_id = int(base64.urlsafe_b64decode(str(data) + "=" * (-len(str(data)) % 4)).decode())
        except (binascii.Error, UnicodeDecodeError, ValueError):
            self.fail("invalid")
        if after_id < 0:
            self.fail("invalid")
        return after_id

    def to_representation(self, after_id: int) -> str:
        return base64.urlsafe_b64encode(str(after_id).encode()).decode().rstrip("=")


BOX = {
    "type": "array",
    "items": {"type": "number"},
    "minItems": 4,
    "maxItems": 4,
    "nullable": True,
    "description": "[x, y, width, height] in pixels; null for a classification.",
}
POLYGON = {
    "type": "array",
    "nullable": True,
    "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
    "description": "[[x, y], ...], at least 3 points, in pixels; null when the object is a box.",
}


@extend_schema_field(BOX)
class BoxInputField(serializers.JSONField):
    """A box as given; checked by the label service as imports check it."""


@extend_schema_field(POLYGON)
class PolygonField(serializers.JSONField):
    """A polygon as given or stored."""


@extend_schema_field(OpenApiTypes.OBJECT)
class ObjectField(serializers.JSONField):
    """A JSON object (attributes, metadata); the services say so when a value is not one."""


@extend_schema_field(BOX)
class BoxField(serializers.Field):
    """[x, y, width, height] of an object (a polygon's bounding box); null for a classification."""

    def __init__(self, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, annotation):
        if annotation.kind == AnnotationKind.CLASSIFICATION:
            return None
        return [annotation.x, annotation.y, annotation.w, annotation.h]


class ClassNamedSerializer(serializers.Serializer):
    """Adds the field `class` (a Python keyword, so it cannot be declared in a class body): a label's or a
    prediction's class is `class` in the import manifest, in exports and in every API."""

    def class_field(self) -> serializers.Field:
        return serializers.CharField(source="ontology_class.name", read_only=True)

    def get_fields(self):
        return {"class": self.class_field(), **super().get_fields()}


class LabelOutputSerializer(ClassNamedSerializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    box = BoxField()
    polygon = PolygonField()
    area = serializers.FloatField(allow_null=True)  # none for a classification
    attributes = ObjectField()
    source = serializers.CharField()
    updated_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class LabelInputSerializer(ClassNamedSerializer, StrictSerializer):
    """A label as the import manifest writes one: `class`, a `box` or a `polygon` (neither: a classification) and
    `attributes`. Shapes and bounds are checked as imports check them (datasets/importers/records.py)."""

    class_required = True

    box = BoxInputField(required=False, allow_null=True)
    polygon = PolygonField(required=False, allow_null=True)
    attributes = ObjectField(required=False)

    def class_field(self) -> serializers.Field:
        return serializers.CharField(
            max_length=500,
            required=self.class_required,
            help_text="A class of the project's ontology, e.g. 'vehicle/car'.",
        )


class DatarowOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    uri = serializers.CharField()
    media_type = serializers.CharField()
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    metadata = ObjectField()
    tags = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
