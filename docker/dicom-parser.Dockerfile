# dicom-parser: a folder of DICOM files in /input -> metadata and volumes in /output.
# Build context: docker/, after docker/build-images.sh has filled docker/build/wheelhouse.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS install
LABEL series-selection.image=install
COPY build/wheelhouse /wheelhouse
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links=/wheelhouse dicom-series-selection

FROM ${BASE_IMAGE}
LABEL series-selection.image=dicom-parser
COPY --from=install /opt/venv /opt/venv
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent app \
 && mkdir /input /output && chown 10001:10001 /output
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 LOG_FORMAT=json \
    DICOM_PARSER_INPUT=/input DICOM_PARSER_OUTPUT=/output
USER 10001:10001
ENTRYPOINT ["dicom-parser"]
