import pytest

from runs import logstore


@pytest.fixture(autouse=True)
def log_dir(settings, tmp_path):
    settings.LOG_DIR = tmp_path


def test_append_is_idempotent_by_offset():
    assert logstore.append(1, "stdout", 0, b"line 1\n") == 7
    assert logstore.append(1, "stdout", 0, b"line 1\nline 2\n") == 14
    assert logstore.append(1, "stdout", 7, b"line 2\n") == 14
    assert logstore.read(1, "stdout") == (b"line 1\nline 2\n", 14)
    assert logstore.read(1, "stdout", 7) == (b"line 2\n", 14)


def test_a_gap_is_refused_so_nothing_is_silently_lost():
    logstore.append(2, "stderr", 0, b"abc")
    with pytest.raises(ValueError, match="gap"):
        logstore.append(2, "stderr", 10, b"xyz")
    assert logstore.size(2, "stderr") == 3


def test_streams_and_tail():
    logstore.append(3, "stdout", 0, b"x" * 100)
    logstore.append(3, "node-1", 0, b"y")
    assert logstore.streams(3) == {"node-1": 1, "stdout": 100}
    assert logstore.tail_offset(3, "stdout", 30) == 70
    assert logstore.read(4, "stdout", 5) == (b"", 5)


def test_stream_names_cannot_escape_the_log_dir():
    with pytest.raises(ValueError):
        logstore.stream_path(1, "../../etc/passwd")
