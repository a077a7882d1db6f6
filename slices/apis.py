from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response

from datasets.selectors import dataset_get
from datasets.serializers import DatarowCursorField, DatarowOutputSerializer
from jobs.serializers import JobOutputSerializer
from mlops.apis import Api
from mlops.exceptions import referenced_by
from mlops.serializers import CursorPageQuerySerializer, ObjectIdField, StrictSerializer, page_of
from projects.selectors import project_get
from slices.models import Slice, Split
from slices.selectors import slice_get, slice_list, slice_member_count, slice_member_page, slice_split_counts
from slices.services import (
    COMBINE_OPERATIONS,
    MAX_COMBINED_SLICES,
    MAX_DATAROW_IDS,
    slice_combine,
    slice_create_from_ids,
    slice_create_live,
    slice_delete,
    slice_freeze_start,
    slice_split,
    slice_update,
)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
SPLIT_NAMES = [split.label for split in Split]


class SliceOutputSerializer(serializers.Serializer):
    class SplitSerializer(serializers.Serializer):
        seed = serializers.IntegerField(source="split_seed")
        fractions = serializers.JSONField(source="split_fractions")
        stratified = serializers.BooleanField(source="split_stratified")

    id = serializers.IntegerField()
    project_id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    kind = serializers.CharField()
    query = serializers.CharField()
    dataset_id = serializers.IntegerField(allow_null=True)
    status = serializers.SerializerMethodField(
        help_text="ready; freezing while a freeze job fills the slice; failed when that job ended without filling it."
    )
    member_count = serializers.IntegerField(allow_null=True, help_text="Null for live slices in lists.")
    frozen_at = serializers.DateTimeField(allow_null=True)
    freeze_job_id = serializers.UUIDField(allow_null=True)
    split = serializers.SerializerMethodField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.ChoiceField(choices=["ready", "freezing", "failed"]))
    def get_status(self, slice_: Slice) -> str:
        if slice_.kind != Slice.Kind.FROZEN or slice_.frozen_at is not None:
            return "ready"
        # A worker lost mid-freeze leaves the slice unfilled and its job failed by the reaper.
        return "failed" if slice_.freeze_job is None or slice_.freeze_job.is_finished else "freezing"

    @extend_schema_field(SplitSerializer(allow_null=True))
    def get_split(self, slice_: Slice) -> dict | None:
        return None if slice_.split_seed is None else dict(self.SplitSerializer(slice_).data)


class SliceDetailOutputSerializer(SliceOutputSerializer):
    """One slice: a live slice's members counted now, and the members per split."""

    class SplitWithCountsSerializer(SliceOutputSerializer.SplitSerializer):
        counts = serializers.DictField(child=serializers.IntegerField(), help_text="Members per split name.")

    @extend_schema_field(SplitWithCountsSerializer(allow_null=True))
    def get_split(self, slice_: Slice) -> dict | None:
        split = super().get_split(slice_)
        return None if split is None else {**split, "counts": slice_split_counts(slice=slice_)}


def _project_slice(request, project_id: int, slice_id: int) -> Slice:
    return slice_get(project=project_get(principal=request.user, project_id=project_id), slice_id=slice_id)


def _detail(slice_: Slice) -> dict:
    if slice_.member_count is None and slice_.kind == Slice.Kind.QUERY:
        slice_.member_count = slice_member_count(slice=slice_)
    return SliceDetailOutputSerializer(slice_).data


