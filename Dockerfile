# chatbench in a container: both binaries, the load generator `chatbench`
# (which also serves, as `chatbench serve`) and `chatbench-server`, in one
# small image with the scenarios under /scenarios. Used by
# deploy/kubernetes/; docs/server.md "Running the server in a container".
#
#   docker build -t chatbench:latest .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p chatbench -p chatbench-server \
    && cp target/release/chatbench target/release/chatbench-server /

FROM debian:bookworm-slim
COPY --from=build /chatbench /chatbench-server /usr/local/bin/
COPY scenarios /scenarios
USER 65534:65534
ENTRYPOINT ["chatbench"]
