# pgferry as a container image: the `deno compile` binary on slim Debian with
# the PostgreSQL 15 client programs (pg_dump, pg_restore, psql).
#
#   docker build -t pgferry .
#   docker run --rm pgferry clone --follow --source … --target …
#
# For another CPU, build on it or emulate it (docker buildx --platform linux/arm64):
# scripts/compile.sh builds for the machine it runs on.

ARG DENO_VERSION=2.9.6

# Build: the same checks and compile as on a developer's machine.
FROM denoland/deno:debian-${DENO_VERSION} AS build
WORKDIR /src
COPY deno.json deno.lock main.ts ./
COPY cli/ cli/
COPY lib/ lib/
COPY scripts/ scripts/
RUN bash scripts/compile.sh

# Run: no Deno, no sources; one binary and the client programs it calls.
FROM debian:bookworm-slim
RUN apt-get update \
  && apt-get install -y --no-install-recommends postgresql-client-15 ca-certificates \
  && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/pgferry pgferry
COPY --from=build /src/dist/pgferry /usr/local/bin/pgferry
USER pgferry
WORKDIR /var/lib/pgferry
# The work directory (catalog, spool): mount a volume here to keep it across restarts.
ENV PGFERRY_DIR=/var/lib/pgferry/work
ENTRYPOINT ["pgferry"]
CMD ["help"]
