"""import_csv: chunks of text that never split a quoted field, bad rows by line, one change-log row per batch."""

from __future__ import annotations

import io
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppguard.policy import load_policy
from smppguard.store import lists
from smppguard.store.changelog import Change, since
from smppguard.store.db import connect
from smppguard.store.index import load_index
from smppguard.store.lists import BLACKLIST_SOURCES, _text_chunks, import_csv

BASE = 8613500000000


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of ~64 characters: a few rows each, so tests cross many chunk and block boundaries; runs of 7 rows
    written in slices of 5 numbers, so they cross run and transaction boundaries too."""
    monkeypatch.setattr(lists, "IMPORT_CHUNK_CHARS", 64)
    monkeypatch.setattr(lists, "IMPORT_RUN_ROWS", 7)
    monkeypatch.setattr(lists, "IMPORT_SLICE", 5)


def blacklist_change(row: dict) -> Change:  # as `smppguard blacklist import --source complaint` makes them
    src = row.get("source") or "complaint"
    if src not in BLACKLIST_SOURCES:
        raise ValueError(f"unknown source {src!r}")
    return Change("blacklist", "add", 0, data={"source": src, "reason": row.get("reason") or ""})


def run(db, text: str, workers: int = 1, as_lines: bool = False, **kw):
    stream = io.StringIO(text).readlines() if as_lines else io.StringIO(text)
    return import_csv(db, stream, ("number", "source", "reason"), blacklist_change, default_region="CN",
                      actor="bulk", workers=workers, **kw)


def table(db) -> dict[int, tuple[str, str]]:
    return {n: (s, r) for n, s, r in db.execute("SELECT number, source, reason FROM blacklist")}


# --- chunks ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_lines", [False, True], ids=["file", "lines"])
def test_chunks_are_whole_lines_outside_quotes_numbered_from_their_first_line(small_chunks, as_lines):
    rng = random.Random(5)
    lines = []
    for i in range(400):
        if rng.random() < 0.2:  # a quoted field over several lines, with escaped quotes
            lines.append(f'{BASE + i},complaint,"said ""stop""\n' + "more\n" * rng.randrange(1, 30) + 'end"\n')
        else:
            lines.append(f"{BASE + i},carrier,{'x' * rng.randrange(0, 90)}\n")
    text = "".join(lines)
    stream = io.StringIO(text).readlines() if as_lines else io.StringIO(text)
    chunks = list(_text_chunks(stream))
    assert len(chunks) > 50
    assert "".join(chunk for _, chunk in chunks) == text
    line = 1
    for first, chunk in chunks:
        assert first == line
        assert chunk.endswith("\n") and chunk.count('"') % 2 == 0
        line += chunk.count("\n")


@pytest.mark.parametrize("quotes", ["1+2 | 1", "1 | 2+1", "1 | 1"])
def test_no_chunk_ends_inside_a_quoted_field_whatever_count_of_quotes_its_lines_have(small_chunks, quotes):
    """A newline ends a chunk only where the quotes before it are even: a record whose first line has three
    quotes (an escaped quote in it) or one must not be cut after that line."""
    first, second = {"1+2 | 1": ('"said ""no', 'thanks"'), "1 | 2+1": ('"said', 'no ""thanks"""'),
                     "1 | 1": ('"said', 'no"')}[quotes]
    text = "".join(f"{BASE + i},complaint,{first}\n{second}\n" for i in range(60))
    chunks = list(_text_chunks(io.StringIO(text)))
    assert len(chunks) > 10 and "".join(chunk for _, chunk in chunks) == text
    assert all(chunk.count('"') % 2 == 0 and first_line % 2 == 1 for first_line, chunk in chunks)


def test_a_stretch_with_no_place_to_end_a_chunk_is_dropped_to_its_next_newline_and_its_line_said(small_chunks,
                                                                                                  monkeypatch):
    """16 times MAX_LINE_CHARS with no newline outside quotes (a huge line, a quote never closed): the whole
    lines before it are kept, it is dropped up to its next newline, its line is reported, the rest is read."""
    monkeypatch.setattr(lists, "MAX_LINE_CHARS", 10)  # a stretch past 160 characters
    text = ("13500000001\n13500000002\n" + "9" * 500 + "\n13500000003\n"
            + '13500000004,complaint,"never closed\nshort\n' + "x" * 500 + "\n13500000005\n")
    oversized: list[int] = []
    assert list(_text_chunks(io.StringIO(text), oversized)) == [
        (1, "13500000001\n13500000002\n"), (4, "13500000003\n"),
        (5, '13500000004,complaint,"never closed\nshort\n'),  # the lines before the stretch, parsed as they are
        (8, "13500000005\n")]
    assert oversized == [3, 7]


