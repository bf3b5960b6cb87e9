# llm-relay as one static binary in an empty image.
#   docker build -t llm-relay .
#   docker run -p 8080:8080 -e OPENAI_API_KEY=sk-... llm-relay
# The build stage runs scripts/build-static.sh, the same command the tests use
# (tests/system_static.rs runs the result from an empty root directory, as FROM scratch does).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/build-static.sh target/static \
 && cp target/static/x86_64-unknown-linux-gnu/release/llm-relay /llm-relay \
 && OPENAI_API_KEY=build-check /llm-relay --check --config deploy/container.jsonc

FROM scratch
COPY --from=build /llm-relay /llm-relay
COPY deploy/container.jsonc /config.jsonc
# not root: the relay needs no privileges (the port is above 1024)
USER 65534:65534
EXPOSE 8080
# no shell in the image: the binary probes itself
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 \
  CMD ["/llm-relay", "health", "--url", "http://127.0.0.1:8080/health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/llm-relay"]
CMD ["--config", "/config.jsonc"]
