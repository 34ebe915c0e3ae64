"""Reading label.csv and finding clips: one bad row never stops a corpus, and what stops it says why."""

import os
import subprocess
import sys

import pytest

from misr.data.corpus import read_corpus
from misr.errors import MisrError
from tests.helpers import REPO

HEADER = b"video_id,clip_id,text,label,mode\n"


def corpus(tmp_path, lines: list[bytes], videos=("v/0", "v/1")):
    raw = tmp_path / "raw"
    for v in videos:
        vid, cid = v.split("/")
        (raw / "Raw" / vid).mkdir(parents=True, exist_ok=True)
        (raw / "Raw" / vid / f"{cid}.mp4").write_bytes(b"x")
    (raw / "label.csv").write_bytes(HEADER + b"".join(lines))
    return raw


def test_an_id_that_is_not_utf8_is_quarantined_with_a_key_that_can_be_stored(tmp_path):
    raw = corpus(tmp_path, [b"v,0,good,1,train\n", b"caf\xe9,0,good,1,train\n"])
    os.makedirs(os.fsencode(raw / "Raw") + b"/caf\xe9")
    (raw / "Raw" / os.fsdecode(b"caf\xe9") / "0.mp4").write_bytes(b"x")
    clips, problems = read_corpus(raw)
    assert [c.key for c in clips] == ["v$_$0"]
    assert [(p["clip_key"], p["error"]) for p in problems] == [("caf\\xe9$_$0", "BadId")]
    assert problems[0]["message"] == "label.csv line 3: id 'caf\\xe9' is not valid UTF-8 (an old zip or another encoding?): rename it"
    for p in problems:  # what the quarantine's Parquet file and the console need
        p["clip_key"].encode("utf-8"), p["message"].encode("utf-8")


def test_a_transcript_longer_than_csvs_default_field_limit_is_read(tmp_path):
    long = b"good " * 40_000  # 200,000 characters; csv's default limit is 131,072
    clips, problems = read_corpus(corpus(tmp_path, [b'v,0,"' + long.strip() + b'",1,train\n', b"v,1,bad,-1,test\n"]))
    assert problems == [] and [len(c.text) for c in clips] == [len(long.strip()), 3]


def test_a_header_that_names_a_column_twice_is_refused(tmp_path):
    raw = tmp_path / "raw"
    (raw / "Raw").mkdir(parents=True)
    (raw / "label.csv").write_text("video_id,clip_id,text,label,mode,label\nv,0,good,2.5,train,-2.5\n")
    with pytest.raises(MisrError, match="the header names 'label' more than once"):
        read_corpus(raw)
    from misr.registry.retrain import data_state

    with pytest.raises(MisrError, match="more than once"):  # retraining reads label.csv the same way
        data_state(raw)


def test_a_link_loop_is_quarantined_and_the_other_clips_go_on(tmp_path):
    raw = corpus(tmp_path, [b"v,0,good,1,train\n", b"loop,0,good,1,train\n", b"v,1,bad,-1,test\n"])
    (raw / "Raw" / "loop").mkdir()
    os.symlink("0.mp4", raw / "Raw" / "loop" / "0.mp4")
    clips, problems = read_corpus(raw)
    assert [c.key for c in clips] == ["v$_$0", "v$_$1"]
    assert [(p["clip_key"], p["error"]) for p in problems] == [("loop$_$0", "BrokenLink")]
    assert "label.csv line 3: Raw/loop/0.mp4 cannot be opened" in problems[0]["message"]


def test_line_numbers_count_the_lines_of_a_transcript_that_spans_several(tmp_path):
    raw = corpus(tmp_path, [b'v,0,"a transcript\nover three\nlines",1,train\n', b"v,1,good,9,train\n"])
    _, problems = read_corpus(raw)
    assert [p["message"] for p in problems] == ["label.csv line 5: label 9 is outside [-3, 3]"]