def test_a_file_without_a_final_newline_or_with_an_unclosed_quote_is_one_last_chunk(small_chunks):
    assert list(_text_chunks(io.StringIO("1\n2"))) == [(1, "1\n"), (2, "2")]
    text = '1\n"open\n' + "2\n" * 100
    assert list(_text_chunks(io.StringIO(text))) == [(1, "1\n"), (2, text[2:])]
    assert list(_text_chunks(io.StringIO(""))) == []


# --- rows, lines and batches -------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_rows_are_reported_by_line_across_chunks_and_quoted_lines(db, small_chunks, workers):
    text = ("number,source,reason\n"
            + "".join(f"{13500000000 + i}\n" for i in range(30))  # lines 2-31
            + '12345,complaint,"a reason\nover two lines"\n'  # lines 32-33
            + "13500000100,bogus,x\n"  # line 34
            + "\n# a comment\n"  # lines 35-36
            + "13500000101,regulator,miit\n"  # line 37
            + ",carrier\n")  # line 38
    result = run(db, text, workers=workers)
    assert result.errors == [(32, "not a valid phone number: '12345'"), (34, "unknown source 'bogus'"),
                             (38, "no number")]
    assert result.imported == 31
    assert table(db) == {**{BASE + i: ("complaint", "") for i in range(30)}, BASE + 101: ("regulator", "miit")}


def test_rows_too_wide_undecodable_or_too_long_are_bad_rows_and_the_rows_after_them_are_read(db):
    """What `blacklist import` reports (tests/cli/test_import_files.py runs it in worker processes), parsed
    here in this process: each bad row names its line, and the next row is read as usual."""
    text = ("13500000001,complaint,ok\n"
            "13500000002,complaint,ok,unexpected\n"  # line 2: a field too many
            "13500000003,complaint,caf\ufffd\n"  # line 3: what the decoder could not read
            "13500000004,complaint,ok\n"
            + "x" * 70_000 + "\n"  # line 5
            + "13500000005,complaint,ok\n")
    result = run(db, text)
    assert result.errors == [(2, "4 fields, expected at most 3 (number,source,reason)"),
                             (3, "bytes that are not text in the file's encoding (see --encoding)"),
                             (5, "line longer than 65,536 characters")]
    assert sorted(table(db)) == [BASE + 1, BASE + 4, BASE + 5]


@pytest.mark.parametrize("rows, logged", [(7, 7), (8, 1)])
def test_a_change_made_by_at_least_batch_min_rows_is_one_batch_and_fewer_are_plain_changes(db, rows, logged):
    assert lists.BATCH_MIN == 8
    run(db, "".join(f"{13500000000 + i},carrier\n" for i in range(rows)))
    assert len(list(since(db, 0))) == logged and len(table(db)) == rows


def test_rows_making_the_same_change_are_one_change_log_row(db):
    text = "".join(f"{13500000000 + i}\n" for i in range(1000)) + "13500000000\n"  # a duplicate
    result = run(db, text)
    assert (result.imported, result.errors) == (1001, [])
    (c,) = since(db, 0)
    assert (c.kind, c.op, c.number, c.data, c.actor) == ("blacklist", "add", 0,
                                                         {"source": "complaint", "reason": ""}, "bulk")
    assert c.numbers == tuple(BASE + i for i in range(1000))  # each number once, in key order
    assert len(table(db)) == 1000


def test_one_batch_per_distinct_change_and_plain_changes_for_the_few(db):
    rows = [f"{13500000000 + i},carrier,cmcc\n" for i in range(20)]
    rows += [f"{13500000100 + i},regulator\n" for i in range(10)]
    rows += [f"{13500000200 + i},complaint,call {i}\n" for i in range(3)]  # each its own reason
    run(db, "".join(rows))
    logged = sorted((c.data["source"], c.data["reason"], len(c.targets())) for c in since(db, 0))
    assert logged == [("carrier", "cmcc", 20), ("complaint", "call 0", 1), ("complaint", "call 1", 1),
                      ("complaint", "call 2", 1), ("regulator", "", 10)]
    assert [c.number for c in since(db, 0) if not c.numbers] == [BASE + 200, BASE + 201, BASE + 202]


