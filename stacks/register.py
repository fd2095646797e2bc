"""Stack recipes (stacks/<name>.yaml): load, validate, register with ZenML.

A recipe names the ZenML stack, its components (flavor + configuration) and the values a user
provides on the command line (`${bucket}`). Everything is checked before anything is registered:
a remote recipe (Kubeflow) must end up with a remote artifact store and a container registry the
cluster can pull from, because pods can't read the laptop's disk or its local registry.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from walsrec.errors import ConfigError

STACKS_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = STACKS_DIR.parent

# Recipe keys -> ZenML component types (names as in `zenml stack register --help`).
COMPONENT_KEYS = ("orchestrator", "artifact_store", "container_registry", "image_builder")
REMOTE_SCHEMES = ("s3", "gs")
_LOCAL_REGISTRY = re.compile(r"^(localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(:\d+)?(/|$)")
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class ComponentSpec:
    """One stack component, ready to register."""

    key: str
    name: str
    flavor: str
    configuration: dict[str, Any]


@dataclass(frozen=True)
class StackRecipe:
    """A stack recipe as written in stacks/<key>.yaml."""

    key: str
    path: Path
    stack_name: str
    description: str
    remote: bool
    overlay_dir: Path | None
    values: dict[str, dict[str, Any]]
    components: dict[str, dict[str, Any]]

    def option(self, value_name: str) -> str:
        """The command-line option that sets a value, e.g. --kube-context."""
        return "--" + value_name.replace("_", "-")


@dataclass
class RenderedStack:
    """A recipe with the user's values filled in and checked."""

    recipe: StackRecipe
    components: list[ComponentSpec]
    secrets: dict[str, list[str]] = field(default_factory=dict)

    def component(self, key: str) -> ComponentSpec | None:
        """The component for a recipe key (e.g. "orchestrator"), if the stack has one."""
        return next((c for c in self.components if c.key == key), None)


def available_recipes() -> list[str]:
    """Recipe names (stacks/*.yaml), e.g. ["kubeflow", "local"]."""
    return sorted(path.stem for path in STACKS_DIR.glob("*.yaml"))


def load_recipe(key: str) -> StackRecipe:
    """Read and structurally check stacks/<key>.yaml.

    Args:
        key: recipe name, e.g. "kubeflow".

    Returns:
        The recipe.

    Raises:
        ConfigError: if the recipe does not exist or misses a required field.
    """
    path = STACKS_DIR / f"{key}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"no stack recipe {key!r}: choose one of {', '.join(available_recipes())} (stacks/)"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    where = f"stacks/{key}.yaml"
    for required in ("name", "components"):
        if not raw.get(required):
            raise ConfigError(f"{where}: needs `{required}:`")
    components = raw["components"]
    unknown = set(components) - set(COMPONENT_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown component {sorted(unknown)}; allowed: {', '.join(COMPONENT_KEYS)}"
        )
    for component_key in ("orchestrator", "artifact_store"):
        if component_key not in components:
            raise ConfigError(f"{where}: every stack needs an `{component_key}:` component")
    for component_key, spec in components.items():
        if not isinstance(spec, dict) or not spec.get("name") or not spec.get("flavor"):
            raise ConfigError(f"{where}: component {component_key} needs `name:` and `flavor:`")
    overlay = raw.get("overlay")
    overlay_dir = PROJECT_ROOT / overlay if overlay else None
    if overlay_dir is not None and not overlay_dir.is_dir():
        raise ConfigError(f"{where}: overlay folder {overlay} does not exist")
    return StackRecipe(
        key=key,
        path=path,
        stack_name=raw["name"],
        description=raw.get("description", ""),
        remote=bool(raw.get("remote", False)),
        overlay_dir=overlay_dir,
        values=raw.get("values") or {},
        components=components,
    )


def _substitute(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), value)
    if isinstance(value, dict):
        return {key: _substitute(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, values) for item in value]
    return value


def _prune_empty(value: Any) -> Any:
    """Drop empty strings and the mappings they leave empty (an unset optional value)."""
    if isinstance(value, dict):
        pruned = {key: _prune_empty(item) for key, item in value.items()}
        return {key: item for key, item in pruned.items() if item not in ("", {}, None)}
    return value


