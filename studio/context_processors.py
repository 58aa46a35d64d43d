from studio.models import Membership


def workspaces(request):
    """The workspace switcher's entries, for every signed-in page."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    memberships = Membership.objects.filter(user=request.user).select_related("workspace")
    return {"my_memberships": memberships}
