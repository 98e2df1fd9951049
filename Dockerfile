# syntax=docker/dockerfile:1.7
#
# Images of the coupon pipeline. One build stage compiles the three binaries; the runtime stages
# copy them onto debian:bookworm-slim (glibc, zlib, OpenSSL's libssl3 and CA certificates are
# all they need: the bundled librdkafka uses the system OpenSSL for TLS and SASL/SCRAM to Kafka,
# and has no zstd).
#
#   docker build -t coupon-issuance .                      # all three binaries (the chart's default)
#   docker build --target ingress  -t coupon-ingress .     # coupon-ingress + couponctl
#   docker build --target consumer -t coupon-consumer .    # coupon-consumer + couponctl
#
# A release build names what it is built from (the OCI labels org.opencontainers.image.*):
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) ...
#
# Every image runs as uid/gid 10001, writes nothing to its root filesystem (mount /tmp if a
# tool needs scratch space) and carries `couponctl`, so `couponctl migrate` runs from any of them.
# No image carries `coupon-bench` (crate bench/): it generates valid requests and events in bulk
# and must never sit beside production credentials, so it is neither built nor copied here.

# Base images are pinned by the digest of their multi-platform index (the tag may move; the digest
# never does): rust:1-bookworm (Rust 1.97.1) and debian:bookworm-slim as published on 2026-08-05
# (the Debian snapshot of 2026-08-03), from Docker Official Images' record of every tag,
# https://github.com/docker-library/repo-info (repos/rust/remote/1-bookworm.md,
# repos/debian/remote/bookworm-slim.md). To refresh, take the new index digest of each tag from
# there, or `docker buildx imagetools inspect rust:1-bookworm` (its "Digest:" line), and replace
# it in the FROM line; both bases should come from the same Debian snapshot.
# deploy/checks/test_images.py fails on a FROM without a digest.
FROM rust:1-bookworm@sha256:593db038d36ea0d2e5b22a2e095eb95dbec607d88d658c2f35f65ee880b4f93a AS build
WORKDIR /src
# rust:*-bookworm already has gcc, make, perl, pkg-config, zlib1g-dev and libssl-dev, which is
# what the bundled librdkafka build (configure + make), libz-sys and openssl-sys need.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p ingress -p consumer -p couponctl \
 && mkdir -p /out \
 && cp target/release/coupon-ingress target/release/coupon-consumer target/release/couponctl /out/

FROM debian:bookworm-slim@sha256:abd67ffcfa541b485a3dff59865ab629aa048a6c613e639d36e7456b0b229241 AS runtime
# The release (the workspace's version, Cargo.toml) and the commit it is built from.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/coupon-issuance/coupon-issuance
LABEL org.opencontainers.image.title="coupon-issuance" \
      org.opencontainers.image.description="Burst-proof coupon issuance: HTTP ingress, Redis gate, Kafka log, PostgreSQL ledger (coupon-ingress, coupon-consumer, couponctl)" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 coupon \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin coupon
ENV LOG_FORMAT=json RUST_LOG=info
USER 10001:10001
WORKDIR /

FROM runtime AS ingress
LABEL org.opencontainers.image.title="coupon-ingress" \
      org.opencontainers.image.description="Coupon issuance HTTP ingress (admits requests through the Redis gate, produces to Kafka) with couponctl"
COPY --from=build /out/coupon-ingress /out/couponctl /usr/local/bin/
# 9091: the ops listener (/metrics); the load balancer routes only 8080.
ENV INGRESS_LISTEN=0.0.0.0:8080 INGRESS_OPS_LISTEN=0.0.0.0:9091
EXPOSE 8080 9091
ENTRYPOINT ["/usr/local/bin/coupon-ingress"]

FROM runtime AS consumer
LABEL org.opencontainers.image.title="coupon-consumer" \
      org.opencontainers.image.description="Coupon issuance consumer (persists requested issuances to the PostgreSQL ledger, relays coupon.issued) with couponctl"
COPY --from=build /out/coupon-consumer /out/couponctl /usr/local/bin/
ENV CONSUMER_HTTP_LISTEN=0.0.0.0:9090
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/coupon-consumer"]

# The default target: every binary, no entrypoint (the chart and compose.yaml name the command).
FROM runtime AS all
COPY --from=build /out/coupon-ingress /out/coupon-consumer /out/couponctl /usr/local/bin/
ENV INGRESS_LISTEN=0.0.0.0:8080 INGRESS_OPS_LISTEN=0.0.0.0:9091 CONSUMER_HTTP_LISTEN=0.0.0.0:9090
EXPOSE 8080 9090 9091
CMD ["/usr/local/bin/couponctl", "--help"]
