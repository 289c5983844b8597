"""The system description JSON and measurements.json: the recorded machine first, the user's SYSTEM.yaml over it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_mlperf.errors import ConfigError

#: The checker's SYSTEM_DESC_REQUIRED_FIELDS, in its order.
REQUIRED_FIELDS = (
    "division", "submitter", "status", "system_name", "number_of_nodes", "host_processor_model_name",
    "host_processors_per_node", "host_processor_core_count", "host_memory_capacity", "host_storage_capacity",
    "host_storage_type", "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
    "framework", "operating_system", "system_type", "other_software_stack", "host_processor_frequency",
    "host_processor_caches", "host_memory_configuration", "host_processor_interconnect", "host_networking",
    "host_networking_topology", "accelerator_frequency", "accelerator_host_interconnect", "accelerator_interconnect",
    "accelerator_interconnect_topology", "accelerator_memory_configuration", "accelerator_on-chip_memories",
    "cooling", "hw_notes", "sw_notes", "host_network_card_count", "system_type_detail",
)  # fmt: skip
#: The checker's fields that must not be empty (SYSTEM_DESC_MEANINGFUL_RESPONSE_REQUIRED_FIELDS).
MEANINGFUL_FIELDS = frozenset({
    "division", "submitter", "system_type", "status", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count", "host_memory_capacity",
    "host_memory_configuration", "host_storage_capacity", "host_storage_type", "host_networking",
    "host_network_card_count", "host_networking_topology", "accelerators_per_node", "accelerator_model_name",
    "accelerator_memory_capacity", "accelerator_host_interconnect", "accelerator_memory_configuration",
    "accelerator_interconnect", "cooling", "framework", "operating_system", "other_software_stack",
})  # fmt: skip
#: The checker's SYSTEM_IMP_REQUIRED_FILES: the fields of each measurements.json.
MEASUREMENT_FIELDS = ("input_data_types", "retraining", "starting_weights_filename", "weight_data_types",
                      "weight_transformations")
STATUSES = ("available", "preview", "rdi")
#: The fields that describe accelerators: "N/A" on a machine that recorded none.
_ACCELERATOR_FIELDS = ("accelerator_model_name", "accelerator_memory_capacity", "accelerator_frequency",
                       "accelerator_host_interconnect", "accelerator_interconnect",
                       "accelerator_interconnect_topology", "accelerator_memory_configuration",
                       "accelerator_on-chip_memories")
MAX_SYSTEM_YAML_BYTES = 1 << 20


def read_system_yaml(path: Path) -> dict[str, Any]:
    """The user's SYSTEM.yaml: a mapping of system-description fields (plus ``measurements``); ConfigError naming
    the file and the fix otherwise."""
    import yaml

    try:
        raw = path.read_bytes()[: MAX_SYSTEM_YAML_BYTES + 1]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}); check --system") from None
    if len(raw) > MAX_SYSTEM_YAML_BYTES:
        raise ConfigError(f"{path}: over 1 MiB; a system description is a short YAML mapping: check --system")
    try:
        loaded = yaml.safe_load(raw.decode("utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not a readable YAML file ({exc}); fix it or check --system") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of field: value (e.g. `status: available`)")
    unknown = sorted(str(k) for k in loaded if k not in REQUIRED_FIELDS and k not in ("measurements",))
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(unknown)}; the system description's fields are the "
                          f"checker's: {', '.join(REQUIRED_FIELDS)} (and `measurements:` for measurements.json)")
    status = loaded.get("status")
    if status is not None and status not in STATUSES:
        raise ConfigError(f"{path}: status {status!r}; use one of {', '.join(STATUSES)}")
    return {str(k): v for k, v in loaded.items()}


def _gib(value: Any) -> str | None:
    return f"{value / 2**30:.0f} GB" if isinstance(value, int | float) and value > 0 else None


def from_machine(document: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The fields the results file can tell: processor, memory, accelerators, OS, engine and software."""
    machine: Mapping[str, Any] = document.get("machine") or {}
    versions: Mapping[str, Any] = document.get("versions") or {}
    frequency: Mapping[str, Any] = machine.get("cpu_frequency") or {}
    gpus = [g for g in machine.get("gpus") or [] if isinstance(g, Mapping)]
    engines = sorted({f"{r.get('backend')} {(r.get('backend_options') or {}).get('version') or ''}".strip()
                      for r in runs})
    fields: dict[str, Any] = {
        "number_of_nodes": 1,
        "host_processor_model_name": machine.get("cpu"),
        "host_processor_core_count": machine.get("logical_cpus") or machine.get("cores"),
        "host_memory_capacity": _gib(machine.get("memory_bytes")),
        "accelerators_per_node": len(gpus),
        "framework": ", ".join(engines) or None,
        "operating_system": machine.get("os"),
        "other_software_stack": ", ".join(
            f"{name} {versions[key]}" for key, name in (("plugin", "pytest-mlperf"), ("loadgen", "mlcommons-loadgen"),
                                                         ("python", "Python"), ("numpy", "numpy"))
            if versions.get(key)
        ),
        "host_processor_frequency": next(
            (f"{frequency[k]:.0f} MHz" for k in ("max_mhz", "current_mhz")
             if isinstance(frequency.get(k), int | float)),
            None,
        ),
        "sw_notes": f"Measured with pytest-mlperf {versions.get('plugin', '')}".strip(),
    }
    if gpus:
        fields["accelerator_model_name"] = ", ".join(sorted({str(g.get("name")) for g in gpus}))
        fields["accelerator_memory_capacity"] = _gib(gpus[0].get("memory_bytes"))
    else:
        fields |= dict.fromkeys(_ACCELERATOR_FIELDS, "N/A")
    return {k: v for k, v in fields.items() if v is not None and v != ""}


def system_json(
    document: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], user: Mapping[str, Any], division: str,
    submitter: str,
) -> tuple[dict[str, Any], list[str]]:
    """Every required field (the recorded machine, then SYSTEM.yaml over it, then division and submitter), and the
    fields still missing: those are written empty, for the user to fill before the checker sees them."""
    values = from_machine(document, runs) | {k: v for k, v in user.items() if k != "measurements"}
    values |= {"division": division, "submitter": submitter}
    out: dict[str, Any] = {}
    missing: list[str] = []
    for key in REQUIRED_FIELDS:
        value = values.get(key)
        if value is None or value == "":
            out[key] = ""
            if key in MEANINGFUL_FIELDS:
                missing.append(key)
        elif value == 0 and not isinstance(value, bool):
            out[key] = "0"  # the checker takes a number 0 for an empty answer; "0" is the answer
        else:
            out[key] = value
    return out, missing


def measurements(user: Mapping[str, Any], model: str) -> tuple[dict[str, Any], list[str]]:
    """measurements.json for *model*: SYSTEM.yaml's ``measurements`` (fields, or a mapping per model name)."""
    given = user.get("measurements") or {}
    if not isinstance(given, Mapping):
        raise ConfigError("SYSTEM.yaml: `measurements` must be a mapping of field: value, or of model name: fields")
    if isinstance(given.get(model), Mapping):
        given = given[model]
    out = {key: given.get(key, "") for key in MEASUREMENT_FIELDS}
    return out, [key for key in MEASUREMENT_FIELDS if out[key] in ("", None)]
