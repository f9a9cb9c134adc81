# The lab's one image: every service, the saga orchestrator, the event processor and replay.
#   docker build -t labkit:0.1.0 .        (or: labkit image build [--kind CLUSTER])
# The tag is labkit.runtime.manifests.IMAGE (labkit:<ecommerce.__version__>); the manifests use it
# with imagePullPolicy IfNotPresent, and `labkit validate` checks that they do.

# The image holds the system under study (the `ecommerce` package) and nothing of the workbook
# helper (`labkit`): .dockerignore admits ecommerce/ only, so `pip install .` finds just it.

# ---- build stage: a virtualenv with the package and only the service dependencies ----------
FROM python:3.12.14-slim-bookworm@sha256:0f5b26b9518d002b6173fd61daad821fa340635ebfec5bba471013f9ca114579 AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/labkit
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ecommerce ./ecommerce
# `pip install .` installs [project.dependencies] only (no `lab` / `dev` extras: no Jupyter,
# no kubernetes client). Every dependency ships a wheel, so no compiler is needed; the build
# backend runs in pip's throwaway isolated environment and nothing of it reaches /opt/labkit.
RUN /opt/labkit/bin/pip install . \
 && /opt/labkit/bin/pip uninstall -y pip setuptools wheel \
 && /opt/labkit/bin/python -m compileall -q /opt/labkit

# ---- final stage: the slim base, the virtualenv, a non-root user -------------------------------
FROM python:3.12.14-slim-bookworm@sha256:0f5b26b9518d002b6173fd61daad821fa340635ebfec5bba471013f9ca114579
ENV PATH=/opt/labkit/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    LABKIT_HOST=0.0.0.0 \
    LABKIT_PORT=8080
# A numeric user, so Kubernetes can verify runAsNonRoot (the manifests run as 10001 too).
RUN groupadd --system --gid 10001 labkit \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin labkit
COPY --from=build /opt/labkit /opt/labkit
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# Each manifest sets its own command (`python -m <entrypoint> ...`, see ecommerce/services/registry.py).
CMD ["python", "-c", "print('labkit image: run python -m <entrypoint>, see ecommerce/services/registry.py')"]
