# trackyard's container image: `docker build -t trackyard/trackyard:0.1.0 .`
# The Helm chart (helm/trackyard) runs it as `trackyard server --config ... --role control|media`.
#
# Stage 1 builds the wheel (the Rust media engine via maturin) with a pinned Rust toolchain;
# stage 2 installs that wheel and its Python dependencies on a slim Python base. Nothing but
# the wheel crosses over: no compiler or Rust toolchain in the final image.
FROM python:3.11-slim-bookworm AS build
ARG RUST_VERSION=1.89.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain "$RUST_VERSION"
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY pyproject.toml Cargo.toml README.md ./
COPY rust ./rust
COPY python ./python
COPY proto ./proto
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# an unprivileged user; the chart also sets readOnlyRootFilesystem and drops capabilities
USER 10001:10001
# HTTP (signaling, Twirp, /healthz, /readyz, /metrics), ICE/TCP, media UDP, internal gRPC
EXPOSE 7880/tcp 7881/tcp 7882/udp 7890/tcp
ENTRYPOINT ["trackyard"]
CMD ["server", "--config", "/etc/trackyard/config.yaml"]
