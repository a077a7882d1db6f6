from django.urls import path

from slices.apis import SliceCombineApi, SliceDetailApi, SliceListCreateApi, SliceMemberListApi, SliceSplitApi

urlpatterns = [
    path("", SliceListCreateApi.as_view(), name="slice-list"),
    path("combine", SliceCombineApi.as_view(), name="slice-combine"),
    path("<int:slice_id>", SliceDetailApi.as_view(), name="slice-detail"),
    path("<int:slice_id>/members", SliceMemberListApi.as_view(), name="slice-members"),
    path("<int:slice_id>/split", SliceSplitApi.as_view(), name="slice-split"),
]
