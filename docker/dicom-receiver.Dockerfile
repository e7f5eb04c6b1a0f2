# dicom-receiver: DICOM C-STORE on port 11112 -> one pipeline run per study, inside this container.
# Build context: docker/, after docker/build-images.sh has filled docker/build/wheelhouse.
# The operators run as processes in here (the local engine): no Docker socket is needed.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS install
LABEL series-selection.image=install
COPY build/wheelhouse /wheelhouse
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links=/wheelhouse dicom-series-selection

FROM ${BASE_IMAGE}
LABEL series-selection.image=dicom-receiver
COPY --from=install /opt/venv /opt/venv
COPY dicom-receiver.yaml /etc/dicom-receiver/receiver.yaml
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent app \
 && mkdir /spool /output && chown 10001:10001 /spool /output
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 LOG_FORMAT=json \
    DICOM_RECEIVER_CONFIG=/etc/dicom-receiver/receiver.yaml
USER 10001:10001
EXPOSE 11112
ENTRYPOINT ["dicom-receiver"]