def test_the_last_row_of_a_number_wins_within_and_across_chunks(db, small_chunks):
    text = ("13500000001,carrier,first\n"
            "13500000002,carrier,first\n"
            "13500000001,regulator,second\n"  # same chunk, another change: the later row wins
            "13500000003,bogus,x\n"
            + "".join(f"{13500000010 + i}\n" for i in range(20))
            + "13500000002,regulator,later chunk\n"
            "13500000010,bogus,a bad row does not undo a good one\n")
    result = run(db, text)
    assert [line for line, _ in result.errors] == [4, 26]
    got = table(db)
    assert got[BASE + 1] == ("regulator", "second")
    assert got[BASE + 2] == ("regulator", "later chunk")
    assert got[BASE + 10] == ("complaint", "")
    assert BASE + 3 not in got


def test_columns_the_change_does_not_use_do_not_split_batches(db):
    """An export (number,source,reason,added_at,actor) imports as one batch per source and reason."""
    text = "number,source,reason,added_at,actor\n" + "".join(
        f"+{BASE + i},carrier,cmcc,2026-11-28 0{i % 10}:00:00Z,op{i}\n" for i in range(50))
    assert run(db, text).imported == 50
    (c,) = since(db, 0)
    assert len(c.numbers) == 50 and c.data == {"source": "carrier", "reason": "cmcc"}


def test_the_other_columns_may_come_in_any_order_after_a_header(db):
    run(db, "number,reason,source\n13500000001,via header,regulator\n13500000002\n")
    assert table(db) == {BASE + 1: ("regulator", "via header"), BASE + 2: ("complaint", "")}


def test_a_group_whose_change_is_bad_reports_every_line_of_it(db):
    text = "".join(f"{13500000000 + i},{'bogus' if i % 2 else 'carrier'}\n" for i in range(20))
    result = run(db, text)
    assert result.errors == [(i + 1, "unknown source 'bogus'") for i in range(1, 20, 2)]
    assert sorted(table(db)) == [BASE + i for i in range(0, 20, 2)]


@pytest.mark.parametrize("workers", [1, 2])
def test_import_equals_the_rows_one_by_one(tmp_path, small_chunks, workers):
    """Random files (duplicates, bad rows, mixed sources): the tables and the Index a fresh load gives are those
    of writing each valid row as its own change, in file order."""
    rng = random.Random(workers)
    lines = []
    expected: dict[int, tuple[str, str]] = {}
    for _ in range(300):
        n = BASE + rng.randrange(60)
        source = rng.choice(["", "carrier", "regulator", "bogus"])
        reason = rng.choice(["", "r1", "r2"])
        lines.append(f"+{n},{source},{reason}\n")
        if source != "bogus":
            expected[n] = (source or "complaint", reason)
    db = connect(tmp_path / f"w{workers}.db")
    try:
        result = run(db, "".join(lines), workers=workers, as_lines=workers == 1)
        assert result.imported == sum(1 for line in lines if ",bogus," not in line)
        assert table(db) == expected
        assert load_index(db, load_policy(), 0).blacklist == set(expected)
    finally:
        db.close()


def test_an_import_cancels_pending_removals_unless_manual(db):
    run(db, "13500000001\n13500000002\n")
    for n in (BASE + 1, BASE + 2):
        lists.request_removal(db, n, reason="verified", actor="bob")
    run(db, "".join(f"{13500000002 + i},manual\n" for i in range(20)))
    assert len(lists.pending_removals(db)) == 2
    run(db, "".join(f"{13500000002 + i},carrier\n" for i in range(20)))
    assert [p.number for p in lists.pending_removals(db)] == [BASE + 1]


