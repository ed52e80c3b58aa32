"""Data-source inventories: what a site collects, per ATT&CK platform (read from a YAML file).

The coverage analysis (:mod:`ttpscope.analyze.coverage`) uses an :class:`Inventory` to decide which
techniques are visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ttpscope.errors import InputError
from ttpscope.kb.aliases import normalize

# Sigma logsource (category, or service) -> ATT&CK data component names it supplies. Written from the
# meaning of each Sigma category (sigma-specification's taxonomy) and ATT&CK's data component definitions.
SIGMA_COMPONENTS: dict[str, tuple[str, ...]] = {
    "process_creation": ("Process Creation", "Command Execution"),
    "process_access": ("Process Access",),
    "process_tampering": ("Process Modification",),
    "create_remote_thread": ("Process Modification", "OS API Execution"),
    "raw_access_thread": ("Drive Access",),
    "image_load": ("Module Load",),
    "driver_load": ("Driver Load",),
    "file_event": ("File Creation",),
    "file_change": ("File Modification",),
    "file_rename": ("File Modification",),
    "file_delete": ("File Deletion",),
    "file_access": ("File Access",),
    "file_executable_detected": ("File Creation",),
    "registry_add": ("Windows Registry Key Creation",),
    "registry_set": ("Windows Registry Key Modification",),
    "registry_event": ("Windows Registry Key Creation", "Windows Registry Key Modification",
                       "Windows Registry Key Deletion"),
    "registry_delete": ("Windows Registry Key Deletion",),
    "registry_rename": ("Windows Registry Key Modification",),
    "network_connection": ("Network Connection Creation",),
    "dns_query": ("Network Traffic Content",),
    "dns": ("Network Traffic Content",),
    "firewall": ("Network Traffic Flow",),
    "proxy": ("Network Traffic Content",),
    "webserver": ("Network Traffic Content", "Application Log Content"),
    "pipe_created": ("Named Pipe Metadata",),
    "wmi_event": ("WMI Creation",),
    "ps_script": ("Script Execution", "Command Execution"),
    "ps_module": ("Script Execution", "Command Execution"),
    "ps_classic_start": ("Command Execution",),
    "ps_classic_provider_start": ("Command Execution",),
    "ps_classic_script": ("Script Execution", "Command Execution"),
    "clipboard_capture": ("OS API Execution",),
    "sysmon_status": ("Sensor Health",),
    "sysmon_error": ("Sensor Health",),
    "security": ("Logon Session Creation", "User Account Authentication", "User Account Creation",
                 "User Account Modification", "Active Directory Object Access", "Active Directory Object Modification",
                 "Scheduled Job Creation", "Service Creation", "Process Creation", "Group Modification"),
    "system": ("Service Creation", "Service Modification", "Driver Load", "OS API Execution"),
    "powershell": ("Script Execution", "Command Execution"),
    "powershell-classic": ("Command Execution",),
    "sysmon": ("Process Creation", "Network Connection Creation", "File Creation", "Process Access",
               "Module Load", "Windows Registry Key Modification", "Driver Load", "Named Pipe Metadata"),
    "auditd": ("Process Creation", "Command Execution", "File Modification", "File Access"),
    "application": ("Application Log Content",),
    "taskscheduler": ("Scheduled Job Creation", "Scheduled Job Modification"),
    "bits-client": ("Network Connection Creation",),
    "windefend": ("Sensor Health",),
    "cloudtrail": ("Cloud Service Modification", "User Account Modification", "Instance Creation"),
    "azureactivity": ("Cloud Service Modification", "Instance Creation"),
    "signinlogs": ("User Account Authentication", "Logon Session Creation"),
    "auditlogs": ("User Account Modification", "Active Directory Object Modification"),
    "okta": ("User Account Authentication", "Logon Session Creation"),
    "m365": ("Application Log Content", "User Account Authentication"),
    "gcp.audit": ("Cloud Service Modification",),
}


# ---------------------------------------------------------------------- inventory
_SIGMA_PRODUCTS = {"windows", "linux", "macos"}  # ATT&CK platforms that Sigma names the same way as products

@dataclass
class Inventory:
    """What is collected, per ATT&CK platform (``*`` = every platform)."""

    source: str
    data_components: dict[str, set[str]] = field(default_factory=dict)  # platform -> normalized DC names/ids
    log_sources: dict[str, set[str]] = field(default_factory=dict)  # platform -> normalized v18 log source names
    sigma: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # platform -> Sigma logsource patterns

    def platforms_for(self, platforms: Iterable[str]) -> list[str]:
        wanted = {normalize(p) for p in platforms}
        return [p for p in self.data_components if p == "*" or p in wanted]

    def sigma_collected(self, logsource: dict[str, Any]) -> bool:
        """True if a rule's logsource (product/category/service) matches a collected pattern on any platform."""
        ls = {k: str(v).lower() for k, v in (logsource or {}).items() if k in ("product", "category", "service") and v}
        for patterns in self.sigma.values():
            for pat in patterns:
                if pat and all(ls.get(k) == v if k != "name" else v in (ls.get("category"), ls.get("service"))
                               for k, v in pat.items()):
                    return True
        return False


