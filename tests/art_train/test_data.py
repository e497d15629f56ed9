import json

import numpy as np
import pytest

from art_edge.cliplist import probe_records, read_classes, read_list
from art_edge.errors import UserError
from art_edge.preprocess import Preprocessing
from art_train.adapters import diving48, finegym, kinetics, ntu, ssv2, write_lists
from art_train.data import ClipDataset


def test_list_reads_names_indices_ranges_and_resolves_paths(tmp_path):
    (tmp_path / "classes.txt").write_text("jump\nspin\n")
    (tmp_path / "l.csv").write_text(
        "path,label,start_frame,end_frame\na.mp4,spin,,\nsub/b.mp4,0,5,20\n/abs/c.mp4,jump,,\n"
    )
    classes = read_classes(tmp_path / "classes.txt")
    recs = read_list(tmp_path / "l.csv", classes)
    assert [r.label for r in recs] == [1, 0, 0]
    assert recs[0].path == str(tmp_path / "a.mp4") and recs[2].path == "/abs/c.mp4"
    assert (recs[1].start_frame, recs[1].end_frame) == (5, 20)
    assert read_list(tmp_path / "l.csv", classes, root="/data")[0].path == "/data/a.mp4"


@pytest.mark.parametrize(
    "content,match",
    [
        ("path,label\na.mp4,dance\n", "unknown label 'dance'"),
        ("path,label\na.mp4,7\n", "unknown label '7'"),
        ("path,label\n", "no clips"),
        ("file,class\na.mp4,jump\n", "header"),
        ("path,label,start_frame\na.mp4,jump,x\n", "start_frame must be an integer"),
    ],
)
def test_bad_lists_say_what_is_wrong(tmp_path, content, match):
    (tmp_path / "l.csv").write_text(content)
    with pytest.raises(UserError, match=match):
        read_list(tmp_path / "l.csv", ["jump", "spin"])


def test_bad_classes_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_classes(tmp_path / "none.txt")
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(UserError, match="empty"):
        read_classes(tmp_path / "e.txt")
    (tmp_path / "d.txt").write_text("a\nb\na\n")
    with pytest.raises(UserError, match="twice"):
        read_classes(tmp_path / "d.txt")


def test_probe_skips_bad_videos_with_a_count_and_stops_past_the_threshold(synth, tmp_path, capsys):
    classes = read_classes(synth / "classes.txt")
    good = read_list(synth / "train.csv", classes)
    (tmp_path / "broken.mp4").write_bytes(b"garbage" * 50)
    bad = read_list(synth / "train.csv", classes)[:1]
    bad[0].path = str(tmp_path / "broken.mp4")
    missing = read_list(synth / "train.csv", classes)[:1]
    missing[0].path = str(tmp_path / "missing.mp4")
    kept = probe_records(good + bad, max_bad_fraction=0.2)
    assert len(kept) == len(good)
    assert "skipping 1 of" in capsys.readouterr().err
    with pytest.raises(UserError, match="missing or do not decode"):
        probe_records(good[:2] + bad + missing, max_bad_fraction=0.1)


def test_dataset_items_are_deterministic_per_epoch(synth):
    classes = read_classes(synth / "classes.txt")
    ds = ClipDataset(
        read_list(synth / "train.csv", classes),
        Preprocessing(image_size=32, num_frames=4),
        train=True,
    )
    a, la = ds[0]
    b, _ = ds[0]
    np.testing.assert_array_equal(a, b)
    ds.set_epoch(1)
    c, _ = ds[0]
    assert a.shape == (4, 3, 32, 32) and not np.array_equal(a, c) and la == ds.records[0].label


# ----------------------------------------------------------------------------- adapters, in each official format


def test_diving48_v2(tmp_path):
    (tmp_path / "Diving48_vocab.json").write_text(
        json.dumps([["Back", "15som", "05Twis", "FREE"], ["Forward", "25som", "NoTwis", "PIKE"]])
    )
    rec = [{"vid_name": "-mmq0PT-u8k_00155", "label": 1, "start_frame": 0, "end_frame": 60}]
    (tmp_path / "Diving48_V2_train.json").write_text(json.dumps(rec))
    (tmp_path / "Diving48_V2_test.json").write_text(json.dumps(rec[:0] + [{**rec[0], "label": 0}]))
    classes, splits = diving48(tmp_path)
    assert classes == ["Back 15som 05Twis FREE", "Forward 25som NoTwis PIKE"]
    assert splits["train"] == [("-mmq0PT-u8k_00155.mp4", "Forward 25som NoTwis PIKE", 0, 60)]
    write_lists(tmp_path / "out", classes, splits)
    recs = read_list(tmp_path / "out" / "train.csv", read_classes(tmp_path / "out" / "classes.txt"))
    assert recs[0].label == 1 and recs[0].end_frame == 60


