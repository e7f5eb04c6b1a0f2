"""``fidelity-report``: convert every case of a reference data set and tabulate the agreement.

    fidelity-report --data ../shared/data [--cases PREFIX ...] [--markdown]

Verdicts: ``match`` (same grid, values within the reference's quantisation), ``match up to
value scale`` (same grid, values an exact linear rescale: a different value convention),
``resampled, agrees with DICOM`` (a tilted or unevenly spaced stack, checked against the
values DICOM defines at the same patient points), ``refused`` (no volume, with the reason),
``no reference``, or ``MISMATCH``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

from series_selection_tools.fidelity.cases import (
    CaseResult,
    ReferenceResult,
    evaluate_case,
    load_cases,
)

RESAMPLED_TOLERANCE = 0.51
"""Linear interpolation rounded back to integers: at most half a unit apart."""
DEFECTIVE_REFERENCES = {
    "dicom2nifti/philips_enhanced/dti/001_ground_truth.nii.gz": (
        "reference defective: its volumes 2-4 are all zero while every DICOM frame holds data; "
        "ours equals the DICOM frames (tests/test_shared_data.py)"
    ),
}
"""References known to be wrong, each with the evidence."""


def verdict(result: CaseResult, reference: ReferenceResult | None) -> str:
    """One word or phrase for one row of the table."""
    if result.dicom_agreement is not None:
        compared, difference = result.dicom_agreement
        if compared and difference <= RESAMPLED_TOLERANCE:
            return "resampled, agrees with DICOM"
        return "MISMATCH with DICOM"
    if reference is None:
        return "refused" if result.refused and not result.volumes else "no reference"
    if reference.reference in DEFECTIVE_REFERENCES:
        return DEFECTIVE_REFERENCES[reference.reference]
    comparison = reference.comparison
    if reference.matches:
        return "match"
    if (
        comparison is not None
        and comparison.max_grid_offset_voxels < 1e-3
        and comparison.max_affine_difference_mm < 1e-3
        and comparison.max_linear_residual <= 1e-6 * max(1.0, abs(comparison.value_scale[0]))
    ):
        return f"match up to value scale (x{comparison.value_scale[0]:.6g})"
    return "MISMATCH"


def rows(result: CaseResult) -> Iterator[list[str]]:
    """Table rows for one case: one per reference volume (or one for the case)."""
    outcome = f"{len(result.volumes)} volume(s)"
    if result.refused:
        outcome += "; refused: " + "; ".join(r[:90] for r in result.refused)
    if result.resampled:
        outcome += "; " + "; ".join(r.split(";")[0][:90] for r in result.resampled)
    if result.duplicates:
        outcome += f"; {len(result.duplicates)} duplicate SOPInstanceUID(s) converted one by one"
    references: list[ReferenceResult | None] = list(result.references) or [None]
    for reference in references:
        comparison = reference.comparison if reference else None
        difference = f"{comparison.max_abs_difference:.4g}" if comparison else "-"
        affine = f"{comparison.max_affine_difference_mm:.2g}" if comparison else "-"
        if result.dicom_agreement is not None:
            difference = f"{result.dicom_agreement[1]:.3g} (vs DICOM)"
        name = Path(reference.reference).name if reference else "-"
        yield [result.case, name, outcome, difference, affine, verdict(result, reference)]


HEADER = ["case", "reference", "our result", "max abs diff", "affine diff mm", "verdict"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fidelity-report", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder holding cases.json")
    parser.add_argument("--cases", nargs="*", default=[], help="only cases starting with these")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    table = [HEADER]
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        for number, case in enumerate(load_cases(arguments.data)):
            if arguments.cases and not case["input"].startswith(tuple(arguments.cases)):
                continue
            result = evaluate_case(arguments.data, case, Path(scratch) / str(number))
            for row in rows(result):
                failures += "MISMATCH" in row[-1]
                table.append(row)
    print(_format(table, arguments.markdown))
    print(f"\n{len(table) - 1} rows, {failures} mismatches")
    return 1 if failures else 0


def _format(table: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in table]
        lines.insert(1, "|" + "---|" * len(table[0]))
        return "\n".join(lines)
    widths = [min(60, max(len(row[i]) for row in table)) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(c[:w].ljust(w) for c, w in zip(row, widths, strict=True)) for row in table
    )


if __name__ == "__main__":
    raise SystemExit(main())
