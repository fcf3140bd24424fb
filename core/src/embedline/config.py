"""Pipeline files: TOML (or a dict) into validated attrs specs.

Two steps.  :func:`parse_config` checks the structure the core owns (sections, common keys, types)
and keeps each plugin section's other keys aside; :func:`bind_plugins` then checks those keys
against the plugin's declared :class:`~embedline.contracts.PluginInfo` options.  Every error is a
:class:`~embedline.errors.ConfigError` naming the file, the key path and what was expected.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from embedline.contracts import MODALITIES, ExecutorSpec, ModelSpec, Option, Secret, StoreSpec, reveal
from embedline.errors import ConfigError, ModelSourceError, PluginLoadError, PluginNotFoundError
from embedline.modelsource import check_model_source
from embedline.uris import redact_uri

if TYPE_CHECKING:  # pragma: no cover
    from embedline.plugins import PluginManager

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CONFIG = "embed.toml"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# ---------------------------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------------------------


@attrs.frozen
class ChunkSpec:
    by: str = "paragraph"  # "paragraph", "tokens", "none" or "structure"
    max_tokens: int | None = 256  # None: the model's own limit ("model"; by = "structure" only)
    overlap: int = 0
    heading: bool = True  # by = "structure": each chunk's text starts with its heading path


@attrs.frozen
class SourceSpec:
    path: Path
    format: str = "auto"  # "auto", "files", "jsonl", "csv"
    include: tuple[str, ...] = ("**/*",)
    exclude: tuple[str, ...] = ()
    text_field: str = "text"
    metadata_fields: tuple[str, ...] | None = None  # None: every other field of a row
    encoding: str = "utf-8"
    chunk: ChunkSpec = ChunkSpec()
    base_dir: Path = Path(".")  # uris are shown relative to it
    reader: str = "documents"  # the plugin that parses markdown (by = "structure"), HTML and PDF


@attrs.frozen
class PipelineConfig:
    origin: str
    base_dir: Path
    store: StoreSpec
    models: tuple[ModelSpec, ...]
    source: SourceSpec | None = None
    executor: ExecutorSpec = ExecutorSpec()
    name: str = "embedline"
    on_error: str = "skip"
    failures: Path | None = None  # the failure report (JSON lines): a pipeline file's is next to it; a dict's: none
    workers: int = 2  # threads that read stored ids and run `preprocess` while the model embeds
    bound: bool = False  # plugin options checked by bind_plugins

    def collection_for(self, model: ModelSpec) -> str:
        return model.collection or self.store.collection


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

_STR, _INT, _BOOL = "a string", "an integer", "true or false"
_STRLIST = "a list of strings"


@attrs.frozen
class _Key:
    expect: str
    default: Any = None
    choices: tuple[Any, ...] | None = None
    required: bool = False


_PIPELINE_KEYS = {
    "name": _Key(_STR, "embedline"),
    "on_error": _Key(_STR, "skip", ("skip", "fail")),
    "failures": _Key(_STR, None),
    "workers": _Key(_INT, 2),
}
_SOURCE_KEYS = {
    "path": _Key(_STR, required=True),
    "format": _Key(_STR, "auto", ("auto", "files", "jsonl", "csv")),
    "include": _Key(_STRLIST, ["**/*"]),
    "exclude": _Key(_STRLIST, []),
    "text_field": _Key(_STR, "text"),
    "metadata_fields": _Key(_STRLIST, None),
    "encoding": _Key(_STR, "utf-8"),
    "chunk": _Key("a table", {}),
    "reader": _Key(_STR, "documents"),
}
_TOKENS = 'an integer or "model"'
_CHUNK_KEYS = {
    "by": _Key(_STR, "paragraph", ("paragraph", "tokens", "none", "structure")),
    "max_tokens": _Key(_TOKENS, None),
    "overlap": _Key(_INT, 0),
    "heading": _Key(_BOOL, True),
}
_MODEL_KEYS = {
    "plugin": _Key(_STR, required=True),
    "name": _Key(_STR, None),
    "revision": _Key(_STR, None),
    "modalities": _Key(_STRLIST, None),
    "batch_size": _Key(_INT, 32),
    "device": _Key(_STR, "auto"),
    "normalize": _Key(_BOOL, True),
    "trust_remote_code": _Key(_BOOL, False),
    "collection": _Key(_STR, None),
}
_STORE_KEYS = {
    "plugin": _Key(_STR, "milvus"),
    "collection": _Key(_STR, "embedline"),
}
_EXECUTOR_KEYS = {
    "plugin": _Key(_STR, "local"),
}
_TOP_KEYS = ("pipeline", "source", "model", "models", "store", "executor")


def _type_ok(expect: str, value: Any) -> bool:
    if expect == _STR:
        return isinstance(value, str)
    if expect == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if expect == _BOOL:
        return isinstance(value, bool)
    if expect == _STRLIST:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if expect == "a table":
        return isinstance(value, dict)
    if expect == _TOKENS:
        return value == "model" or (isinstance(value, int) and not isinstance(value, bool))
    return True


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of: {', '.join(sorted(known))}"


class _Reader:
    """Checks one parsed document, remembering where it came from for messages."""

    def __init__(self, origin: str):
        self.origin = origin

    def error(self, key: str | None, message: str) -> ConfigError:
        return ConfigError(message, source=self.origin, key=key)

    def expand(self, key: str, value: Any, secret: bool = False) -> Any:
        if isinstance(value, list):
            return [self.expand(f"{key}[{i}]", v) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.expand(f"{key}.{k}", v) for k, v in value.items()}
        if not isinstance(value, str) or "${" not in value:
            return value
        names = _ENV_REF.findall(value)
        missing = [n for n in names if n not in os.environ]
        if missing:
            raise self.error(key, f"environment variable {missing[0]} is not set (referenced as ${{{missing[0]}}})")
        expanded = _ENV_REF.sub(lambda m: os.environ[m.group(1)], value)
        return Secret(expanded, names[0]) if secret else expanded

    def section(self, key: str, table: Any, schema: Mapping[str, _Key], extra_ok: bool = False) -> tuple[dict, dict]:
        """Known keys (defaults filled, types checked) and, if ``extra_ok``, the other keys."""
        if not isinstance(table, dict):
            raise self.error(key, f"expected a table, got {type(table).__name__}")
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in table.items():
            spec = schema.get(name)
            if spec is None:
                if extra_ok:
                    extra[name] = value
                    continue
                raise self.error(f"{key}.{name}", "unknown key" + _did_you_mean(name, list(schema)))
            # Secrets are only allowed in plugin options; common keys never hold tokens.
            value = self.expand(f"{key}.{name}", value)
            if not _type_ok(spec.expect, value):
                raise self.error(f"{key}.{name}", f"expected {spec.expect}, got {_show(value)}")
            if spec.choices is not None and value not in spec.choices:
                raise self.error(
                    f"{key}.{name}", f"expected one of {', '.join(map(repr, spec.choices))}, got {value!r}"
                )
            known[name] = value
        for name, spec in schema.items():
            if name not in known:
                if spec.required:
                    # `pluign = "minilm"` is a misspelt `plugin`, not a missing one: name the typo.
                    typo = difflib.get_close_matches(name, list(extra), n=1, cutoff=0.6)
                    if typo:
                        raise self.error(f"{key}.{typo[0]}", f"unknown key; did you mean {name!r}?")
                    raise self.error(f"{key}.{name}", f"missing required key ({spec.expect})")
                known[name] = spec.default
        return known, extra


def _show(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list", dict: "a table"}
    if isinstance(value, (dict, list)):
        return kind[type(value)]
    return f"{kind.get(type(value), type(value).__name__)} ({redact_uri(value)!r})"  # a URI's password as ***


def load_config(path: str | os.PathLike[str] = DEFAULT_CONFIG) -> PipelineConfig:
    """Read and check a pipeline file (structure only; see :func:`bind_plugins`)."""
    path = Path(path)
    origin = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("pipeline file not found", source=origin) from None
    except OSError as exc:
        raise ConfigError(f"cannot read pipeline file: {exc.strerror}", source=origin) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", source=origin) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=origin) from None
    config = parse_config(data, origin=origin, base_dir=path.resolve().parent)
    if config.failures is None:  # a pipeline file writes its failure report next to itself
        stem = path.stem if origin.endswith(".toml") else "embedline"
        config = attrs.evolve(config, failures=config.base_dir / f"{stem}.failures.jsonl")
    return config


def parse_config(data: Mapping[str, Any], *, origin: str = "<dict>", base_dir: str | os.PathLike[str] = ".") -> PipelineConfig:
    """Check a pipeline given as a dict (the parsed TOML)."""
    reader = _Reader(origin)
    base = Path(base_dir).resolve()
    if not isinstance(data, Mapping):
        raise reader.error(None, f"expected a table at top level, got {type(data).__name__}")
    for key in data:
        if key not in _TOP_KEYS:
            raise reader.error(key, "unknown section" + _did_you_mean(key, list(_TOP_KEYS)))

    pipeline, _ = reader.section("pipeline", data.get("pipeline", {}), _PIPELINE_KEYS)
    if pipeline["workers"] < 1:
        raise reader.error("pipeline.workers", f"expected a positive integer, got {pipeline['workers']}")
    pipeline["failures"] = base / pipeline["failures"] if pipeline["failures"] else None  # a file: see load_config

    source = None
    if "source" in data:
        src, _ = reader.section("source", data["source"], _SOURCE_KEYS)
        chunk, _ = reader.section("source.chunk", src["chunk"], _CHUNK_KEYS)
        structure = chunk["by"] == "structure"
        if chunk["max_tokens"] is None:  # the default: the model's limit for structure, else 256 words
            chunk["max_tokens"] = "model" if structure else 256
        if chunk["max_tokens"] == "model":
            if not structure:
                raise reader.error(
                    "source.chunk.max_tokens", 'max_tokens = "model" (the model\'s own limit) needs by = "structure"'
                )
            chunk["max_tokens"] = None
        elif chunk["max_tokens"] < 1:
            raise reader.error("source.chunk.max_tokens", f"expected a positive integer, got {chunk['max_tokens']}")
        if structure and chunk["overlap"]:
            raise reader.error("source.chunk.overlap", 'by = "structure" cuts along the document\'s structure: no overlap')
        if not structure and not 0 <= chunk["overlap"] < chunk["max_tokens"]:
            raise reader.error(
                "source.chunk.overlap", f"expected 0 <= overlap < max_tokens ({chunk['max_tokens']}), got {chunk['overlap']}"
            )
        source = SourceSpec(
            path=(base / src["path"]).resolve() if not Path(src["path"]).is_absolute() else Path(src["path"]),
            format=src["format"],
            include=tuple(src["include"]),
            exclude=tuple(src["exclude"]),
            text_field=src["text_field"],
            metadata_fields=None if src["metadata_fields"] is None else tuple(src["metadata_fields"]),
            encoding=src["encoding"],
            chunk=ChunkSpec(**chunk),
            base_dir=base,
            reader=src["reader"],
        )

    if "model" in data and "models" in data:
        raise reader.error("models", "use either [model] or [[models]], not both")
    if "model" in data:
        tables = [("model", data["model"])]
    elif "models" in data:
        if not isinstance(data["models"], list) or not data["models"]:
            raise reader.error("models", "expected an array of tables ([[models]])")
        tables = [(f"models[{i}]", t) for i, t in enumerate(data["models"])]
    else:
        raise reader.error("model", "missing section: a pipeline needs a [model] (or [[models]]) with a plugin")

    models = []
    for key, table in tables:
        known, extra = reader.section(key, table, _MODEL_KEYS, extra_ok=True)
        if known["batch_size"] < 1:
            raise reader.error(f"{key}.batch_size", f"expected a positive integer, got {known['batch_size']}")
        if known["modalities"] is not None:
            for m in known["modalities"]:
                if m not in MODALITIES:
                    raise reader.error(f"{key}.modalities", f"unknown modality {m!r}; expected some of {', '.join(MODALITIES)}")
            known["modalities"] = tuple(known["modalities"])
        models.append(ModelSpec(options=extra, base_dir=base, key=key, **known))

    store_known, store_extra = reader.section("store", data.get("store", {}), _STORE_KEYS, extra_ok=True)
    store = StoreSpec(options=store_extra, base_dir=base, **store_known)
    executor_known, executor_extra = reader.section("executor", data.get("executor", {}), _EXECUTOR_KEYS, extra_ok=True)
    executor = ExecutorSpec(options=executor_extra, base_dir=base, **executor_known)

    collections = [m.collection or store.collection for m in models]
    if len(set(collections)) != len(collections):
        raise reader.error(
            "models", "two models would write to the same collection: give each [[models]] its own `collection`"
        )
    return PipelineConfig(
        origin=origin, base_dir=base, store=store, models=tuple(models), source=source, executor=executor, **pipeline
    )


# ---------------------------------------------------------------------------------------------
# Binding plugin sections to installed plugins
# ---------------------------------------------------------------------------------------------


def _check_options(reader: _Reader, key: str, raw: Mapping[str, Any], declared: Mapping[str, Option]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in raw.items():
        opt = declared.get(name)
        if opt is None:
            common = _MODEL_KEYS if key.startswith("model") else _EXECUTOR_KEYS if key == "executor" else _STORE_KEYS
            known = list(declared) + list(common)
            raise reader.error(f"{key}.{name}", "unknown key" + _did_you_mean(name, known))
        value = reader.expand(f"{key}.{name}", value, secret=opt.secret)
        check = reveal(value)
        types = opt.type if isinstance(opt.type, tuple) else (opt.type,)
        ok = isinstance(check, types) and not (isinstance(check, bool) and bool not in types)
        if float in types and isinstance(check, int) and not isinstance(check, bool):
            ok = True
        if not ok:
            want = " or ".join(t.__name__ for t in types)
            shown = "a secret" if opt.secret else _show(check)
            raise reader.error(f"{key}.{name}", f"expected {want}, got {shown}")
        if opt.choices is not None and check not in opt.choices:
            raise reader.error(f"{key}.{name}", f"expected one of {', '.join(map(repr, opt.choices))}, got {check!r}")
        out[name] = value
    for name, opt in declared.items():
        out.setdefault(name, opt.default)
    return out


def bind_plugins(config: PipelineConfig, pm: PluginManager) -> PipelineConfig:
    """Check every plugin section against its plugin's declared options and modalities.

    Loads plugin modules (cheap: heavy libraries load inside hooks), never models or stores.
    """
    if config.bound:
        return config
    reader = _Reader(config.origin)

    def info_for(key: str, plugin: str, kind: str, field: str = "plugin"):
        try:
            info = pm.info(plugin)
        except (PluginNotFoundError, PluginLoadError) as exc:
            raise reader.error(f"{key}.{field}", str(exc)) from exc
        if info.kind != kind:
            raise reader.error(
                f"{key}.{field}", f"plugin {plugin!r} is {_a(info.kind)} plugin, expected {_a(kind)} plugin"
            )
        return info

    models = []
    for spec in config.models:
        info = info_for(spec.key, spec.plugin, "model")
        options = _check_options(reader, spec.key, spec.options, info.options)
        common = {k: getattr(spec, k) for k in _MODEL_KEYS}
        _run_validator(reader, spec.key, info.validate, {**common, **options})
        modalities = spec.modalities or info.modalities
        unsupported = [m for m in modalities if m not in info.modalities]
        if unsupported:
            raise reader.error(
                f"{spec.key}.modalities",
                f"plugin {spec.plugin!r} cannot embed {', '.join(unsupported)}; it supports {', '.join(info.modalities)}",
            )
        models.append(attrs.evolve(spec, options=options, modalities=tuple(modalities)))
    _check_routing(reader, config.models, models)
    info = info_for("store", config.store.plugin, "store")
    store_options = _check_options(reader, "store", config.store.options, info.options)
    common = {k: getattr(config.store, k) for k in _STORE_KEYS}
    _run_validator(reader, "store", info.validate, {**common, **store_options})
    store = attrs.evolve(config.store, options=store_options)
    if config.source is not None and (config.source.reader != "documents" or "documents" in pm.available()):
        info_for("source", config.source.reader, "reader", "reader")  # the default may be absent: markdown is text
    info = info_for("executor", config.executor.plugin, "executor")
    executor_options = _check_options(reader, "executor", config.executor.options, info.options)
    _run_validator(reader, "executor", info.validate, {"plugin": config.executor.plugin, **executor_options})
    executor = attrs.evolve(config.executor, options=executor_options)
    return attrs.evolve(config, models=tuple(models), store=store, executor=executor, bound=True)


def _check_routing(reader: _Reader, written: tuple[ModelSpec, ...], bound: list[ModelSpec]) -> None:
    """Each item goes to the first model that takes its modality: refuse a section that asks for a
    modality an earlier section already takes (``modalities`` written), or that would get nothing."""
    taken: dict[str, ModelSpec] = {}
    for raw, spec in zip(written, bound):
        clash = [m for m in spec.modalities or () if m in taken]
        if clash and (raw.modalities is not None or len(clash) == len(spec.modalities or ())):
            first = taken[clash[0]]
            key = f"{spec.key}.modalities" if raw.modalities is not None else spec.key
            verb = "goes" if len(clash) == 1 else "go"
            raise reader.error(
                key,
                f"{', '.join(clash)} already {verb} to {first.key} (plugin {first.plugin!r}): an item goes to the "
                f"first model that takes its modality, so {spec.key} (plugin {spec.plugin!r}) would never get "
                f"{' or '.join(clash)} items. Give each [[models]] other `modalities`, or remove one",
            )
        for modality in spec.modalities or ():
            taken.setdefault(modality, spec)


def _run_validator(reader: _Reader, key: str, validate: Any, options: Mapping[str, Any]) -> None:
    if validate is None:
        return
    try:
        validate({k: reveal(v) for k, v in options.items()})
    except ValueError as exc:
        sub, _, message = str(exc).partition(": ")
        if message and sub in options:
            raise reader.error(f"{key}.{sub}", message) from None
        raise reader.error(key, str(exc)) from None


def redacted(config: PipelineConfig) -> dict[str, Any]:
    """The config as plain data for display: secrets shown as ``***``, credentials inside URIs too
    (:func:`embedline.uris.redact_uri`), and each model's effective collection."""

    def clean(value: Any) -> Any:
        if isinstance(value, Secret):
            return "***"
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, str):
            return redact_uri(value)
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    data = attrs.asdict(config, recurse=True)
    for model, spec in zip(data["models"], config.models):
        model["collection"] = config.collection_for(spec)
    return clean(data)


