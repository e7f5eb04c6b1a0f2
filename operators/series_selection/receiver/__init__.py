"""dicom-receiver: a DICOM C-STORE receiver that runs the pipeline on each study it receives.

The network side (``series_selection.receiver.service``, pynetdicom) is imported where it is
used: by the command, and by callers that start a ``Receiver`` themselves."""

from series_selection.receiver.config import CalledAE, ReceiverConfig, load_config, parse_config
from series_selection.receiver.groups import Groups
from series_selection.receiver.ledger import Ledger
from series_selection.receiver.spool import Instance, Spool, check_instance

__all__ = [
    "CalledAE",
    "Groups",
    "Instance",
    "Ledger",
    "ReceiverConfig",
    "Spool",
    "check_instance",
    "load_config",
    "parse_config",
]
