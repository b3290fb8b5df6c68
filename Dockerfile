# The rds-csi image: one binary for the controller and the node plugin, built without the
# embedded simulator (`--no-default-features`), and only what the node runs beside it (mkfs.ext4
# and resize2fs from e2fsprogs, mkfs.xfs and xfs_growfs from xfsprogs) with the libraries they
# load: no shell, no package manager.
#
#   docker build -t rds-csi:0.1.0 .                 # where the base images can be pulled
#   ci/image.sh                                     # anywhere: builds its own bases if it must
#
# BINARY picks where the binary comes from: `build` compiles it here; `prebuilt` takes
# target/image/rds-csi, which ci/image.sh compiles on the host when no Rust image can be pulled.
# BuildKit builds only the stages the target needs.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG BINARY=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p rds-csi --no-default-features --bin rds-csi \
 && strip -o /rds-csi target/release/rds-csi

FROM scratch AS prebuilt
COPY target/image/rds-csi /rds-csi

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
COPY --from=binary /rds-csi /usr/bin/rds-csi
RUN set -e; \
    mkdir -p /rootfs/tmp /rootfs/etc; chmod 1777 /rootfs/tmp; \
    for tool in /usr/bin/rds-csi mke2fs mkfs.ext4 resize2fs mkfs.xfs xfs_growfs; do \
      path=$(command -v "$tool"); \
      cp -a --parents "$path" /rootfs; \
      for lib in $(ldd "$path" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do \
        cp -L --parents "$lib" /rootfs; \
      done; \
    done; \
    cp --parents /etc/mke2fs.conf /rootfs; \
    echo 'root:x:0:0::/:/nonexistent' > /rootfs/etc/passwd; \
    echo 'nonroot:x:65532:65532::/:/nonexistent' >> /rootfs/etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group

FROM scratch AS runtime
COPY --from=tools /rootfs /
ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin
# The controller runs as this user (the chart's podSecurityContext says the same); the node
# plugin's DaemonSet runs as root, which mkfs, mount and /dev/nvme-fabrics need.
USER 65532:65532
ENTRYPOINT ["/usr/bin/rds-csi"]