def _sigma_pattern(item: Any, where: str, source: str) -> dict[str, str]:
    if isinstance(item, dict):
        pat = {k: str(v).lower() for k, v in item.items() if k in ("product", "category", "service") and v}
        if not pat or len(pat) != len(item):
            raise InputError(source, where, "a Sigma logsource needs only product / category / service keys")
        return pat
    if isinstance(item, str) and item.strip():
        parts = item.strip().lower().split("/")
        if len(parts) == 1:  # a category (process_creation) or a service (security)
            return {"name": parts[0]}
        if len(parts) == 2:  # "windows/security": product and a category or a service, whichever the rule uses
            return {"product": parts[0], "name": parts[1]}
    raise InputError(source, where, f"{item!r} is not a Sigma logsource (category, product/service or a mapping)")


def load_inventory(path: str | Path) -> Inventory:
    """Read a data-source inventory (YAML, safe loader)::

        platforms:
          Windows:
            data_components: [Process Creation, Command Execution, DC0032]   # names or ids
            log_sources: ["WinEventLog:Security"]                             # v18 analytic log sources
            sigma: [process_creation, windows/security, {product: windows, category: ps_script}]
          Linux:
            sigma: [linux/auditd]

    ``*`` as a platform applies to every platform. A Sigma logsource without a product listed under
    Windows, Linux or macOS means that product's logs. Raises InputError naming the file and the entry for
    anything malformed.
    """
    import yaml

    path = Path(path)
    src = str(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(src, None, f"cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(src, f"line {mark.line + 1}" if mark else None,
                         f"not valid YAML ({getattr(exc, 'problem', None) or exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("platforms"), dict) or not doc["platforms"]:
        raise InputError(src, None, "an inventory needs a 'platforms' mapping: platform -> "
                                    "{data_components, log_sources, sigma}")
    inv = Inventory(src)
    for platform, spec in doc["platforms"].items():
        where = f"platforms.{platform}"
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise InputError(src, where, "must be a mapping with data_components / log_sources / sigma lists")
        unknown = set(spec) - {"data_components", "log_sources", "sigma"}
        if unknown:
            raise InputError(src, where, f"unknown keys {sorted(unknown)} (use data_components, log_sources, sigma)")
        key = "*" if str(platform).strip() in ("*", "all") else normalize(str(platform))
        lists = {}
        for name in ("data_components", "log_sources", "sigma"):
            value = spec.get(name) or []
            if not isinstance(value, list):
                raise InputError(src, f"{where}.{name}", "must be a list")
            lists[name] = value
        dcs = inv.data_components.setdefault(key, set())
        for i, item in enumerate(lists["data_components"]):
            if not isinstance(item, str) or not item.strip():
                raise InputError(src, f"{where}.data_components[{i}]", f"{item!r} is not a data component name or id")
            dcs.add(normalize(item))
        logs = inv.log_sources.setdefault(key, set())
        for i, item in enumerate(lists["log_sources"]):
            if not isinstance(item, str) or not item.strip():
                raise InputError(src, f"{where}.log_sources[{i}]", f"{item!r} is not a log source name")
            logs.add(item.strip().lower())
        pats = inv.sigma.setdefault(key, [])
        for i, item in enumerate(lists["sigma"]):
            pat = _sigma_pattern(item, f"{where}.sigma[{i}]", src)
            if "product" not in pat and key in _SIGMA_PRODUCTS:  # Linux: [process_creation] is Linux's only
                pat["product"] = key
            pats.append(pat)
            for part in (pat.get("category"), pat.get("service"), pat.get("name")):
                for comp in SIGMA_COMPONENTS.get(part or "", ()):
                    dcs.add(normalize(comp))
    return inv


