from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired

# These answer for themselves: the API checks bearer tokens, healthz is for probes.
OPEN_PREFIXES = ("/api/", "/healthz", "/static/")


class LoginRequiredMiddleware(DjangoLoginRequired):
    """Every page needs a signed-in user, except the prefixes above."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path.startswith(OPEN_PREFIXES):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
