"""The plugin manager: discovery by entry point, loading by name, failures reported by name."""

import sys

import pytest

from embedline import hookimpl
from embedline.errors import PluginError, PluginLoadError, PluginNotFoundError
from embedline.plugins import get_plugin_manager
from embedline.testing import FakeTextModel, fresh_plugin_manager, write_plugin_distribution

GOOD = """
from embedline import hookimpl
from embedline.contracts import PluginInfo

plugin_info = PluginInfo(kind="model", modalities=("text",), description="test plugin")
LOADED = True

@hookimpl
def load_model(spec):
    return None
"""

BROKEN = """
import a_module_that_does_not_exist_anywhere
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    write_plugin_distribution(root, "goodplug", GOOD)
    write_plugin_distribution(root, "brokenplug", BROKEN)
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in ("embedline_goodplug", "embedline_brokenplug"):
        sys.modules.pop(name, None)


def test_entry_points_are_found_but_not_imported(site):
    pm = fresh_plugin_manager()
    assert {"goodplug", "brokenplug"} <= set(pm.available())
    assert "embedline_goodplug" not in sys.modules
    plugin = pm.load("goodplug")
    assert plugin.LOADED and pm.get_plugin("goodplug") is plugin
    assert pm.version("goodplug") == "0.0.1"


def test_missing_plugin_lists_installed_ones(site):
    pm = fresh_plugin_manager(FakeTextModel())
    with pytest.raises(PluginNotFoundError) as err:
        pm.load("godplug")
    message = str(err.value)
    assert "plugin 'godplug' not found: it is either not installed or misspelled" in message
    assert "goodplug" in message and "fake" in message


def test_import_failure_is_reported_by_name_with_its_cause(site):
    pm = fresh_plugin_manager()
    with pytest.raises(PluginLoadError) as err:
        pm.load("brokenplug")
    message = str(err.value)
    assert message.startswith("Error importing plugin 'brokenplug' (embedline_brokenplug)")
    assert "ModuleNotFoundError" in message and "a_module_that_does_not_exist_anywhere" in message


def test_a_broken_plugin_does_not_break_listing_the_others(site):
    rows = {row["name"]: row for row in fresh_plugin_manager().describe()}
    assert "ModuleNotFoundError" in rows["brokenplug"]["error"]
    assert rows["goodplug"]["kind"] == "model"
    assert rows["goodplug"]["hooks"] == ["load_model"]


def test_autoload_off_and_allow_list(site, monkeypatch):
    monkeypatch.setenv("EMBEDLINE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("EMBEDLINE_PLUGINS", raising=False)
    pm = get_plugin_manager()
    assert "goodplug" not in pm.available()
    with pytest.raises(PluginNotFoundError, match="autoload is off: add it to EMBEDLINE_PLUGINS"):
        pm.load("goodplug")
    monkeypatch.setenv("EMBEDLINE_PLUGINS", "goodplug")
    assert get_plugin_manager().load("goodplug").LOADED


def test_blocked_plugins(site, monkeypatch):
    monkeypatch.setenv("EMBEDLINE_BLOCK_PLUGINS", "goodplug, other")
    pm = get_plugin_manager()
    assert "goodplug" not in pm.available()
    with pytest.raises(PluginNotFoundError, match="blocked by EMBEDLINE_BLOCK_PLUGINS"):
        pm.load("goodplug")


class Recorder:
    """A plugin that wraps every call to ``embed`` (it is named in no pipeline section)."""

    name = "recorder"

    def __init__(self):
        self.seen = []

    @hookimpl(wrapper=True)
    def embed(self, model, inputs, mode):
        result = yield
        self.seen.append((model.plugin, len(inputs)))
        return result


def test_call_reaches_only_the_named_plugin_and_wrappers_still_run():
    from embedline.config import ModelSpec

    first, second, recorder = FakeTextModel("first"), FakeTextModel("second"), Recorder()
    pm = fresh_plugin_manager(first, second, recorder, autoload=False)
    model = pm.call("load_model", "second", spec=ModelSpec(plugin="second", options={"dim": 8}))
    model.plugin = "second"
    assert (first.loads, second.loads) == (0, 1)
    vectors = pm.call("embed", "second", model=model, inputs=["a", "b"], mode="document")
    assert vectors.shape == (2, 8)
    assert (first.embedded, second.embedded) == (0, 2)
    assert recorder.seen == [("second", 2)]


def test_a_named_plugin_that_does_not_answer_is_an_error(site):
    from embedline.config import ModelSpec

    pm = fresh_plugin_manager()
    with pytest.raises(PluginError, match="plugin 'goodplug': its 'load_model' hook returned None"):
        pm.call("load_model", "goodplug", spec=ModelSpec(plugin="goodplug"))


def test_plugin_without_plugin_info(tmp_path, monkeypatch):
    write_plugin_distribution(tmp_path, "noinfo", "X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginLoadError, match="does not declare a `plugin_info"):
        fresh_plugin_manager().info("noinfo")
    sys.modules.pop("embedline_noinfo", None)
