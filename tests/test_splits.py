"""Speaker-independent folds and the leakage check."""
import pytest

from emotion_mx.errors import EmotionMXError
from emotion_mx.manifest import Utterance
from emotion_mx.splits import check_leakage, make_folds, split_of


def _items(groups, per_group=3):
    return [Utterance(id=f"{g}_{i}", label="anger" if i % 2 else "sadness", group=g, audio=f"{g}/{i}.wav")
            for g in groups for i in range(per_group)]


def test_every_group_tested_once_and_sides_disjoint():
    items = _items([f"spk{i:02d}" for i in range(10)])
    folds = make_folds(items, k=5, seed=0)
    assert folds["k"] == 5 and len(folds["folds"]) == 5
    tested = [g for f in folds["folds"] for g in f["test"]]
    assert sorted(tested) == sorted({it.group for it in items})          # each group tested once
    for f in folds["folds"]:
        sides = [set(f[s]) for s in ("train", "valid", "test")]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
        assert len(f["test"]) == 2 and len(f["valid"]) == 2 and len(f["train"]) == 6
    check_leakage(items, folds)


def test_folds_fixed_by_seed_and_changed_by_another_seed():
    items = _items([f"s{i}" for i in range(12)])
    assert make_folds(items, 4, seed=3) == make_folds(items, 4, seed=3)
    assert make_folds(items, 4, seed=3) != make_folds(items, 4, seed=4)


def test_parts_balanced_by_item_count():
    # one big speaker and many small ones: the big one gets a part nearly to itself
    items = _items(["big"], per_group=20) + _items([f"s{i}" for i in range(9)], per_group=4)
    folds = make_folds(items, k=3, seed=0)
    loads = sorted(sum(20 if g == "big" else 4 for g in f["test"]) for f in folds["folds"])
    assert loads[-1] - loads[0] <= 8


def test_official_split_is_one_fold():
    items = [Utterance(id=str(i), label="joy", group=str(i), split=s, text="x")
             for i, s in enumerate(["train"] * 4 + ["valid", "test"])]
    folds = make_folds(items, k=5)
    assert folds["kind"] == "official" and folds["k"] == 1
    assert [split_of(it, folds["folds"][0]) for it in items] == ["train"] * 4 + ["valid", "test"]


def test_leakage_same_recording_on_two_sides_fails():
    items = _items([f"s{i}" for i in range(6)])
    folds = make_folds(items, k=3, seed=0)
    test_group = folds["folds"][0]["test"][0]
    train_group = folds["folds"][0]["train"][0]
    # the same wav file listed under two groups, on two sides of fold 0
    leaked = items + [Utterance(id="dup", label="anger", group=test_group, audio=f"{train_group}/0.wav")]
    with pytest.raises(EmotionMXError, match=r"leakage in fold 0: file '.*0\.wav'"):
        check_leakage(leaked, folds)


def test_leakage_composed_source_group_on_two_sides_fails():
    items = [Utterance(id=f"{p}_{i}", label="anger", group=f"part{p}", audio=f"a{p}{i}.wav",
                       meta={"groups": {"video": f"ckplus:S{p}"}}) for p in range(3) for i in range(2)]
    folds = make_folds(items, k=3, seed=0)
    check_leakage(items, folds)
    bad = items + [Utterance(id="x", label="anger", group="part0", audio="x.wav",
                             meta={"groups": {"video": "ckplus:S1"}})]
    with pytest.raises(EmotionMXError, match="source-group 'ckplus:S1'"):
        check_leakage(bad, folds)


@pytest.mark.parametrize("groups,k,msg", [(["a", "b"], 2, "need at least 3"),
                                          (["a", "b", "c"], 5, "more than the 3 groups"),
                                          (["a", "b", "c", "d"], 2, "at least 3")])
def test_bad_fold_requests_are_clear(groups, k, msg):
    with pytest.raises(EmotionMXError, match=msg):
        make_folds(_items(groups), k=k)
