"""Files API (API.md "Files"): upload an image, read its metadata, delete it."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from inference import admission, files
from inference.api import examples
from inference.models import StoredFile
from portal.api.permissions import CanPredict, CanRead, HasOrg
from portal.api.views import OrgScopedViewSet
from portal.errors import InvalidInput


class FileSerializer(serializers.ModelSerializer):
    class Meta:
        model = StoredFile
        fields = ["id", "content_type", "size", "width", "height", "created_at", "expires_at"]


UPLOAD_REQUEST = inline_serializer(
    "FileUpload", {"file": serializers.FileField(help_text="A PNG, JPEG or WebP image.")}
)


class FileViewSet(mixins.RetrieveModelMixin, OrgScopedViewSet):
    # Expired files are gone to callers even before the sweep deletes their bytes.
    org_queryset = StoredFile.objects.all()
    serializer_class = FileSerializer
    lookup_value_regex = "[a-z0-9]+"
    parser_classes = [MultiPartParser]

    def get_permissions(self):
        needed = CanPredict if self.action in ("create", "destroy") else CanRead
        return [HasOrg(), needed()]

    def filter_org_queryset(self, queryset):
        return queryset.filter(pk__in=files.live_files(self.request.auth.org).values("pk"))

    @extend_schema(examples=[examples.FILE])
    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": UPLOAD_REQUEST},
        responses={201: FileSerializer},
        examples=[examples.FILE],
    )
    def create(self, request: Request) -> Response:
        """Validates the image by its content, applies its EXIF orientation, strips its
        metadata and stores it re-encoded; use it in a prediction as `file:<id>`."""
        admission.check_caller_rate_limit(request.auth)
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidInput("A multipart field named 'file' is required.", param="file")
        if upload.size > settings.IMAGE_MAX_BYTES:
            raise InvalidInput(
                f"file is larger than {settings.IMAGE_MAX_BYTES} bytes.",
                param="file",
                code="invalid_image",
            )
        # The content decides what the file is, not the type the client declared.
        stored = files.upload(request.auth.org, request.auth.user, upload.read(), None)
        return Response(FileSerializer(stored).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        responses={
            204: OpenApiResponse(description="Deleted."),
            404: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="No such file in this org (another org's is the same).",
                examples=[examples.FILE_NOT_FOUND],
            ),
        }
    )
    def destroy(self, request: Request, *args, **kwargs) -> Response:
        """Deletes the file's bytes now, even if a prediction still refers to it."""
        files.delete_file(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
