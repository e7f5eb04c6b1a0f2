"""NIfTI qform as exact as the sform: near a half turn the float32 quaternion cannot carry the
rotation, so the writer stores two axes reversed; the voxels stay where they are in space.

The conftest's ``every_written_qform_is_exact`` checks every NIfTI file any test writes; here
the hardest rotations are written on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nibabel.quaternions import angle_axis2mat, mat2quat

from conftest import QFORM_TOLERANCE_MM, qform_error_mm
from series_selection.parser.cli import main
from series_selection.parser.geometry import flipped_affine, lps_to_ras, nifti_flips
from series_selection_tools.fidelity.worldspace import in_grid_of, load_volume
from series_selection_tools.samples.synthetic import ct_series, write_series

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
AXES = {
    "x": (1, 0, 0),
    "y": (0, 1, 0),
    "z": (0, 0, 1),
    "xy": (1, 1, 0),
    "xyz": (1, 1, 1),
    "oblique": (0.3, -0.5, 0.8),
}


def affine_for(ras_rotation: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """An LPS affine of 0.7 x 0.9 x 2.5 mm voxels whose RAS rotation is ``ras_rotation``."""
    affine = np.eye(4)
    affine[:3, :3] = RAS_TO_LPS @ ras_rotation @ np.diag([0.7, 0.9, 2.5])
    affine[:3, 3] = (-120.0, 80.0, 300.0)
    return affine


def scalar_part(affine: npt.NDArray[np.float64]) -> float:
    """|a| of the quaternion NIfTI stores for ``affine`` (its k axis reversed where det < 0)."""
    matrix = lps_to_ras(affine)[:3, :3]
    rotation = matrix / np.linalg.norm(matrix, axis=0)
    if np.linalg.det(rotation) < 0:
        rotation[:, 2] *= -1
    return float(abs(mat2quat(rotation)[0]))


@settings(max_examples=300, deadline=None)
@given(
    quaternion=st.tuples(*[st.floats(-1, 1) for _ in range(4)]).filter(
        lambda q: sum(c * c for c in q) > 1e-3
    ),
    mirrored=st.booleans(),
    grid=st.tuples(*[st.integers(1, 600) for _ in range(3)]),
)
def test_the_stored_order_leaves_a_quaternion_float32_can_carry(
    quaternion: tuple[float, float, float, float],
    mirrored: bool,
    grid: tuple[int, int, int],
) -> None:
    q = np.array(quaternion) / np.linalg.norm(quaternion)
    w, x, y, z = q
    rotation = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    if mirrored:
        rotation[:, 2] *= -1
    affine = affine_for(rotation)
    flips = nifti_flips(affine)
    stored = flipped_affine(affine, grid, flips)
    assert scalar_part(stored) >= 0.4
    if scalar_part(affine) >= 0.4:
        assert flips == ()
    # Every voxel keeps its place: voxel n of a reversed axis is voxel (count - 1 - n).
    index = np.array([3, 0, grid[2] - 1, 1.0])
    mirrored_index = index.copy()
    for axis in flips:
        mirrored_index[axis] = grid[axis] - 1 - index[axis]
    assert np.allclose(stored @ mirrored_index, affine @ index)


@pytest.mark.parametrize("turn_short_of_half", [1e-3, 1e-6], ids=["1e-3 rad", "1e-6 rad"])
@pytest.mark.parametrize("axis", list(AXES), ids=list(AXES))
def test_slices_turned_near_half_a_turn_get_an_exact_qform_and_keep_their_place(
    tmp_path: Path, axis: str, turn_short_of_half: float
) -> None:
    ras = angle_axis2mat(np.pi - turn_short_of_half, AXES[axis])
    lps = RAS_TO_LPS @ ras
    spec = ct_series(
        rows=7,
        columns=6,
        slices=4,
        pixel_spacing=(50.0, 40.0),  # corners as far apart as on a real 512 x 512 slice
        slice_spacing=80.0,
        row_cosine=tuple(lps[:, 0]),
        column_cosine=tuple(lps[:, 1]),
        origin=(-180.0, 150.0, 420.0),
    )
    truth = write_series(tmp_path / "in", spec)
    out = tmp_path / "out"
    assert main(["--input", str(tmp_path / "in"), "--output", str(out), "--workers", "1"]) == 0
    (volumes,) = json.loads((out / "series-images.json").read_text()).values()
    (volume,) = volumes
    path = out / volume["path"]
    assert qform_error_mm(path) <= QFORM_TOLERANCE_MM
    # The same voxels at the same places as DICOM puts them (axes reversed or not).
    loaded = load_volume(path)
    values = in_grid_of(loaded, truth.affine_lps, tolerance_mm=1e-4)
    assert np.array_equal(values, truth.rescaled().transpose(2, 1, 0))
    # series-images.json describes the file as stored.
    assert np.allclose(volume["origin"], loaded.affine_lps[:3, 3], atol=1e-4)
    directions = np.array(volume["direction"]).T * volume["spacing"]
    assert np.allclose(directions, loaded.affine_lps[:3, :3], atol=1e-5)
