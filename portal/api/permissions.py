from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from portal.auth import Principal


class HasOrg(BasePermission):
    """Every API call acts for exactly one org, resolved by the authentication classes."""

    def has_permission(self, request: Request, view) -> bool:
        return isinstance(request.auth, Principal)


class ScopePermission(BasePermission):
    required_scope = ""
    message = "This token lacks the scope this endpoint needs."

    def has_permission(self, request: Request, view) -> bool:
        return isinstance(request.auth, Principal) and request.auth.has_scope(self.required_scope)


class CanRead(ScopePermission):
    required_scope = "read"
    message = "This token lacks the 'read' scope."


class CanPredict(ScopePermission):
    required_scope = "predict"
    message = "This token lacks the 'predict' scope."


class CanReadEarnings(ScopePermission):
    required_scope = "publisher"
    message = "This token lacks the 'publisher' scope (owners and admins in the browser)."
