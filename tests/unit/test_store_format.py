"""A store file this version cannot read is a StoreError naming the file and what to do, never a traceback."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from misr.errors import StoreError
from misr.store.store import FeatureStore
from misr.store.stream import SplitStream
from tests.unit.test_store import filled  # noqa: F401  (the fixture)


def audio_part(fs):
    return fs.part_files("audio")[0][1]


def rewrite(path, transform):
    table = pq.read_table(path)
    pq.write_table(transform(table), path)


def set_meta(table, **changes):
    meta = dict(table.schema.metadata)
    for k, v in changes.items():
        if v is None:
            meta.pop(f"misr.{k}".encode())
        else:
            meta[f"misr.{k}".encode()] = str(v).encode()
    return table.replace_schema_metadata(meta)


def every_reader(fs):
    """Each way the store's part files are read: in memory, streamed, planning an extraction, inspect."""
    yield lambda: fs.load_split("train")
    yield lambda: SplitStream(fs, "train")
    yield lambda: fs.present("audio")
    yield fs.describe


def test_a_newer_format_is_refused_with_upgrade_advice(filled):  # noqa: F811
    fs, _, _ = filled
    path = audio_part(fs)
    rewrite(path, lambda t: set_meta(t, format_version=99))
    for read in every_reader(fs):
        with pytest.raises(StoreError, match=f"{path.name} was written in store format 99; this version of misr reads formats 1, 2") as err:
            read()
        assert "upgrade misr" in err.value.hint


def test_an_older_format_is_refused_with_re_extract_advice(filled):  # noqa: F811
    fs, _, _ = filled
    rewrite(audio_part(fs), lambda t: set_meta(t, format_version=0))
    with pytest.raises(StoreError, match="store format 0") as err:
        fs.load_split("train")
    assert "misr extract" in err.value.hint


def test_a_part_without_misr_metadata_is_named(filled):  # noqa: F811
    fs, _, _ = filled
    path = audio_part(fs)
    rewrite(path, lambda t: t.replace_schema_metadata(None))
    for read in every_reader(fs):
        with pytest.raises(StoreError, match=f"{path.name} carries no misr metadata"):
            read()


def test_a_part_missing_its_dimension_is_named(filled):  # noqa: F811
    fs, _, _ = filled
    rewrite(audio_part(fs), lambda t: set_meta(t, dim=None))
    with pytest.raises(StoreError, match="lacks the metadata dim"):
        fs.load_split("train")


def test_frames_of_another_type_are_named(filled):  # noqa: F811
    fs, _, _ = filled
    path = audio_part(fs)

    def to_double_lists(t):
        flat = [np.asarray(x, dtype=np.float64).reshape(-1).tolist() for x in t.column("frames").to_pylist()]
        col = pa.array(flat, pa.list_(pa.float64()))
        return t.set_column(t.schema.get_field_index("frames"), "frames", col).replace_schema_metadata(t.schema.metadata)

    rewrite(path, to_double_lists)
    for read in every_reader(fs):
        with pytest.raises(StoreError, match=r"column 'frames' is list<\w+: double>; store format 3 holds list<"):
            read()


def test_a_part_in_the_wrong_modality_folder_is_named(filled):  # noqa: F811
    fs, _, _ = filled
    rewrite(audio_part(fs), lambda t: set_meta(t, modality="visual"))
    with pytest.raises(StoreError, match="holds visual features but lies in the audio folder"):
        fs.load_split("train")


def test_clips_table_of_a_newer_format_and_null_splits_and_labels(filled):  # noqa: F811
    fs, clips, _ = filled
    rewrite(fs.clips_path, lambda t: set_meta(t, format_version=7))
    with pytest.raises(StoreError, match="clips.parquet was written in store format 7"):
        fs.describe()

    def null_split(t):
        splits = t.column("split").to_pylist()
        splits[1] = None
        return t.set_column(t.schema.get_field_index("split"), "split", pa.array(splits, pa.string())).replace_schema_metadata(None)

    rewrite(fs.clips_path, null_split)
    with pytest.raises(StoreError, match=r"1 clip\(s\) \(v0\$_\$1\) have no split"):
        fs.describe()
    with pytest.raises(StoreError, match="have no split"):
        fs.load_split("train")

    def nan_label(t):
        labels = t.column("label").to_pylist()
        labels[2] = float("nan")
        splits = ["train"] * t.num_rows
        t = t.set_column(t.schema.get_field_index("split"), "split", pa.array(splits, pa.string()))
        return t.set_column(t.schema.get_field_index("label"), "label", pa.array(labels, pa.float32()))

    rewrite(fs.clips_path, nan_label)
    with pytest.raises(StoreError, match=r"v0\$_\$2\) have no label"):
        fs.load_split("train")


def test_clips_table_written_before_the_version_tag_is_read(filled):  # noqa: F811
    fs, _, _ = filled
    rewrite(fs.clips_path, lambda t: t.replace_schema_metadata(None))
    assert len(fs.load_split("train")) == 7


def test_stores_are_tagged_with_their_format(filled):  # noqa: F811
    fs, _, _ = filled
    for path in (fs.clips_path, audio_part(fs)):
        assert pq.read_schema(path).metadata[b"misr.format_version"] == b"3"