def test_optout_import_with_correlation(db):
    def optout_change(row: dict) -> Change:
        return Change("optout", "add", 0, "sender", row["key"], {"source": "import"})

    text = "".join(f"{13500000000 + i},{sender}\n" for sender in ("A", "B", "C") for i in range(10))
    result = import_csv(db, io.StringIO(text), ("number", "key"), optout_change, default_region="CN",
                        correlation_threshold=3, workers=1)
    assert result.imported == 30
    globals_ = db.execute("SELECT number, source FROM optout WHERE scope = 'global' ORDER BY number").fetchall()
    assert globals_ == [(BASE + i, "correlation") for i in range(10)]


def test_progress_is_reported_per_transaction(db, small_chunks):
    seen = []
    run(db, "".join(f"{13500000000 + i}\n" for i in range(40)), progress=seen.append)
    assert len(seen) > 3 and seen == sorted(seen) and seen[-1] == 40


def test_each_run_of_rows_is_written_in_key_order_a_slice_a_transaction(db, small_chunks):
    """Runs of 7 rows, slices of 5: each change-log row (a transaction) holds at most 5 numbers, in key order,
    and a run's rows follow one another in key order; every row is imported once."""
    import json
    import random

    numbers = [BASE + i * 37 for i in range(23)]
    random.Random(3).shuffle(numbers)
    result = run(db, "".join(f"+{n}\n" for n in numbers))
    assert result.imported == 23 and not result.errors
    logged = [json.loads(text) if text else [n] for n, text in db.execute(
        "SELECT number, numbers FROM changelog WHERE kind = 'blacklist' ORDER BY id")]
    assert all(len(batch) <= 5 and batch == sorted(batch) for batch in logged)
    assert sorted(n for batch in logged for n in batch) == sorted(numbers)
    written = [n for batch in logged for n in batch]
    ascending = [[written[0]]]  # the written numbers cut where they go down again: one piece per run
    for n in written[1:]:
        (ascending[-1].append(n) if n > ascending[-1][-1] else ascending.append([n]))
    assert len(ascending) in (2, 3) and all(len(piece) >= 7 for piece in ascending[:-1])
    assert ascending[0] == sorted(numbers[:len(ascending[0])])  # a run is the file's next rows, sorted


_LINES = ["+8613500000001", "+8613500000002", "+8613500000001", "+86135", "+8610", "13500000003", "013500000004",
          "8613500000005", "008613500000006", "1350000000", "135 0000 0007", "2125551234", "+1 212 555 1234",
          "+12125551234", "+14165550123", "#+8613500000004", "", "  ", "number", "+86 135 0000 0005",
          " +8613500000006", "+8613500000007 ", "+86１３５００００００08", "+447400123456", "abc", "+8613500000009"]


@given(st.lists(st.sampled_from(_LINES), max_size=40), st.integers(1, 3), st.sampled_from(["CN", None]))
def test_a_chunk_of_bare_lines_parses_as_line_by_line(lines, first_line, region):
    """The regex passes over a chunk of bare numbers (numbers.number_lines) give exactly what reading
    each line does: the same numbers by line, the same bad lines with the same messages, the header skipped."""
    text = "".join(line + "\n" for line in lines)
    columns = names = ("number", "source", "reason")
    fast = lists._parse_chunk(text, first_line, columns, names, region)
    slow = lists._parse_chunk(text, first_line, columns, names, region, settle_bare=False)
    assert fast == slow
    # the same lines ending in "\r\n" (a file from Windows): what the csv module makes of them, the same rows
    windows = text.replace("\n", "\r\n")
    assert lists._parse_chunk(windows, first_line, columns, names, region) == fast
    with pytest.MonkeyPatch.context() as m:
        m.setattr(lists, "_is_csv", lambda text: True)  # every chunk through the csv module, none settled at once
        assert lists._parse_chunk(windows, first_line, columns, names, region) == fast


def test_a_run_large_enough_for_batches_writes_them_a_slice_a_transaction(db, monkeypatch):
    """A run of 23 rows making one change (past BATCH_MIN): batches of at most IMPORT_SLICE (5) numbers, each in a
    transaction of its own (one audit row each), in key order."""
    monkeypatch.setattr(lists, "IMPORT_RUN_ROWS", 30)
    monkeypatch.setattr(lists, "IMPORT_SLICE", 5)
    numbers = [BASE + i * 37 for i in range(23)]
    random.Random(5).shuffle(numbers)
    assert run(db, "".join(f"+{n}\n" for n in numbers)).imported == 23
    batches = [json.loads(text) for (text,) in db.execute(
        "SELECT numbers FROM changelog WHERE kind = 'blacklist' ORDER BY id")]
    assert batches == [sorted(numbers)[i:i + 5] for i in range(0, 23, 5)]
    transactions = db.execute("SELECT recipient FROM audit WHERE rule = 'blacklist' ORDER BY id").fetchall()
    assert transactions == [("5 numbers",)] * 4 + [("3 numbers",)]


