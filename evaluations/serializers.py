"""The shapes of evaluation runs and their matches over REST."""

from rest_framework import serializers

from evaluations.models import ObjectMatch
from jobs.serializers import RunOutputSerializer
from slices.models import Split


class EvaluationRunOutputSerializer(RunOutputSerializer):
    model_version_id = serializers.IntegerField()
    splits = serializers.SerializerMethodField(help_text="The slice's splits evaluated; empty: all its members.")
    iou_threshold = serializers.FloatField(help_text="The IoU of the stored matches (the metrics cover COCO's).")
    max_detections = serializers.IntegerField(help_text="Detections per image and class in the stored matches.")
    image_count = serializers.IntegerField(help_text="The slice's members evaluated.")
    ground_truth_count = serializers.IntegerField(help_text="Box labels read (crowds included).")
    prediction_count = serializers.IntegerField(help_text="Box predictions read.")
    metrics = serializers.JSONField(
        help_text=(
            "Once succeeded, pycocotools' COCO numbers (null where it prints -1): map (AP at IoU 0.50:0.95), ap50, "
            "ap75, ap_small, ap_medium, ap_large, ar1, ar10, ar100, ar_small, ar_medium, ar_large; tp, fp, fn at "
            "iou_threshold; per_class: class name -> ap, ap50, ap75, ground_truth (regular boxes), recall (the 101 "
            "recall points 0, 0.01 .. 1) and precision (at each, IoU 0.5, area all, 100 detections; null without "
            "ground truth). See docs/evaluation.md."
        )
    )

    def get_splits(self, run) -> list[str]:
        return [Split(value).label for value in run.splits]


class ObjectMatchOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    datarow_id = serializers.IntegerField()
    side = serializers.ChoiceField(choices=ObjectMatch.Side.choices)
    outcome = serializers.ChoiceField(choices=ObjectMatch.Outcome.choices)
    label_id = serializers.IntegerField(allow_null=True)
    prediction_id = serializers.IntegerField(allow_null=True)
    ontology_class_id = serializers.IntegerField(help_text="The label's class (side label), the prediction's.")
    predicted_class_id = serializers.IntegerField(
        allow_null=True, help_text="The matched or best-overlapping prediction's class; a prediction's own."
    )
    iou = serializers.FloatField(allow_null=True)
    score = serializers.FloatField(allow_null=True)
