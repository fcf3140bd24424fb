"""The plugin manager: finds plugins through entry points and loads them by the names pipelines use.

Nothing is imported until a pipeline (or ``embedline plugins``) asks for a plugin by name, so a
plugin that fails to import only breaks the commands that use it.

Environment:
  ``EMBEDLINE_DISABLE_PLUGIN_AUTOLOAD=1``  ignore entry points, except those listed in
                                          ``EMBEDLINE_PLUGINS`` (comma separated)
  ``EMBEDLINE_BLOCK_PLUGINS=a,b``         never load these plugins
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import os
from collections.abc import Iterable
from typing import Any

import pluggy

from embedline import hookspecs
from embedline.contracts import PluginInfo
from embedline.errors import PluginError, PluginLoadError, PluginNotFoundError

ENTRY_POINT_GROUP = "embedline"
#: Plugins that ship with the core, registered before entry points (so an installed plugin of the
#: same name cannot shadow them).  Each module is cheap to import and has a ``name``.
BUILTIN_PLUGINS = ("embedline.local", "embedline.memory")
ENV_DISABLE_AUTOLOAD = "EMBEDLINE_DISABLE_PLUGIN_AUTOLOAD"
ENV_PLUGINS = "EMBEDLINE_PLUGINS"
ENV_BLOCK = "EMBEDLINE_BLOCK_PLUGINS"


def _names_from_env(var: str) -> set[str]:
    return {n.strip() for n in os.environ.get(var, "").split(",") if n.strip()}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that knows the ``embedline`` entry points and loads them on demand."""

    def __init__(self, *, autoload: bool = True, blocked: Iterable[str] = (), allowed: Iterable[str] = ()):
        super().__init__("embedline")
        self.add_hookspecs(hookspecs)
        self.autoload = autoload
        self.blocked = set(blocked)
        self.allowed = set(allowed)  # entry points loadable even when autoload is off
        self._callers: dict[tuple[str, str], Any] = {}
        self._verified: set[str] = set()  # plugins whose hook implementations were checked
        for module_name in BUILTIN_PLUGINS:
            module = importlib.import_module(module_name)
            if module.name not in self.blocked:
                self.register(module, name=module.name)

    # -- discovery ---------------------------------------------------------------------------

    def entry_points(self) -> dict[str, md.EntryPoint]:
        """Installed plugins by name (not imported), honouring autoload and block lists."""
        found = {}
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self.blocked:
                continue
            if not self.autoload and ep.name not in self.allowed:
                continue
            found.setdefault(ep.name, ep)
        return found

    def available(self) -> list[str]:
        """Names a pipeline may use: registered plugins and loadable entry points."""
        registered = {name for name, plugin in self.list_name_plugin() if plugin is not None}
        return sorted((registered | set(self.entry_points())) - self.blocked)

    # -- loading -----------------------------------------------------------------------------

    def load(self, name: str) -> object:
        """Return the plugin registered as ``name``, importing its entry point on first use."""
        if name in self.blocked:
            raise PluginNotFoundError(
                f"plugin {name!r} is blocked by {ENV_BLOCK}; remove it from that variable to use it"
            )
        plugin = self.get_plugin(name)
        if plugin is not None:
            self._verify(name, plugin)
            return plugin
        ep = self.entry_points().get(name)
        if ep is None:
            installed = ", ".join(self.available()) or "none"
            hint = ""
            if not self.autoload and name not in self.allowed:
                hint = f" (plugin autoload is off: add it to {ENV_PLUGINS})"
            raise PluginNotFoundError(
                f"plugin {name!r} not found: it is either not installed or misspelled{hint}. "
                f"Installed plugins: {installed}"
            )
        try:
            plugin = ep.load()
        except Exception as exc:  # report any import failure by plugin name
            raise PluginLoadError(
                f"Error importing plugin {name!r} ({ep.value}): {type(exc).__name__}: {exc}"
            ) from exc
        try:
            self.register(plugin, name=name)  # pluggy checks each known hook's arguments
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(f"plugin {name!r} ({ep.value}): {exc}") from None
        try:
            self._verify(name, plugin)
        except PluginLoadError:
            self.unregister(plugin)  # not left half-loaded: every later use reports it again
            raise
        return plugin

    def _verify(self, name: str, plugin: object) -> None:
        """Every hook implementation of ``plugin`` must be one of embedline's hooks: a misspelt
        ``preproces`` would otherwise load fine and fail only when the hook is first needed."""
        if name in self._verified:
            return
        known = sorted(hookspecs.HOOKS)
        for caller in self.get_hookcallers(plugin) or []:
            if caller.has_spec() or all(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin):
                continue
            close = difflib.get_close_matches(caller.name, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"the hooks are: {', '.join(known)}"
            raise PluginLoadError(f"plugin {name!r} implements {caller.name!r}, which is not an embedline hook; {hint}")
        self._verified.add(name)

    def info(self, name: str) -> PluginInfo:
        plugin = self.load(name)
        info = getattr(plugin, "plugin_info", None)
        if not isinstance(info, PluginInfo):
            raise PluginLoadError(
                f"plugin {name!r} does not declare a `plugin_info = embedline.PluginInfo(...)`"
            )
        return info

    def version(self, name: str) -> str:
        ep = self.entry_points().get(name)
        dist = getattr(ep, "dist", None) if ep is not None else None
        if dist is not None:
            return dist.version
        plugin = self.get_plugin(name)
        return str(getattr(plugin, "__version__", "0"))

    # -- calling -----------------------------------------------------------------------------

    def call(self, hook: str, plugin_name: str, **kwargs: Any) -> Any:
        """Call ``hook`` on the plugin ``plugin_name`` only (wrappers from any plugin still run)."""
        self.load(plugin_name)
        key = (hook, plugin_name)
        caller = self._callers.get(key)
        if caller is None:
            caller = self._subset_caller(hook, plugin_name)
            self._callers[key] = caller
        result = caller(**kwargs)
        if result is None:
            target = self.get_plugin(plugin_name)
            if any(impl.plugin is target for impl in getattr(self.hook, hook).get_hookimpls()):
                raise PluginError(f"plugin {plugin_name!r}: its {hook!r} hook returned None")
            raise PluginLoadError(f"plugin {plugin_name!r} does not implement the {hook!r} hook")
        return result

    def _subset_caller(self, hook: str, plugin_name: str) -> Any:
        target = self.get_plugin(plugin_name)
        others = []
        for impl in getattr(self.hook, hook).get_hookimpls():
            if impl.plugin is target or impl.wrapper or impl.hookwrapper:
                continue
            others.append(impl.plugin)
        return self.subset_hook_caller(hook, remove_plugins=others)

    def register(self, plugin: object, name: str | None = None) -> str | None:
        self._callers.clear()
        return super().register(plugin, name)

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        self._callers.clear()
        self._verified.clear()
        return super().unregister(plugin, name)

    # -- listing -----------------------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """One dict per available plugin: name, version, kind, modalities, hooks, or its error."""
        rows = []
        for name in self.available():
            row: dict[str, Any] = {"name": name, "version": self.version(name)}
            try:
                plugin = self.load(name)
                info = self.info(name)
            except (PluginLoadError, PluginNotFoundError) as exc:
                row["error"] = str(exc)
                rows.append(row)
                continue
            row["kind"] = info.kind
            row["modalities"] = list(info.modalities)
            row["hooks"] = [h.name for h in self.get_hookcallers(plugin) or []]
            row["options"] = sorted(info.options)
            row["description"] = info.description
            rows.append(row)
        return rows


def get_plugin_manager(
    *,
    autoload: bool | None = None,
    blocked: Iterable[str] | None = None,
    plugins: Iterable[object] = (),
) -> PluginManager:
    """A fresh plugin manager.  One per pipeline; nothing is imported until a plugin is used.

    ``autoload``/``blocked`` default to the environment variables above; ``plugins`` are extra
    in-process plugin objects, registered first under their ``name`` attribute (or module name).
    """
    if autoload is None:
        autoload = not _truthy(os.environ.get(ENV_DISABLE_AUTOLOAD))
    if blocked is None:
        blocked = _names_from_env(ENV_BLOCK)
    pm = PluginManager(autoload=autoload, blocked=blocked, allowed=_names_from_env(ENV_PLUGINS))
    for plugin in plugins:
        pm.register(plugin, name=getattr(plugin, "name", None) or getattr(plugin, "__name__", None))
    return pm
