from django.dispatch import Signal

# Sent when a managed-cluster node that carried a run disappears (its container
# was killed or removed outside Trainyard, or the cluster was deleted).
# Keyword arguments: run_id (int), preempted (bool: True on a low-priority
# cluster, where the run should go back to the queue; False means the run
# fails), reason (str, for the user).
node_lost = Signal()

# Sent when a node of a cluster becomes idle (a new node started, or a run let
# go of it), so runs waiting for that cluster can ask for a node at once instead
# of at their next retry. Keyword arguments: target_id (int), node_name (str).
node_ready = Signal()
