# The rds-csi image: one binary for the controller and the node plugin, built without the
# embedded simulator (`--no-default-features`), and only what the node runs beside it (mkfs.ext4
# and resize2fs from e2fsprogs, mkfs.xfs and xfs_growfs from xfsprogs) with the libraries they
# load: no shell, no package manager.
#
# A second target, `rds-sim`, is the RDS stand-in as an image.
#
#   docker build -t rds-csi:0.1.0 .                       # where the base images can be pulled
#   docker build --target rds-sim -t rds-sim:0.1.0 .
#   ci/image.sh                                           # anywhere: builds both, and its own
#                                                         # bases if it must
#
# BINARY picks where the binaries come from: `build` compiles them here; `prebuilt` takes
# target/image/{rds-csi,rds-sim}, which ci/image.sh compiles on the host when no Rust image can be
# pulled. BuildKit builds only the stages the target needs.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG BINARY=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p rds-csi --no-default-features --bin rds-csi \
 && cargo build --release --locked -p rds-sim --bin rds-sim \
 && mkdir /out \
 && strip -o /out/rds-csi target/release/rds-csi \
 && strip -o /out/rds-sim target/release/rds-sim

FROM scratch AS prebuilt
COPY target/image/rds-csi target/image/rds-sim /out/

FROM ${BINARY} AS binary

# The tools the node runs, with every library they and rds-csi load: only these reach the image.
FROM ${RUNTIME_IMAGE} AS tools
# A base that already carries the tools (ci/image.sh's own) skips the package manager.
RUN if ! (command -v mkfs.xfs && command -v xfs_growfs && command -v mkfs.ext4 \
          && command -v resize2fs) >/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends e2fsprogs xfsprogs util-linux \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=binary /out/ /usr/bin/
# Copies each program and every library it loads under the root $1.
RUN set -e; \
    collect() { \
      root=$1; shift; \
      mkdir -p "$root/tmp" "$root/etc"; chmod 1777 "$root/tmp"; \
      for tool in "$@"; do \
        path=$(command -v "$tool"); \
        cp -a --parents "$path" "$root"; \
        for lib in $(ldd "$path" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do \
          cp -L --parents "$lib" "$root"; \
        done; \
      done; \
      echo 'root:x:0:0::/:/nonexistent' > "$root/etc/passwd"; \
      echo 'nonroot:x:65532:65532::/:/nonexistent' >> "$root/etc/passwd"; \
      printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"; \
    }; \
    collect /rootfs /usr/bin/rds-csi mke2fs mkfs.ext4 resize2fs mkfs.xfs xfs_growfs; \
    cp --parents /etc/mke2fs.conf /rootfs; \
    collect /sim-rootfs /usr/bin/rds-sim; \
    mkdir -p /sim-rootfs/data

# rds-sim, the RDS stand-in, for clusters and containers (kind, the resilience suites): SSH on
# 2222, NVMe/TCP on 4420, the control API on 8080, state in /data. It needs a way to log in:
# RDS_SIM_PASSWORD in the environment, or --authorized-keys with a mounted file.
FROM scratch AS rds-sim
COPY --from=tools /sim-rootfs /
VOLUME /data
EXPOSE 2222 4420 8080
ENTRYPOINT ["/usr/bin/rds-sim"]
CMD ["--data-dir", "/data", "--ssh-listen", "0.0.0.0:2222", "--nvme-listen", "0.0.0.0:4420", \
     "--control-listen", "0.0.0.0:8080"]

FROM scratch AS runtime
COPY --from=tools /rootfs /
ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin
# The controller runs as this user (the chart's podSecurityContext says the same); the node
# plugin's DaemonSet runs as root, which mkfs, mount and /dev/nvme-fabrics need.
USER 65532:65532
ENTRYPOINT ["/usr/bin/rds-csi"]
