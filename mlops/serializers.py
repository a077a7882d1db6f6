"""The serializers every API shares: strict input (an unknown key is a 400 that names it), the cursor page."""

from urllib.parse import parse_qs, urlsplit

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

MAX_PAGE_SIZE = 500
MAX_ID = 2**63 - 1


class ObjectIdField(serializers.IntegerField):
    """An object's id: ids are bigints, so a larger number is a 400 here, not an out-of-range error in SQL."""

    def __init__(self, **kwargs):
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)


class StrictSerializer(serializers.Serializer):
    """Input whose unknown keys are errors, reported with the field errors in one answer: a misspelt option
    ("limit" for "page_size") must not be silently ignored."""

    def to_internal_value(self, data):
        unknown = {}
        if hasattr(data, "keys"):
            known = {name for name, field in self.fields.items() if not field.read_only}
            unknown = {
                key: [f"Unknown field; expected one of: {', '.join(sorted(known))}."]
                for key in data.keys()
                if key not in known
            }
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as error:
            raise serializers.ValidationError({**unknown, **error.detail}) from error
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


class NoQuerySerializer(StrictSerializer):
    """An operation that takes no query parameter."""


@extend_schema_serializer(component_name="CursorPageQuery")
class CursorPageQuerySerializer(StrictSerializer):
    """The query of every list: `cursor` from the previous page's `next_cursor`, and `page_size`."""

    cursor = serializers.CharField(required=False, help_text="next_cursor of the previous page, as it was given.")
    page_size = serializers.IntegerField(
        required=False, min_value=1, help_text="Rows per page; each list has its own default and maximum."
    )


def cursor_of(link: str | None) -> str | None:
    """The `cursor` parameter of a page link (DRF's CursorPagination builds links; clients get the cursor alone)."""
    if link is None:
        return None
    return parse_qs(urlsplit(link).query).get("cursor", [None])[0]


_pages: dict[type, type] = {}


def page_of(item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The response of a list: {results: [item], next_cursor} (one component per item type)."""
    if item not in _pages:
        name = item.__name__.removesuffix("Serializer").removesuffix("Output")
        _pages[item] = extend_schema_serializer(component_name=f"{name}Page")(
            type(
                f"{name}PageSerializer",
                (serializers.Serializer,),
                {
                    "results": item(many=True),
                    "next_cursor": serializers.CharField(
                        allow_null=True, help_text="Pass as `cursor` for the next page; null on the last page."
                    ),
                    "__module__": item.__module__,
                },
            )
        )
    return _pages[item]
