"""The executor seam: a run's stages as plain functions, driven by the built-in `local` executor or
by an executor plugin, with the same rows, counts and failures either way."""

import pytest
from embedline import hookimpl
from embedline.contracts import Executor, Item, Option, PluginInfo
from embedline.errors import ConfigError, ItemError
from embedline.ledger import RunLedger
from embedline.pipeline import Pipeline
from embedline.sources import Unit
from embedline.stages import Outcome, Target, read_windows, route_unit
from embedline.testing import FakeTextModel, fresh_plugin_manager

DOCS = {
    "a.md": "Cats purr and sleep all day.\n\nA cat chases mice in the garden.",
    "b.md": "Rockets fly to orbit.\n\nThe moon orbits the earth.",
    "c.md": "Boil the pasta in salted water.",
    "copy.md": "Boil the pasta in salted water.",  # identical content: one row
    "bad.md": "this one has a poison word",
}


class SerialExecutor:
    """An executor plugin as a third party would write one: every stage on the calling thread,
    each window prepared, embedded and written before the next is read."""

    name = "serial"
    plugin_info = PluginInfo(kind="executor", options={"label": Option(str, "serial", "a key of its own")})

    def __init__(self):
        self.windows = 0
        self.closed = 0
        self.specs = []

    @hookimpl
    def executor(self, spec):
        self.specs.append(spec)
        outer = self

        class Serial(Executor):
            def run(self, plan):
                for window in plan.windows():
                    outer.windows += 1
                    prepared = plan.prepare(window)
                    plan.record(prepared.outcome)
                    for rows, outcome in plan.embed(prepared):
                        plan.record(outcome)
                        plan.write(rows)

            def close(self):
                outer.closed += 1

        return Serial()


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    return folder


def config(tmp_path, corpus, **extra):
    return {
        "source": {"path": str(corpus), "chunk": {"by": "paragraph", "max_tokens": 8}},
        "model": {"plugin": "fake", "batch_size": 2},
        "store": {"plugin": "memory", "collection": "docs"},
        **extra,
    }


def rows(pipeline):
    store = pipeline.store
    ids = sorted(row_id for row_id, _ in store.scan("docs"))
    hits = pipeline.search("Cats purr and sleep all day.", k=len(ids))
    return ids, {h.id: h.score for h in hits}


def test_hook_executor_a_plugin_drives_the_stages_with_the_same_result_as_local(tmp_path, corpus):
    serial = SerialExecutor()
    results = {}
    for name in ("local", "serial"):
        pm = fresh_plugin_manager(FakeTextModel(fail_on=["poison"]), serial)
        extra = {"executor": {"plugin": name}} if name == "serial" else {}
        with Pipeline.from_dict(config(tmp_path / name, corpus, **extra), base_dir=tmp_path, pm=pm) as p:
            summary = p.run()
            results[name] = (summary, rows(p))
    local, other = results["local"], results["serial"]
    assert serial.windows >= 1 and serial.closed == 1 and serial.specs[0].option("label") == "serial"
    for summary, _ in (local, other):
        assert (summary.units, summary.items, summary.embedded, summary.skipped) == (5, 7, 5, 1)
        assert [(e.uri, e.stage) for e in summary.failed] == [("docs/bad.md", "embed")]
    assert local[1][0] == other[1][0] and len(local[1][0]) == 5
    assert local[1][1] == pytest.approx(other[1][1], abs=1e-6)


