"""Pipeline files: structure, types, unknown keys, environment values, plugin options."""

import textwrap

import attrs
import pytest

from embedline.config import Secret, bind_plugins, load_config, parse_config, redacted
from embedline.errors import ConfigError
from embedline.testing import FakeTextModel, fresh_plugin_manager

MINIMAL = {"model": {"plugin": "fake"}, "store": {"plugin": "memory", "path": "x.npz"}}


def write(tmp_path, text, name="embed.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_minimal_dict_gets_defaults(tmp_path):
    config = parse_config(MINIMAL, base_dir=tmp_path)
    assert config.models[0].plugin == "fake"
    assert config.models[0].batch_size == 32
    assert config.store.collection == "embedline"
    assert config.on_error == "skip"
    assert config.source is None


def test_bad_toml_names_file_line_and_column(tmp_path):
    path = write(tmp_path, '[model]\nplugin = "fake"\nname = \n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "line 3" in message and "column" in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="pipeline file not found"):
        load_config(tmp_path / "nope.toml")


def test_unknown_key_suggests_the_close_one(tmp_path):
    path = write(tmp_path, '[model]\nplugin = "fake"\nbatch_sise = 8\n[store]\nplugin = "vault"\n')
    pm = fresh_plugin_manager(FakeTextModel(), SecretStore(), autoload=False)
    with pytest.raises(ConfigError) as err:
        bind_plugins(load_config(path), pm)
    assert str(err.value).startswith(f"{path}: model.batch_sise: unknown key")
    assert "did you mean 'batch_size'" in str(err.value)
    assert err.value.key == "model.batch_sise"


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'source'"):
        parse_config({**MINIMAL, "sourse": {"path": "."}})


def test_wrong_type_names_key_and_expectation():
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"plugin": "fake", "batch_size": "64"}})
    assert "model.batch_size" in str(err.value)
    assert "expected an integer, got a string ('64')" in str(err.value)


def test_bool_is_not_an_integer():
    with pytest.raises(ConfigError, match="model.batch_size: expected an integer"):
        parse_config({"model": {"plugin": "fake", "batch_size": True}})


def test_choices_are_checked():
    with pytest.raises(ConfigError, match="pipeline.on_error: expected one of 'skip', 'fail'"):
        parse_config({**MINIMAL, "pipeline": {"on_error": "ignore"}})


def test_model_section_is_required():
    with pytest.raises(ConfigError, match="needs a \\[model\\]"):
        parse_config({"store": {}})


def test_model_and_models_are_exclusive():
    with pytest.raises(ConfigError, match="either \\[model\\] or \\[\\[models\\]\\]"):
        parse_config({"model": {"plugin": "fake"}, "models": [{"plugin": "fake"}]})


def test_two_models_need_their_own_collections():
    with pytest.raises(ConfigError, match="same collection"):
        parse_config({"models": [{"plugin": "fake"}, {"plugin": "fake"}]})
    config = parse_config({"models": [{"plugin": "fake"}, {"plugin": "fake", "collection": "other"}]})
    assert [config.collection_for(m) for m in config.models] == ["embedline", "other"]


def test_unknown_modality():
    with pytest.raises(ConfigError, match="models\\[0\\].modalities: unknown modality 'smell'"):
        parse_config({"models": [{"plugin": "fake", "modalities": ["smell"]}]})


def test_chunk_settings_are_checked():
    base = {**MINIMAL, "source": {"path": ".", "chunk": {"by": "tokens", "max_tokens": 10, "overlap": 10}}}
    with pytest.raises(ConfigError, match="source.chunk.overlap"):
        parse_config(base)
    base["source"]["chunk"] = {"by": "sentences"}
    with pytest.raises(ConfigError, match="source.chunk.by: expected one of"):
        parse_config(base)


def test_source_path_is_relative_to_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write(tmp_path / "sub", '[source]\npath = "docs"\n[model]\nplugin = "fake"\n')
    assert load_config(path).source.path == (tmp_path / "sub" / "docs").resolve()


def test_environment_values_and_missing_variable(monkeypatch):
    monkeypatch.setenv("EMBEDLINE_TEST_COLLECTION", "from_env")
    config = parse_config({**MINIMAL, "store": {"collection": "${EMBEDLINE_TEST_COLLECTION}"}})
    assert config.store.collection == "from_env"
    monkeypatch.delenv("EMBEDLINE_TEST_COLLECTION")
    with pytest.raises(ConfigError, match="store.collection: environment variable EMBEDLINE_TEST_COLLECTION is not set"):
        parse_config({**MINIMAL, "store": {"collection": "${EMBEDLINE_TEST_COLLECTION}"}})


