import pytest

from runs.logs import store as logstore


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


def test_output_read_from_a_source_is_stored_once_whoever_read_it():
    # "password-1" masked: what is stored is shorter than what was read.
    assert (
        logstore.append_from_source(
            7, "stdout", b"a ******\n", source="attempt-1", read_from=0, read_to=13
        )
        == 0
    )
    assert logstore.source_read(7, "stdout", "attempt-1") == 13
    # A second follower that read the same bytes before the first stored them.
    assert (
        logstore.append_from_source(
            7, "stdout", b"a ******\n", source="attempt-1", read_from=0, read_to=13
        )
        is None
    )
    assert (
        logstore.append_from_source(
            7, "stdout", b"b\n", source="attempt-1", read_from=13, read_to=15
        )
        == 9
    )
    assert logstore.read(7, "stdout")[0] == b"a ******\nb\n"
    # The next attempt of the run goes on after the first one's output.
    assert logstore.source_read(7, "stdout", "attempt-2") is None
    assert (
        logstore.append_from_source(
            7, "stdout", b"again\n", source="attempt-2", read_from=0, read_to=6
        )
        == 11
    )
    assert logstore.read(7, "stdout")[0] == b"a ******\nb\nagain\n"


def test_bytes_stored_by_a_follower_that_died_before_recording_them_are_stored_once():
    logstore.append_from_source(8, "stdout", b"one\n", source="a", read_from=0, read_to=4)
    # The follower wrote the next bytes and was killed before their record.
    with open(logstore.stream_path(8, "stdout"), "ab") as f:
        f.write(b"two\n")
    # The one taking over reads them again from where the record says.
    assert logstore.source_read(8, "stdout", "a") == 4
    assert (
        logstore.append_from_source(8, "stdout", b"two\n", source="a", read_from=4, read_to=8) == 4
    )
    assert logstore.read(8, "stdout")[0] == b"one\ntwo\n"
    assert logstore.streams(8) == {"stdout": 8}


def test_a_backup_copy_of_a_log_being_stored_is_whole_and_resumes_from_its_source(
    settings, tmp_path
):
    """A writer caught between storing bytes and recording them (as a backup may find it):
    the copy stops where the record says, and the next read from the source fills it."""
    source = "/runs/9/stdout"
    logstore.append_from_source(9, "stdout", b"one\n", source=source, read_from=0, read_to=4)
    logstore.append(9, "events", 0, b"started\n")
    path = logstore.stream_path(9, "stdout")
    with open(path, "ab") as f:
        logstore.write_bytes(f, path, "stdout", b"two\n")  # its record never written

    logstore.folder_copy(9, tmp_path / "copy" / "9")
    settings.LOG_DIR = tmp_path / "copy"
    assert logstore.read(9, "stdout") == (b"one\n", 4)
    assert logstore.read(9, "events") == (b"started\n", 8)
    assert logstore.arrival_order(9, {"stdout": 0, "events": 0}) == [("stdout", 4), ("events", 8)]
    assert logstore.source_read(9, "stdout", source) == 4
    at = logstore.append_from_source(9, "stdout", b"two\n", source=source, read_from=4, read_to=8)
    assert at == 4
    assert logstore.read(9, "stdout") == (b"one\ntwo\n", 8)
