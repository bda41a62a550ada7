"""Which stored image a signed-in member may see in the browser: the input image on a
prediction's page, and the playground's image when "Open in playground" reopens one.

A file is viewable while the API would still accept it (not expired), and after that for
as long as a prediction that used it keeps its input (API.md "Files": files go with
retention), since the prediction's page shows that input. Another org's file, an expired
one no kept input holds, and an erased one are all the same: not found.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from inference.models import Prediction, StoredFile
from portal.models import Organization

# Longer than any file id: a longer value is not looked up at all.
MAX_ID_LENGTH = 64


def viewable_file(org: Organization, file_id: str) -> StoredFile | None:
    if len(file_id) > MAX_ID_LENGTH:
        return None
    kept_input = Prediction.objects.filter(
        files=OuterRef("pk"), org=org, data_removed_at__isnull=True
    )
    return (
        StoredFile.objects.filter(org=org, pk=file_id)
        .filter(Q(expires_at__gt=timezone.now()) | Exists(kept_input))
        .first()
    )
