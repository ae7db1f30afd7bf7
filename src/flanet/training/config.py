"""Training configurations: shipped recipes, YAML files and ``key=value`` overrides.

A configuration is a :class:`~flanet.training.schema.TrainConfig` (every key is documented in
docs/training.md). A YAML file sets any subset of its keys, optionally on top of another recipe
named by its ``base`` key; overrides such as ``optim.lr=1e-4`` or ``trainer.devices=[0,1]`` are
parsed as YAML values and applied last. Keys renamed since an earlier release
(:data:`~flanet.training.schema.DEPRECATED_KEYS`) are read under their new name, with a warning,
from files, overrides and the ``config.yaml`` of old run folders.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import logging
import re
import typing
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from flanet.fileio import atomic_write_text
from flanet.models.defaults import IMAGENET
from flanet.training.schema import (
    DEPRECATED_KEYS,
    DEPRECATED_REMOVED_IN,
    FREE_FORM_KEYS,
    ConfigError,
    ModelConfig,
    TrainConfig,
    build,
    check_value,
)
from flanet.yamlsafe import load_yaml

__all__ = ["ConfigError", "TrainConfig", "dump_config", "load_config", "parse_value", "shipped_configs",
           "valid_keys"]

log = logging.getLogger(__name__)

#: Every key with its default, as a nested dict (the tree that files and overrides must fit).
_DEFAULTS: dict[str, Any] = TrainConfig().to_dict()

_FLOAT_PATTERN = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _YamlLoader(yaml.SafeLoader):
    """Safe loader that also reads ``1e-4`` (no dot) as a float, as users write it."""


_YamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_PATTERN, list("-+0123456789."))

# "DD:HH:MM:SS" (trainer.max_time) stays a string instead of YAML 1.1's base-60 integer.
_CLOCK_PATTERN = re.compile(r"^[0-9]+(?::[0-9]{2})+$")
for _digit in "0123456789":
    _YamlLoader.yaml_implicit_resolvers[_digit] = [
        ("tag:yaml.org,2002:str", _CLOCK_PATTERN),
        *_YamlLoader.yaml_implicit_resolvers.get(_digit, []),
    ]


def shipped_configs() -> list[str]:
    """Names of the recipes shipped in ``flanet/configs``."""
    folder = resources.files("flanet") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def parse_value(text: str) -> Any:
    """Parse one override value with YAML typing (``1e-4`` -> float, ``null`` -> None)."""
    return yaml.load(text, Loader=_YamlLoader)


def load_config(
    name_or_path: str | Path | Mapping[str, Any] | TrainConfig, overrides: Sequence[str] = ()
) -> TrainConfig:
    """Resolve a full training configuration.

    Args:
        name_or_path: a shipped recipe name (``buv-paper``, ``polyp-paper``, ``cpu-small``,
            ``demo``), a YAML file path, a mapping, or a configuration to apply overrides to.
        overrides: ``dotted.key=value`` strings applied in order, values typed as YAML.

    Returns:
        The complete, type-checked configuration.

    Raises:
        ConfigError: unknown recipe or missing file, malformed YAML, unknown key (the
            message suggests the closest and lists the valid keys), a value of the wrong
            type, an unknown model, or a ``model.options`` key the model does not have (a recipe's
            options for another model are left out, :func:`fit_recipe_to_model`).
    """
    config = copy.deepcopy(_DEFAULTS)
    if isinstance(name_or_path, TrainConfig):
        _merge(config, name_or_path.to_dict(), "")
    elif isinstance(name_or_path, Mapping):
        _merge(config, _resolve_base(dict(name_or_path), "<config dict>", (), Path.cwd()), "")
    else:
        _merge(config, _read_recipe(name_or_path, ()), "")
    recipe_model = build(ModelConfig, config["model"], "model.")
    for item in overrides:
        key, value = _split_override(item)
        key, value = _into_free_form(config, key, value)
        _merge(config, _renamed(_nest(key, value), f"override '{item}'"), "")
    typed = fit_recipe_to_model(build(TrainConfig, config), recipe_model)
    check_model_options(typed.model)
    if typed.data.sequence_length is not None and typed.data.edge != "causal":
        raise ConfigError(f"config key 'data.edge': runs of consecutive frames (data.sequence_length="
                          f"{typed.data.sequence_length}) need the causal edge policy, got {typed.data.edge!r}")
    return typed


def _read_recipe(name_or_path: str | Path, seen: tuple[str, ...]) -> dict[str, Any]:
    """Read a recipe file (following ``base``) into a full configuration."""
    path = Path(name_or_path)
    folder = path.parent
    if path.is_file():
        text, source = path.read_text(encoding="utf-8"), str(path)
    elif str(name_or_path) in shipped_configs():
        source = f"shipped recipe '{name_or_path}'"
        text = (resources.files("flanet") / "configs" / f"{name_or_path}.yaml").read_text("utf-8")
    else:
        raise ConfigError(
            f"config '{name_or_path}': no such file, and not a shipped recipe "
            f"(shipped: {', '.join(shipped_configs())})"
        )
    if source in seen:
        raise ConfigError(f"config {source}: 'base' chain loops ({' -> '.join(seen)})")
    try:
        data = load_yaml(text, _YamlLoader, source)  # refuses alias bombs before building anything
    except yaml.YAMLError as error:
        raise ConfigError(f"config {source}: not valid YAML: {error}") from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {source}: top level must be a mapping, got {type(data).__name__}")
    return _resolve_base(data, source, seen + (source,), folder)


def _resolve_base(
    data: dict[str, Any], source: str, seen: tuple[str, ...], folder: Path
) -> dict[str, Any]:
    """Apply ``data`` on top of the schema's defaults or of the recipe named by its ``base`` key.

    A relative ``base`` path is taken relative to ``folder`` (the including file's folder).
    """
    data = dict(data)
    base = data.pop("base", None)
    merged = copy.deepcopy(_DEFAULTS)
    if base is not None:
        relative = folder / str(base)
        _merge(merged, _read_recipe(relative if relative.is_file() else base, seen), "")
    try:
        _merge(merged, _renamed(data, source), "")
    except ConfigError as error:
        raise ConfigError(f"config {source}: {error}") from error
    return merged


def _renamed(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A copy of ``data`` with deprecated keys under their new names (one warning line each).

    Raises:
        ConfigError: ``data`` sets a key under both its old and its new name.
    """
    renamed = copy.deepcopy(dict(data))
    for old, new in DEPRECATED_KEYS.items():
        old_section, old_key = old.split(".")
        section = renamed.get(old_section)
        if not isinstance(section, dict) or old_key not in section:
            continue
        value = section.pop(old_key)
        new_section, new_key = new.split(".")
        target = renamed.setdefault(new_section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"config key '{new_section}' is a section; set its keys, e.g. '{new}=...'")
        if new_key in target:
            raise ConfigError(f"'{old}' and its new name '{new}' are both set; keep '{new}'")
        target[new_key] = value
        log.warning("config key '%s' is renamed '%s'; the old name stops working in flanet %s (%s)",
                    old, new, DEPRECATED_REMOVED_IN, source)
    return renamed


def _split_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}' is not of the form dotted.key=value")
    try:
        return key.strip(), parse_value(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"override '{item}': value is not valid YAML: {error}") from error


