"""The local backend's status: the state of a run without reading its output."""

from compute.backends.local import LocalBackend


def test_status_of_an_ended_run_gives_its_exit_code_and_no_output(tmp_path):
    ctl = tmp_path / "run" / "ctl"
    ctl.mkdir(parents=True)
    (ctl / "pid").write_text("999999999")
    (ctl / "started").touch()
    (ctl / "exit_code").write_text("3")
    (ctl / "stdout").write_bytes(b"line 1\nline 2\n")

    poll = LocalBackend().status({"run_dir": str(tmp_path / "run")})

    assert (poll.state, poll.exit_code, poll.started) == ("exited", 3, True)
    assert set(poll.chunks.values()) == {b""}
