"""The DICOM series selection pipeline: hand an AI model exactly the right image volume.

Four packages, each importable on its own:

- ``series_selection.parser``: a folder of DICOM files -> metadata, volumes, a report
  (``dicom-parser``);
- ``series_selection.selector``: the parser's output and rules -> the chosen series
  (``series-selector``);
- ``series_selection.pipeline``: the Clara pipeline definition, its runners, the Argo export
  (``series-pipeline``);
- ``series_selection.common``: what they share: errors, models, settings, logs, JSON files,
  output folders.

Importing a package changes no global state: settings such as pydicom's validation mode are
made by the command that needs them, for as long as it runs.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "common", "parser", "pipeline", "selector"]