# --- the pieces of the import, one by one ------------------------------------------------------------------


def _last_cut(block: str, quotes_before: int) -> int:
    """What lists._cut must give, read the slow way: after the last newline with an even count of quotes before
    it (counting those before the block); 0 when there is none."""
    ends = [i + 1 for i, c in enumerate(block) if c == "\n" and (quotes_before + block.count('"', 0, i)) % 2 == 0]
    return ends[-1] if ends else 0


@given(st.text(alphabet='a"\n', max_size=30), st.integers(0, 3))
def test_a_chunk_may_end_only_after_a_newline_outside_quotes(block, quotes_before):
    assert lists._cut(block, quotes_before) == _last_cut(block, quotes_before)


@pytest.mark.parametrize("block, quotes_before, cut", [
    ("\nabc", 0, 1), ('\n"a\nb', 0, 1), ("\nabc", 1, 0), ('a"b\nc"d\ne', 0, 8), ('a\nb"c\nd', 0, 2)])
def test_where_a_chunk_may_end(block, quotes_before, cut):
    assert lists._cut(block, quotes_before) == cut


def test_lines_from_a_list_are_joined_into_blocks_of_about_the_chunk_size(monkeypatch):
    monkeypatch.setattr(lists, "IMPORT_CHUNK_CHARS", 7)
    lines = ["abc\n", "ab\n", "a\n", "abcdefgh\n", "a\n", "ab\n", "abc\n", "a\n"]
    assert list(lists._blocks_of_lines(lines)) == ["abc\nab\n", "a\nabcdefgh\n", "a\nab\nabc\n", "a\n"]
    lines = ["ab\n", "ab\n", "\n", "ab\n", "ab\n", "\n", "abc\n"]  # 6 characters, then 7: a block ends at 7
    assert list(lists._blocks_of_lines(lines)) == ["ab\nab\n\n", "ab\nab\n\n", "abc\n"]
    assert list(lists._blocks_of_lines([])) == []


@pytest.mark.parametrize("block_chars, stretch, kept", [
    (40, 170, True),  # 160 characters held (4 blocks): not past 16 MAX_LINE_CHARS, so read on to its newline
    (41, 164, False),  # 164 held: dropped, and its newline starts the next block
    (41, 204, False),  # dropped, and its newline ends the next block
])
def test_a_stretch_is_dropped_only_past_sixteen_times_the_longest_line(monkeypatch, block_chars, stretch, kept):
    monkeypatch.setattr(lists, "MAX_LINE_CHARS", 10)
    monkeypatch.setattr(lists, "IMPORT_CHUNK_CHARS", block_chars)
    text = "9" * stretch + "\n13500000001\n13500000002\n"
    oversized: list[int] = []
    chunks = list(_text_chunks(io.StringIO(text), oversized))
    if kept:
        assert chunks == [(1, text)] and oversized == []
    else:
        assert chunks == [(2, "13500000001\n13500000002\n")] and oversized == [1]


def test_bare_lines_and_csv_rows_of_a_chunk():
    assert lists._lines("1\n2") == ["1", "2"]
    assert lists._lines("1\n2\n") == ["1", "2"]
    assert lists._lines("1\n\n2\n") == ["1", "", "2"]
    assert lists._lines("1,x\n") is None and lists._lines('"1"\n') is None and lists._lines("1\r\n") is None
    # a carriage return inside a quoted field is kept, and ends no line: the next row keeps its number
    assert list(lists._rows('"1\r2",x\n3\n', 5, None)) == [(5, ["1\r2", "x"]), (6, ["3"])]


