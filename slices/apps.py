from django.apps import AppConfig


class SlicesConfig(AppConfig):
    name = "slices"
