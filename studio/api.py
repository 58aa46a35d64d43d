"""The JSON API at /api/v1/: bearer personal access tokens, everything scoped to workspaces.

This module only creates the API and mounts the routers; what they share (sign-in,
membership, paging) is in studio/api_auth.py.
"""

from ninja import NinjaAPI

from compute.api import router as vm_router
from compute.cloud_api import router as cloud_router
from compute.cluster_api import router as compute_router
from pipelines.api import router as pipelines_router
from runs.api import router as runs_router
from runs.api_logs import router as run_logs_router
from studio.api_auth import TokenAuth
from studio.errors import ServiceError, api_service_error
from studio.workspace_api import router as workspaces_router
from sweeps.api import router as sweeps_router

api = NinjaAPI(
    title="Trainyard API",
    version="1",
    urls_namespace="api",
    auth=TokenAuth(),
    description=(
        "Create a personal access token in Settings → Access tokens (or "
        "`manage.py create_token USERNAME --name NAME`) and send it as "
        "`Authorization: Bearer <token>`."
    ),
)

# ninja types a handler's argument as the exception or its class; it is always an instance.
api.add_exception_handler(ServiceError, api_service_error)  # type: ignore[arg-type]

api.add_router("/", workspaces_router)
api.add_router("/", run_logs_router)
# Before the cluster router: its /computes/{name} would otherwise answer /computes/vm.
api.add_router("/", vm_router)
api.add_router("/", cloud_router)
api.add_router("/", compute_router)
api.add_router("/", runs_router)
api.add_router("/", pipelines_router)
api.add_router("/", sweeps_router)