# ---------------------------------------------------------------------------------------------
# What `embedline check` verifies beyond the file: the source and the models' weights are there
# ---------------------------------------------------------------------------------------------


def check_pipeline(config: PipelineConfig, pm: PluginManager) -> PipelineConfig:
    """:func:`bind_plugins`, then what a run would find missing: the source (:func:`check_source`)
    and each model's weights (:func:`check_model_sources`), without loading any model."""
    config = bind_plugins(config, pm)
    check_source(config)
    for index in range(len(config.models)):
        check_model_sources(config, pm, index)
    return config


def check_source(config: PipelineConfig) -> None:
    """Raise :class:`ConfigError` (``source.path``, ``source.encoding``) unless the source exists
    and its encoding is a text encoding.  ``run`` calls it before it touches anything."""
    spec = config.source
    if spec is None:
        return
    reader = _Reader(config.origin)
    if not spec.path.exists():
        raise reader.error("source.path", f"{spec.path} does not exist")
    try:
        text_encoding = getattr(codecs.lookup(spec.encoding), "_is_text_encoding", True)
    except LookupError:
        text_encoding = None
    if not text_encoding:
        what = "unknown encoding" if text_encoding is None else "not a text encoding:"
        advice = "use a Python codec name such as 'utf-8', 'latin-1' or 'cp1252'"
        raise reader.error("source.encoding", f"{what} {spec.encoding!r}; {advice}")


def check_model_sources(config: PipelineConfig, pm: PluginManager, index: int) -> None:
    """Raise :class:`ModelSourceError` naming the file and key (``model.name``) when a weights source
    the model's plugin declares (``PluginInfo.model_sources``, its default name included) cannot
    be found.  Reads no weights; no network when the hub is offline."""
    spec = config.models[index]
    find = pm.info(spec.plugin).model_sources
    if find is None:
        return
    for key, name in find(spec).items():
        try:
            check_model_source(name, revision=spec.revision if key == "name" else None, base_dir=spec.base_dir)
        except ModelSourceError as exc:
            raise ModelSourceError(exc.reason, source=config.origin, key=f"{spec.key}.{key}") from None


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"
