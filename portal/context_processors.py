from django.http import HttpRequest


def current_org(request: HttpRequest) -> dict:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {"current_org": request.org, "current_membership": request.membership}