def _into_free_form(config: Mapping[str, Any], dotted: str, value: Any) -> tuple[str, Any]:
    """``model.options.head_channels=32`` -> ``model.options`` = the current options with that key set."""
    for free in FREE_FORM_KEYS:
        if dotted.startswith(f"{free}."):
            current = _lookup(config, free)
            merged = copy.deepcopy(dict(current)) if isinstance(current, Mapping) else {}
            node = merged
            *parents, last = dotted[len(free) + 1:].split(".")
            for part in parents:
                node = node[part] if isinstance(node.get(part), dict) else node.setdefault(part, {})
            node[last] = value
            return free, merged
    return dotted, value


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    node = nested
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def valid_keys(node: Mapping[str, Any] = _DEFAULTS, prefix: str = "") -> list[str]:
    """Every dotted key a configuration may set."""
    keys = []
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in FREE_FORM_KEYS:
            keys.extend(valid_keys(value, f"{dotted}."))
        else:
            keys.append(dotted)
    return keys


def _merge(target: dict[str, Any], update: Mapping[str, Any], prefix: str) -> None:
    """Recursively copy ``update`` into ``target``, rejecting keys ``target`` lacks."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in target:
            raise ConfigError(unknown_key_message(dotted, valid_keys(), prefix))
        if isinstance(target[key], dict) and dotted not in FREE_FORM_KEYS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{dotted}' is a section; set its keys, e.g. '{dotted}.<key>=...'")
            _merge(target[key], value, f"{dotted}.")
        else:
            target[key] = copy.deepcopy(value)


def unknown_key_message(dotted: str, every_key: Sequence[str], section: str) -> str:
    """``unknown config key 'x' (did you mean 'y'?). Valid keys in section 's': ...``

    The suggestion is the key of the same section whose last part is closest, else a close
    key of another section.
    """
    keys = [key for key in every_key if key.startswith(section)]
    close = [section + leaf for leaf in difflib.get_close_matches(dotted[len(section):], [k[len(section):] for k in keys], n=1)]
    close = close or difflib.get_close_matches(dotted, every_key, n=1, cutoff=0.8)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    where = f" in section '{section[:-1]}'" if section else ""
    return f"unknown config key '{dotted}'{hint}. Valid keys{where}: {', '.join(keys)}"


def check_model_options(model: ModelConfig) -> None:
    """Check a ``model`` section against the registry: its name, encoder and ``model.options``.

    ``model.options`` are the fields of the model's own options dataclass
    (:func:`flanet.models.model_options`), so an option of another model (a FLA-Net
    ``neck_channels`` on ``unet``) is an error naming the key.

    Raises:
        ConfigError: an unknown model, an option the model does not have (with the closest
            name), a value of the wrong type, or an encoder the model cannot use.
    """
    from flanet.models.registry import ModelError, model_spec

    try:
        spec = model_spec(model.name)
    except ModelError as error:
        raise ConfigError(f"config key 'model.name': {error}") from error
    names = [n for n in spec.option_names if n not in ("encoder", "encoder_weights")]
    hints = typing.get_type_hints(spec.options)
    for key, value in model.options.items():
        dotted = f"model.options.{key}"
        if key not in names:
            message = unknown_key_message(dotted, [f"model.options.{n}" for n in names], "model.options.")
            raise ConfigError(f"{message} (the options of model '{model.name}')")
        check_value(value, hints[key], dotted)
    if not spec.accepts_encoder(model.encoder):
        raise ConfigError(f"config key 'model.encoder': model {model.name!r} cannot use encoder {model.encoder!r}; "
                          f"it needs one of {', '.join(spec.info.encoders)} (its default: {spec.default_encoder})")


def fit_recipe_to_model(config: TrainConfig, recipe_model: ModelConfig) -> TrainConfig:
    """``config`` with what its recipe set for another model left out of ``model``.

    A recipe's ``model.options`` are for the model it names (``cpu-small``'s ``neck_channels`` are
    FLA-Net's); when ``model.name`` is changed (``flanet train --config cpu-small model.name=unet``,
    ``flanet compare``), the recipe's options that the chosen model does not have are left out, and a
    recipe encoder it cannot use (a plain ViT needs a ViT) gives way to the model's default encoder;
    both are logged. What an override sets is kept, and checked (:func:`check_model_options`).
    """
    from flanet.models.registry import ModelError, model_spec

    model = config.model
    if model.name == recipe_model.name:
        return config
    try:
        spec = model_spec(model.name)
    except ModelError:
        return config  # reported by check_model_options
    dropped = [k for k, v in model.options.items()
               if k not in spec.option_names and recipe_model.options.get(k, _MISSING) == v]
    changes: dict[str, Any] = {}
    if dropped:
        changes["options"] = {k: v for k, v in model.options.items() if k not in dropped}
        _warn_once(f"model.options {', '.join(dropped)} of the recipe (for {recipe_model.name}) do not apply "
                   f"to {model.name}: left out")
    if model.encoder == recipe_model.encoder and not spec.accepts_encoder(model.encoder):
        changes["encoder"] = spec.default_encoder
        _warn_once(f"{model.name} cannot use the recipe's encoder {model.encoder} (it needs "
                   f"{' or '.join(spec.info.encoders)}): it uses {spec.default_encoder}")
        if model.encoder_weights not in (None, IMAGENET):
            raise ConfigError(f"config key 'model.encoder_weights': the recipe's file {model.encoder_weights} is for "
                              f"encoder {model.encoder}, which {model.name} cannot use; set model.encoder_weights")
    return config.replace(model=changes) if changes else config


_MISSING = object()
_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Logs ``message`` the first time only: a command resolves one configuration several times."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning("%s", message)


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


#: Keys that do not change what a run learns; left out of :func:`config_hash`.
_UNHASHED: tuple[tuple[str, str], ...] = (("trainer", "enable_progress_bar"), ("data", "num_workers"))
#: Run-folder file holding :func:`config_hash` of the run's resolved configuration.
HASH_FILE = "config_hash.txt"


def config_hash(config: TrainConfig) -> str:
    """12 hex digits of the SHA-256 of a resolved configuration, without where its run folder goes.

    Two runs with the same hash trained the same way on the same data (root, splits, seed, model,
    loss, optimiser, schedule, precision); ``flanet compare`` reuses a run only when its hash is
    the one requested. ``output``, the progress bar and the loader worker count are left out.
    """
    payload = config.to_dict()
    payload.pop("output", None)
    for section, key in _UNHASHED:
        payload.get(section, {}).pop(key, None)
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def dump_config(config: TrainConfig, path: Path) -> None:
    """Write a resolved configuration as YAML (the run folder's ``config.yaml``) and its hash beside it."""
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
    atomic_write_text(path.parent / HASH_FILE, config_hash(config) + "\n")
