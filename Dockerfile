# chatbench in a container: the load generator and the server (`chatbench
# serve`) in one image, with the scenarios under /scenarios. Used by
# deploy/kubernetes/.
#
#   docker build -t chatbench:latest .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p chatbench \
    && cp target/release/chatbench /chatbench

FROM debian:bookworm-slim
COPY --from=build /chatbench /usr/local/bin/chatbench
COPY scenarios /scenarios
USER 65534:65534
ENTRYPOINT ["chatbench"]