def test_a_label_file_that_is_a_fifo_is_a_clear_error_not_a_hang(tmp_path):
    raw = tmp_path / "raw"
    (raw / "Raw").mkdir(parents=True)
    os.mkfifo(raw / "label.csv")
    with pytest.raises(MisrError, match="label.csv is not a regular file"):
        read_corpus(raw)


@pytest.mark.slow
def test_misr_extract_on_a_header_with_a_column_twice_is_one_error_line(tmp_path):
    raw = tmp_path / "raw"
    (raw / "Raw").mkdir(parents=True)
    (raw / "label.csv").write_text("video_id,clip_id,text,label,mode,label\nv,0,good,2.5,train,-2.5\n")
    res = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "extract", str(raw), "--out", str(tmp_path / "s"), "--params", str(REPO / "params.yaml")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert res.returncode == 2 and "error:" in res.stderr and "more than once" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_a_bare_carriage_return_is_a_line_end_and_the_other_rows_go_on(tmp_path):
    """Found by the fuzzing test: an unquoted \r in a row (as csv.writer leaves it with "\n" line ends) made
    the whole file unreadable. Read as the line end it is in old Mac files, it quarantines the pieces of
    that row, and the rows around it are kept; a quoted \r stays inside its transcript."""
    raw = corpus(tmp_path, [b"v,0,good,1,train\n", b"v,1,one\rtwo,1,train\n", b'v,2,"three\rfour",1,test\n'], ("v/0", "v/1", "v/2"))
    clips, problems = read_corpus(raw)
    assert [(c.key, c.text) for c in clips] == [("v$_$0", "good"), ("v$_$2", "three\rfour")]
    assert [p["error"] for p in problems] == ["FieldCount", "FieldCount"]  # 'v,1,one' and 'two,1,train': 3 fields of 5


def test_a_row_with_more_fields_than_the_header_is_quarantined_not_cut(tmp_path):
    """An unquoted comma in a transcript once cut it silently ("not mediocre and, not good at all, terrible" was
    stored as "not mediocre and") when the text column came last."""
    raw = tmp_path / "raw"
    for cid in ("0", "1", "2"):
        (raw / "Raw" / "v").mkdir(parents=True, exist_ok=True)
        (raw / "Raw" / "v" / f"{cid}.mp4").write_bytes(b"x")
    (raw / "label.csv").write_text(
        "video_id,clip_id,label,mode,text\n"
        "v,0,1.0,train,fine\n"
        "v,1,-2.0,train,not mediocre and, not good at all, terrible\n"
        'v,2,-2.0,test,"quoted, as it should be"\n'
        "v,3,1.0\n"
    )
    clips, problems = read_corpus(raw)
    assert [(c.key, c.text) for c in clips] == [("v$_$0", "fine"), ("v$_$2", "quoted, as it should be")]
    assert [(p["clip_key"], p["error"]) for p in problems] == [("v$_$1", "FieldCount"), ("v$_$3", "FieldCount")]
    assert problems[0]["message"].startswith("label.csv line 3: 7 fields where the header has 5")


def test_a_header_without_rows_is_a_clear_error(tmp_path):
    raw = corpus(tmp_path, [])
    with pytest.raises(MisrError, match="has a header but no clip rows"):
        read_corpus(raw)


def test_ids_match_folders_with_spaces_and_other_unicode_normal_forms(tmp_path):
    """A folder named ' lead' was 'not found' (ids were trimmed), and an NFC id missed its NFD folder (macOS)."""
    import unicodedata

    nfd = unicodedata.normalize("NFD", "café")
    raw = corpus(tmp_path, [b" lead,0,good,1,train\n", "café,0,good,1,train\n".encode(), b" v , 1 ,good,1,train\n"], ("v/1",))
    for folder in (" lead", nfd):
        (raw / "Raw" / folder).mkdir()
        (raw / "Raw" / folder / "0.mp4").write_bytes(b"x")
    clips, problems = read_corpus(raw)
    assert problems == []
    assert [(c.key, c.path.parent.name) for c in clips] == [(" lead$_$0", " lead"), ("café$_$0", nfd), ("v$_$1", "v")]