def test_a_line_of_exactly_the_longest_length_is_a_row(monkeypatch):
    monkeypatch.setattr(lists, "MAX_LINE_CHARS", 20)
    text = "1" * 20 + "\n" + "x" * 21 + "\n135 0000 0001\nbad\n"
    parsed = lists._parse_chunk(text, 1, ("number",), ("number",), "CN")
    assert parsed.bad == [(2, "line longer than 20 characters"), (1, "not a valid phone number: '" + "1" * 20 + "'"),
                          (4, "not a valid phone number: 'bad'")]
    assert parsed.groups == {(): ([3], [BASE + 1])}


def test_a_worker_gives_a_chunks_groups_as_int64_arrays():
    text = "13500000001\n13500000002,carrier,x\nbad\n13500000003,carrier,x\n"
    columns = names = ("number", "source", "reason")
    plain = lists._parse_chunk(text, 3, columns, names, "CN")
    arrays = lists._parse_to_arrays(text, 3, columns, names, "CN")
    assert arrays.bad == plain.bad == [(5, "not a valid phone number: 'bad'")]
    assert list(arrays.groups) == list(plain.groups) == [(), ("carrier", "x")]
    for key, (lines, numbers) in arrays.groups.items():
        assert lines.dtype == numbers.dtype == "int64"
        assert (lines.tolist(), numbers.tolist()) == plain.groups[key]


def test_of_two_groups_changing_one_number_the_later_row_wins(db):
    """Two groups only (two sources): the first group in the run holds the number's last row."""
    result = run(db, "13500000009,carrier,b\n13500000001,complaint,a\n13500000001,carrier,b\n")
    assert result.imported == 3 and not result.errors
    assert table(db) == {BASE + 1: ("carrier", "b"), BASE + 9: ("carrier", "b")}


def test_each_groups_numbers_once_its_last_row_kept():
    import numpy as np

    a = Change("blacklist", "add", 0, data={"source": "carrier"})
    b = Change("blacklist", "add", 0, data={"source": "complaint"})
    made = [(a, np.array([1, 2, 3, 6]), np.array([7, 5, 7, 9])), (b, np.array([4, 5]), np.array([5, 8]))]
    assert [(t, n.tolist()) for t, n in lists._last_rows_win(made)] == [(a, [7, 9]), (b, [5, 8])]


def test_a_runs_transactions_hold_at_most_a_slice_and_their_shares_add_up_to_its_rows(monkeypatch):
    """Three plain changes and a batch of ten numbers (twelve rows, two of them repeats), slices of three: the
    rows each transaction stands for are its share of the run's fifteen rows, and they add up."""
    import numpy as np

    monkeypatch.setattr(lists, "IMPORT_SLICE", 3)
    few = Change("blacklist", "add", 0, data={"source": "carrier"})
    many = Change("blacklist", "add", 0, data={"source": "complaint"})
    numbers = list(range(1, 11)) + [1, 2]
    made = [(many, np.arange(1, 13), np.array(numbers)), (few, np.arange(13, 16), np.array([21, 22, 23]))]
    got = [([c.targets() for c in changes], rows) for changes, rows in lists._slices(made)]
    assert got == [([(21,), (22,), (23,)], 3), ([(1, 2, 3)], 3), ([(4, 5, 6)], 3), ([(7, 8, 9)], 3), ([(10,)], 3)]
    assert all(type(rows) is int for _, rows in got)


@given(st.lists(st.sampled_from(["a", "b,c", "\r", "\n", "\r\n", '"', "x"]), max_size=40),
       st.lists(st.integers(1, 6), min_size=1, max_size=8))
def test_one_newline_makes_every_line_end_lf_whatever_the_blocks(pieces, cuts):
    text = "".join(pieces)
    blocks, at = [], 0
    for n in cuts * 20:  # the text cut anywhere, a "\r\n" split between two blocks too
        if at >= len(text):
            break
        blocks.append(text[at:at + n])
        at += n
    blocks.append(text[at:])
    assert "".join(lists._one_newline(b for b in blocks if b)) == text.replace("\r\n", "\n").replace("\r", "\n")


def test_a_row_the_csv_module_cannot_read_is_a_bad_row_of_its_line_and_the_next_rows_are_read():
    parsed = lists._parse_chunk("8613800000001,a\rb\n8613800000002,ok\n", 7, ("number", "reason"),
                                ("number", "reason"), None)
    assert [(line, message.split(" (")[0]) for line, message in parsed.bad] == [(7, "not a CSV row")]
    assert parsed.groups == {("ok",): ([8], [8613800000002])}
