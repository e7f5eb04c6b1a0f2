"""The receiver's configuration: YAML checked against ``schemas/receiver.schema.json``.

Relative paths in the file are taken from the folder holding it. Problems are one-line
``InputError``s naming the file and the JSON path of the bad value, as for the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any, Literal

from series_selection.common.errors import InputError
from series_selection.common.files import RefusedFileError, read_small_text
from series_selection.common.jsonio import schema_errors

Grouping = Literal["study", "series"]

DEFAULT_PORT = 11112
DEFAULT_HOST = "0.0.0.0"  # a DICOM listener serves the network
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_INSTANCE_BYTES = 2 << 30
DEFAULT_MAX_ASSOCIATIONS = 32
MAX_CONFIG_BYTES = 1 << 20
"""A configuration takes a few kilobytes: a larger file is refused unread."""


@dataclass(frozen=True)
class CalledAE:
    """What one called AE title does with what it receives."""

    title: str
    pipeline: Path | None = None
    rules: Path | None = None
    grouping: Grouping = "study"
    timeout: float = DEFAULT_TIMEOUT
    calling_ae_titles: frozenset[str] = frozenset()
    calling_hosts: frozenset[IPv4Network | IPv6Network] = frozenset()
    ignore_sop_classes: frozenset[str] = frozenset()
    max_jobs: int = 1

    def allows_calling(self, calling_ae: str) -> bool:
        """Whether ``calling_ae`` (spaces around it ignored) may send here."""
        return not self.calling_ae_titles or calling_ae.strip() in self.calling_ae_titles

    def allows_host(self, host: str) -> bool:
        """Whether a peer at the IP address ``host`` may send here."""
        if not self.calling_hosts:
            return True
        address = ip_address(host)
        return any(address in network for network in self.calling_hosts)


@dataclass(frozen=True)
class ReceiverConfig:
    """The whole configuration; ``None`` for a setting the file leaves to the default."""

    source: str
    ae_titles: dict[str, CalledAE]
    port: int | None = None
    host: str | None = None
    spool: Path | None = None
    output: Path | None = None
    engine: Literal["local", "docker"] | None = None
    max_instance_bytes: int = DEFAULT_MAX_INSTANCE_BYTES
    max_associations: int = DEFAULT_MAX_ASSOCIATIONS

    def called(self, title: str) -> CalledAE | None:
        """The configuration of the called AE title ``title`` (spaces around it ignored)."""
        return self.ae_titles.get(title.strip())


def load_config(path: Path) -> ReceiverConfig:
    """Read and check the configuration file at ``path``."""
    return parse_config(_read(path), str(path), path.parent)


def _read(path: Path) -> str:
    """The text of a configuration file (``common.files.read_small_text``, at most
    ``MAX_CONFIG_BYTES``)."""
    try:
        return read_small_text(path, MAX_CONFIG_BYTES)
    except RefusedFileError as error:
        raise InputError(f"configuration {path} {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise InputError(f"cannot read configuration {path}: {reason}") from error


def parse_config(text: str, source: str, base: Path) -> ReceiverConfig:
    """A checked configuration from YAML (or JSON) text; paths relative to ``base``."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        reason = str(error).replace("\n", " ")
        raise InputError(f"{source} is not valid YAML: {reason}") from None
    except RecursionError:
        raise InputError(f"{source}: nested too deeply") from None
    problems = schema_errors(document, "receiver")
    if problems:
        raise InputError(f"{source}: {problems[0]}")
    titles = {}
    for title, entry in document["ae_titles"].items():
        called = _called(title.strip(), entry or {}, base, source)
        if called.title in titles:
            raise InputError(f"{source}: AE title {called.title!r} is given twice")
        titles[called.title] = called
    return ReceiverConfig(
        source=source,
        ae_titles=titles,
        port=document.get("port"),
        host=document.get("host"),
        spool=_path(document.get("spool"), base),
        output=_path(document.get("output"), base),
        engine=document.get("engine"),
        max_instance_bytes=document.get("max_instance_bytes", DEFAULT_MAX_INSTANCE_BYTES),
        max_associations=document.get("max_associations", DEFAULT_MAX_ASSOCIATIONS),
    )


def _called(title: str, entry: dict[str, Any], base: Path, source: str) -> CalledAE:
    return CalledAE(
        title=title,
        pipeline=_path(entry.get("pipeline"), base),
        rules=_path(entry.get("rules"), base),
        grouping=entry.get("grouping", "study"),
        timeout=float(entry.get("timeout", DEFAULT_TIMEOUT)),
        calling_ae_titles=frozenset(t.strip() for t in entry.get("calling_ae_titles", ())),
        calling_hosts=frozenset(
            _network(host, f"{source}: $.ae_titles.{title}.calling_hosts[{index}]")
            for index, host in enumerate(entry.get("calling_hosts", ()))
        ),
        ignore_sop_classes=frozenset(entry.get("ignore_sop_classes", ())),
        max_jobs=entry.get("max_jobs", 1),
    )


def _network(host: str, where: str) -> IPv4Network | IPv6Network:
    """An allowed host: an IP address, or a network such as ``10.1.2.0/24``."""
    try:
        return ip_network(host.strip(), strict=False)
    except ValueError:
        raise InputError(
            f"{where}: {host!r} is not an IP address or network (host names are not looked up)"
        ) from None


def _path(value: str | None, base: Path) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
