# Two images from one file, both from python:3.11-slim:
#   docker build --target api     -t chest-xray-classification-api .      # ONNX Runtime, no TensorFlow
#   docker build --target gradcam -t chest-xray-classification-gradcam .  # Keras/TensorFlow Grad-CAM sidecar
# Dependency sets come from pyproject.toml (api = [project].dependencies, gradcam = those plus
# the `sidecar` extra), so the images and `pip install .` cannot drift apart. The dependency
# layers depend on pyproject.toml alone, so code and model changes rebuild only the small
# layers. Works with BuildKit and with the classic builder (plain `docker-compose up` v1.29):
# the api stages come first, so the classic builder never builds TensorFlow for `api`.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- shared: the pinned requirement sets, an empty virtual environment -----------------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
open('requirements-api.txt', 'w').write('\n'.join(p['dependencies']) + '\n'); \
open('requirements-sidecar.txt', 'w').write('\n'.join(p['optional-dependencies']['sidecar']) + '\n')" \
    && python -m venv /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORT_DISABLE_TELEMETRY=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_HOME=/tmp/keras \
    HOME=/tmp \
    CXR_MODEL_DIR=/app/models
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent cxr
WORKDIR /app

# ---- api: FastAPI + ONNX Runtime, the serving set only ---------------------------------
FROM deps AS venv-api
RUN /opt/venv/bin/pip install --require-virtualenv -r requirements-api.txt

FROM venv-api AS venv-api-final
RUN /opt/venv/bin/pip uninstall --yes --quiet pip

FROM runtime AS api
COPY --from=venv-api-final /opt/venv /opt/venv
COPY models/ ./models/
COPY app/ ./app/
ENV CXR_HOST=0.0.0.0 CXR_PORT=8000
USER cxr
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['CXR_PORT'], timeout=4)"]
# CXR_WORKERS processes (default: one per CPU the container may use); see app/api/__main__.py.
CMD ["python", "-m", "app.api"]

# ---- gradcam: the Grad-CAM sidecar, serving set + TensorFlow ---------------------------
FROM venv-api AS venv-gradcam
RUN /opt/venv/bin/pip install --require-virtualenv -r requirements-api.txt -r requirements-sidecar.txt \
    # Build-time only parts of TensorFlow: its C++ headers (~290 MB) and libclang (~60 MB).
    && rm -rf /opt/venv/lib/python3*/site-packages/tensorflow/include \
    && /opt/venv/bin/pip uninstall --yes --quiet libclang pip

FROM runtime AS gradcam
COPY --from=venv-gradcam /opt/venv /opt/venv
COPY models/ ./models/
COPY app/ ./app/
ENV CXR_SIDECAR_HOST=0.0.0.0 CXR_SIDECAR_PORT=8001
USER cxr
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['CXR_SIDECAR_PORT'], timeout=4)"]
CMD ["sh", "-c", "exec python -m uvicorn app.sidecar.main:app --host \"$CXR_SIDECAR_HOST\" --port \"$CXR_SIDECAR_PORT\" --no-server-header"]
