"""Model loading safety: a model folder's own code never runs unless the pipeline turns on
trust_remote_code for that model."""

import json
import shutil


def with_remote_code(tiny_dir, tmp_path):
    """A copy of the tiny model whose config points at code shipped in the folder; the code leaves a
    marker file when it is imported."""
    folder = tmp_path / "remote"
    shutil.copytree(tiny_dir, folder)
    marker = tmp_path / "remote-code-ran"
    (folder / "modeling_custom.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig, BertModel\n"
        "class CustomConfig(BertConfig):\n    pass\n"
        "class CustomModel(BertModel):\n    config_class = CustomConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "modeling_custom.CustomConfig", "AutoModel": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


def test_remote_code_does_not_run_by_default(load, tiny_dir, tmp_path):
    folder, marker = with_remote_code(tiny_dir, tmp_path)
    model = load(str(folder))
    assert model.dim == 32
    assert not marker.exists()


def test_remote_code_runs_only_when_the_pipeline_allows_it(load, tiny_dir, tmp_path):
    folder, marker = with_remote_code(tiny_dir, tmp_path)
    try:
        load(str(folder), trust_remote_code=True)
    except Exception:
        pass  # whether the custom class then loads is the model's business; that it ran is ours
    assert marker.exists()
