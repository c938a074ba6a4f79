# ringhub in a container: built with the same script and preset as CI, run as a non-root user.
#   docker build -t ringhub .
#   docker run --rm -p 7400-7402:7400-7402 --ulimit nofile=1048576:1048576 ringhub
# Why the nofile ulimit: each shard's io_uring direct-descriptor table holds at most RLIMIT_NOFILE
# sockets, so a higher limit lets fewer shards hold 100k connections (the hub raises its soft limit to
# the hard one by itself). If ringhub reports io_uring unavailable, Docker's default seccomp profile
# blocks it on some Docker versions: add --security-opt seccomp=unconfined to docker run.
# Flags after the image name go to ringhub: docker run ... ringhub --shards 4
# Tests (they need io_uring during the build): docker build --build-arg RUN_TESTS=1 -t ringhub .

FROM debian:bookworm-slim AS build
WORKDIR /src
# Dependencies first, so editing sources does not reinstall them.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh
COPY . .
RUN cmake --preset release && cmake --build --preset release
ARG RUN_TESTS=0
RUN if [ "${RUN_TESTS}" = 1 ]; then ctest --preset release; fi

FROM debian:bookworm-slim
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN bash /tmp/install-deps.sh --runtime \
    && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh \
    && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ringhub
# ringhub-perf and ringhub-limits ride along so numbers can be taken inside the container
# (docker run --entrypoint ringhub-perf ...); they load the same runtime libraries as the hub.
COPY --from=build /src/build/release/bin/ringhub /src/build/release/bin/ringhub-client \
     /src/build/release/bin/ringhub-perf /src/build/release/bin/ringhub-limits /usr/local/bin/
USER ringhub
EXPOSE 7400 7401 7402
ENTRYPOINT ["ringhub", "--bind", "0.0.0.0"]
