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
# Every image runs as uid/gid 10001, writes nothing to its root filesystem (mount /tmp if a
# tool needs scratch space) and carries `couponctl`, so `couponctl migrate` runs from any of them.
# No image carries `coupon-bench` (crate bench/): it generates valid requests and events in bulk
# and must never sit beside production credentials, so it is neither built nor copied here.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
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

FROM ${RUNTIME_IMAGE} AS runtime
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
COPY --from=build /out/coupon-ingress /out/couponctl /usr/local/bin/
# 9091: the ops listener (/metrics); the load balancer routes only 8080.
ENV INGRESS_LISTEN=0.0.0.0:8080 INGRESS_OPS_LISTEN=0.0.0.0:9091
EXPOSE 8080 9091
ENTRYPOINT ["/usr/local/bin/coupon-ingress"]

FROM runtime AS consumer
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
