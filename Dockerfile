# raftcron node image: one `raftcron agent` per container.
#   docker build -t raftcron .
#   docker run -v /etc/raftcron:/etc/raftcron:ro -v raftcron-data:/var/lib/raftcron \
#     --network host raftcron --config /etc/raftcron/cluster.toml --node a
# data_dir in the config should point under /var/lib/raftcron (the volume).
FROM python:3.11-slim

RUN groupadd --system raftcron && useradd --system --gid raftcron --home /var/lib/raftcron raftcron \
 && mkdir -p /var/lib/raftcron && chown raftcron:raftcron /var/lib/raftcron

# tini as PID 1: a watchdog whose fork server was replaced is re-parented to PID 1, and the
# agent (which reaps only its own children) would leave it a zombie.
RUN apt-get update && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/raftcron
COPY pyproject.toml README.md ./
COPY raftcron ./raftcron
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER raftcron
WORKDIR /var/lib/raftcron
VOLUME ["/var/lib/raftcron"]
EXPOSE 7100 8100
ENTRYPOINT ["/usr/bin/tini", "--", "raftcron", "agent"]
CMD ["--data-dir", "/var/lib/raftcron"]