def _scheme(path: str) -> str:
    return path.split("://", 1)[0].lower() if "://" in path else ""


def render_recipe(recipe: StackRecipe, provided: dict[str, Any]) -> RenderedStack:
    """Fill a recipe's `${values}` and check the result; nothing is registered.

    Args:
        recipe: the recipe.
        provided: values from the command line (None or "" for not given).

    Returns:
        The components to register and the ZenML secrets they reference.

    Raises:
        ConfigError: naming every missing value and every component a remote stack can't use.
    """
    where = f"stacks/{recipe.key}.yaml"
    problems: list[str] = []
    values: dict[str, str] = {}
    for name, spec in recipe.values.items():
        given = provided.get(name)
        if given in (None, ""):
            given = spec.get("default", "")
            if spec.get("required") and given in (None, ""):
                help_text = str(spec.get("help", name)).rstrip(".")
                problems.append(f"missing {recipe.option(name)} ({help_text})")
        values[name] = "" if given is None else str(given)
    unknown = {name for name, value in provided.items() if value not in (None, "")} - set(values)
    if unknown:
        problems.append(f"{where} takes no value {sorted(unknown)}")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))

    components: list[ComponentSpec] = []
    secrets: dict[str, list[str]] = {}
    for key in COMPONENT_KEYS:
        if key not in recipe.components:
            continue
        raw = copy.deepcopy(recipe.components[key])
        undefined = set(_PLACEHOLDER.findall(yaml.safe_dump(raw))) - set(values)
        if undefined:
            raise ConfigError(f"{where}: component {key} uses undefined values {sorted(undefined)}")
        raw = _substitute(raw, values)
        flavor = raw["flavor"]
        configuration = raw.get("configuration") or {}
        if flavor == "by_path_scheme":
            scheme = _scheme(str(configuration.get("path", "")))
            choice = (raw.get("by_scheme") or {}).get(scheme)
            if choice is None:
                # The remote checks below explain what is missing.
                flavor = "local"
            else:
                flavor = choice["flavor"]
                configuration = {**configuration, **(choice.get("configuration") or {})}
                secrets.update(choice.get("secrets") or {})
        components.append(ComponentSpec(key, raw["name"], flavor, _prune_empty(configuration)))

    rendered = RenderedStack(recipe, components, secrets)
    if recipe.remote:
        problems.extend(_remote_problems(rendered, values))
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return rendered


def _remote_problems(rendered: RenderedStack, values: dict[str, str]) -> list[str]:
    """Why a remote stack's components can't serve pods in a cluster (empty: they can)."""
    recipe = rendered.recipe
    problems = []
    store = rendered.component("artifact_store")
    path = str(store.configuration.get("path", "")) if store else ""
    if store is None or store.flavor == "local" or _scheme(path) not in REMOTE_SCHEMES:
        shown = f" (got {path!r})" if path else ""
        problems.append(
            "no remote artifact store: pods in the cluster can't read this machine's disk; "
            f"pass --bucket s3://BUCKET/PATH (AWS S3, MinIO) or gs://BUCKET/PATH{shown}"
        )
    registry = rendered.component("container_registry")
    uri = str(registry.configuration.get("uri", "")) if registry else ""
    if registry is None or not uri or _LOCAL_REGISTRY.match(uri):
        shown = f" (got {uri!r})" if uri else ""
        problems.append(
            "no container registry the cluster can pull from: pass --registry "
            f"REGISTRY/NAMESPACE, e.g. ghcr.io/ORG{shown}"
        )
    if "image_builder" not in recipe.components:
        problems.append("a remote stack needs an `image_builder:` component to build step images")
    return problems


# ZenML's get_* also match name prefixes (walsrec-kubeflow would find walsrec-kubeflow-compile):
# look things up by exact name.
def find_stack(name: str) -> Any:
    """The registered ZenML stack with exactly this name, or None."""
    from zenml.client import Client

    found = Client().list_stacks(name=name)
    return found.items[0] if found.items else None


def find_component(key: str, name: str) -> Any:
    """The registered stack component of this type with exactly this name, or None."""
    from zenml.client import Client

    found = Client().list_stack_components(type=_component_type(key), name=name)
    return found.items[0] if found.items else None


