"""Training configurations: shipped recipes, YAML files and ``key=value`` overrides.

A configuration is a nested dict whose keys are fixed by :data:`DEFAULTS` (every key is
documented in docs/training.md). A YAML file sets any subset of them, optionally on top of
another recipe named by its ``base`` key; overrides such as ``optim.lr=1e-4`` or
``trainer.devices=[0,1]`` are parsed as YAML values and applied last.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from flanet.fileio import atomic_write_text
from flanet.yamlsafe import load_yaml


class ConfigError(ValueError):
    """A configuration file, key or value is invalid; the message says which and why."""


DEFAULTS: dict[str, Any] = {
    "name": "flanet",
    "seed": 42,
    "model": {
        "name": "flanet",
        "encoder": "res2net50_26w_4s",
        "encoder_weights": None,
        "options": {},
    },
    "data": {
        "root": None,
        "train_split": "train",
        "val_split": "val",
        "val_fraction": 0.1,
        "image_size": 352,
        "edge": "causal",
        "augment": False,
        "heatmap_sigma": 5.0,
        "num_workers": 4,
    },
    "loss": {
        "bce_weight": 1.0,
        "iou_weight": 1.0,
        "heatmap_weight": 1.0,
        "contrastive_weight": None,  # None: the model's default (1 for flanet, else 0)
        "alpha": 1.0e-3,
    },
    "optim": {
        "lr": 5.0e-5,
        "weight_decay": 0.0,
        "betas": [0.9, 0.999],
        "grad_clip": 0.5,
        "scheduler": "none",
        "step_epochs": 60,
        "step_gamma": 0.1,
    },
    "trainer": {
        "epochs": 100,
        "batch_size": 24,
        "max_steps": -1,
        "max_time": None,
        "precision": "auto",
        "accelerator": "auto",
        "devices": "auto",
        "num_nodes": 1,
        "strategy": "auto",
        "limit_train_batches": None,
        "limit_val_batches": None,
        "val_every_n_epochs": 1,
        "log_every_n_steps": 10,
        "checkpoint_every_n_steps": 0,
        "sanity_val_steps": 2,
        "progress_bar": True,
        "deterministic": False,
    },
    "output": {
        "dir": "runs",
        "run_dir": None,
    },
}

#: Keys whose value is a free-form mapping (passed through, not checked key by key).
FREE_FORM_KEYS = frozenset({"model.options"})

_CHOICES: dict[str, tuple[str, ...]] = {
    "data.edge": ("causal", "lookahead"),
    "optim.scheduler": ("none", "cosine", "step"),
}

#: Keys whose default is ``null`` ("decided by the model") and whose value is otherwise a number.
_OPTIONAL_NUMBERS = frozenset({"loss.contrastive_weight"})

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
    name_or_path: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Resolve a full training configuration.

    Args:
        name_or_path: a shipped recipe name (``buv-paper``, ``polyp-paper``, ``cpu-small``),
            a YAML file path, or an already loaded mapping.
        overrides: ``dotted.key=value`` strings applied in order, values typed as YAML.

    Returns:
        A complete, validated configuration dict (every key of :data:`DEFAULTS`).

    Raises:
        ConfigError: unknown recipe or missing file, malformed YAML, unknown key (the
            message lists the valid keys), or a value of the wrong type.
    """
    config = copy.deepcopy(DEFAULTS)
    if isinstance(name_or_path, Mapping):
        _merge(config, _resolve_base(dict(name_or_path), "<config dict>", (), Path.cwd()), "")
    else:
        _merge(config, _read_recipe(name_or_path, ()), "")
    for item in overrides:
        key, value = _split_override(item)
        key, value = _into_free_form(config, key, value)
        _merge(config, _nest(key, value), "")
    _validate(config)
    return config


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
    """Apply ``data`` on top of :data:`DEFAULTS` or of the recipe named by its ``base`` key.

    A relative ``base`` path is taken relative to ``folder`` (the including file's folder).
    """
    base = data.pop("base", None)
    merged = copy.deepcopy(DEFAULTS)
    if base is not None:
        relative = folder / str(base)
        _merge(merged, _read_recipe(relative if relative.is_file() else base, seen), "")
    try:
        _merge(merged, data, "")
    except ConfigError as error:
        raise ConfigError(f"config {source}: {error}") from error
    return merged


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


def valid_keys(node: Mapping[str, Any] = DEFAULTS, prefix: str = "") -> list[str]:
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
            raise ConfigError(_unknown_key_message(dotted, prefix))
        if isinstance(target[key], dict) and dotted not in FREE_FORM_KEYS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{dotted}' is a section; set its keys, e.g. '{dotted}.<key>=...'")
            _merge(target[key], value, f"{dotted}.")
        else:
            target[key] = copy.deepcopy(value)


def _unknown_key_message(dotted: str, section: str) -> str:
    every_key = valid_keys()
    close = difflib.get_close_matches(dotted, every_key, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    keys = [key for key in every_key if key.startswith(section)]
    where = f" in section '{section[:-1]}'" if section else ""
    return f"unknown config key '{dotted}'{hint}. Valid keys{where}: {', '.join(keys)}"


def _validate(config: dict[str, Any]) -> None:
    """Check value types against :data:`DEFAULTS` and the closed choices."""
    for dotted in valid_keys():
        default, value = _lookup(DEFAULTS, dotted), _lookup(config, dotted)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, dict):
            ok = isinstance(value, dict)
        else:
            ok = True
        if not ok:
            raise ConfigError(
                f"config key '{dotted}' expects {type(default).__name__}, got {value!r}"
            )
        if dotted in _OPTIONAL_NUMBERS and value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            raise ConfigError(f"config key '{dotted}' expects a number or null, got {value!r}")
        if dotted in _CHOICES and value not in _CHOICES[dotted]:
            raise ConfigError(f"config key '{dotted}' must be one of {_CHOICES[dotted]}, got {value!r}")


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def dump_config(config: Mapping[str, Any], path: Path) -> None:
    """Write a resolved configuration as YAML (the run folder's ``config.yaml``)."""
    atomic_write_text(path, yaml.safe_dump(dict(config), sort_keys=False))
