# dicom-receiver: DICOM C-STORE on port 11112 -> one pipeline run per study, inside this container.
# The operators run as processes in here (the local engine): no Docker socket is needed.
# Build context: docker/, after docker/build-images.sh has filled docker/build/wheelhouse.
# The default base, pinned: python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91
# (the multi-arch index of Python 3.11.16, as published on 2026-08-24); the tag stays the default.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS install
LABEL series-selection.image=install
COPY build/wheelhouse /wheelhouse
# Only this operator's extra; pip and the libraries' own test suites are not needed at run time.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links=/wheelhouse \
        'dicom-series-selection[receiver]' \
 && /opt/venv/bin/pip uninstall --quiet --yes pip setuptools \
 && find /opt/venv/lib -type d -name tests -prune -exec rm -r {} +

FROM ${BASE_IMAGE}
LABEL series-selection.image=dicom-receiver
COPY --from=install /opt/venv /opt/venv
COPY dicom-receiver.yaml /etc/dicom-receiver/receiver.yaml
# Every folder a volume mounts onto belongs to the app user, in every image: compose v2 creates
# all containers first, and an empty named volume takes the owner of its folder in the image.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent app \
 && mkdir /spool /output && chown 10001:10001 /spool /output
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 LOG_FORMAT=json \
    DICOM_RECEIVER_CONFIG=/etc/dicom-receiver/receiver.yaml
USER 10001:10001
EXPOSE 11112
ENTRYPOINT ["dicom-receiver"]
