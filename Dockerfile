# One image, any daemon: `onezone up` (the default) or `onezone kms|coordinator|node|gateway --config FILE`.
# The base image is a build argument so the image can be built without a registry
# (see ../shared/reference/containers.md: a debootstrapped Debian with python3 works).
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG PIP_CERT=
ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/onezone
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY kms ./kms
COPY coordinator ./coordinator
COPY node ./node
COPY gateway ./gateway
COPY onezone ./onezone
COPY ops ./ops
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir ${PIP_CERT:+--cert "$PIP_CERT"} . \
 && useradd --system --home /data onezone && mkdir -p /data && chown onezone /data
ENV PATH=/opt/venv/bin:$PATH
USER onezone
VOLUME /data
EXPOSE 9000
ENTRYPOINT ["onezone"]
CMD ["up", "--host", "0.0.0.0", "--data-dir", "/data"]