def test_a_format_1_store_still_reads_with_every_clip_present(filled):  # noqa: F811
    """Format 1 parts have no `absent` column: every row is a present modality."""
    fs, _, _ = filled
    for m in ("text", "audio", "visual"):
        for _, path in fs.part_files(m):
            rewrite(path, lambda t: set_meta(t.drop_columns(["absent"]), format_version=1))
    for read in every_reader(fs):
        read()
    data = fs.load_split("train")
    assert set(data.absent) == {"text", "audio", "visual"} and not any(v.any() for v in data.absent.values())
    assert fs.describe()["absent"] == {"text": 0, "audio": 0, "visual": 0}
    assert {r["au_quantiles"] for r in fs.latest_values("visual", ["au_quantiles"]).values()} == {None}  # a column of format 3


def _flip_a_frames_value(path):
    """Change one stored float in a data page, as a bad disk or copy would, leaving a file that still parses."""
    original = path.read_bytes()
    frames = pq.read_table(path).column("frames").combine_chunks().values.values.to_numpy()
    value = np.float32(frames[0]).tobytes()
    at = original.find(value)
    while at >= 0:  # the value may also sit in a page's statistics, which no checksum covers: find it in the data
        data = bytearray(original)
        data[at] ^= 0x01  # the lowest mantissa bit: a plausible value, silently different
        path.write_bytes(bytes(data))
        try:
            changed = pq.read_table(path).column("frames").combine_chunks().values.values.to_numpy()
        except (pa.ArrowException, OSError):
            changed = None
        if changed is not None and not np.array_equal(changed, frames):
            return
        at = original.find(value, at + 1)
    raise AssertionError("no stored copy of the value changes the data")


def test_flipped_bytes_in_a_data_page_are_an_error_naming_the_file(filled):  # noqa: F811
    fs, _, _ = filled
    path = audio_part(fs)
    _flip_a_frames_value(path)  # an unverified read accepts the changed value
    for read in (lambda: fs.load_split("train"), lambda: SplitStream(fs, "train").take(range(7))):
        with pytest.raises(StoreError, match=rf"{path.name} is not a readable Parquet file \(.*CRC checksum verification failed"):
            read()


def test_nan_features_name_their_clip_and_file(filled):  # noqa: F811
    fs, _, _ = filled
    path = audio_part(fs)

    def poison(t):
        frames = t.column("frames").combine_chunks()
        flat = frames.values.values.to_numpy().copy()
        flat[0] = np.nan
        inner = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), frames.type.value_type.list_size)
        col = pa.ListArray.from_arrays(frames.offsets, inner)
        return t.set_column(t.schema.get_field_index("frames"), "frames", col).replace_schema_metadata(t.schema.metadata)

    rewrite(path, poison)
    first = pq.read_table(path).column("clip_key")[0].as_py()
    for read in (lambda: fs.load_split("train"), lambda: SplitStream(fs, "train").take(range(7))):
        with pytest.raises(
            StoreError, match=rf"1 clip\(s\) have NaN or infinite audio features \({first.replace('$', '.')}\) in {path.name}"
        ):
            read()


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    from misr.util.lock import Busy

    fs = FeatureStore(tmp_path / "store")
    with fs.lock():
        with pytest.raises(Busy, match=r"another writer of .*store .* holds .*\.store\.write\.lock"):
            with FeatureStore(tmp_path / "store").lock():
                pass
    with fs.lock():  # released
        pass
    assert (tmp_path / ".store.write.lock").exists() and not (tmp_path / "store").exists()  # beside the DVC output, not in it


def test_a_clip_in_two_splits_is_refused_by_every_reader(filled):  # noqa: F811
    """A hand-edited clips.parquet with one clip in train and in test once trained silently: a leak of test."""
    fs, _, _ = filled

    def leak(t):
        row = t.slice(0, 1).to_pylist()[0]
        assert row["split"] == "train"
        return pa.concat_tables([t, pa.Table.from_pylist([{**row, "split": "test"}], schema=t.schema)])

    rewrite(fs.clips_path, leak)
    for read in (lambda: fs.load_split("train"), lambda: SplitStream(fs, "train"), fs.describe):
        with pytest.raises(StoreError, match=r"1 clip\(s\) \(v0\$_\$0 \(train, test\)\) appear in more than one row"):
            read()
    with pytest.raises(StoreError, match="appear in more than one row"):
        fs.load_split("test")


def test_one_lock_per_folder_however_it_is_spelled_and_for_the_longest_legal_name(tmp_path):
    """Two writers through a folder and a link to it once both ran, with two lock files; a 248-character
    store name failed at its lock file."""
    from misr.util.lock import Busy

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with FeatureStore(tmp_path / "real" / "store").lock():
        for other in (tmp_path / "link" / "store", tmp_path / "link" / ".." / "real" / "store"):
            with pytest.raises(Busy):
                with FeatureStore(other).lock():
                    pass
    long = tmp_path / ("s" * 248)
    with FeatureStore(long).lock():
        with pytest.raises(Busy):
            with FeatureStore(long).lock():
                pass
    with FeatureStore(long).lock():
        pass
