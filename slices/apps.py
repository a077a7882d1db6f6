from django.apps import AppConfig


class SlicesConfig(AppConfig):
    name = "slices"

    def ready(self) -> None:
        # Search sits below slices: it resolves `IN SLICE 'name'` through what this hands it, not by importing slices.
        from search.queries import slice_definitions_register
        from slices.selectors import slice_definitions

        slice_definitions_register(slice_definitions)
