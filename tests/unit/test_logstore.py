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


def test_the_arrival_order_lists_only_new_bytes_and_survives_a_resumed_append():
    logstore.append(4, "stdout", 0, b"abc")
    logstore.append(4, "stderr", 0, b"E1")
    # A resumed monitor stores bytes it had stored already, then new ones.
    logstore.append(4, "stdout", 0, b"abc")
    logstore.append(4, "stdout", 0, b"abcdef")
    logstore.append(4, "node-1.stdout", 0, b"other source")
    assert logstore.arrival_order(4, {"stdout": 0, "stderr": 0}) == [
        ("stdout", 3),
        ("stderr", 2),
        ("stdout", 6),
    ]
    assert logstore.arrival_order(4, {"stdout": 3, "stderr": 2}) == [("stdout", 6)]
    assert logstore.arrival_order(5, {"stdout": 0}) == []


def test_the_arrival_order_of_a_long_log_reads_back_only_to_the_offsets(settings):
    for i in range(3 * logstore.ARRIVAL_BLOCK):
        stream = "stdout" if i % 2 else "stderr"
        logstore.append(6, stream, logstore.size(6, stream), b"%d\n" % i)
    tail = {s: logstore.size(6, s) - 20 for s in ("stdout", "stderr")}
    order = logstore.arrival_order(6, tail)
    # Lines are 6 bytes: the last 20 bytes of each stream are in its last 4 appends.
    assert [stream for stream, _ in order] == ["stderr", "stdout"] * 4
    assert all(end > tail[stream] for stream, end in order)
    assert order[-1] == ("stdout", logstore.size(6, "stdout"))
