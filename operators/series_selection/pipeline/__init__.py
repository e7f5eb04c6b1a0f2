"""The series selection pipeline: its definition, local and Docker runners, Argo export.

The Docker runner (``series_selection.pipeline.docker_engine``) is imported where it is used:
it needs the Docker SDK."""

from series_selection.pipeline.argo import workflow_template
from series_selection.pipeline.definition import Pipeline, load_pipeline, parse_pipeline
from series_selection.pipeline.runner import LocalEngine, run_pipeline

__all__ = [
    "LocalEngine",
    "Pipeline",
    "load_pipeline",
    "parse_pipeline",
    "run_pipeline",
    "workflow_template",
]
