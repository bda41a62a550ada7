"""Replicate-style predictions API (API.md, "Predictions")."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from billing.metering import parse_max_cost, quote_payload
from inference import admission
from inference.api import examples
from inference.models import Prediction, Source, Status
from inference.payloads import prediction_payload
from portal import hotcache
from portal.api.permissions import CanPredict, CanRead, HasOrg
from portal.api.views import OrgScopedViewSet

MAX_INPUT_KEYS = 64
# A slug, or slug:<version id> (models_hub.versions.split_model_ref says which is which).
MODEL_REF = r"^[-a-zA-Z0-9_]+(?::[a-z0-9]+)?\Z"
MODEL_REF_MAX_LENGTH = 120


class PredictionCreateSerializer(serializers.Serializer):
    model = serializers.RegexField(
        MODEL_REF,
        max_length=MODEL_REF_MAX_LENGTH,
        help_text="A model slug, or `slug:<version id>` to pin a version.",
    )
    input = serializers.DictField()
    stream = serializers.BooleanField(required=False, default=False)
    webhook = serializers.CharField(required=False, allow_blank=True, max_length=1000)
    webhook_events_filter = serializers.ListField(
        child=serializers.CharField(max_length=20), required=False, max_length=4
    )
    max_cost = serializers.JSONField(
        required=False,
        help_text='The most this call may cost, a decimal string ("0.05"): refused with 402 '
        "`cost_cap_exceeded` when its worst case is above it.",
    )

    def validate_input(self, value: dict) -> dict:
        if len(value) > MAX_INPUT_KEYS:
            raise serializers.ValidationError("Too many input fields.")
        return value


class PredictionListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    model = serializers.SlugField(max_length=100, required=False)


class PredictionSerializer(serializers.Serializer):
    """Documents the prediction object; responses are built by `prediction_payload`."""

    id = serializers.CharField()
    model = serializers.CharField()
    version = serializers.CharField(
        allow_null=True, help_text="The model version that ran; null for an unversioned model."
    )
    status = serializers.ChoiceField(choices=Status.choices)
    input = serializers.DictField()
    output = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    logs = serializers.CharField()
    metrics = inline_serializer(
        "PredictionMetrics",
        {
            "input_tokens": serializers.IntegerField(),
            "output_tokens": serializers.IntegerField(),
            "predict_time": serializers.FloatField(allow_null=True),
            "queue_time": serializers.FloatField(allow_null=True),
        },
    )
    cost = inline_serializer(
        "PredictionCost",
        {
            "amount": serializers.CharField(help_text="Decimal string, 6 places at most."),
            "currency": serializers.CharField(),
            "billed": inline_serializer(
                "PredictionCostBilled",
                {
                    "input_tokens": serializers.IntegerField(),
                    "output_tokens": serializers.IntegerField(),
                    "seconds": serializers.CharField(help_text="Run time, a decimal string."),
                    "requests": serializers.IntegerField(),
                },
            ),
            "generated_output_tokens": serializers.IntegerField(),
            "paid_from": inline_serializer(
                "PredictionCostSource",
                {
                    "source": serializers.ChoiceField(
                        choices=["plan", "subscription", "credits", "overage"]
                    ),
                    "amount": serializers.CharField(),
                },
                many=True,
            ),
        },
        allow_null=True,
        help_text="What the call cost and who paid; null until the prediction is terminal.",
    )
    source = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    urls = serializers.DictField(child=serializers.URLField())
    data_removed = serializers.BooleanField()


class QuoteSerializer(serializers.Serializer):
    currency = serializers.CharField()
    max_cost = serializers.CharField(help_text="The worst case: the most the call can cost.")
    expected_cost = serializers.CharField(help_text="What calls like it cost lately.")


class PredictionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    org_queryset = Prediction.objects.select_related("model", "call_cost")
    serializer_class = PredictionSerializer
    lookup_value_regex = "[a-z0-9]+"

    def dispatch(self, request, *args, **kwargs):
        # The process caches its token lookup and an admission check: one Redis read.
        with hotcache.read_once(*admission.HOT_SCOPES):
            return super().dispatch(request, *args, **kwargs)

    def get_permissions(self):
        needed = CanPredict if self.action in ("create", "cancel", "quote") else CanRead
        return [HasOrg(), needed()]

    def filter_org_queryset(self, queryset):
        if self.action != "list":
            return queryset
        query = PredictionListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        if status_filter := query.validated_data.get("status"):
            queryset = queryset.filter(status=status_filter)
        if model := query.validated_data.get("model"):
            queryset = queryset.filter(model__slug=model)
        return queryset

    def _payload(self, prediction: Prediction) -> dict:
        return prediction_payload(prediction, self.request.build_absolute_uri("/"))

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=Status.values),
            OpenApiParameter("model", str, description="model slug"),
        ],
        examples=[examples.LIST],
    )
    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([self._payload(p) for p in page])

    @extend_schema(examples=[examples.FINISHED])
    def retrieve(self, request: Request, pk: str) -> Response:
        prediction = self.get_object()
        payload = self._payload(prediction)
        if prediction.status == Status.STARTING:
            payload["queue_position"] = admission.queue_position(prediction)
        return Response(payload)

    @extend_schema(
        request=PredictionCreateSerializer,
        responses={201: PredictionSerializer},
        examples=[
            examples.CREATE_REQUEST,
            examples.PINNED_REQUEST,
            examples.OCR_REQUEST,
            examples.FACES_REQUEST,
            examples.CREATED,
        ],
        parameters=[OpenApiParameter("Prefer", str, OpenApiParameter.HEADER)],
    )
    def create(self, request: Request) -> Response:
        wait_seconds = admission.validate_wait(request.headers.get("Prefer"))
        body = PredictionCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        prediction_request = admission.PredictionRequest(
            model=data["model"],
            input=data["input"],
            webhook=data.get("webhook", ""),
            webhook_events_filter=data.get("webhook_events_filter"),
            source=Source.API if request.auth.token else Source.PLAYGROUND,
            max_cost=parse_max_cost(data.get("max_cost")),
        )
        if wait_seconds:
            prediction = admission.admit_and_wait(request.auth, prediction_request, wait_seconds)
        else:
            prediction = admission.admit(request.auth, prediction_request)
        return Response(self._payload(prediction), status=status.HTTP_201_CREATED)

    @extend_schema(
        request=PredictionCreateSerializer,
        responses={200: QuoteSerializer},
        examples=[examples.QUOTE],
    )
    @action(detail=False, methods=["post"])
    def quote(self, request: Request) -> Response:
        """What a create with this body would cost, worst case and expected, at the price
        in force now; runs nothing, reserves nothing."""
        body = PredictionCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        parse_max_cost(data.get("max_cost"))
        result = admission.quote(request.auth, data["model"], data["input"])
        return Response(quote_payload(result))

    @extend_schema(
        request=None, responses={200: PredictionSerializer}, examples=[examples.CANCELED]
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        prediction = admission.cancel(self.get_object())
        return Response(self._payload(prediction))
