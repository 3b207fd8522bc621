"""The lines of a refused resume: what the store holds against what the run asks for."""

from drrkit.store.mismatch import MAX_LINES, ct_list_differences, differences, value_differences


def test_value_differences_name_each_changed_leaf():
    stored = {"name": "xwin", "detector": {"height": 256, "width": 256, "sdd": 1020.0}, "masks": None}
    wanted = {"name": "xwin", "detector": {"height": 128, "width": 128, "sdd": 1020.0}, "masks": {"c": 1}}
    assert value_differences(stored, wanted, "recipe") == [
        "recipe.detector.height: 256 → 128", "recipe.detector.width: 256 → 128", "recipe.masks: None → {'c': 1}"]
    assert value_differences({"a": 1}, {"b": 2}) == ["a: 1 → absent", "b: absent → 2"]
    assert value_differences(stored, dict(stored)) == []
    assert value_differences(1, 2, "schema_version") == ["schema_version: 1 → 2"]


def test_ct_list_differences_say_what_was_added_removed_or_moved():
    stored = [["a", "/d/a.nii.gz"], ["b", "/d/b.nii.gz"]]
    added = ct_list_differences(stored, [*stored, ["c", "/d/c.nii.gz"]])
    assert added == ["2 CTs in the store, 3 found now", "new here: c"]
    moved = ct_list_differences(stored, [["a", "/d/a.nii.gz"], ["b", "/e/b.nii.gz"]])
    assert moved == ["2 CTs in the store, 2 found now", "another file: b"]
    swapped = ct_list_differences(stored, stored[::-1])
    assert swapped[1] == "same CTs in another order (position 0: a → b)"
    many = ct_list_differences([], [[f"ct{k}", f"/d/{k}"] for k in range(5)])
    assert many[1] == "new here: ct0, ct1, ct2 and 2 more"
    assert ct_list_differences(None, stored) == ["the store records no CT list"]


def test_long_differences_are_cut_and_counted():
    stored = {f"k{i}": i for i in range(MAX_LINES + 3)}
    lines = differences("recipe", stored, {k: -1 for k in stored})
    assert len(lines) == MAX_LINES + 1 and lines[-1] == "and 3 more differences"