def test_no_executor_section_means_the_builtin_local_executor(tmp_path, corpus, pm):
    with Pipeline.from_dict(config(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        assert p.config.executor.plugin == "local"
        assert type(p.executor).__name__ == "LocalExecutor"
    listed = {row["name"]: row for row in fresh_plugin_manager().describe()}
    assert listed["local"]["kind"] == "executor" and "executor" in listed["local"]["hooks"]


def test_local_executor_options_are_checked(tmp_path, corpus, pm):
    good = config(tmp_path, corpus, executor={"plugin": "local", "workers": 1, "write_queue": 1})
    with Pipeline.from_dict(good, base_dir=tmp_path, pm=pm) as p:
        assert p.run().embedded == 6
    with pytest.raises(ConfigError, match=r"executor\.wrokers: unknown key; did you mean 'workers'"):
        Pipeline.from_dict(config(tmp_path, corpus, executor={"wrokers": 2}), base_dir=tmp_path, pm=pm)
    with pytest.raises(ConfigError, match=r"executor\.workers: expected a positive integer, got 0"):
        Pipeline.from_dict(config(tmp_path, corpus, executor={"workers": 0}), base_dir=tmp_path, pm=pm)


def test_an_executor_section_must_name_an_executor_plugin(tmp_path, corpus, pm):
    with pytest.raises(ConfigError, match="plugin 'fake' is a model plugin, expected an executor plugin"):
        Pipeline.from_dict(config(tmp_path, corpus, executor={"plugin": "fake"}), base_dir=tmp_path, pm=pm)
    with pytest.raises(ConfigError, match="plugin 'nope' not found"):
        Pipeline.from_dict(config(tmp_path, corpus, executor={"plugin": "nope"}), base_dir=tmp_path, pm=pm)


def test_on_error_fail_stops_a_plugin_executor_at_the_first_failure(tmp_path, corpus):
    pm = fresh_plugin_manager(FakeTextModel(fail_on=["poison"]), SerialExecutor())
    data = config(tmp_path, corpus, executor={"plugin": "serial"}, pipeline={"on_error": "fail"})
    with Pipeline.from_dict(data, base_dir=tmp_path, pm=pm) as p, pytest.raises(ItemError, match="bad.md: embed"):
        p.run()


# -- the stages on their own ------------------------------------------------------------------------


def text_unit(uri, *texts, error=None):
    items = tuple(Item(id=f"{t}:{i}", uri=uri, modality="text", chunk=i, text=t) for i, t in enumerate(texts))
    return Unit(uri, items=items, error=error)


def test_route_unit_returns_what_it_did_and_deduplicates_within_a_run():
    targets = [Target(index=0, collection="c", identity="m", batch_size=2)]
    ledger = RunLedger(1)
    routed, outcome = route_unit(text_unit("a", "x", "y"), targets, {"text": 0}, ledger)
    assert [item.id for _, item in routed] == ["x:0", "y:1"]
    assert (outcome.units, outcome.items, outcome.skipped, outcome.failures) == (1, 2, 0, [])
    again, outcome = route_unit(text_unit("b", "x"), targets, {"text": 0}, ledger)
    assert again == [] and (outcome.items, outcome.skipped) == (1, 1)
    image = Unit("p.png", items=(Item(id="i:0", uri="p.png", modality="image", path="p.png"),))
    nothing, outcome = route_unit(image, targets, {"text": 0}, ledger)
    assert nothing == [] and outcome.unrouted == {"image": 1}
    broken, outcome = route_unit(Unit("z", error=ItemError("z", "read", "empty file")), targets, {"text": 0}, ledger)
    assert broken == [] and [e.reason for e in outcome.failures] == ["empty file"] and "z" in ledger.failed_uris
    assert sorted(ledger.stale(0, [("x:0", "a"), ("old:0", "a"), ("q:0", "gone"), ("r:0", "z")], prune=True)) == [
        "old:0",
        "q:0",
    ]


def test_read_windows_fills_windows_of_the_target_size_and_flushes_the_rest():
    targets = [Target(index=0, collection="c", identity="m", batch_size=1)]
    texts = [f"t{i}" for i in range(3000)]
    units = iter([text_unit(f"u{i}", t) for i, t in enumerate(texts)])
    windows, total = [], Outcome()
    for full, outcome in read_windows(units, targets, {"text": 0}, RunLedger(1)):
        windows += full
        total.units += outcome.units
    sizes = [len(w.items) for w in windows]
    assert total.units == 3000 and sum(sizes) == 3000
    assert sizes[0] == targets[0].window("text") and all(s <= sizes[0] for s in sizes)


def test_a_run_plan_records_outcomes_on_the_driver_only(tmp_path, corpus, pm):
    """A plan's stages never touch the summary: an executor that drops outcomes loses counts,
    not rows — proof that the numbers come only through `record`."""

    class Forgetful(Executor):
        def run(self, plan):
            for window in plan.windows():
                for rows_, _ in plan.embed(plan.prepare(window)):
                    plan.write(rows_)

    class Plugin:
        name = "forgetful"
        plugin_info = PluginInfo(kind="executor")

        @hookimpl
        def executor(self, spec):
            return Forgetful()

    pm.register(Plugin(), name="forgetful")
    with Pipeline.from_dict(config(tmp_path, corpus, executor={"plugin": "forgetful"}), base_dir=tmp_path, pm=pm) as p:
        summary = p.run()
        assert p.store.count("docs") == 6
    assert summary.units == 5 and summary.embedded == 0  # reading records itself; the rest was dropped