@pytest.mark.parametrize("subset", ["gym99", "gym288"])
def test_finegym(tmp_path, subset):
    (tmp_path / f"{subset}_categories.txt").write_text(
        "Clabel: 0; set: 1; Glabel: 1; (VT) round-off, flic-flac with 0.5 turn on, stretched salto forward\n"
        "Clabel: 1; set: 1; Glabel: 2; (VT) round-off, flic-flac on, stretched salto backward with 1 turn off\n"
    )
    (tmp_path / f"{subset}_train_element_v1.1.txt").write_text(
        "A0xAXXysHUo_E_002407_002435_A_0003_0005 1\n"
    )
    (tmp_path / f"{subset}_val_element.txt").write_text(
        "A0xAXXysHUo_E_002407_002435_A_0006_0008 0\n"
    )
    classes, splits = finegym(tmp_path, subset)
    assert len(classes) == 2 and classes[1].startswith("(VT) round-off, flic-flac on")
    assert splits["train"][0][:2] == ("A0xAXXysHUo_E_002407_002435_A_0003_0005.mp4", classes[1])


def test_ssv2(tmp_path):
    (tmp_path / "something-something-v2-labels.json").write_text(
        json.dumps(
            {
                "Approaching something with your camera": "0",
                "Holding something next to something": "1",
            }
        )
    )
    rec = [
        {
            "id": "78687",
            "label": "holding potato next to vicks vaporub bottle",
            "template": "Holding [something] next to [something]",
            "placeholders": ["potato", "vicks"],
        }
    ]
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps(rec))
    (tmp_path / "something-something-v2-validation.json").write_text(json.dumps(rec))
    classes, splits = ssv2(tmp_path)
    assert classes == [
        "Approaching something with your camera",
        "Holding something next to something",
    ]
    assert splits["val"] == [("78687.webm", "Holding something next to something", None, None)]


def test_kinetics(tmp_path):
    header = "label,youtube_id,time_start,time_end,split\n"
    (tmp_path / "train.csv").write_text(
        header + "abseiling,---QUuC4vJs,3,13,train\nzumba,--0NTAs-iQE,11,21,train\n"
    )
    (tmp_path / "validate.csv").write_text(header + "zumba,--33Lscn6sk,4,14,val\n")
    classes, splits = kinetics(tmp_path)
    assert classes == ["abseiling", "zumba"]
    assert splits["train"][0] == ("---QUuC4vJs_000003_000013.mp4", "abseiling", None, None)


def test_ntu_cross_subject_and_cross_view(tmp_path):
    for name in (
        "S001C001P001R001A001_rgb.avi",
        "S001C002P003R002A013_rgb.avi",
        "S001C003P008R001A002_rgb.avi",
        "readme.txt",
    ):
        (tmp_path / name).write_bytes(b"")
    classes, splits = ntu(tmp_path, "xsub")
    assert classes[0] == "A001" and len(classes) == 13
    assert [r[0][:20] for r in splits["val"]] == [
        "S001C002P003R002A013"
    ]  # subject 3 is a test subject
    _, views = ntu(tmp_path, "xview")
    assert [r[0][:20] for r in views["val"]] == [
        "S001C001P001R001A001"
    ]  # camera 1 is the test view


def test_adapter_with_a_missing_file_names_it(tmp_path):
    with pytest.raises(UserError, match="Diving48_vocab.json"):
        diving48(tmp_path)


def test_mirror_pairs_in_the_classes_file(tmp_path):
    from art_edge.cliplist import read_mirror_pairs

    path = tmp_path / "classes.txt"
    path.write_text("clockwise\ncounterclockwise\nup_down\nmirror: clockwise | counterclockwise\n")
    classes = read_classes(path)
    assert classes == ["clockwise", "counterclockwise", "up_down"]  # the mirror line is not a class
    assert read_mirror_pairs(path, classes) == {0: 1, 1: 0}
    path.write_text("a\nb\nmirror: a | c\n")
    with pytest.raises(
        UserError, match=r"classes.txt:3: a mirror line names two different classes"
    ):
        read_mirror_pairs(path, read_classes(path))


def test_a_flipped_clip_is_mirrored_and_takes_its_mirror_class(synth):
    from art_edge.preprocess import Preprocessing, load_clip

    classes = read_classes(synth / "classes.txt")
    record = read_list(synth / "train.csv", classes)[0]
    prep = Preprocessing(image_size=32, num_frames=4)
    other = (record.label + 1) % len(classes)
    ds = ClipDataset(
        [record],
        prep,
        train=True,
        seed=3,
        flip=True,
        mirror={record.label: other, other: record.label},
    )
    seen = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        clip, label = ds[0]
        rng = np.random.default_rng((3, epoch, 0))
        mirrored = rng.random() < 0.5
        np.testing.assert_array_equal(
            clip, load_clip(record.path, prep, train=True, rng=rng, flip=mirrored)
        )
        assert label == (other if mirrored else record.label)
        seen.add(mirrored)
    assert seen == {True, False}  # both happened in 8 epochs
    ds_off = ClipDataset([record], prep, train=True, seed=3)
    clip, label = ds_off[0]  # flipping off: no draw, the clip as before
    np.testing.assert_array_equal(
        clip, load_clip(record.path, prep, train=True, rng=np.random.default_rng((3, 0, 0)))
    )