class SecretStore:
    """A store plugin declaring a secret option, to test secrets without a database."""

    name = "vault"

    def __init__(self):
        from embedline.contracts import Option, PluginInfo

        def validate(options):
            if options["replicas"] > 3:
                raise ValueError("replicas: at most 3 on this store")

        self.plugin_info = PluginInfo(
            kind="store",
            options={"token": Option(str, None, secret=True), "replicas": Option(int, 1)},
            validate=validate,
        )


def test_secret_options_never_print(monkeypatch):
    monkeypatch.setenv("EMBEDLINE_TEST_TOKEN", "s3cr3t-value")
    pm = fresh_plugin_manager(FakeTextModel(), SecretStore(), autoload=False)
    config = bind_plugins(
        parse_config({"model": {"plugin": "fake"}, "store": {"plugin": "vault", "token": "${EMBEDLINE_TEST_TOKEN}"}}), pm
    )
    token = config.store.options["token"]
    assert isinstance(token, Secret) and token.reveal() == "s3cr3t-value"
    assert config.store.option("token") == "s3cr3t-value"
    shown = repr(config) + str(config) + str(redacted(config))
    assert "s3cr3t-value" not in shown
    assert "***" in str(redacted(config))


def test_plugin_options_are_type_checked_and_validated():
    pm = fresh_plugin_manager(FakeTextModel(), SecretStore(), autoload=False)
    with pytest.raises(ConfigError, match="model.dim: expected int, got a string"):
        bind_plugins(parse_config({"model": {"plugin": "fake", "dim": "8"}, "store": {"plugin": "vault"}}), pm)
    with pytest.raises(ConfigError, match="model.dimm: unknown key; did you mean 'dim'"):
        bind_plugins(parse_config({"model": {"plugin": "fake", "dimm": 8}, "store": {"plugin": "vault"}}), pm)
    with pytest.raises(ConfigError, match="store.replicas: at most 3"):
        bind_plugins(parse_config({"model": {"plugin": "fake"}, "store": {"plugin": "vault", "replicas": 5}}), pm)
    config = bind_plugins(parse_config({"model": {"plugin": "fake"}, "store": {"plugin": "vault"}}), pm)
    assert config.models[0].options == {"dim": 16}
    assert config.models[0].modalities == ("text",)


def test_model_modality_must_be_supported_by_the_plugin():
    pm = fresh_plugin_manager(FakeTextModel(), SecretStore(), autoload=False)
    config = parse_config({"model": {"plugin": "fake", "modalities": ["image"]}, "store": {"plugin": "vault"}})
    with pytest.raises(ConfigError, match="model.modalities: plugin 'fake' cannot embed image; it supports text"):
        bind_plugins(config, pm)


def test_plugin_kind_is_checked():
    pm = fresh_plugin_manager(FakeTextModel(), SecretStore(), autoload=False)
    with pytest.raises(ConfigError, match="store.plugin: plugin 'fake' is a model plugin"):
        bind_plugins(parse_config({"model": {"plugin": "fake"}, "store": {"plugin": "fake"}}), pm)


def test_unknown_plugin_is_a_config_error_listing_installed():
    pm = fresh_plugin_manager(FakeTextModel(), SecretStore(), autoload=False)
    with pytest.raises(ConfigError) as err:
        bind_plugins(parse_config({"model": {"plugin": "minilmm"}, "store": {"plugin": "vault"}}), pm)
    message = str(err.value)
    assert "model.plugin" in message and "not installed or misspelled" in message
    assert "fake" in message and "vault" in message


def test_validators_see_the_common_keys_of_their_section():
    seen = {}

    def remember(kind):
        def validate(options):
            seen[kind] = dict(options)
            if options.get("collection") == "my-docs":
                raise ValueError("collection: no dashes on this store")

        return validate

    model, store = FakeTextModel(), SecretStore()
    model.plugin_info = attrs.evolve(model.plugin_info, validate=remember("model"))
    store.plugin_info = attrs.evolve(store.plugin_info, validate=remember("store"))
    pm = fresh_plugin_manager(model, store, autoload=False)
    config = {"model": {"plugin": "fake", "name": "weights"}, "store": {"plugin": "vault", "collection": "my-docs"}}
    with pytest.raises(ConfigError, match="store.collection: no dashes on this store"):
        bind_plugins(parse_config(config), pm)
    assert seen["model"]["name"] == "weights" and seen["model"]["dim"] == 16
    assert seen["store"]["collection"] == "my-docs" and seen["store"]["replicas"] == 1
