from django.dispatch import Signal

# Sent when a managed-cluster node that carried a run disappears (its container
# was killed or removed outside Trainyard, or the cluster was deleted).
# Keyword arguments: run_id (int), preempted (bool: True on a low-priority
# cluster, where the run should go back to the queue; False means the run
# fails), reason (str, for the user).
node_lost = Signal()
