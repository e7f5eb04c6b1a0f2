"""A stand-in for an AI model, the operator a pipeline adds after the selector: it reads
``selected-images.json``, loads each chosen volume and writes ``results.json`` with what a
model would have been given (shape, spacing, world position of the first voxel, mean value).

Folders: ``INFERENCE_INPUT`` (the selector's output, default ``/input``) and
``INFERENCE_OUTPUT`` (default ``/output``).
"""

import json
import os
import sys
from pathlib import Path

import nibabel
import numpy as np


def main() -> int:
    source = Path(os.environ.get("INFERENCE_INPUT", "/input"))
    target = Path(os.environ.get("INFERENCE_OUTPUT", "/output"))
    selected = json.loads((source / "selected-images.json").read_text(encoding="utf-8"))
    results = []
    for selection in selected["selections"]:
        for series in selection["series"]:
            for image in series["images"]:
                if image["format"] not in ("nii", "nii.gz"):
                    print(f"inference: {image['path']}: this model reads NIfTI", file=sys.stderr)
                    return 3
                volume = nibabel.load(source / image["path"])
                voxels = np.asarray(volume.dataobj, dtype=np.float64)
                results.append(
                    {
                        "selection": selection["name"],
                        "SeriesInstanceUID": series["SeriesInstanceUID"],
                        "path": image["path"],
                        "shape": list(voxels.shape),
                        "spacing": [float(z) for z in volume.header.get_zooms()[:3]],
                        "first_voxel_ras": [float(c) for c in volume.affine[:3, 3]],
                        "mean": float(voxels.mean()),
                    }
                )
    (target / "results.json").write_text(json.dumps({"results": results}, indent=1) + "\n")
    print(f"inference: {len(results)} volume(s) read", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