def find_secret(name: str) -> Any:
    """The ZenML secret with exactly this name (values loaded), or None."""
    from zenml.client import Client

    found = Client().list_secrets(name=name)
    return Client().get_secret(found.items[0].id) if found.items else None


def missing_secrets(required: dict[str, list[str]]) -> list[str]:
    """ZenML secrets (or keys of them) that don't exist yet, as `name` or `name.key`.

    Args:
        required: secret name -> keys it must hold.

    Returns:
        What is missing, empty when everything exists.
    """
    missing = []
    for name, keys in required.items():
        secret = find_secret(name)
        if secret is None:
            missing.append(name)
            continue
        missing.extend(f"{name}.{key}" for key in keys if key not in secret.secret_values)
    return missing


def _component_type(key: str) -> Any:
    from zenml.enums import StackComponentType

    return StackComponentType(key)


def ensure_custom_flavors(components: list[ComponentSpec]) -> None:
    """Register the project's own flavors (walsrec_kubeflow) if a component uses them."""
    from zenml.client import Client

    from stacks.kubeflow_orchestrator import FLAVOR_NAME, FLAVOR_SOURCE

    client = Client()
    for component in components:
        if component.flavor != FLAVOR_NAME:
            continue
        component_type = _component_type(component.key)
        existing = client.zen_store.list_flavors(
            _flavor_filter(name=FLAVOR_NAME, type=component_type)
        )
        if not existing.items:
            client.create_flavor(source=FLAVOR_SOURCE, component_type=component_type)


def _flavor_filter(**fields: Any) -> Any:
    from zenml.models import FlavorFilter

    return FlavorFilter(**fields)


def _delete_stack_and_components(stack_name: str, components: list[ComponentSpec]) -> None:
    from zenml.client import Client

    client = Client()
    stack = find_stack(stack_name)
    if stack is not None:
        if client.active_stack_model.id == stack.id:
            client.activate_stack("default")
        client.delete_stack(stack.id)
    for component in components:
        existing = find_component(component.key, component.name)
        if existing is not None:
            client.delete_stack_component(existing.id, _component_type(component.key))


@dataclass
class Registration:
    """What `register_stack` did."""

    stack_name: str
    components: list[ComponentSpec]
    warnings: list[str]


def register_stack(key: str, provided: dict[str, Any], replace: bool = False) -> Registration:
    """Validate stacks/<key>.yaml with `provided` values, then register its stack with ZenML.

    Args:
        key: recipe name, e.g. "kubeflow".
        provided: values from the command line.
        replace: delete an existing stack and components of the same names first.

    Returns:
        The registered stack's name, its components, and warnings for the user (a secret that
        doesn't exist yet, a local ZenML store a remote stack can't run with).

    Raises:
        ConfigError: if the recipe or a value is wrong, or the stack exists and not `replace`.
    """
    from zenml.client import Client

    recipe = load_recipe(key)
    rendered = render_recipe(recipe, provided)
    client = Client()

    existing = [f"stack {recipe.stack_name}"] if find_stack(recipe.stack_name) else []
    existing.extend(
        f"{component.key} {component.name}"
        for component in rendered.components
        if find_component(component.key, component.name) is not None
    )
    if existing and not replace:
        raise ConfigError(
            f"already registered: {', '.join(existing)}; pass --replace to register "
            f"stacks/{key}.yaml again"
        )
    if existing:
        _delete_stack_and_components(recipe.stack_name, rendered.components)

    ensure_custom_flavors(rendered.components)
    for component in rendered.components:
        client.create_stack_component(
            name=component.name,
            flavor=component.flavor,
            component_type=_component_type(component.key),
            configuration=component.configuration,
        )
    client.create_stack(
        name=recipe.stack_name,
        components={_component_type(c.key): c.name for c in rendered.components},
    )

    warnings = [
        f"ZenML secret {name} does not exist yet: create it before the first run (docs/kubeflow.md)"
        for name in missing_secrets(rendered.secrets)
    ]
    if recipe.remote and client.zen_store.is_local_store():
        warnings.append(
            "this client uses a local ZenML store; pods in the cluster report to a ZenML "
            "server: `zenml login <server-url>` and register the stack there before running"
        )
    return Registration(recipe.stack_name, rendered.components, warnings)
