"""The Kermany et al. file-name convention: patient id and pneumonia subtype.

``personNNN_bacteria_MMM.jpeg`` / ``personNNN_virus_MMM.jpeg`` (PNEUMONIA; NNN is the
patient) and ``IM-PPPP-SSSS.jpeg`` / ``NORMAL2-IM-PPPP-SSSS.jpeg`` (NORMAL; PPPP is the
patient). Training groups its validation split by these patients and takes the 3-class
label from them; ``cxr-edge evaluate`` reads subtypes inside a ``PNEUMONIA/`` folder.
One module, so both sides read the names the same way.
"""

from __future__ import annotations

import re

_PNEUMONIA_RE = re.compile(r"^person(?P<pid>\d+)_(?P<kind>bacteria|virus)_\d+(?:_\d+)?$", re.IGNORECASE)
# IM-0115-0001 and NORMAL2-IM-0115-0001 share one patient key: whether the two series
# number the same children is unknown, and merging groups can only remove leaks.
_NORMAL_RE = re.compile(r"^(?:NORMAL2-)?IM-(?P<pid>\d+)-\d+(?:-\d+)?$", re.IGNORECASE)


def parse_name(stem: str, label: str) -> tuple[str, str]:
    """Filename stem + folder label -> (patient key, subtype); patient "" if no pattern matches.

    The subtype is NORMAL, BACTERIAL, VIRAL, or UNKNOWN for a PNEUMONIA file without one.
    """
    match = _PNEUMONIA_RE.match(stem)
    if match and label == "PNEUMONIA":
        kind = "BACTERIAL" if match["kind"].lower() == "bacteria" else "VIRAL"
        return f"person{int(match['pid'])}", kind
    match = _NORMAL_RE.match(stem)
    if match and label == "NORMAL":
        return f"IM-{int(match['pid'])}", "NORMAL"
    return "", "NORMAL" if label == "NORMAL" else "UNKNOWN"
