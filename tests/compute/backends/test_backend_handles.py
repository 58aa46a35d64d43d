"""Run handles: what a run stores in `Run.handle` loads back as its kind's typed handle."""

from compute.backends import CloudHandle, PosixHandle, handle_load

# A two-node cluster run as the database holds it.
STORED_CLUSTER_RUN = {
    "uploaded_files": 3,
    "uploaded_bytes": 120,
    "reused_files": 1,
    "run_dir": "/var/lib/trainyard/runs/7",
    "root": "/var/lib/trainyard",
    "attempt": "a1b2c3d4",
    "node_id": 11,
    "log_offsets": {"prepare": [0, 0], "stdout": [0, 42], "stderr": [0, 0]},
    "pgid": 321,
    "container": "",
    "workers": [
        {
            "uploaded_files": 3,
            "uploaded_bytes": 120,
            "reused_files": 1,
            "run_dir": "/var/lib/trainyard/runs/7",
            "root": "/var/lib/trainyard",
            "attempt": "e5f6a7b8",
            "node_id": 12,
            "log_offsets": {"prepare": [0, 0], "stdout": [0, 0], "stderr": [0, 0]},
            "pgid": 654,
            "container": "",
        }
    ],
}

STORED_BATCH_RUN = {
    "uploaded_files": 2,
    "uploaded_bytes": 30,
    "reused_files": 0,
    "attempt": "0badcafe",
    "node_id": None,
    "log_offsets": {"prepare": [0, 0], "stdout": [0, 0], "stderr": [0, 0]},
    "job": {"job_id": "trainyard-9-0badcafe", "task_id": "main", "pool_id": "cpu"},
    "submitted": "Submitted Batch job trainyard-9-0badcafe (task main) to pool cpu",
}


def test_a_stored_multi_node_run_loads_typed_and_stores_back_unchanged():
    handle = handle_load("amlcompute", STORED_CLUSTER_RUN)

    assert isinstance(handle, PosixHandle)
    assert (handle.run_dir, handle.pgid, handle.node_id) == ("/var/lib/trainyard/runs/7", 321, 11)
    assert handle.log_offsets["stdout"] == (0, 42)
    assert [w.node_id for w in handle.workers] == [12]
    assert handle.as_dict() == STORED_CLUSTER_RUN


def test_a_stored_cloud_run_loads_typed_and_stores_back_unchanged():
    handle = handle_load("batch", STORED_BATCH_RUN)

    assert isinstance(handle, CloudHandle)
    assert handle.launched and handle.job == STORED_BATCH_RUN["job"]
    assert handle.as_dict() == STORED_BATCH_RUN


def test_a_handle_stored_before_attempts_and_log_offsets_still_loads():
    old = {"run_dir": "/home/u/.trainyard/runs/3", "root": "/home/u/.trainyard", "pgid": 99}

    handle = handle_load("virtualmachine", old)

    assert isinstance(handle, PosixHandle)
    assert (handle.attempt, handle.log_offsets, handle.container) == ("", {}, "")
    assert handle.launched and handle.workers == ()


def test_a_prepared_run_not_yet_launched_stores_no_process_for_the_monitor_to_follow():
    prepared = PosixHandle(run_dir="/x/runs/1", root="/x", attempt="ab")
    submitted_not_yet = CloudHandle(attempt="cd")

    assert "pgid" not in prepared.as_dict() and not prepared.launched
    assert "job" not in submitted_not_yet.as_dict() and not submitted_not_yet.launched
    assert handle_load("local", None) is None and handle_load("batch", {}) is None
