"""The shapes of model versions, metrics and prediction runs over REST."""

from rest_framework import serializers

from jobs.serializers import RunOutputSerializer
from mlops.serializers import StrictSerializer
from slices.models import Split

SPLIT_CHOICES = [split.label for split in Split]


class ScopeInputSerializer(StrictSerializer):
    """Which datarows: a slice's members and, optionally, only some of its splits (e.g. a fixed held-out test
    split). Metrics, comparisons and prediction runs take the same scope."""

    slice_id = serializers.IntegerField(required=False, min_value=1)
    splits = serializers.ListField(
        child=serializers.ChoiceField(choices=SPLIT_CHOICES),
        required=False,
        help_text="Only these splits of the slice (a query parameter: repeat it).",
    )

    def validate(self, data):
        if data.get("splits") and "slice_id" not in data:
            raise serializers.ValidationError({"splits": ["Splits need a slice_id."]})
        return data


def split_values(names) -> tuple[int, ...]:
    return tuple(Split[name.upper()].value for name in names)


class ModelVersionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project_id = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.CharField()
    training_run_id = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class PredictionRunOutputSerializer(RunOutputSerializer):
    model_version_id = serializers.IntegerField()
    splits = serializers.SerializerMethodField(help_text="The slice's splits predicted; empty: all its members.")
    dataset_id = serializers.IntegerField(allow_null=True)
    top_k = serializers.IntegerField()
    score_threshold = serializers.FloatField()
    batch_size = serializers.IntegerField()
    datarow_count = serializers.IntegerField()
    prediction_count = serializers.IntegerField()

    def get_splits(self, run) -> list[str]:
        return [Split(value).label for value in run.splits]


class SliceSummaryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    description = serializers.CharField()
    member_count = serializers.IntegerField(allow_null=True)


class ClassMetricsSerializer(serializers.Serializer):
    precision = serializers.FloatField()
    recall = serializers.FloatField()
    f1 = serializers.FloatField()
    support = serializers.IntegerField()


class ClassificationMetricsSerializer(serializers.Serializer):
    class ConfusionMatrixSerializer(serializers.Serializer):
        classes = serializers.ListField(child=serializers.CharField())
        counts = serializers.ListField(
            child=serializers.ListField(child=serializers.IntegerField()),
            help_text="counts[true][predicted], in the order of `classes`.",
        )

    model_version_id = serializers.IntegerField()
    datarows = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True)
    per_class = serializers.DictField(child=ClassMetricsSerializer(), help_text="Keyed by class.")
    confusion_matrix = ConfusionMatrixSerializer()


class DetectionMetricsSerializer(serializers.Serializer):
    model_version_id = serializers.IntegerField()
    images = serializers.IntegerField()
    map = serializers.FloatField(allow_null=True)
    map_50 = serializers.FloatField(allow_null=True)
    map_75 = serializers.FloatField(allow_null=True)
    per_class = serializers.DictField(child=serializers.FloatField(allow_null=True), help_text="AP keyed by class.")


class ComparisonOutputSerializer(serializers.Serializer):
    class DeltaSerializer(serializers.Serializer):
        precision = serializers.FloatField()
        recall = serializers.FloatField()
        f1 = serializers.FloatField()

    baseline = ClassificationMetricsSerializer()
    candidate = ClassificationMetricsSerializer()
    accuracy_delta = serializers.FloatField(allow_null=True)
    per_class_deltas = serializers.DictField(child=DeltaSerializer(), help_text="Candidate minus baseline, by class.")
    disagreement_slice = SliceSummaryOutputSerializer()
