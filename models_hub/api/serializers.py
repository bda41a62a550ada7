from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from models_hub.catalog import pricing_for_many
from models_hub.models import ModelListing, ModelVersion, Task, VersionStatus


class CatalogQuerySerializer(serializers.Serializer):
    """`GET /api/v1/models` query parameters; anything malformed is a 400 naming it."""

    q = serializers.CharField(required=False, allow_blank=True, max_length=200)
    task = serializers.ChoiceField(required=False, choices=Task.choices)
    tag = serializers.SlugField(required=False, max_length=40)
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=100)


class PlanRefSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()


class PricingSerializer(serializers.Serializer):
    """API.md's `pricing`: the price in force now, as decimal strings in the portal's
    currency (zero is free), and the public plans that include the model."""

    currency = serializers.CharField()
    input_per_million = serializers.CharField(help_text='Per 1M input tokens, e.g. "0.5".')
    output_per_million = serializers.CharField(help_text="Per 1M output tokens.")
    per_request = serializers.CharField(help_text="Per call that counts as a request.")
    per_second = serializers.CharField(help_text="Per second of run time.")
    plans = PlanRefSerializer(many=True)


class ModelSummarySerializer(serializers.ModelSerializer):
    """A catalog item. The view passes `pricing` (by listing id) in the context, computed
    for the whole page at once."""

    publisher = serializers.CharField(source="publisher_name")
    pricing = serializers.SerializerMethodField()
    tags = serializers.SerializerMethodField()
    diagnostic = serializers.BooleanField(source="is_diagnostic")
    hardware = serializers.CharField(source="queue")
    url = serializers.SerializerMethodField()

    class Meta:
        model = ModelListing
        fields = [
            "slug",
            "name",
            "summary",
            "task",
            "tags",
            "publisher",
            "visibility",
            "status",
            "hardware",
            "diagnostic",
            "url",
            "pricing",
        ]

    def get_tags(self, listing: ModelListing) -> list[str]:
        return [tag.slug for tag in listing.tags.all()]

    @extend_schema_field(serializers.URLField())
    def get_url(self, listing: ModelListing) -> str:
        return reverse("api_model_detail", args=[listing.slug], request=self.context.get("request"))

    @extend_schema_field(PricingSerializer)
    def get_pricing(self, listing: ModelListing) -> dict[str, Any]:
        pricing = self.context.get("pricing") or pricing_for_many([listing])
        return pricing[listing.pk]


class RuntimeSerializer(serializers.Serializer):
    max_context = serializers.IntegerField(allow_null=True)
    default_params = serializers.DictField()
    max_params = serializers.DictField()


class ModelDetailSerializer(ModelSummarySerializer):
    runtime = serializers.SerializerMethodField()

    class Meta(ModelSummarySerializer.Meta):
        fields = [
            *ModelSummarySerializer.Meta.fields,
            "description",
            "revision",
            "input_schema",
            "example_input",
            "runtime",
        ]

    @extend_schema_field(RuntimeSerializer)
    def get_runtime(self, listing: ModelListing) -> dict[str, Any]:
        return RuntimeSerializer(listing).data


class ModelVersionSerializer(serializers.ModelSerializer):
    """API.md's version item: "deprecated" once its publisher set a retirement date."""

    status = serializers.ChoiceField(choices=VersionStatus.choices)

    class Meta:
        model = ModelVersion
        fields = ["id", "created_at", "status", "retires_at"]
