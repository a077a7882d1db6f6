from django.urls import path

from datasets.apis.datarows import (
    DatarowBulkDeleteApi,
    DatarowDetailApi,
    DatarowImageApi,
    DatarowListApi,
    DatarowTagsUpdateApi,
)
from datasets.apis.datasets import (
    DatasetDetailApi,
    DatasetImportErrorReportApi,
    DatasetImportStartApi,
    DatasetListCreateApi,
)
from datasets.apis.exports import DatasetExportDownloadApi, DatasetExportStartApi
from datasets.apis.labels import LabelCreateApi, LabelDetailApi

urlpatterns = [
    path("", DatasetListCreateApi.as_view(), name="dataset-list"),
    path("<int:dataset_id>", DatasetDetailApi.as_view(), name="dataset-detail"),
    path("<int:dataset_id>/imports", DatasetImportStartApi.as_view(), name="dataset-import"),
    path(
        "<int:dataset_id>/imports/<uuid:job_id>/errors",
        DatasetImportErrorReportApi.as_view(),
        name="dataset-import-errors",
    ),
    path("<int:dataset_id>/datarows", DatarowListApi.as_view(), name="datarow-list"),
    path("<int:dataset_id>/datarows/tags", DatarowTagsUpdateApi.as_view(), name="datarow-tags"),
    path("<int:dataset_id>/datarows/delete", DatarowBulkDeleteApi.as_view(), name="datarow-bulk-delete"),
    path("<int:dataset_id>/datarows/<int:datarow_id>", DatarowDetailApi.as_view(), name="datarow-detail"),
    path("<int:dataset_id>/datarows/<int:datarow_id>/image", DatarowImageApi.as_view(), name="datarow-image"),
    path("<int:dataset_id>/datarows/<int:datarow_id>/labels", LabelCreateApi.as_view(), name="label-create"),
    path(
        "<int:dataset_id>/datarows/<int:datarow_id>/labels/<int:label_id>",
        LabelDetailApi.as_view(),
        name="label-detail",
    ),
    path("<int:dataset_id>/exports", DatasetExportStartApi.as_view(), name="dataset-export"),
    path("<int:dataset_id>/exports/<uuid:job_id>/file", DatasetExportDownloadApi.as_view(), name="dataset-export-file"),
]
