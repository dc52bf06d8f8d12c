# raftcron node image: one `raftcron agent` per container (docs/install.md, "Docker").
#   docker build -t raftcron .
#   docker run -d --name raftcron --network host --stop-timeout 20 \
#     -v /etc/raftcron:/etc/raftcron:ro -v raftcron-data:/var/lib/raftcron \
#     raftcron --config /etc/raftcron/cluster.toml --node a
# The cluster file's data_dir must lie under /var/lib/raftcron, the data volume (`raftcron
# init` writes data_dir = "/var/lib/raftcron/<node>"); /etc/raftcron is the read-only config
# mount. The secret and token files there must be owned by uid 10001 with mode 0600.
# Before stopping or replacing a container, drain the node: a container stop kills its
# running jobs (their watchdogs live in the container), and --stop-timeout must stay above
# [cluster] shutdown_drain (default 8s) so the agent finishes draining before SIGKILL.
FROM python:3.11-slim

# A fixed uid/gid, so that files on the host (the secret) can be given to it.
RUN groupadd --system --gid 10001 raftcron \
 && useradd --system --uid 10001 --gid raftcron --home-dir /var/lib/raftcron \
      --shell /usr/sbin/nologin raftcron \
 && install -d -o raftcron -g raftcron -m 0700 /var/lib/raftcron \
 && install -d -m 0755 /etc/raftcron

# tini as PID 1: a watchdog whose fork server was replaced is re-parented to PID 1, and the
# agent (which reaps only its own children) would leave it a zombie. Debian's current tini:
# the base image's release fixes which one that is.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/raftcron
# The exact versions and hashes of requirements.lock first (a layer that changes only with
# the lock), then raftcron itself without dependencies.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md cluster.example.toml ./
COPY raftcron ./raftcron
RUN pip install --no-cache-dir --no-deps . && rm -rf /root/.cache build
COPY packaging/healthcheck.py /opt/raftcron/healthcheck.py

USER 10001:10001
WORKDIR /var/lib/raftcron
VOLUME ["/var/lib/raftcron"]
# Raft and API ports: 7100/8100 for the single-node default and `raftcron init`'s default
# ports, 7101-7103/8101-8103 for the nodes of cluster.example.toml.
EXPOSE 7100-7103 8100-8103
# GET /health on this container's agent, with the agent's own Python (no curl in the image).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/opt/raftcron/healthcheck.py"]
ENTRYPOINT ["/usr/bin/tini", "--", "raftcron", "agent"]
CMD ["--data-dir", "/var/lib/raftcron"]
