"""HDInsight / Spark head nodes: the attach wizard and the Spark master setting.

Checking, credentials, host keys and detaching are the VM pages' (compute.views).
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from compute import selectors, services
from compute.forms import HdInsightAttachForm, SparkMasterForm
from compute.models import ComputeKind
from compute.views import attach_wizard
from studio.access import workspace_view
from studio.models import Role


@workspace_view(role=Role.CONTRIBUTOR)
def hdinsight_attach(request):
    def attach(data):
        services.hdinsight_attach(
            workspace=request.workspace,
            user=request.user,
            name=data["name"],
            address=data["address"],
            port=data["port"],
            spark_master=data["spark_master"],
            username=data["username"],
            **data["credentials"],
        )

    return attach_wizard(
        request,
        form_class=HdInsightAttachForm,
        template="compute/hdinsight_attach.html",
        attach=attach,
    )


@require_POST
@workspace_view(role=Role.CONTRIBUTOR)
def spark_master_update(request, name: str):
    targets = selectors.compute_list(workspace=request.workspace)
    target = targets.filter(name=name, kind=ComputeKind.HDINSIGHT).first()
    if target is None:
        raise Http404("No such HDInsight / Spark target")
    form = SparkMasterForm(request.POST)
    if form.is_valid():
        master = form.cleaned_data["spark_master"]
        try:
            services.hdinsight_master_set(target=target, spark_master=master)
        except ValidationError as exc:
            form.add_error("spark_master", exc.message_dict.get("spark_master", exc.messages))
        else:
            messages.success(
                request,
                f"New runs on {target.name} submit to {master}."
                if master
                else f"New runs on {target.name} submit to the master the cluster uses.",
            )
            return redirect("compute_detail", slug=request.workspace.slug, name=target.name)
    return render(
        request,
        "compute/spark_master.html",
        {"target": target, "form": form},
        status=400,
    )
