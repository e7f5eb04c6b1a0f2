# series-report: the parser's output in /input, the selector's in /selections -> report.html in /output.
# Build context: docker/, after docker/build-images.sh has filled docker/build/wheelhouse.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS install
LABEL series-selection.image=install
COPY build/wheelhouse /wheelhouse
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links=/wheelhouse dicom-series-selection

FROM ${BASE_IMAGE}
LABEL series-selection.image=series-report
COPY --from=install /opt/venv /opt/venv
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent app \
 && mkdir /input /selections /output && chown 10001:10001 /output
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 LOG_FORMAT=json \
    SERIES_REPORT_INPUT=/input SERIES_REPORT_SELECTIONS=/selections SERIES_REPORT_OUTPUT=/output
USER 10001:10001
ENTRYPOINT ["series-report"]
