from django.dispatch import Signal

# Sent by `workspace_create` once a workspace and its owner's membership exist, inside the
# same transaction, so the apps above the studio give every new workspace what it starts
# with (the built-in local target). Keyword arguments: workspace (Workspace), owner (user).
workspace_created = Signal()