class SliceListCreateApi(Api):
    class CreateInputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        kind = serializers.ChoiceField(
            choices=Slice.Kind.values,
            help_text="query: live; ids: the datarow_ids given; frozen: the query's matches now.",
        )
        query = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            trim_whitespace=False,
            help_text="query and frozen slices; empty: every datarow (of the dataset).",
        )
        dataset = ObjectIdField(required=False, help_text="Limit the query to one dataset.")
        datarow_ids = serializers.ListField(child=ObjectIdField(), required=False, max_length=MAX_DATAROW_IDS)

        def validate(self, data):
            if data["kind"] == Slice.Kind.IDS:
                if "datarow_ids" not in data:
                    raise serializers.ValidationError({"datarow_ids": ["Required for an ids slice."]})
                if data["query"] or "dataset" in data:
                    raise serializers.ValidationError({"query": ["An ids slice takes datarow_ids only."]})
            elif "datarow_ids" in data:
                raise serializers.ValidationError({"datarow_ids": [f"A {data['kind']} slice takes a query."]})
            return data

    class FreezingOutputSerializer(serializers.Serializer):
        slice = SliceOutputSerializer()
        job = JobOutputSerializer()

    query_serializers = {"get": CursorPageQuerySerializer}

    @extend_schema(responses={200: page_of(SliceOutputSerializer)})
    def get(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        return self.page_response(slice_list(project=project), SliceOutputSerializer)

    @extend_schema(
        request=CreateInputSerializer,
        responses={201: SliceDetailOutputSerializer, 202: FreezingOutputSerializer},
        examples=[
            OpenApiExample(
                "A live slice",
                request_only=True,
                value={
                    "name": "night cars",
                    "kind": "query",
                    "query": "tags = 'night' AND label(class = 'vehicle/car')",
                },
            ),
            OpenApiExample(
                "A slice of given rows",
                request_only=True,
                value={"name": "to review", "kind": "ids", "datarow_ids": [1, 2, 3]},
            ),
        ],
    )
    def post(self, request, project_id: int):
        """201 with the slice; 202 with the slice and its job for a freeze too large for one request."""
        project = project_get(principal=request.user, project_id=project_id)
        data = self.CreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        common = {"project": project, "name": params["name"], "description": params["description"]}
        dataset_id = params.get("dataset")
        if dataset_id is not None:
            with referenced_by("dataset"):
                dataset_get(project=project, dataset_id=dataset_id)
        if params["kind"] == Slice.Kind.IDS:
            created = slice_create_from_ids(
                **common, created_by=request.user.user_id, datarow_ids=params["datarow_ids"]
            )
        elif params["kind"] == Slice.Kind.QUERY:
            created = slice_create_live(
                **common, created_by=request.user.user_id, query=params["query"], dataset_id=dataset_id
            )
        else:
            frozen = slice_freeze_start(**common, principal=request.user, query=params["query"], dataset_id=dataset_id)
            if frozen.job is not None:
                return Response(self.FreezingOutputSerializer(frozen).data, status=status.HTTP_202_ACCEPTED)
            created = frozen.slice
        return Response(_detail(created), status=status.HTTP_201_CREATED)


class SliceCombineApi(Api):
    class InputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        operation = serializers.ChoiceField(
            choices=list(COMBINE_OPERATIONS), help_text="Applied left to right over `slices`."
        )
        slices = serializers.ListField(
            child=ObjectIdField(), min_length=2, max_length=MAX_COMBINED_SLICES, help_text="Slice ids, in order."
        )

    @extend_schema(request=InputSerializer, responses={201: SliceDetailOutputSerializer})
    def post(self, request, project_id: int):
        project = project_get(principal=request.user, project_id=project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        with referenced_by("slices"):
            operands = [slice_get(project=project, slice_id=slice_id) for slice_id in params["slices"]]
        combined = slice_combine(
            project=project,
            name=params["name"],
            description=params["description"],
            created_by=request.user.user_id,
            operation=params["operation"],
            slices=operands,
        )
        return Response(_detail(combined), status=status.HTTP_201_CREATED)


class SliceDetailApi(Api):
    class UpdateInputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(responses={200: SliceDetailOutputSerializer})
    def get(self, request, project_id: int, slice_id: int):
        return Response(_detail(_project_slice(request, project_id, slice_id)))

    @extend_schema(request=UpdateInputSerializer, responses={200: SliceDetailOutputSerializer})
    def patch(self, request, project_id: int, slice_id: int):
        slice_ = _project_slice(request, project_id, slice_id)
        data = self.UpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        updated = slice_update(slice=slice_, **data.validated_data)
        return Response(_detail(updated))

    @extend_schema(responses={204: None})
    def delete(self, request, project_id: int, slice_id: int):
        slice_delete(slice=_project_slice(request, project_id, slice_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SliceMemberListApi(Api):
    class FilterSerializer(StrictSerializer):
        cursor = DatarowCursorField(required=False)
        page_size = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)
        split = serializers.ChoiceField(choices=SPLIT_NAMES, required=False)

    query_serializers = {"get": FilterSerializer}

    class OutputSerializer(serializers.Serializer):
        class MemberSerializer(DatarowOutputSerializer):
            split = serializers.CharField(allow_null=True)

        results = MemberSerializer(many=True)
        next_cursor = DatarowCursorField(allow_null=True)
        count = serializers.IntegerField(help_text="Members in all (of the split, if one is given).")

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request, project_id: int, slice_id: int):
        """Members by datarow id, with keyset pages: pass next_cursor back as cursor."""
        slice_ = _project_slice(request, project_id, slice_id)
        params = self.query
        page = slice_member_page(
            slice=slice_, after_id=params.get("cursor"), limit=params["page_size"], split=params.get("split")
        )
        members = [{**DatarowOutputSerializer(row).data, "split": split} for row, split in page.results]
        count = slice_member_count(slice=slice_, split=params.get("split"))
        return Response(
            self.OutputSerializer({"results": members, "next_cursor": page.next_after_id, "count": count}).data
        )


class SliceSplitApi(Api):
    class InputSerializer(StrictSerializer):
        seed = serializers.IntegerField(min_value=-(2**63), max_value=2**63 - 1)
        fractions = serializers.DictField(
            child=serializers.FloatField(min_value=0, max_value=1),
            help_text='e.g. {"train": 0.8, "validation": 0.1, "test": 0.1}; they add up to 1.',
        )
        stratified = serializers.BooleanField(default=False, help_text="Keep each class's share in every split.")

    @extend_schema(
        request=InputSerializer,
        responses={200: SliceDetailOutputSerializer},
        examples=[
            OpenApiExample(
                "80/10/10",
                request_only=True,
                value={"seed": 7, "fractions": {"train": 0.8, "validation": 0.1, "test": 0.1}, "stratified": True},
            )
        ],
    )
    def post(self, request, project_id: int, slice_id: int):
        slice_ = _project_slice(request, project_id, slice_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        split = slice_split(slice=slice_, **data.validated_data)
        return Response(_detail(split))
