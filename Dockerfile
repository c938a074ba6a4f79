# ringhub in a container: built with the same script and preset as CI, run as a non-root user.
#   docker build -t ringhub .
#   docker run --rm --security-opt seccomp=deploy/seccomp-ringhub.json --ulimit nofile=1048576:1048576 \
#     -p 7400-7401:7400-7401 -p 127.0.0.1:7402:7402 ringhub
#   docker compose up        # the same, from compose.yaml
# The seccomp profile is the runtime's default plus io_uring_setup, io_uring_enter and io_uring_register,
# which Docker 25+, containerd and podman block by default; nothing else is unblocked (no unconfined).
# Why the nofile ulimit: each shard's io_uring direct-descriptor table holds at most RLIMIT_NOFILE
# sockets, so a higher limit lets fewer shards hold 100k connections (the hub raises its soft limit to
# the hard one by itself). Flags after the image name go to ringhub: docker run ... ringhub --shards 4
# Tests run against a started container, not here: RUN steps get the default profile, which blocks
# io_uring. bash scripts/container-test.sh builds this image and checks the hub in it.

FROM debian:bookworm-slim AS build
WORKDIR /src
# Dependencies first, so editing sources does not reinstall them.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh
COPY . .
# Only what the image ships: the test suites are not built here.
RUN cmake --preset release \
    && cmake --build --preset release --target ringhub ringhub-client ringhub-perf ringhub-limits

FROM debian:bookworm-slim
COPY scripts/install-deps.sh /tmp/install-deps.sh
# apt's lists, package caches and downloaded .debs are not needed at run time (a debootstrapped base
# keeps them unless told otherwise).
RUN bash /tmp/install-deps.sh --runtime \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/install-deps.sh \
    && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ringhub
# ringhub-perf and ringhub-limits ride along so numbers can be taken inside the container
# (docker run --entrypoint ringhub-perf ...); they load the same runtime libraries as the hub.
COPY --from=build /src/build/release/bin/ringhub /src/build/release/bin/ringhub-client \
     /src/build/release/bin/ringhub-perf /src/build/release/bin/ringhub-limits /usr/local/bin/
COPY deploy/ringhub-admin-get.sh /usr/local/bin/ringhub-admin-get
USER ringhub
# 7400 relay, 7401 line, 7402 admin (/metrics, /healthz): publish the admin port on 127.0.0.1 only.
EXPOSE 7400 7401 7402
# SIGTERM makes the hub stop accepting and flush queued bytes for --shutdown-grace-ms (2 s), well
# inside Docker's 10 s stop timeout.
STOPSIGNAL SIGTERM
# The probe is bash's /dev/tcp (bash is already in the base image), so the image needs no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["ringhub-admin-get", "7402", "/healthz"]
ENTRYPOINT ["ringhub", "--bind", "0.0.0.0"]
