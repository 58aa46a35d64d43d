"""The local backend's poll: the state of a run, and no output past what there is."""

from compute.backends import STREAMS, PosixHandle
from compute.backends.local import LocalBackend


def test_poll_of_an_ended_run_from_past_its_output_gives_its_exit_code_and_no_bytes(tmp_path):
    ctl = tmp_path / "run" / "ctl"
    ctl.mkdir(parents=True)
    (ctl / "pid").write_text("999999999")
    (ctl / "started").touch()
    (ctl / "exit_code").write_text("3")
    (ctl / "stdout").write_bytes(b"line 1\nline 2\n")

    handle = PosixHandle(run_dir=str(tmp_path / "run"))
    poll = LocalBackend().poll(handle, {s: 1 << 62 for s in STREAMS})

    assert (poll.state, poll.exit_code, poll.started) == ("exited", 3, True)
    assert set(poll.chunks.values()) == {b""}
