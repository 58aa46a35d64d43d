"""The JSON API at /api/v1/: bearer personal access tokens, everything scoped to workspaces.

This module only creates the API and mounts the routers; what they share (sign-in,
membership, paging) is in studio/api_auth.py.
"""

from ninja import NinjaAPI

from compute.cloud.api import router as cloud_router
from compute.cluster.api import router as cluster_router
from compute.targets.api import router as compute_router
from compute.vm.api import router as vm_router
from pipelines.api import router as pipelines_router
from runs.api import router as runs_router
from runs.logs.api import router as run_logs_router
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

api.exception_handler(ServiceError)(api_service_error)

api.add_router("/", workspaces_router)
api.add_router("/", run_logs_router)
# Before the targets router: its /computes/{name} would otherwise answer /computes/vm.
api.add_router("/", vm_router)
api.add_router("/", cloud_router)
api.add_router("/", cluster_router)
api.add_router("/", compute_router)
api.add_router("/", runs_router)
api.add_router("/", pipelines_router)
api.add_router("/", sweeps_router)
